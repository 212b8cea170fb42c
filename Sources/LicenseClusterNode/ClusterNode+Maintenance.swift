import Etcd
import Foundation
import LicenseCluster
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseServer
import Logging
import SwiftProtobuf
import Synchronization

/// What a node does besides serving: it reports how far it has come, and the active node
/// compacts the log in etcd that every live node has a snapshot past.
extension ClusterNode {
    /// Every 2 s: this node's progress (while registered); on the active node, every 10 s, the
    /// log's compaction. Runs until cancelled.
    func maintain() async {
        let compaction = LogCompaction(etcd: etcd, keys: keys)
        var ticks = 0
        while !Task.isCancelled, (try? await transferToken()) == nil {
            try? await Task.sleep(for: .milliseconds(500))
        }
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(2))
            ticks += 1
            let lease = election.lease
            guard lease != 0 else { continue }
            var progress = Licensed_V1_NodeProgress()
            progress.nodeID = member.nodeID
            progress.appliedSequence = log.committed
            progress.snapshotSequence = log.snapshotSequence
            progress.updatedAtMs = context.clock.nowMs()
            progress.role = election.role.name
            do {
                try await compaction.report(progress, lease: lease)
                if let head = try await etcd.get(keys.head).flatMap({ LogHead(stored: $0.value) }) {
                    knownHead.withLock { $0 = head.last }
                }
                guard ticks % 5 == 0, election.mayAct() else { continue }
                let nodes = try await compaction.progress()
                guard let point = compaction.point(head: log.committed, nodes: nodes), point > compactedUpTo.withLock({ $0 }) else {
                    continue
                }
                let deleted = try await compaction.compact(upTo: point)
                compactedUpTo.withLock { $0 = point }
                if deleted > 0 {
                    context.logger.info("cluster log compacted", metadata: ["up_to": "\(point)", "batches": "\(deleted)"])
                }
            } catch {
                context.logger.debug("cluster maintenance: \(error)")
            }
        }
    }

    /// The cluster's snapshot-transfer secret: created by the first node that asks, read by the
    /// others.
    func transferToken() async throws(EtcdError) -> String {
        if let token = token.withLock({ $0 }) { return token }
        let fresh = SecureRandom.bytes(32).map { String(format: "%02x", $0) }.joined()
        let response = try await etcd.txn(
            compare: [.created(keys.transferToken, at: 0)],
            success: [.put(keys.transferToken, Array(fresh.utf8))],
            failure: [.range(EtcdKeyRange(key: keys.transferToken))]
        )
        let value =
            response.succeeded ? fresh : String(decoding: response.responses.first?.responseRange.kvs.first?.value ?? Data(), as: UTF8.self)
        token.withLock { $0 = value }
        return value
    }
}

extension ClusterNode {
    /// The cluster's nodes as etcd holds them: registrations in election order, each with its
    /// last reported progress.
    func status() async throws -> Licensed_V1_ClusterStatusResponse {
        let read = try await etcd.txn(
            compare: [],
            success: [
                .range(EtcdKeyRange(prefix: keys.members)), .range(EtcdKeyRange(prefix: keys.progress)),
                .range(EtcdKeyRange(key: keys.head)),
                .range(EtcdKeyRange(prefix: keys.log), limit: 1),
            ]
        )
        let ranges = read.responses.map(\.responseRange.kvs)
        let head = ranges[2].first.flatMap { LogHead(stored: $0.value) }?.last ?? 0
        var progress: [String: Licensed_V1_NodeProgress] = [:]
        for kv in ranges[1] {
            if let entry = try? Licensed_V1_NodeProgress(serializedBytes: [UInt8](kv.value)) { progress[entry.nodeID] = entry }
        }
        var response = Licensed_V1_ClusterStatusResponse()
        response.cluster = context.configuration.clusterName
        response.nodeID = member.nodeID
        response.headSequence = head
        response.oldestSequence = ranges[3].first.flatMap { keys.position(ofBatch: $0.key) }?.first ?? head + 1
        let members = ranges[0].sorted { $0.createRevision < $1.createRevision }
        for (index, kv) in members.enumerated() {
            guard let registered = try? Licensed_V1_ClusterMember(serializedBytes: [UInt8](kv.value)) else { continue }
            var node = Licensed_V1_ClusterNodeStatus()
            node.nodeID = registered.nodeID
            node.clientAddress = registered.clientAddress
            node.role = index == 0 ? "active" : "standby"
            node.epoch = kv.createRevision
            node.startedAtMs = registered.startedAtMs
            if let reported = progress[registered.nodeID] {
                node.appliedSequence = reported.appliedSequence
                node.snapshotSequence = reported.snapshotSequence
                node.reportedAtMs = reported.updatedAtMs
                node.lag = head > reported.appliedSequence ? head - reported.appliedSequence : 0
            }
            response.nodes.append(node)
        }
        return response
    }
}
