/// Every live lease by id, split into 256 shards by the id's low byte.
///
/// A snapshot keeps a copy of the table while the server goes on changing it. With one big
/// dictionary, the first change after a snapshot copies all of it on the serving loop (0.3 s at a
/// million leases, measured by licensed-store-bench); with shards, a change copies only the
/// shard it touches (1/256 of the table), so the copying is spread over the next changes in
/// pieces of about a millisecond.
///
/// Each shard keeps its leases in a dense array and a dictionary from id to position. A
/// dictionary of leases themselves sized its buckets for ~280-byte entries and rounded them up
/// to a power of two: at a million leases most shards sat half empty, 585 bytes per lease. The
/// dictionary of positions has 20-byte buckets, and the array wastes nothing but its growth.
public struct LeaseTable: Sendable, Equatable {
    static let shardCount = 256

    struct Shard: Sendable {
        var positions: [LeaseID: Int32] = [:]
        var leases: ContiguousArray<Lease> = []
    }

    private var shards = [Shard](repeating: Shard(), count: LeaseTable.shardCount)

    /// Number of leases.
    public private(set) var count = 0

    /// An empty table.
    public init() {}

    @inline(__always)
    static func shard(_ id: LeaseID) -> Int { Int(truncatingIfNeeded: (id.low ^ id.high) & 0xff) }

    /// The lease with `id`; assigning nil removes it. A lease is always stored under its own id.
    public subscript(id: LeaseID) -> Lease? {
        get {
            let shard = Self.shard(id)
            guard let position = self.shards[shard].positions[id] else { return nil }
            return self.shards[shard].leases[Int(position)]
        }
        set {
            guard let newValue else {
                self.removeValue(forKey: id)
                return
            }
            precondition(newValue.id == id, "a lease is stored under its own id")
            let shard = Self.shard(id)
            if let position = self.shards[shard].positions[id] {
                self.shards[shard].leases[Int(position)] = newValue
            } else {
                self.shards[shard].positions[id] = Int32(self.shards[shard].leases.count)
                self.shards[shard].leases.append(newValue)
                self.count += 1
            }
        }
    }

    /// Stores `lease` under its id, replacing a lease with the same id (as assigning to the
    /// subscript does, without the copy into an optional).
    public mutating func insert(_ lease: consuming Lease) {
        let shard = Self.shard(lease.id)
        if let position = self.shards[shard].positions[lease.id] {
            self.shards[shard].leases[Int(position)] = lease
        } else {
            self.shards[shard].positions[lease.id] = Int32(self.shards[shard].leases.count)
            self.shards[shard].leases.append(lease)
            self.count += 1
        }
    }

    /// Removes and returns the lease with `id` (the shard's last lease takes its place).
    @discardableResult
    public mutating func removeValue(forKey id: LeaseID) -> Lease? {
        let shard = Self.shard(id)
        guard let position = self.shards[shard].positions.removeValue(forKey: id).map(Int.init) else { return nil }
        let last = self.shards[shard].leases.count - 1
        if position != last {
            self.shards[shard].leases.swapAt(position, last)
            self.shards[shard].positions[self.shards[shard].leases[position].id] = Int32(position)
        }
        self.count -= 1
        return self.shards[shard].leases.removeLast()
    }

    /// Makes room for `count` leases in all, so that loading them never rehashes or regrows a shard.
    public mutating func reserveCapacity(_ count: Int) {
        let perShard = count / Self.shardCount + count / Self.shardCount / 8 + 16
        for shard in self.shards.indices {
            self.shards[shard].positions.reserveCapacity(perShard)
            self.shards[shard].leases.reserveCapacity(perShard)
        }
    }

    /// Changes every lease in place (`body` must not change a lease's id).
    public mutating func updateEach(_ body: (inout Lease) -> Void) {
        for shard in self.shards.indices {
            for position in self.shards[shard].leases.indices {
                body(&self.shards[shard].leases[position])
            }
        }
    }

    /// Number of shards (for work split by shard).
    public var shardCount: Int { Self.shardCount }

    /// The leases of shard `shard` (0..<shardCount), in no particular order; a copy-on-write view.
    public func leases(inShard shard: Int) -> ContiguousArray<Lease> { self.shards[shard].leases }

    /// True when there is no lease.
    public var isEmpty: Bool { self.count == 0 }

    /// Every lease, in no particular order.
    public var values: [Lease] {
        var all: [Lease] = []
        all.reserveCapacity(self.count)
        for shard in self.shards { all.append(contentsOf: shard.leases) }
        return all
    }

    /// Every lease id, in no particular order.
    public var keys: [LeaseID] {
        var all: [LeaseID] = []
        all.reserveCapacity(self.count)
        for shard in self.shards { all.append(contentsOf: shard.leases.lazy.map(\.id)) }
        return all
    }

    /// The same leases under the same ids, whatever their order in the shards.
    public static func == (lhs: LeaseTable, rhs: LeaseTable) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for shard in lhs.shards {
            for lease in shard.leases where rhs[lease.id] != lease { return false }
        }
        return true
    }
}
