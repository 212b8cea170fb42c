import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the domain gets "now" from: the wall clock in the daemon, a hand-moved clock in tests.
public protocol LicenseClock: Sendable {
    /// Unix epoch milliseconds.
    func nowMs() -> Int64
}

/// The system's real-time clock.
public struct SystemClock: LicenseClock {
    /// Creates the system clock.
    public init() {}

    public func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// A clock that moves only when told to; for deterministic tests of anything with time.
public final class ManualClock: LicenseClock {
    private let now: Mutex<Int64>

    /// A clock standing at `startMs`.
    public init(startMs: Int64) { self.now = Mutex(startMs) }

    public func nowMs() -> Int64 { self.now.withLock { $0 } }

    /// Moves the clock forward by `ms`.
    public func advance(byMs ms: Int64) { self.now.withLock { $0 += ms } }

    /// Sets the clock to `ms`.
    public func set(ms: Int64) { self.now.withLock { $0 = ms } }
}
