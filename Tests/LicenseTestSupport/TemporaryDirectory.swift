public import Foundation

/// A scratch directory removed when the value is released.
public final class TemporaryDirectory {
    public let url: URL
    public init() throws {
        self.url = FileManager.default.temporaryDirectory.appendingPathComponent("licensed-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.url, withIntermediateDirectories: true)
    }
    public func path(_ name: String) -> String { self.url.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: self.url) }
}

/// Runs the `openssl` command line tool.
public enum OpenSSLCommand {
    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    public static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw Failed(
                description: "openssl \(arguments.joined(separator: " ")) failed: \(text) \(String(decoding: errData, as: UTF8.self))"
            )
        }
        return text
    }
}
