// The request path's units, each one operation at a time, on the daemon's own types: what the
// HotPath benchmarks (mallocs, time) and licensed-micro under callgrind (instructions) measure.
import Foundation
public import LicenseAudit
public import LicenseCore
public import LicenseProtocol
import LicenseServer
import LicenseStore
public import NIOCore
import SwiftProtobuf

/// A ledger with one session (an identity of realistic size) and a feature of a billion seats,
/// so that check-outs never run out; time moves 1 ms per operation.
public struct LedgerOperations {
    public private(set) var ledger: SeatLedger
    public let session = SessionID(high: 7, low: 1)
    public private(set) var nowMs: Int64 = 1_790_000_000_000
    private var nextLease: UInt64 = 0

    public init() {
        var license = Licensed_V1_License()
        license.id = "bench"
        var feature = Licensed_V1_Feature()
        feature.name = "cad.solver"
        feature.count = 1_000_000_000
        license.features = [feature]
        self.ledger = SeatLedger(
            configuration: .init(defaultLeaseTTLMs: 120_000),
            licenses: [VerifiedLicense(license: license, keyID: "k", file: "bench.lic", block: 1)]
        )
        self.ledger.openSession(
            self.session,
            identity: ClientIdentity(
                user: "ada.lovelace",
                host: "ws-0042.eng.example.com",
                clientName: "solver",
                clientVersion: "2026.3",
                groups: ["/eng", "/eng/cad"],
                address: "10.1.2.42"
            )
        )
    }

    /// One check-out, as the server asks for it (a 16-byte checkout key, a fresh lease id).
    public mutating func checkOut() -> SeatLedger.Grant {
        self.nextLease += 1
        self.nowMs += 1
        let key = withUnsafeBytes(of: self.nextLease.bigEndian) { [UInt8]($0) + [UInt8](repeating: 0x5A, count: 8) }
        let request = SeatLedger.CheckOut(
            sessionID: self.session,
            feature: "cad.solver",
            checkoutKey: key,
            newLeaseID: ID128(high: 1, low: self.nextLease)
        )
        guard case .success(let grant) = self.ledger.checkOut(request, at: self.nowMs) else { fatalError("check-out refused") }
        return grant
    }

    public mutating func checkIn(_ id: LeaseID) -> SeatLedger.CheckIn {
        self.nowMs += 1
        guard case .success(let result) = self.ledger.checkIn(id, by: self.session, at: self.nowMs) else { fatalError("check-in refused") }
        return result
    }

    public mutating func heartbeat(_ ids: [LeaseID]) -> SeatLedger.Heartbeat {
        self.nowMs += 1
        return self.ledger.heartbeat(session: self.session, leaseIDs: ids, at: self.nowMs)
    }
}

/// A write-ahead log record as the writer thread makes it: framed (length, CRC-32C, sequence) in
/// the batch's buffer, the change's `WalRecord` laid in place behind the header (`WalRecordWire`;
/// before it, `change.record.serializedBytes()`, then an array per record and nested message).
public enum WalRecordOperation {
    public static func append(_ change: LedgerChange, sequence: UInt64, into buffer: inout [UInt8]) {
        LogSegment.append(sequence: sequence, into: &buffer) { WalRecordWire.append(change, to: &$0) }
    }
}

/// Audit records as the writer thread writes them: each grant's event built from the captured
/// lease (as the server defers it), rendered, hash-chained and written to a trail file in a
/// temporary directory (not synced; written in batches, as the server does per group commit).
public final class AuditOperations {
    public let directory: String
    private let log: AuditLog
    private var batch: [AuditEvent] = []
    public let batchSize: Int

    public init(batchSize: Int = 16) throws {
        self.batchSize = batchSize
        self.directory = NSTemporaryDirectory() + "licensed-hotpath-audit-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        self.log = try AuditLog.open(directory: self.directory, maxFileBytes: 1 << 40, syncs: false)
        self.batch.reserveCapacity(batchSize)
    }

    deinit {
        self.log.close()
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// Adds the audit record of `change` (one of `leases`' changes) to the batch, writing the
    /// batch when it is full.
    public func record(_ change: LedgerChange, actor: String, leases: [Lease], atMs: Int64) throws {
        if let event = LedgerHost.auditEvent(for: change, actor: actor, leases: EndedLeases(leases), waitedMs: nil, details: [], at: atMs) {
            self.batch.append(event)
        }
        if self.batch.count >= self.batchSize { try self.flush() }
    }

    public func flush() throws {
        try self.log.write(self.batch)
        self.batch.removeAll(keepingCapacity: true)
    }
}

/// A check-out request frame decoded as the session handler decodes it, and its reply encoded
/// as the handler writes it.
public struct RequestOperations {
    public let frame: ByteBuffer
    private let allocator = ByteBufferAllocator()

    public init() {
        var message = Licensed_V1_ClientMessage()
        message.requestID = 4_711
        var request = Licensed_V1_CheckOutRequest()
        request.feature = "cad.solver"
        request.version = "2026.3"
        request.count = 1
        request.checkoutKey = Data((0..<16).map { UInt8($0) })
        message.body = .checkOut(request)
        let body: [UInt8] = try! message.serializedBytes()
        self.frame = ByteBuffer(bytes: body)
    }

    /// Decodes the frame, answers it with a grant of `lease`, and returns the encoded reply.
    public func answer(with lease: Lease) -> ByteBuffer {
        let message = try! self.frame.decodeClientMessage()
        guard case .checkOut(let request) = message.body else { fatalError("not a check-out") }
        var response = Licensed_V1_CheckOutResponse()
        response.leaseID = .init(lease.id.bytes)
        response.licenseID = lease.licenseID
        response.feature = request.feature
        response.count = lease.count
        response.expiresAtMs = lease.expiresAtMs
        response.overage = lease.overage
        response.fencingToken = lease.fencingToken
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = message.requestID
        reply.body = .checkOut(response)
        var buffer = self.allocator.buffer(capacity: 64)
        _ = try! buffer.writeFrame(reply)
        return buffer
    }
}
