/// Where a cluster keeps its state in etcd: every key under `/licensed/<cluster name>/`
/// (the layout is documented in Protos/licensed/v1/cluster.proto).
package struct ClusterKeys: Sendable, Equatable {
    /// `/licensed/<name>/`.
    package let prefix: String

    /// The keys of the cluster `name`.
    package init(cluster name: String) {
        self.prefix = "/licensed/\(name)/"
    }

    /// Every member's registration.
    package var members: [UInt8] { Array((prefix + "members/").utf8) }
    /// The registration of `node`.
    package func member(_ node: String) -> [UInt8] { Array((prefix + "members/\(node)").utf8) }
    /// The log's head: the sequence number of its last change.
    package var head: [UInt8] { Array((prefix + "head").utf8) }
    /// Every batch of the log.
    package var log: [UInt8] { Array((prefix + "log/").utf8) }
    /// The batch at `position`.
    package func batch(_ position: BatchPosition) -> [UInt8] {
        Array((prefix + "log/" + Self.padded(position.first) + "-" + Self.padded(position.part)).utf8)
    }
    /// The first key of the batches at or after the change `sequence`.
    package func batches(from sequence: UInt64) -> [UInt8] { Array((prefix + "log/" + Self.padded(sequence)).utf8) }
    /// Every node's progress.
    package var progress: [UInt8] { Array((prefix + "progress/").utf8) }
    /// The secret a node presents to a peer for its snapshot (only those who can read the
    /// cluster's keys in etcd know it).
    package var transferToken: [UInt8] { Array((prefix + "transfer-token").utf8) }
    /// The progress of `node`.
    package func progress(_ node: String) -> [UInt8] { Array((prefix + "progress/\(node)").utf8) }

    /// The position in a batch key, or nil when `key` is not one.
    package func position(ofBatch key: some Collection<UInt8>) -> BatchPosition? {
        let logPrefix = log
        guard key.count == logPrefix.count + 41, key.starts(with: logPrefix) else { return nil }
        let text = String(decoding: key.dropFirst(logPrefix.count), as: UTF8.self)
        let parts = text.split(separator: "-")
        guard parts.count == 2, let first = UInt64(parts[0]), let part = UInt64(parts[1]) else { return nil }
        return BatchPosition(first: first, part: part)
    }

    /// The node id in a member key, or nil.
    package func node(ofMember key: some Collection<UInt8>) -> String? {
        let memberPrefix = members
        guard key.count > memberPrefix.count, key.starts(with: memberPrefix) else { return nil }
        return String(decoding: key.dropFirst(memberPrefix.count), as: UTF8.self)
    }

    /// 20 digits, so that keys sort as numbers.
    static func padded(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return String(repeating: "0", count: 20 - digits.count) + digits
    }
}

/// Where a batch sits in the log: the sequence number of its first change, and how many batches
/// of audit records only came before it there.
package struct BatchPosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Sequence number of the first change (of the next one, for audit records only).
    package var first: UInt64
    /// Batches of audit records only before it at `first`.
    package var part: UInt64

    /// A position.
    package init(first: UInt64, part: UInt64) {
        self.first = first
        self.part = part
    }

    package static func < (a: Self, b: Self) -> Bool { (a.first, a.part) < (b.first, b.part) }

    package var description: String { "\(first)-\(part)" }
}

/// The log's head: the position of the newest batch and the last change's sequence number,
/// stored as "<first>-<part>:<last>".
package struct LogHead: Sendable, Equatable {
    /// The newest batch.
    package var position: BatchPosition
    /// Sequence number of the last change in the log.
    package var last: UInt64

    /// A head.
    package init(position: BatchPosition, last: UInt64) {
        self.position = position
        self.last = last
    }

    /// Parses the stored form; nil when it is not one.
    package init?(stored bytes: some Collection<UInt8>) {
        let text = String(decoding: bytes, as: UTF8.self)
        let halves = text.split(separator: ":")
        guard halves.count == 2, let last = UInt64(halves[1]) else { return nil }
        let parts = halves[0].split(separator: "-")
        guard parts.count == 2, let first = UInt64(parts[0]), let part = UInt64(parts[1]) else { return nil }
        self.init(position: BatchPosition(first: first, part: part), last: last)
    }

    /// The stored form.
    package var stored: [UInt8] { Array("\(position):\(last)".utf8) }
}
