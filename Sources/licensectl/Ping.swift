import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseCrypto
import LicenseProtocol

struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open a session with the licence server and show what it says about itself."
    )

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let (host, port) = try self.options.endpoint()
        do {
            let connection = try await LicenseConnection.connect(host: host, port: port, tls: try self.options.tlsSettings())
            defer { Task { await connection.close() } }
            var hello = Licensed_V1_Hello()
            hello.protocolVersion = .protocolVersion1
            hello.clientName = "licensectl"
            hello.clientVersion = "0.1.0"
            hello.user = ProcessInfo.processInfo.environment["USER"] ?? ""
            hello.host = ProcessInfo.processInfo.hostName
            hello.pid = UInt32(ProcessInfo.processInfo.processIdentifier)
            hello.token = self.options.token ?? ProcessInfo.processInfo.environment["LICENSED_TOKEN"] ?? ""
            let started = ContinuousClock.now
            let response = try await connection.hello(hello)
            let elapsed = ContinuousClock.now - started
            let key = [UInt8](response.serverPublicKey)
            if self.options.json {
                let object: [String: Any] = [
                    "server": "\(host):\(port)", "server_version": response.serverVersion,
                    "session_id": [UInt8](response.sessionID).hexString,
                    "heartbeat_interval_ms": response.heartbeatIntervalMs, "lease_ttl_ms": response.leaseTtlMs,
                    "server_time_ms": response.serverTimeMs, "server_public_key": key.hexString,
                    "round_trip_us": elapsed.components.attoseconds / 1_000_000_000_000 + elapsed.components.seconds * 1_000_000,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                FileHandle.standardOutput.write(data + Data("\n".utf8))
            } else {
                print("licence server \(host):\(port) answered in \(elapsed)")
                print("  version            \(response.serverVersion)")
                print("  session            \([UInt8](response.sessionID).hexString)")
                print("  heartbeat interval \(response.heartbeatIntervalMs) ms, lease TTL \(response.leaseTtlMs) ms")
                print("  server public key  \(key.hexString)")
            }
        } catch let error as LicenseClientError {
            throw CLIError(error.description)
        }
    }
}
