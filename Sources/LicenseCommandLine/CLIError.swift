import Foundation
package import LicenseClient
import LicenseProtocol

/// A failure to report in one line on stderr with a non-zero exit.
package struct CLIError: Error, CustomStringConvertible {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { self.message }
}

extension CLIError {
    /// A client error as one line: the protocol code and the server's message.
    package init(_ error: LicenseClientError) {
        self.init("\(error.code.name): \(error.message)")
    }
}

/// Prints `object` as pretty, key-sorted JSON on stdout.
package func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// Prints one line straight to stdout's file descriptor: a long-running command's output must
/// reach a pipe or file as it happens, not when a buffer fills.
package func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
