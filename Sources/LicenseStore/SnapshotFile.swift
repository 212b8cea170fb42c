public import LicenseCore
public import LicenseProtocol
import SwiftProtobuf

/// Snapshot files: "LICSNAP1", a u32 CRC-32C and a u64 length (big-endian) of the serialized
/// `Snapshot` that follows.
public enum SnapshotFile {
    static let magic = Array("LICSNAP1".utf8)

    /// Encodes the durable part of a ledger (leases, trial starts, activations) as of `sequence`.
    public static func encode(
        leases: LeaseTable,
        trialStarts: [String: Int64] = [:],
        activations: [Activation] = [],
        runs: [Licensed_V1_AssignmentRun] = [],
        sequence: UInt64,
        takenAtMs: Int64
    ) throws -> [UInt8] {
        var snapshot = Licensed_V1_Snapshot()
        snapshot.sequence = sequence
        snapshot.takenAtMs = takenAtMs
        // Grant order per feature (fencing tokens increase with each grant): replaying in this
        // order rebuilds shared seats exactly as they were.
        snapshot.leases = leases.values.sorted { ($0.feature, $0.fencingToken, $0.id) < ($1.feature, $1.fencingToken, $1.id) }.map(\.stored)
        snapshot.trialStartedMs = trialStarts
        snapshot.activations = activations.sorted { $0.id < $1.id }.map(\.stored)
        snapshot.assignmentRuns = runs
        let body: [UInt8] = try snapshot.serializedBytes()
        var bytes = magic
        LogSegment.appendUInt32(CRC32C.checksum(body), to: &bytes)
        let length = UInt64(body.count)
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: length >> (56 - 8 * UInt64(i)))) }
        bytes.append(contentsOf: body)
        return bytes
    }

    /// Decodes a snapshot file; throws when it is truncated, its checksum fails or it does not parse.
    public static func decode(_ bytes: [UInt8], file: String) throws -> Licensed_V1_Snapshot {
        guard bytes.count >= 20, Array(bytes[0..<8]) == magic else { throw StoreError("snapshot \(file) has no LICSNAP1 header") }
        let crc = LogSegment.uint32(bytes, 8)
        var length: UInt64 = 0
        for i in 0..<8 { length = length << 8 | UInt64(bytes[12 + i]) }
        guard length == UInt64(bytes.count - 20) else { throw StoreError("snapshot \(file) is truncated") }
        let body = Array(bytes[20...])
        guard CRC32C.checksum(body) == crc else { throw StoreError("snapshot \(file) fails its checksum") }
        do { return try Licensed_V1_Snapshot(serializedBytes: body) } catch {
            throw StoreError("snapshot \(file) does not parse: \(error)")
        }
    }
}
