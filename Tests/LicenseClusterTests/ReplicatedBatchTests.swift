import LicenseAudit
import LicenseCore
import LicenseProtocol
import SwiftProtobuf
import Testing

@testable import LicenseCluster

@Suite("Replicated batches: the stored form")
struct ReplicatedBatchTests {
    @Test("an audit record's details of every kind come back as they went in, in order")
    func auditRoundTrip() throws {
        let event = AuditEvent(
            timeMs: 1_790_000_000_123,
            action: "grant",
            actor: "ada@ws1",
            subject: "cad",
            details: [
                ("lease", .string("0a1b")), ("count", .int(-3)), ("overage", .bool(true)), ("groups", .strings(["eng", "eng/cad"])),
                ("none", .strings([])), ("borrowed", .bool(false)), ("note", .string("")), ("more", .strings(["x"])),
            ]
        )
        let batch = ReplicatedBatch(firstSequence: 7, epoch: 3, nodeID: "n1", changes: [], audit: [event])
        let decoded = try ReplicatedBatch(decoding: batch.encoded)
        #expect(decoded.audit == [event])
        #expect(decoded.firstSequence == 7 && decoded.epoch == 3 && decoded.nodeID == "n1")
    }

    @Test("a record whose detail lists do not add up is refused, not misread")
    func malformedAudit() throws {
        func batch(_ edit: (inout Licensed_V1_ReplicatedAuditEvent) -> Void) throws -> [UInt8] {
            var event = ReplicatedBatch.stored(AuditEvent(timeMs: 1, action: "a", actor: "b", details: [("k", .string("v"))]))
            edit(&event)
            var stored = Licensed_V1_ReplicatedBatch()
            stored.firstSequence = 1
            stored.audit = [event]
            return try stored.serializedBytes()
        }
        for (edit, what) in [
            ({ (e: inout Licensed_V1_ReplicatedAuditEvent) in e.detailKinds.append(.number) }, "more kinds than names"),
            ({ (e: inout Licensed_V1_ReplicatedAuditEvent) in e.texts = [] }, "a text without its value"),
            ({ (e: inout Licensed_V1_ReplicatedAuditEvent) in e.numbers = [4] }, "a value left over"),
            (
                { (e: inout Licensed_V1_ReplicatedAuditEvent) in
                    e.detailKinds = [.texts]
                    e.numbers = [2]
                }, "a list longer than the texts"
            ),
            ({ (e: inout Licensed_V1_ReplicatedAuditEvent) in e.detailKinds = [.UNRECOGNIZED(9)] }, "an unknown kind"),
        ] as [((inout Licensed_V1_ReplicatedAuditEvent) -> Void, String)] {
            #expect(throws: ClusterError.self, "\(what)") { try ReplicatedBatch(decoding: try batch(edit)) }
        }
    }
}
