import Foundation
import LicenseCommandLine

/// File reading and writing for the CLI, with errors that name the path.
enum Files {
    static func readText(_ path: String) throws -> String {
        do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CLIError("cannot read \(path): \(Self.reason(error))")
        }
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw CLIError("cannot write \(path)")
        }
    }

    /// Creates the file with mode 0600 from the start, so the secret is never readable by others.
    static func writePrivate(_ bytes: [UInt8], to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
            throw CLIError("cannot write \(path)")
        }
        // createFile keeps an existing file's mode: enforce ours.
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    }

    private static func reason(_ error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return nsError.localizedDescription
    }
}
