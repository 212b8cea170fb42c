import Foundation
import LicenseTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A licensed node of the drill's cluster: its own ports, state directory and process.
final class Node: @unchecked Sendable {
    let name: String
    let port: Int
    let metricsPort: Int
    let directory: URL
    let binary: String
    private let lock = NSLock()
    private var process: Process?
    private(set) var starts = 0

    init(name: String, port: Int, metricsPort: Int, directory: URL, binary: String) {
        self.name = name
        self.port = port
        self.metricsPort = metricsPort
        self.directory = directory
        self.binary = binary
    }

    var address: String { "127.0.0.1:\(port)" }
    var pid: Int32? { lock.withLock { process?.isRunning == true ? process?.processIdentifier : nil } }
    var isRunning: Bool { pid != nil }

    /// Writes the node's configuration.
    func configure(license: String, issuerKey: String, etcd: [String], adminHash: String, ttlSeconds: Int) throws {
        let yaml = """
            listen_host: 127.0.0.1
            port: \(port)
            state_dir: \(directory.path)/state
            license_paths: [\(license)]
            trusted_keys: [{id: drill, public_key: \(issuerKey)}]
            lease_ttl_ms: 10000
            heartbeat_interval_ms: 1000
            reaper_interval_ms: 200
            snapshot_every_records: 500
            admin_socket: "off"
            metrics_listen: 127.0.0.1:\(metricsPort)
            tokens: [{role: admin, sha256: \(adminHash)}]
            cluster:
              etcd_endpoints: [\(etcd.joined(separator: ", "))]
              name: drill
              node_id: \(name)
              advertise_address: \(address)
              election_ttl_seconds: \(ttlSeconds)

            """
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try yaml.write(to: directory.appendingPathComponent("licensed.yaml"), atomically: true, encoding: .utf8)
    }

    /// Starts the daemon (its log appended to `<directory>/licensed.log`).
    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--config", directory.appendingPathComponent("licensed.yaml").path]
        let log = directory.appendingPathComponent("licensed.log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        lock.withLock {
            self.process = process
            starts += 1
        }
    }

    /// Sends `signal` to the daemon.
    func signal(_ signal: Int32) {
        if let pid { kill(pid, signal) }
    }

    /// kill -9, and waits for the process to end.
    func kill9() {
        guard let process = lock.withLock({ self.process }) else { return }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Waits up to `seconds` for the process to exit by itself; returns its status.
    func waitForExit(seconds: Double) -> Int32? {
        guard let process = lock.withLock({ self.process }) else { return nil }
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// /readyz: 200 on the active node only.
    func readiness() -> (ready: Bool, body: String) {
        let (status, body) = Self.get("http://127.0.0.1:\(metricsPort)/readyz")
        return (status == 200, body)
    }

    /// True when the node answers /readyz and says it is a standby.
    var isStandby: Bool { readiness().body.contains("standby") }

    /// The text of the daemon's log.
    var log: String {
        guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent("licensed.log").path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    static func get(_ url: String) -> (Int, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-s", "-m", "2", "-w", "\n%{http_code}", url]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return (0, "") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let code = Int(lines.last ?? "") ?? 0
        return (code, lines.dropLast().joined(separator: "\n"))
    }
}

/// Runs a command and returns its standard output; throws when it fails.
func run(_ executable: String, _ arguments: [String], in directory: URL) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = directory
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw DrillError("\(executable) \(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
    }
    return String(decoding: data, as: UTF8.self)
}

struct DrillError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
