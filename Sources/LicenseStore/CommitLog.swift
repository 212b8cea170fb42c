import Dispatch
public import LicenseAudit
public import LicenseCore
public import LicenseFiles
import Synchronization

/// The seam between the serving loop and durable storage: the host hands it batches of
/// `LedgerChange`s (with their audit records), each change gets the next sequence number, and
/// the log reports, asynchronously, the highest sequence number that is durable. A reply that
/// acknowledges a change is held until then.
///
/// `LedgerStore` (a local write-ahead log with group commit) is the first implementation; a log
/// replicated to other machines is another. Nothing that serves requests knows which is in use.
///
/// Contract:
/// - `append` never blocks on I/O and returns the sequence number of the batch's last change;
///   numbers are consecutive from `lastAssigned + 1`.
/// - After `start`, `signals.durable(n)` is called (on any thread) with non-decreasing `n` once
///   every change up to `n` is durable. `signals.fatal(message)` is called at most once when the
///   log can no longer make changes durable; nothing appended after is ever reported durable.
/// - Changes and audit records appended before `start` are queued, not lost.
/// - `snapshot` records the ledger's state after every change appended so far, so that recovery
///   need not replay what precedes it.
public protocol CommitLog: AnyObject, Sendable {
    /// Begins making appended changes durable and reporting through `signals`. Called once.
    func start(_ signals: CommitLogSignals)
    /// Queues `changes` and their audit records; returns the sequence number of the last change
    /// (`lastAssigned` when `changes` is empty). With `wakeWriter: false` the caller promises a
    /// `wakeWriter()` soon (once per batch of requests, not once per change).
    @discardableResult
    func append(_ changes: [LedgerChange], audit events: [AuditEvent], wakeWriter: Bool) -> UInt64
    /// Queues audit records of things that change no state (denials, refused tokens, reads).
    func audit(_ events: [AuditEvent], wakeWriter: Bool)
    /// Starts writing what is queued, if the writer is idle.
    func wakeWriter()
    /// The last sequence number handed out.
    var lastAssigned: UInt64 { get }
    /// Sequence number and hash of the last audit record written (nil without an audit trail).
    var auditHead: AuditHead? { get }
    /// Records and bytes logged since the last snapshot (to decide when to take one).
    var sinceSnapshot: (records: Int, bytes: Int) { get }
    /// The newest durable snapshot on this machine: the change it holds up to and when it was
    /// taken (nil: none yet).
    var lastSnapshot: (sequence: UInt64, takenAtMs: Int64)? { get }
    /// Records `ledger` (the state after every change appended so far) off the caller's thread;
    /// `done` reports the outcome. Returns false when a snapshot is already being taken.
    @discardableResult
    func snapshot(_ ledger: SeatLedger, takenAtMs: Int64, done: @escaping @Sendable (Result<SnapshotResult, StoreError>) -> Void) -> Bool
    /// Makes everything appended so far durable (unless the log failed), then stops.
    func close()
    /// False while this log takes no changes from its host (a standby of a cluster copies the
    /// active node's changes instead).
    var acceptsAppends: Bool { get }
}

extension CommitLog {
    /// A local log always takes changes.
    public var acceptsAppends: Bool { true }

    /// Snapshots `ledger` as `snapshot(_:takenAtMs:done:)` does and waits until it is written.
    /// For start-up (a recovery that lost redundancy writes one before serving), never the loop.
    public func snapshotAndWait(_ ledger: SeatLedger, takenAtMs: Int64) throws(StoreError) -> SnapshotResult {
        let written = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<SnapshotResult, StoreError>?>(nil)
        let started = self.snapshot(ledger, takenAtMs: takenAtMs) { result in
            outcome.withLock { $0 = result }
            written.signal()
        }
        guard started else { throw StoreError("a snapshot is already being written") }
        written.wait()
        guard let result = outcome.withLock({ $0 }) else { throw StoreError("the snapshot ended without a result") }
        return try result.get()
    }
}

/// What a `CommitLog` reports to its host.
public struct CommitLogSignals: Sendable {
    /// Every change up to this sequence number is durable.
    public var durable: @Sendable (UInt64) -> Void
    /// The log cannot make changes durable any more (a failed write or fsync, a lost quorum):
    /// whatever is not yet reported durable must not be acknowledged.
    public var fatal: @Sendable (String) -> Void
    /// A batch of `records` became durable in `nanoseconds` (for metrics).
    public var synced: @Sendable (_ records: Int, _ nanoseconds: UInt64) -> Void

    /// Creates the signals.
    public init(
        durable: @escaping @Sendable (UInt64) -> Void,
        fatal: @escaping @Sendable (String) -> Void,
        synced: @escaping @Sendable (_ records: Int, _ nanoseconds: UInt64) -> Void = { _, _ in }
    ) {
        self.durable = durable
        self.fatal = fatal
        self.synced = synced
    }
}

/// The newest record of the audit trail: its sequence number and hash (the chain's head).
public struct AuditHead: Sendable, Equatable {
    /// Sequence number of the record.
    public var sequence: UInt64
    /// Its hash, hex.
    public var hash: String
    /// The latest time of a record in the trail (the clock-setback check reads it).
    public var timeMs: Int64
    /// Creates a head.
    public init(sequence: UInt64, hash: String, timeMs: Int64 = 0) {
        self.sequence = sequence
        self.hash = hash
        self.timeMs = timeMs
    }
}

/// What a snapshot wrote.
public struct SnapshotResult: Sendable {
    /// Last sequence number it covers.
    public var sequence: UInt64
    /// Where it is (a file, or a key in a replicated store).
    public var file: String
    /// Its size.
    public var sizeBytes: Int
    /// Time to encode and write it, in milliseconds.
    public var durationMs: Int
    /// Leases in it.
    public var leases: Int

    /// Creates a result.
    public init(sequence: UInt64, file: String, sizeBytes: Int, durationMs: Int, leases: Int) {
        self.sequence = sequence
        self.file = file
        self.sizeBytes = sizeBytes
        self.durationMs = durationMs
        self.leases = leases
    }
}

/// What opening a log recovered, in terms any log can give: the changes to replay and what the
/// operator must hear about.
public struct RecoveredLedger: Sendable {
    /// How loud a finding is.
    public enum Severity: Sendable {
        case warning, error, critical
    }

    /// The state to rebuild: apply every change, in order.
    public var changes: [LedgerChange]
    /// Things found damaged, cut or lost, for the log.
    public var findings: [(Severity, String)]
    /// Facts for the `start` audit record.
    public var auditDetails: [(String, AuditEvent.Value)]
    /// Facts for the "ledger recovered" log line.
    public var summary: [(String, String)]
    /// True when a snapshot must be taken before serving (recovery used up redundancy).
    public var needsSnapshot: Bool

    /// Creates a recovery.
    public init(
        changes: [LedgerChange],
        findings: [(Severity, String)] = [],
        auditDetails: [(String, AuditEvent.Value)] = [],
        summary: [(String, String)] = [],
        needsSnapshot: Bool = false
    ) {
        self.changes = changes
        self.findings = findings
        self.auditDetails = auditDetails
        self.summary = summary
        self.needsSnapshot = needsSnapshot
    }
}
