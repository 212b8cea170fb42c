public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real etcd cluster (Debian's `etcd-server`) for tests: `members` processes on loopback ports
/// of their own, data in a temporary directory, stopped when the value is released (and by the
/// test command's exit trap, which kills every etcd whose data is under a `licensed-test-etcd-`
/// directory, should a test process die first).
public final class EtcdTestCluster: @unchecked Sendable {
    /// One member.
    public struct Member: Sendable {
        /// Its name (`m1`, `m2`, …).
        public var name: String
        /// Its client port on 127.0.0.1.
        public var clientPort: Int
        /// Its peer port on 127.0.0.1.
        public var peerPort: Int
        /// `127.0.0.1:<client port>`.
        public var endpoint: String { "127.0.0.1:\(clientPort)" }
    }

    /// The members.
    public let members: [Member]
    /// Where their data is.
    public let directory: URL
    private let lock = NSLock()
    private var processes: [String: Process] = [:]

    /// The etcd binary.
    public static let binary = "/usr/bin/etcd"

    /// True when etcd is installed (the test command installs it).
    public static var available: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    /// Starts `members` members and waits until the cluster answers.
    public init(members count: Int = 3) throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("licensed-test-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ports = try FreePorts.take(2 * count)
        self.members = (0..<count).map { index in
            Member(name: "m\(index + 1)", clientPort: ports[2 * index], peerPort: ports[2 * index + 1])
        }
        for member in members { try start(member.name) }
        try waitUntilHealthy(timeout: 30)
    }

    deinit {
        for process in processes.values where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// The client endpoints, `host:port,…`.
    public var endpoints: [String] { members.map(\.endpoint) }

    /// Starts (or restarts, with its data) the member `name`.
    public func start(_ name: String) throws {
        guard let member = members.first(where: { $0.name == name }) else { return }
        let initialCluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = [
            "--name", member.name,
            "--data-dir", directory.appendingPathComponent(member.name).path,
            "--listen-client-urls", "http://127.0.0.1:\(member.clientPort)",
            "--advertise-client-urls", "http://127.0.0.1:\(member.clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-cluster", initialCluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", directory.lastPathComponent,
            "--heartbeat-interval", "100",
            "--election-timeout", "1000",
            "--logger", "zap", "--log-level", "error",
        ]
        let log = directory.appendingPathComponent("\(member.name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        lock.withLock { processes[name] = process }
    }

    /// Kills the member `name` with SIGKILL (its data stays, for `start`).
    public func kill9(_ name: String) {
        guard let process = lock.withLock({ processes.removeValue(forKey: name) }) else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Stops every member.
    public func stopAll() {
        for member in members { kill9(member.name) }
    }

    /// Waits until `etcdctl endpoint health` passes for every running member.
    public func waitUntilHealthy(timeout: TimeInterval) throws {
        let running = lock.withLock { Set(processes.keys) }
        let endpoints = members.filter { running.contains($0.name) }.map(\.endpoint)
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            let (status, output) = Self.etcdctl(["--endpoints", endpoints.joined(separator: ","), "endpoint", "health"])
            if status == 0 { return }
            last = output
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw OpenSSLCommand.Failed(description: "etcd did not become healthy within \(timeout) s: \(last)")
    }

    /// Runs `etcdctl` (API v3) with `arguments`; returns its exit status and output.
    public static func etcdctl(_ arguments: [String]) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        process.arguments = ["--dial-timeout", "1s", "--command-timeout", "2s"] + arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        do { try process.run() } catch { return (-1, "\(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Loopback ports nobody listens on (bound and released, so another process could still take
/// one; the tests retry rarely enough that this does not matter).
public enum FreePorts {
    /// `count` distinct free ports.
    public static func take(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw OpenSSLCommand.Failed(description: "socket() failed") }
            sockets.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                    bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
                }
            }
            guard bound else { throw OpenSSLCommand.Failed(description: "bind() failed") }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}
