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
    /// The batch whose first change is `sequence`.
    package func batch(_ sequence: UInt64) -> [UInt8] { Array((prefix + "log/" + Self.padded(sequence)).utf8) }
    /// Every node's progress.
    package var progress: [UInt8] { Array((prefix + "progress/").utf8) }
    /// The progress of `node`.
    package func progress(_ node: String) -> [UInt8] { Array((prefix + "progress/\(node)").utf8) }

    /// The sequence number in a batch key, or nil when `key` is not one.
    package func sequence(ofBatch key: some Collection<UInt8>) -> UInt64? {
        let logPrefix = log
        guard key.count == logPrefix.count + 20, key.starts(with: logPrefix) else { return nil }
        return UInt64(String(decoding: key.dropFirst(logPrefix.count), as: UTF8.self))
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
