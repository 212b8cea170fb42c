import Foundation
import LicenseAudit
import LicenseCore
import LicenseFiles
import LicenseProtocol
import LicenseServer
import LicenseStore
import LicenseTestSupport
import NIOCore
import Synchronization
import Testing

/// A second implementation of the commit-log seam, held in memory and driven by the test: it
/// decides when appended changes become durable and when the log fails. The server runs on it
/// unchanged — the proof that a replicated log can plug in where the local write-ahead log is.
final class InMemoryCommitLog: CommitLog {
    struct State {
        var appended: [(sequence: UInt64, change: LedgerChange)] = []
        var audit: [AuditEvent] = []
        var assigned: UInt64
        var durable: UInt64
        var sinceSnapshot = 0
        var lastSnapshot: (sequence: UInt64, takenAtMs: Int64)?
        var signals: CommitLogSignals?
        var failed = false
        var closed = false
    }

    let recovered: [LedgerChange]
    let state: Mutex<State>

    /// A log that recovers `recovered` (as if they were durable before this start).
    init(recovered: [LedgerChange] = []) {
        self.recovered = recovered
        self.state = Mutex(State(assigned: UInt64(recovered.count), durable: UInt64(recovered.count)))
    }

    /// The source a server opens it through.
    var source: CommitLogSource {
        CommitLogSource { _ in (self, RecoveredLedger(changes: self.recovered, auditDetails: [("log", .string("memory"))])) }
    }

    func start(_ signals: CommitLogSignals) { self.state.withLock { $0.signals = signals } }

    func append(_ changes: [LedgerChange], audit events: [AuditEvent], wakeWriter: Bool) -> UInt64 {
        self.state.withLock { state in
            guard !state.failed else { return state.assigned }
            for change in changes {
                state.assigned += 1
                state.appended.append((state.assigned, change))
            }
            state.sinceSnapshot += changes.count
            state.audit += events
            return state.assigned
        }
    }

    func audit(_ events: [AuditEvent], wakeWriter: Bool) { self.state.withLock { $0.audit += events } }
    func wakeWriter() {}
    var lastAssigned: UInt64 { self.state.withLock { $0.assigned } }
    var auditHead: AuditHead? { nil }
    var sinceSnapshot: (records: Int, bytes: Int) { self.state.withLock { ($0.sinceSnapshot, 0) } }

    var lastSnapshot: (sequence: UInt64, takenAtMs: Int64)? { self.state.withLock { $0.lastSnapshot } }

    func snapshot(_ ledger: SeatLedger, takenAtMs: Int64, done: @escaping @Sendable (Result<SnapshotResult, StoreError>) -> Void) -> Bool {
        let sequence = self.state.withLock { state -> UInt64? in
            guard !state.failed else { return nil }
            state.sinceSnapshot = 0
            state.lastSnapshot = (state.assigned, takenAtMs)
            return state.assigned
        }
        guard let sequence else { return false }
        done(.success(SnapshotResult(sequence: sequence, file: "memory", sizeBytes: 0, durationMs: 0, leases: ledger.leases.count)))
        return true
    }

    func close() { self.state.withLock { $0.closed = true } }

    // MARK: - The test's hands

    /// Everything appended so far becomes durable, and the host is told.
    func makeDurable() {
        let (signals, sequence) = self.state.withLock { state in
            state.durable = state.assigned
            return (state.signals, state.assigned)
        }
        signals?.durable(sequence)
    }

    /// The log fails: nothing appended from now on, or not yet durable, ever becomes durable.
    func fail(_ message: String) {
        let signals = self.state.withLock { state in
            state.failed = true
            return state.signals
        }
        signals?.fatal(message)
    }

    /// The changes a recovery of this log would replay: the durable ones.
    var durableChanges: [LedgerChange] {
        self.state.withLock { state in self.recovered + state.appended.filter { $0.sequence <= state.durable }.map(\.change) }
    }

    var appendedChanges: [LedgerChange] { self.state.withLock { $0.appended.map(\.change) } }
    var auditActions: [String] { self.state.withLock { $0.audit.map(\.action) } }
    var isClosed: Bool { self.state.withLock { $0.closed } }
}

