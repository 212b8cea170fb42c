/// Every live lease by id, split into 256 shards by the id's low byte.
///
/// A snapshot keeps a copy of the table while the server goes on changing it. With one big
/// dictionary, the first change after a snapshot copies all of it on the serving loop (0.3 s at a
/// million leases, measured by licensed-store-bench); with shards, a change copies only the
/// shard it touches (1/256 of the table), so the copying is spread over the next changes in
/// pieces of about a millisecond.
public struct LeaseTable: Sendable, Equatable {
    static let shardCount = 256
    private var shards = [[LeaseID: Lease]](repeating: [:], count: LeaseTable.shardCount)

    /// Number of leases.
    public private(set) var count = 0

    /// An empty table.
    public init() {}

    @inline(__always)
    static func shard(_ id: LeaseID) -> Int { Int(truncatingIfNeeded: (id.low ^ id.high) & 0xff) }

    /// The lease with `id`; assigning nil removes it.
    public subscript(id: LeaseID) -> Lease? {
        get { self.shards[Self.shard(id)][id] }
        set {
            let shard = Self.shard(id)
            if let newValue {
                if self.shards[shard].updateValue(newValue, forKey: id) == nil { self.count += 1 }
            } else if self.shards[shard].removeValue(forKey: id) != nil {
                self.count -= 1
            }
        }
    }

    /// Removes and returns the lease with `id`.
    @discardableResult
    public mutating func removeValue(forKey id: LeaseID) -> Lease? {
        let removed = self.shards[Self.shard(id)].removeValue(forKey: id)
        if removed != nil { self.count -= 1 }
        return removed
    }

    /// Makes room for `count` leases in all, so that loading them never rehashes a shard.
    public mutating func reserveCapacity(_ count: Int) {
        let perShard = count / Self.shardCount + count / Self.shardCount / 8 + 16
        for shard in self.shards.indices { self.shards[shard].reserveCapacity(perShard) }
    }

    /// Changes every lease in place (`body` must not change a lease's id).
    public mutating func updateEach(_ body: (inout Lease) -> Void) {
        for shard in self.shards.indices {
            var index = self.shards[shard].values.startIndex
            while index != self.shards[shard].values.endIndex {
                body(&self.shards[shard].values[index])
                self.shards[shard].values.formIndex(after: &index)
            }
        }
    }

    /// True when there is no lease.
    public var isEmpty: Bool { self.count == 0 }

    /// Every lease, in no particular order.
    public var values: [Lease] {
        var all: [Lease] = []
        all.reserveCapacity(self.count)
        for shard in self.shards { all.append(contentsOf: shard.values) }
        return all
    }

    /// Every lease id, in no particular order.
    public var keys: [LeaseID] {
        var all: [LeaseID] = []
        all.reserveCapacity(self.count)
        for shard in self.shards { all.append(contentsOf: shard.keys) }
        return all
    }
}
