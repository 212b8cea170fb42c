// The request path's units, each one operation at a time, on the daemon's own types: what the
// HotPath benchmarks (mallocs, time) and licensed-micro under callgrind (instructions) measure.
import Foundation
import LicenseAudit
public import LicenseCore
import LicenseCrypto
import LicenseFiles
import LicenseProtocol
import LicenseServer
import LicenseStore
import Logging
public import NIOCore
import NIOEmbedded
import SwiftProtobuf
import Synchronization

/// A ledger with one session (an identity of realistic size) and a feature of a billion seats,
/// so that check-outs never run out; time moves 1 ms per operation.
public struct LedgerOperations {
    public private(set) var ledger: SeatLedger
    public let session = SessionID(high: 7, low: 1)
    public private(set) var nowMs: Int64 = 1_790_000_000_000
    private var nextLease: UInt64 = 0

    /// The licence every operation draws on: a feature of a billion seats.
    static let license: VerifiedLicense = {
        var license = Licensed_V1_License()
        license.id = "bench"
        var feature = Licensed_V1_Feature()
        feature.name = "cad.solver"
        feature.count = 1_000_000_000
        license.features = [feature]
        return VerifiedLicense(license: license, keyID: "k", file: "bench.lic", block: 1)
    }()

    public init() {
        self.ledger = SeatLedger(configuration: .init(defaultLeaseTTLMs: 120_000), licenses: [Self.license])
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

    /// Adds the audit record of `change` (one of `leases`' changes), made by a session of
    /// `identity` as the daemon's check-outs are, to the batch, writing the batch when it is full.
    public func record(_ change: LedgerChange, by identity: ClientIdentity, leases: [Lease], atMs: Int64) throws {
        if let event = LedgerHost.auditEvent(
            for: change,
            actor: .session(identity),
            leases: EndedLeases(leases),
            waitedMs: nil,
            details: [],
            at: atMs
        ) {
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

/// A check-out and its check-in as the serving loop handles them, each a frame through the
/// daemon's own session handler and ledger host: decoded, served (the ledger, the audit event,
/// the change handed to the log), made durable, its reply encoded and written. On an embedded
/// channel and loop, with no socket; the log only numbers what it is given and reports it durable
/// when told (its writer thread's work is the `wal-*` and `audit` operations).
public final class ServeOperations {
    private let channel: EmbeddedChannel
    private let log: NumberingCommitLog

    /// With `thresholds` the daemon's default utilisation thresholds are watched; without, none
    /// (as `scripts/bench` runs the daemon). With `otherFeatures`, the licence grants that many
    /// more features (f0, f1, …) and the session holds a seat of each: a site of many features.
    public init(thresholds: Bool = false, otherFeatures: Int = 0) throws {
        let loop = EmbeddedEventLoop()
        var configuration = ServerConfiguration()
        configuration.stateDir = NSTemporaryDirectory()
        if !thresholds { configuration.utilisationThresholds = [] }
        // The seats held of the other features, and the one a pair takes.
        configuration.maxLeasesPerSession = max(configuration.maxLeasesPerSession, otherFeatures + 1)
        var logger = Logger(label: "hot-path-serve")
        logger.logLevel = .critical
        let context = try ServerContext(
            configuration: configuration,
            serverKey: try Ed25519PrivateKey.generate(),
            clock: SystemClock(),
            logger: logger
        )
        var loaded = LicenseLoadResult()
        var license = LedgerOperations.license
        license.license.features += (0..<otherFeatures).map { index in
            var feature = Licensed_V1_Feature()
            feature.name = "f\(index)"
            feature.count = 10
            return feature
        }
        loaded.accepted = [license]
        let log = NumberingCommitLog()
        let host = try LedgerHost.open(context: context, licenses: loaded, log: log.source, on: loop).host
        self.log = log
        self.channel = EmbeddedChannel(loop: loop)
        try self.channel.pipeline.syncOperations.addHandler(host.value.sessionHandler(context: context))
        try self.channel.connect(to: SocketAddress(ipAddress: "10.1.2.42", port: 50_000)).wait()
        var hello = Licensed_V1_Hello()
        hello.protocolVersion = .protocolVersion1
        hello.user = "ada.lovelace"
        hello.host = "ws-0042.eng.example.com"
        hello.clientName = "solver"
        hello.clientVersion = "2026.3"
        var message = Licensed_V1_ClientMessage()
        message.requestID = 1
        message.body = .hello(hello)
        var frame = self.channel.allocator.buffer(capacity: 64)
        try frame.writeFrame(message)
        try self.channel.writeInbound(frame)
        var reply = try self.answer()
        guard let length = reply.readInteger(endianness: .big, as: UInt32.self), let body = reply.readSlice(length: Int(length)),
            case .hello = try body.decodeMessage(as: Licensed_V1_ServerMessage.self).body
        else { throw ServeError("the Hello was refused") }
        for index in 0..<otherFeatures {
            var checkOut = Licensed_V1_CheckOutRequest()
            checkOut.feature = "f\(index)"
            message.requestID = 100 + UInt64(index)
            message.body = .checkOut(checkOut)
            frame.clear()
            try frame.writeFrame(message)
            try self.channel.writeInbound(frame)
            reply = try self.answer()
            guard Self.leaseID(inGrant: reply) != nil else { throw ServeError("f\(index) was not granted") }
        }
        try self.prepareFrames()
    }

    /// One check-out and its check-in, each answered; returns the reply bytes. The requests are
    /// frames encoded once, with the check-out key and the lease id written into them in place,
    /// and the lease id is read from the grant by walking its fields: the harness costs little
    /// next to what it measures.
    public func pair() throws -> Int {
        self.checkoutCount += 1
        withUnsafeBytes(of: self.checkoutCount.bigEndian) { key in
            self.checkOutFrame.setBytes(key, at: self.keyOffset)
        }
        self.channel.pipeline.fireChannelRead(self.checkOutFrame)
        let grant = try self.answer()
        guard let leaseID = Self.leaseID(inGrant: grant) else { throw ServeError("the check-out was not granted") }
        self.checkInFrame.setBytes(leaseID, at: self.leaseOffset)
        self.channel.pipeline.fireChannelRead(self.checkInFrame)
        let returned = try self.answer()
        return grant.readableBytes + returned.readableBytes
    }

    private var checkoutCount: UInt64 = 0
    private var checkOutFrame = ByteBuffer()
    private var checkInFrame = ByteBuffer()
    private var keyOffset = 0
    private var leaseOffset = 0

    /// The frames of a check-out (with a 16-byte key) and of a check-in, and where in them the
    /// key's first 8 bytes and the lease id go.
    private func prepareFrames() throws {
        let marker: [UInt8] = Array(0xA0...0xAF)
        var checkOut = Licensed_V1_CheckOutRequest()
        checkOut.feature = "cad.solver"
        checkOut.checkoutKey = Data(marker)
        var checkIn = Licensed_V1_CheckInRequest()
        checkIn.leaseID = Data(marker)
        for (body, requestID) in [(Licensed_V1_ClientMessage.OneOf_Body.checkOut(checkOut), UInt64(7)), (.checkIn(checkIn), 8)] {
            var message = Licensed_V1_ClientMessage()
            message.requestID = requestID
            message.body = body
            var frame = self.channel.allocator.buffer(capacity: 64)
            try frame.writeFrame(message)
            let bytes = Array(frame.readableBytesView)
            guard let at = (0...(bytes.count - 16)).first(where: { Array(bytes[$0..<$0 + 16]) == marker }) else {
                throw ServeError("the marker is not in the frame")
            }
            if requestID == 7 {
                self.checkOutFrame = frame
                self.keyOffset = at
            } else {
                self.checkInFrame = frame
                self.leaseOffset = at
            }
        }
    }

    /// Makes the log durable, runs the loop and returns the one reply frame written.
    private func answer() throws -> ByteBuffer {
        self.channel.embeddedEventLoop.run()
        self.log.makeDurable()
        self.channel.embeddedEventLoop.run()
        guard let reply = try self.channel.readOutbound(as: ByteBuffer.self) else { throw ServeError("no reply") }
        return reply
    }

    /// The lease id of a grant's frame: ServerMessage { check_out (field 3) { lease_id (1) } },
    /// found by stepping over fields.
    static func leaseID(inGrant frame: ByteBuffer) -> [UInt8]? {
        var reader = frame
        guard reader.readInteger(endianness: .big, as: UInt32.self) != nil else { return nil }
        func varint(_ buffer: inout ByteBuffer) -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while let byte = buffer.readInteger(as: UInt8.self) {
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            return nil
        }
        while reader.readableBytes > 0, let key = varint(&reader) {
            switch key & 7 {
            case 0: _ = varint(&reader)
            case 2:
                guard let length = varint(&reader), var field = reader.readSlice(length: Int(length)) else { return nil }
                guard key >> 3 == 3 else { continue }
                while field.readableBytes > 0, let inner = varint(&field) {
                    guard inner & 7 == 2, let count = varint(&field), let bytes = field.readBytes(length: Int(count)) else { return nil }
                    if inner >> 3 == 1 { return bytes }
                }
                return nil
            default: return nil
            }
        }
        return nil
    }

    struct ServeError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}

/// A commit log that numbers the changes it is given and reports them durable when asked: the
/// serving loop's side of the log, with none of the writer's.
final class NumberingCommitLog: CommitLog {
    private struct State {
        var assigned: UInt64 = 0
        var signals: CommitLogSignals?
    }
    private let state = Mutex(State())

    var source: CommitLogSource {
        CommitLogSource { _ in (self, RecoveredLedger(changes: [], auditDetails: [])) }
    }

    func start(_ signals: CommitLogSignals) { self.state.withLock { $0.signals = signals } }

    func append(_ changes: [LedgerChange], audit events: [AuditEvent], wakeWriter: Bool) -> UInt64 {
        self.state.withLock { state in
            state.assigned += UInt64(changes.count)
            return state.assigned
        }
    }

    func audit(_ events: [AuditEvent], wakeWriter: Bool) {}
    func wakeWriter() {}
    var lastAssigned: UInt64 { self.state.withLock { $0.assigned } }
    var auditHead: AuditHead? { nil }
    var sinceSnapshot: (records: Int, bytes: Int) { (0, 0) }
    var lastSnapshot: (sequence: UInt64, takenAtMs: Int64)? { nil }

    func snapshot(_ ledger: SeatLedger, takenAtMs: Int64, done: @escaping @Sendable (Result<SnapshotResult, StoreError>) -> Void) -> Bool {
        false
    }

    func close() {}

    /// Everything appended so far is durable.
    func makeDurable() {
        let (signals, sequence) = self.state.withLock { ($0.signals, $0.assigned) }
        signals?.durable(sequence)
    }
}