@Suite("The commit log as a seam")
struct CommitLogSeamTests {
    typealias Floating = FloatingSeatServerTests

    static func request(_ id: UInt64, _ body: Licensed_V1_ClientMessage.OneOf_Body) -> Licensed_V1_ClientMessage {
        var message = Licensed_V1_ClientMessage()
        message.requestID = id
        message.body = body
        return message
    }

    static func checkOut(_ id: UInt64) -> Licensed_V1_ClientMessage {
        var request = Licensed_V1_CheckOutRequest()
        request.feature = "cad"
        return Self.request(id, .checkOut(request))
    }

    static let status = Licensed_V1_ClientMessage.OneOf_Body.status(Licensed_V1_StatusRequest())

    @Test("check-out and check-in through an in-memory log: replies wait for durability, recovery replays, a failure stops acknowledgement")
    func inMemoryLog() async throws {
        let log = InMemoryCommitLog()
        let failures = Mutex<[String]>([])
        let recovered = try await withTestServer(
            licenses: [Floating.license(count: 1)],
            log: log.source,
            onLogFailure: { message in failures.withLock { $0.append(message) } }
        ) { server, port in
            let connection = try await RawConnection.connect(port: port)
            #expect(try await connection.hello().hello.sessionID.count == 16)

            // A check-out is granted at once but answered only once durable: the Status sent after
            // it is answered first.
            try await connection.send(Self.checkOut(2))
            try await connection.send(Self.request(3, Self.status))
            #expect(try await connection.readMessage().requestID == 3)
            let granted = log.appendedChanges.compactMap { change -> Lease? in
                if case .granted(let lease) = change { return lease } else { return nil }
            }
            let lease = try #require(granted.first)
            #expect(granted.count == 1)
            #expect(log.auditActions.contains("grant"))
            log.makeDurable()
            let checkedOut = try await connection.readMessage()
            #expect(checkedOut.requestID == 2)
            #expect(checkedOut.checkOut.leaseID == Data(lease.id.bytes))
            let afterCheckOut = log.durableChanges

            // The same for a check-in.
            var checkIn = Licensed_V1_CheckInRequest()
            checkIn.leaseID = checkedOut.checkOut.leaseID
            try await connection.send(Self.request(4, .checkIn(checkIn)))
            try await connection.send(Self.request(5, Self.status))
            #expect(try await connection.readMessage().requestID == 5)
            #expect(log.appendedChanges.contains { if case .released(lease.id, .checkedIn, _) = $0 { true } else { false } })
            log.makeDurable()
            let checkedIn = try await connection.readMessage()
            #expect(checkedIn.requestID == 4)
            #expect(checkedIn.checkIn.leaseID == checkedOut.checkOut.leaseID)

            // The log fails with a check-out waiting: it is answered UNAVAILABLE, not granted, and so is
            // everything after; the server is no longer ready; the failure is reported once.
            try await connection.send(Self.checkOut(6))
            try await connection.send(Self.request(7, Self.status))
            #expect(try await connection.readMessage().requestID == 7)
            log.fail("the disk is gone")
            let refused = try await connection.readMessage()
            #expect(refused.requestID == 6)
            #expect(refused.error.code == .unavailable)
            #expect(refused.error.message.contains("the disk is gone"))
            try await connection.send(Self.request(8, Self.status))
            let after = try await connection.readMessage()
            #expect(after.requestID == 8)
            #expect(after.error.code == .unavailable)
            let ready = try await server.readiness().get()
            #expect(ready.0 == false)
            #expect(failures.withLock { $0 } == ["the disk is gone"])
            await connection.close()
            return afterCheckOut
        }
        #expect(log.isClosed)

        // What the log made durable is what a server recovers from it: the lease of the first check-out.
        let second = InMemoryCommitLog(recovered: recovered)
        try await withTestServer(licenses: [Floating.license(count: 1)], log: second.source) { server, _ in
            let (inUse, leases) = try await server.withLedger { ($0.seatsInUse(of: "cad"), $0.leases.count) }
            #expect(inUse == 1)
            #expect(leases == 1)
        }
    }
}
