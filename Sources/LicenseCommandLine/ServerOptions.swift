package import ArgumentParser
import Foundation
package import LicenseClient

/// This tool's version, sent in Hello.
package let licensectlVersion = "0.1.0"

/// `--server host:port` (default `$LICENSED_SERVER`, then 127.0.0.1:27070) and `--json`,
/// shared by every command that talks to a server.
package struct ServerOptions: ParsableArguments {
    /// Options as given on the command line.
    package init() {}

    @Option(help: "Licence server as host:port (default $LICENSED_SERVER or 127.0.0.1:27070).")
    package var server: String?

    @Flag(help: "Print JSON instead of text.")
    package var json = false

    @Option(help: "Access token (default $LICENSED_TOKEN).")
    package var token: String?

    @Flag(help: "Connect with TLS, trusting the system's CAs unless --tls-ca is given.")
    package var tls = false

    @Option(help: "PEM CA file that signs the server's certificate (implies --tls; default $LICENSED_TLS_CA).")
    package var tlsCA: String?

    @Option(help: "PEM client certificate for servers that require one (mTLS; default $LICENSED_TLS_CERT).")
    package var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert (default $LICENSED_TLS_KEY).")
    package var tlsKey: String?

    @Option(help: "Local admin socket, used by admin commands when no token and no --server is given (default /run/licensed/admin.sock).")
    package var adminSocket: String?

    /// The TLS settings asked for, if any.
    package func tlsSettings() throws -> ClientTLS? {
        let environment = ProcessInfo.processInfo.environment
        let ca = self.tlsCA ?? environment["LICENSED_TLS_CA"]
        let cert = self.tlsCert ?? environment["LICENSED_TLS_CERT"]
        let key = self.tlsKey ?? environment["LICENSED_TLS_KEY"]
        guard self.tls || ca != nil || cert != nil else { return nil }
        guard (cert == nil) == (key == nil) else { throw CLIError("--tls-cert and --tls-key go together") }
        return ClientTLS(caFile: ca, certificateFile: cert, privateKeyFile: key)
    }

    /// A client library instance for this server, identifying as licensectl and this user. With
    /// `admin`, no token, and no server named, it goes to the local admin socket when that exists.
    package func client(admin: Bool = false) throws -> LicenseClient {
        let (host, port) = try self.endpoint()
        let environment = ProcessInfo.processInfo.environment
        let token = self.token ?? environment["LICENSED_TOKEN"] ?? ""
        var configuration = LicenseClient.Configuration(
            host: host,
            port: port,
            user: environment["USER"] ?? environment["LOGNAME"] ?? NSUserName(),
            clientHost: ProcessInfo.processInfo.hostName,
            clientName: "licensectl",
            clientVersion: licensectlVersion,
            token: token
        )
        configuration.tls = try self.tlsSettings()
        if admin, let socket = self.adminSocket ?? environment["LICENSED_ADMIN_SOCKET"] {
            configuration.unixSocketPath = socket
            configuration.tls = nil
        } else if admin, token.isEmpty, self.server == nil, environment["LICENSED_SERVER"] == nil,
            FileManager.default.fileExists(atPath: "/run/licensed/admin.sock")
        {
            configuration.unixSocketPath = "/run/licensed/admin.sock"
            configuration.tls = nil
        }
        return LicenseClient(configuration: configuration)
    }

    package func endpoint() throws -> (host: String, port: Int) {
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
