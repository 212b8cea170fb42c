#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: datagrams to the Unix socket named by $NOTIFY_SOCKET
/// (a path, or an abstract name starting with '@'). Without the variable every call is a no-op,
/// so the daemon runs the same outside systemd.
public struct SystemdNotifier: Sendable {
    /// The socket path, nil when not run by systemd with Type=notify.
    public let socketPath: String?
    /// Half of $WATCHDOG_USEC when the watchdog is on for this process (systemd's advice: ping at
    /// half the timeout), else nil.
    public let watchdogInterval: Duration?

    /// Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID from `environment`.
    public init(environment: [String: String]) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        self.socketPath = path
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0,
            environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true
        {
            self.watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            self.watchdogInterval = nil
        }
    }

    /// Sends `state` (newline-separated assignments such as "READY=1\nSTATUS=serving").
    /// Failures are ignored, as sd_notify's callers do: notification is advisory.
    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard let path = self.socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in pathBytes.enumerated() { raw[i] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sockaddrPointer, length) }
            }
        }
        return sent == message.count
    }

    /// CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC.
    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
