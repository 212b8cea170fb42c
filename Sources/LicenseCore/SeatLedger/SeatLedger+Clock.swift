import DequeModule
import HeapModule

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
}
