package import Foundation
package import LicenseAudit
package import LicenseCore
package import LicenseProtocol
import LicenseStore
import SwiftProtobuf

/// One batch of the replicated log, decoded: consecutive changes from `firstSequence` and the
/// audit records written with them.
package struct ReplicatedBatch: Sendable, Equatable {
    /// Sequence number of the first change (for a batch of audit records only: the number the
    /// next change will have).
    package var firstSequence: UInt64
    /// The epoch of the node that wrote it.
    package var epoch: Int64
    /// The node that wrote it.
    package var nodeID: String
    /// Batches of audit records only before this one at `firstSequence`.
    package var part: UInt64
    /// The changes, in order.
    package var changes: [LedgerChange]
    /// Each change as a serialized `WalRecord` (encoded once: for the batch's size, and its bytes).
    package var records: [Data]
    /// The audit records, in order.
    package var audit: [AuditEvent]

    /// A batch.
    package init(
        firstSequence: UInt64,
        part: UInt64 = 0,
        epoch: Int64,
        nodeID: String,
        changes: [LedgerChange],
        records: [Data]? = nil,
        audit: [AuditEvent]
    ) {
        self.records = records ?? changes.map { Data(WalRecordWire.bytes(of: $0)) }
        self.firstSequence = firstSequence
        self.part = part
        self.epoch = epoch
        self.nodeID = nodeID
        self.changes = changes
        self.audit = audit
    }

    /// Sequence number of the last change (`firstSequence - 1` when there is none).
    package var lastSequence: UInt64 { firstSequence + UInt64(changes.count) - 1 }
    /// Where it sits in the log.
    package var position: BatchPosition { BatchPosition(first: firstSequence, part: part) }

    /// The stored form (audit records resolved).
    package var stored: Licensed_V1_ReplicatedBatch {
        var batch = Licensed_V1_ReplicatedBatch()
        batch.firstSequence = firstSequence
        batch.epoch = epoch
        batch.nodeID = nodeID
        batch.part = part
        batch.changes = records
        batch.audit = audit.map { ReplicatedBatch.stored($0.resolved) }
        return batch
    }

    /// The serialized stored form.
    package var encoded: [UInt8] {
        // Serializing a message of known fields cannot fail.
        try! stored.serializedBytes()
    }

    /// Decodes a stored batch; throws when it is not one.
    package init(decoding bytes: [UInt8]) throws(ClusterError) {
        let stored: Licensed_V1_ReplicatedBatch
        do {
            stored = try Licensed_V1_ReplicatedBatch(serializedBytes: bytes)
        } catch {
            throw ClusterError("a log batch cannot be decoded: \(error)")
        }
        var changes: [LedgerChange] = []
        changes.reserveCapacity(stored.changes.count)
        for (index, bytes) in stored.changes.enumerated() {
            guard let change = WalRecordWire.change(from: [UInt8](bytes)) else {
                throw ClusterError("log batch \(stored.firstSequence): change \(index) is malformed")
            }
            changes.append(change)
        }
        var audit: [AuditEvent] = []
        audit.reserveCapacity(stored.audit.count)
        for event in stored.audit { audit.append(try ReplicatedBatch.event(event)) }
        self.init(
            firstSequence: stored.firstSequence,
            part: stored.part,
            epoch: stored.epoch,
            nodeID: stored.nodeID,
            changes: changes,
            records: stored.changes,
            audit: audit
        )
    }

    static func stored(_ event: AuditEvent) -> Licensed_V1_ReplicatedAuditEvent {
        var stored = Licensed_V1_ReplicatedAuditEvent()
        stored.timeMs = event.timeMs
        stored.action = event.action
        stored.actor = event.actor
        stored.subject = event.subject
        stored.detailKeys.reserveCapacity(event.details.count)
        stored.detailKinds.reserveCapacity(event.details.count)
        for (key, value) in event.details {
            stored.detailKeys.append(key)
            switch value {
            case .string(let text):
                stored.detailKinds.append(.text)
                stored.texts.append(text)
            case .int(let number):
                stored.detailKinds.append(.number)
                stored.numbers.append(number)
            case .bool(let flag):
                stored.detailKinds.append(.flag)
                stored.numbers.append(flag ? 1 : 0)
            case .strings(let items):
                stored.detailKinds.append(.texts)
                stored.numbers.append(Int64(items.count))
                stored.texts.append(contentsOf: items)
            }
        }
        return stored
    }

    /// The event `stored` holds; throws when its lists do not add up.
    static func event(_ stored: Licensed_V1_ReplicatedAuditEvent) throws(ClusterError) -> AuditEvent {
        guard stored.detailKeys.count == stored.detailKinds.count else {
            throw ClusterError("an audit record has \(stored.detailKeys.count) detail names and \(stored.detailKinds.count) kinds")
        }
        var texts = stored.texts[...]
        var numbers = stored.numbers[...]
        var details: [(String, AuditEvent.Value)] = []
        details.reserveCapacity(stored.detailKeys.count)
        for (key, kind) in zip(stored.detailKeys, stored.detailKinds) {
            let value: AuditEvent.Value?
            switch kind {
            case .text: value = texts.popFirst().map { .string($0) }
            case .number: value = numbers.popFirst().map { .int($0) }
            case .flag: value = numbers.popFirst().map { .bool($0 != 0) }
            case .texts:
                if let count = numbers.popFirst(), count >= 0, count <= texts.count {
                    value = .strings(Array(texts.prefix(Int(count))))
                    texts = texts.dropFirst(Int(count))
                } else {
                    value = nil
                }
            case .UNRECOGNIZED(let raw): throw ClusterError("audit detail \(key) has an unknown kind \(raw)")
            }
            guard let value else { throw ClusterError("audit detail \(key) has no value") }
            details.append((key, value))
        }
        guard texts.isEmpty, numbers.isEmpty else { throw ClusterError("an audit record has values left over after its details") }
        return AuditEvent(timeMs: stored.timeMs, action: stored.action, actor: stored.actor, subject: stored.subject, details: details)
    }
}

/// A failure of the cluster layer, with a message that says what happened.
package struct ClusterError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What happened.
    package var message: String

    /// An error.
    package init(_ message: String) {
        self.message = message
    }

    package var description: String { message }
}
