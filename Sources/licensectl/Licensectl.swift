import ArgumentParser
import Foundation
import LicenseClient
import LicenseProtocol

/// The command-line tool for everything but the daemon itself.
@main
struct Licensectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licensectl",
        abstract: "Keys, licence files and the licence server, from the command line.",
        subcommands: [
            Keys.self, License.self, Token.self, Ping.self, Status.self, Checkout.self, Checkin.self, Reload.self, Snapshot.self,
            Bench.self, Fingerprint.self, Activate.self, Deactivate.self, Activations.self, Leases.self, Revoke.self, Queue.self,
            Audit.self, Report.self, Watch.self,
        ]
    )
}

/// A failure to report in one line on stderr with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { self.message }
}

extension CLIError {
    /// A client error as one line: the protocol code and the server's message.
    init(_ error: LicenseClientError) {
        self.init("\(error.code.name): \(error.message)")
    }
}

/// Prints `object` as pretty, key-sorted JSON on stdout.
func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// Prints one line straight to stdout's file descriptor: a long-running command's output must
/// reach a pipe or file as it happens, not when a buffer fills.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
