package import ArgumentParser
import Foundation
package import LicenseClient

/// This tool's version, sent in Hello.
package let licensectlVersion = "0.1.0"

/// `--server host:port[,host:port…]` (default `$LICENSED_SERVERS`, `$LICENSED_SERVER`, then
/// 127.0.0.1:27070) and `--json`, shared by every command that talks to a server.
package struct ServerOptions: ParsableArguments {
    /// Options as given on the command line.
    package init() {}

    @Option(
        help:
            "Licence server as host:port, or a cluster's servers as host:port,host:port,… (default $LICENSED_SERVERS, $LICENSED_SERVER or 127.0.0.1:27070)."
    )
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

    /// This process's user: `$USER`, `$LOGNAME`, or the account's name.
    public static var localUser: String {
        let environment = ProcessInfo.processInfo.environment
        return environment["USER"] ?? environment["LOGNAME"] ?? NSUserName()
    }

    /// A client library instance for this server, identifying as licensectl and this user. With
    /// `admin`, no token, and no server named, it goes to the local admin socket when that exists.
    package func client(admin: Bool = false) throws -> LicenseClient {
        let servers = try self.servers()
        let (host, port) = try self.endpoint()
        let environment = ProcessInfo.processInfo.environment
        let token = self.token ?? environment["LICENSED_TOKEN"] ?? ""
        var configuration = LicenseClient.Configuration(
            host: host,
            port: port,
            user: Self.localUser,
            clientHost: ProcessInfo.processInfo.hostName,
            clientName: "licensectl",
            clientVersion: licensectlVersion,
            token: token
        )
        configuration.tls = try self.tlsSettings()
        if servers.count > 1 { configuration.servers = servers }
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

    /// The servers named (one, or a cluster's list).
    package func servers() throws -> [LicenseEndpoint] {
        let environment = ProcessInfo.processInfo.environment
        let text = self.server ?? environment["LICENSED_SERVERS"] ?? environment["LICENSED_SERVER"] ?? "127.0.0.1:27070"
        do {
            return try LicenseEndpoint.list(parsing: text)
        } catch let error as LicenseClientError {
            throw CLIError("--server: \(error.message)")
        }
    }

    /// The first server named.
    package func endpoint() throws -> (host: String, port: Int) {
        guard case .tcp(let host, let port) = try self.servers()[0] else { throw CLIError("--server must name host:port") }
        return (host, port)
    }
}
