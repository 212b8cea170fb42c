import DequeModule
import HeapModule
public import LicenseProtocol

extension SeatLedger {
    /// The wall clock was stepped by `deltaMs`: moves every deadline the process keeps by the same
    /// amount, so that each keeps the time it had left — a step forward reclaims nothing, a step
    /// back pins nothing. Lease expiries (heartbeat deadlines), linger ends and queue deadlines
    /// move; borrows keep their end, a wall-clock date written on the token their holder carries.
    /// O(leases): steps are rare (NTP's first sync, a resumed machine, an operator's fix).
    public mutating func shiftDeadlines(byMs deltaMs: Int64) {
        guard deltaMs != 0 else { return }
        self.leases.updateEach { lease in
            if !lease.borrowed { lease.expiresAtMs += deltaMs }
        }
        for feature in self.queues.keys {
            self.queues[feature] = Deque(
                self.queues[feature, default: []].map { waiter in
                    var moved = waiter
                    moved.sinceMs += deltaMs
                    moved.deadlineMs += deltaMs
                    return moved
                }
            )
        }
        self.rebuildExpiries()
    }

    /// Rebuilds the expiry index from the live leases in one O(n) heapify, dropping the entries
    /// that heartbeats superseded and those of leases already gone.
    mutating func rebuildExpiries() {
        var entries: [Expiry] = []
        entries.reserveCapacity(self.leases.count)
        for shard in 0..<self.leases.shardCount {
            for lease in self.leases.leases(inShard: shard) { entries.append(Expiry(atMs: lease.expiresAtMs, leaseID: lease.id)) }
        }
        self.expiries = Heap(entries)
    }

    // MARK: - Clock setback

    /// The newest wall-clock time the server has seen: its durable high-water mark, the latest
    /// issued_at of its licences, and what the host saw elsewhere (the audit trail).
    public var clockReferenceMs: Int64 { max(self.clockHighWaterMs, self.licensesIssuedMs, self.observedTimeMs) }

    /// How far `nowMs` is behind `clockReferenceMs` when that is beyond the tolerance (a clock
    /// setback: time-limited licences grant nothing), else 0.
    public func clockSetbackMs(at nowMs: Int64) -> Int64 {
        let behind = self.clockReferenceMs - nowMs
        return behind > self.configuration.clockSetbackToleranceMs ? behind : 0
    }

    /// The refusal of licence `id` (for `what`: a feature, an activation) during a clock setback.
    func clockSetbackError(licenseID id: String, for what: String, at nowMs: Int64) -> LicenseError {
        LicenseError(
            .clockSetback,
            "licence '\(id)'\(what.isEmpty ? "" : " for \(what)") has an end date, a trial or a maintenance date, and this server's clock is "
                + "\(Self.duration(self.clockSetbackMs(at: nowMs))) behind the newest time it has seen (\(Timestamp.iso8601(self.clockReferenceMs))): "
                + "it grants nothing until the clock is set right (NTP); fixing the clock clears this by itself"
        )
    }

    /// The refusal of a licence in `state` (not usable) for `what`.
    func unusableError(_ pool: LicensePool, state: Licensed_V1_LicenseStatus.State, for what: String, at nowMs: Int64) -> LicenseError {
        let licence = "licence '\(pool.id)'" + (what.isEmpty ? "" : " for \(what)")
        switch state {
        case .clockSetback:
            return self.clockSetbackError(licenseID: pool.id, for: what, at: nowMs)
        case .notYetValid:
            return LicenseError(.notYetValid, "\(licence) is not valid before \(Timestamp.iso8601(pool.license.notBeforeMs))")
        default:
            return LicenseError(.licenseExpired, "\(licence) has expired; renew the licence")
        }
    }

    /// "3 days 4 hours", "5 hours 12 minutes", "40 minutes": a span for a person.
    public static func duration(_ ms: Int64) -> String {
        let minutes = (abs(ms) + 30_000) / 60_000  // to the nearest minute: 3 days less 67 ms is "3 days"
        let (days, hours, mins) = (minutes / 1_440, minutes / 60 % 24, minutes % 60)
        func unit(_ n: Int64, _ name: String) -> String { "\(n) \(name)\(n == 1 ? "" : "s")" }
        if days > 0 { return unit(days, "day") + (hours > 0 ? " " + unit(hours, "hour") : "") }
        if hours > 0 { return unit(hours, "hour") + (mins > 0 ? " " + unit(mins, "minute") : "") }
        return unit(mins, "minute")
    }
}
