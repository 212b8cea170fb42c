import ArgumentParser
import Foundation
import LicenseClient

/// This tool's version, sent in Hello.
let licensectlVersion = "0.1.0"

/// `--server host:port` (default `$LICENSED_SERVER`, then 127.0.0.1:27070) and `--json`,
/// shared by every command that talks to a server.
struct ServerOptions: ParsableArguments {
    @Option(help: "Licence server as host:port (default $LICENSED_SERVER or 127.0.0.1:27070).")
    var server: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Option(help: "Access token (default $LICENSED_TOKEN).")
    var token: String?

    /// A client library instance for this server, identifying as licensectl and this user.
    func client() throws -> LicenseClient {
        let (host, port) = try self.endpoint()
        let environment = ProcessInfo.processInfo.environment
        return LicenseClient(
            configuration: .init(
                host: host,
                port: port,
                user: environment["USER"] ?? environment["LOGNAME"] ?? NSUserName(),
                clientHost: ProcessInfo.processInfo.hostName,
                clientName: "licensectl",
                clientVersion: licensectlVersion,
                token: self.token ?? environment["LICENSED_TOKEN"] ?? ""
            )
        )
    }

    func endpoint() throws -> (host: String, port: Int) {
        let text = self.server ?? ProcessInfo.processInfo.environment["LICENSED_SERVER"] ?? "127.0.0.1:27070"
        // [v6]:port, host:port, or a bare host.
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":"), let port = rest.isEmpty ? 27070 : Int(rest.dropFirst()) else {
                throw CLIError("--server '\(text)' is not host:port")
            }
            return (host, port)
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1: return (text, 27070)
        case 2:
            guard let port = Int(parts[1]), (1...65535).contains(port), !parts[0].isEmpty else {
                throw CLIError("--server '\(text)' is not host:port")
            }
            return (String(parts[0]), port)
        default: throw CLIError("--server '\(text)' is not host:port (write IPv6 addresses as [addr]:port)")
        }
    }
}
