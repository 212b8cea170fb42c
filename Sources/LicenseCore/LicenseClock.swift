import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the domain gets "now" from: the system clocks in the daemon, hand-moved clocks in tests.
///
/// Two readings: the wall clock (licence dates, audit times, what clients are told) and a
/// monotonic clock that no one can set (what deadlines are measured on). The server compares
/// them to notice when the wall clock is stepped, and keeps every deadline's remaining time.
public protocol LicenseClock: Sendable {
    /// Wall-clock time: Unix epoch milliseconds.
    func nowMs() -> Int64
    /// Monotonic time in milliseconds from an arbitrary origin; never stepped.
    func monotonicMs() -> Int64
}

/// The system's clocks: `CLOCK_REALTIME` and `CLOCK_MONOTONIC`.
///
/// `CLOCK_MONOTONIC`, not `CLOCK_BOOTTIME`: it stops while the machine is suspended, as the
/// server does. A suspended (or paused) server can take no heartbeat, so the time it was away
/// must not count against the holders' leases — after the resume the wall clock has moved ahead
/// of the monotonic one, which reads as a step, and every lease keeps the time it had left (as
/// after a restart, where recovery gives each lease a full TTL). It is also the clock SwiftNIO's
/// timers run on, so the reaper's schedule and the deadlines it checks count the same time.
public struct SystemClock: LicenseClock {
    /// Creates the system clock.
    public init() {}

    public func nowMs() -> Int64 { Self.read(CLOCK_REALTIME) }

    public func monotonicMs() -> Int64 { Self.read(CLOCK_MONOTONIC) }

    private static func read(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// Clocks that move only when told to; for deterministic tests of anything with time.
public final class ManualClock: LicenseClock {
    private let now: Mutex<(wall: Int64, monotonic: Int64)>

    /// Clocks standing at `startMs` (wall) and 0 (monotonic).
    public init(startMs: Int64) { self.now = Mutex((startMs, 0)) }

    public func nowMs() -> Int64 { self.now.withLock { $0.wall } }

    public func monotonicMs() -> Int64 { self.now.withLock { $0.monotonic } }

    /// Time passes: both clocks move forward by `ms`.
    public func advance(byMs ms: Int64) {
        self.now.withLock {
            $0.wall += ms
            $0.monotonic += ms
        }
    }

    /// The wall clock is stepped by `ms` (forward or back); the monotonic clock does not move.
    public func step(byMs ms: Int64) { self.now.withLock { $0.wall += ms } }

    /// Sets the wall clock to `ms` (a step, as `step(byMs:)`).
    public func set(ms: Int64) { self.now.withLock { $0.wall = ms } }
}

/// Notices steps of the wall clock: compares how far it moved since the last reading with how far
/// the monotonic clock moved. NTP's slewing (at most 0.5 ms a second) never adds up to a step,
/// since each reading is compared with the one before.
public struct ClockStepDetector: Sendable {
    /// Differences smaller than this are not steps.
    public var thresholdMs: Int64
    private var offsetMs: Int64?

    /// A detector that reports steps of at least `thresholdMs`.
    public init(thresholdMs: Int64 = 2_000) { self.thresholdMs = thresholdMs }

    /// Takes a reading; returns the step (wall-clock milliseconds gained, negative for a step
    /// back) when the wall clock jumped since the previous reading, nil otherwise.
    public mutating func observe(wallMs: Int64, monotonicMs: Int64) -> Int64? {
        let offset = wallMs - monotonicMs
        defer { self.offsetMs = offset }
        guard let previous = self.offsetMs else { return nil }
        let step = offset - previous
        return abs(step) >= self.thresholdMs ? step : nil
    }
}
