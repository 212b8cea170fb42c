import DequeModule
import Foundation
import LicenseAudit
import LicenseCore
import LicenseCrypto
import LicenseFiles
import LicenseProtocol
import LicenseStore
import Logging
import Metrics
import NIOCore
import SwiftProtobuf

/// Owns the seat ledger on one event loop: every session handler of the server runs on that same
/// loop and calls it directly, so a request costs no hop, no lock and no actor switch (the design
/// PERFORMANCE.md asks for: one writer, fed in place). It hands every change to the commit log,
/// holds the replies that acknowledge changes until the log reports them durable, and keeps the
/// sessions' connections to push events to. Requests are handled in extensions by subject
/// (`+FloatingSeats`, `+Queues`, `+Activations`, `+Administration`), dispatched by `+Requests`.
package final class LedgerHost {
    let eventLoop: any EventLoop
    let context: ServerContext
    var logger: Logger
    /// The commit log every change goes to before its request is answered.
    let log: any CommitLog
    /// The seats, activations and sessions (inspected and administered on the loop by tests too).
    /// Read it on the request path through `inPlace`.
    var ledger: SeatLedger
    /// The licences in force.
    var loaded: LicenseLoadResult
    /// Set when the log failed: nothing more is acknowledged or served.
    private(set) var failure: String?
    /// Replies held until their changes are durable.
    var replies: HeldReplies<SessionHandler, OutgoingReply>
    /// The connection attached to each session, to push events to.
    var connections: [SessionID: SessionHandler] = [:]
    /// Sessions told about threshold crossings.
    var subscribers = Set<SessionID>()
    /// Check-outs waiting in a feature's queue, and the timer of the next deadline.
    var queued = QueuedCheckOuts()
    var limits: ConnectionLimits
    var tokenThrottle: TokenThrottle
    var thresholds: ThresholdWatch
    let signer: CredentialSigner
    /// Counters by name and labels, made once each.
    var counters: [String: Counter] = [:]
    /// Counters of one dimension (a check-out's and a check-in's), found without building a key
    /// string: building one per request cost 2% of the daemon's CPU under full load.
    var oneDimensionCounters: [OneDimensionCounter: Counter] = [:]
    /// The check-out and check-in counters of each feature, by the feature alone (two per pair).
    var featureCounters: [String: FeatureCounters] = [:]
    /// The last of `featureCounters` looked up.
    var lastFeatureCounters: (feature: String, counters: FeatureCounters)?
    /// Lease and session ids, drawn from the CSPRNG in batches.
    var randomIDs = RandomIDs()
    var reaper: RepeatedTask?
    var reapTicks = 0
    /// A further pass of the reaper is queued on the loop (`reclaimLapsed`).
    var reclaimQueued = false
    var snapshotRunning = false
    /// A wake-up of the log's writer is queued on the loop (see `wakeWriterSoon`).
    var writerWakeScheduled = false
    /// True once the listener is bound; false again when stopping.
    var listening = false
    /// Notices steps of the wall clock (see `nowMs`).
    var clockSteps = ClockStepDetector()
    /// How far the clock was behind the reference at the last look, while a clock-setback
    /// episode lasts (nil: none).
    var clockSetbackMs: Int64?
    /// This node's place in its cluster (nil: a single node).
    var cluster: ClusterMembership?
    /// Refused check-outs per feature in the last hour.
    var recentDenials = RecentDenials()
    /// The directory's tree and its leavers, the periodic sync, and whether a read is running.
    var directory = DirectoryState()
    var directorySync: RepeatedTask?
    var directoryReading = false
    /// The session the directory sync revokes as (no client holds it).
    let directorySession = SessionID(bytes: SecureRandom.bytes(16))!

    init(
        eventLoop: any EventLoop,
        context: ServerContext,
        licenses: LicenseLoadResult,
        log: any CommitLog,
        recovered: consuming [LedgerChange],
        recoveryDetails: [(String, AuditEvent.Value)] = []
    ) {
        self.eventLoop = eventLoop
        self.context = context
        self.logger = context.logger
        self.loaded = licenses
        self.log = log
        self.replies = HeldReplies(durable: log.lastAssigned)
        let settings = context.configuration
        self.limits = ConnectionLimits(maxConnections: settings.maxConnections, maxPerAddress: settings.maxConnectionsPerAddress)
        self.tokenThrottle = TokenThrottle(limit: settings.badTokenLimit, delayMs: Int64(settings.badTokenDelayMs))
        self.thresholds = ThresholdWatch(thresholds: settings.utilisationThresholds)
        self.signer = CredentialSigner(key: context.serverKey, activationValidityMs: Int64(settings.activationValidityDays) * 86_400_000)
        var rules = SeatLedger.Configuration(defaultLeaseTTLMs: Int64(settings.leaseTTLMs))
        rules.minimumLeaseTTLMs = min(10_000, Int64(settings.leaseTTLMs))
        rules.maximumQueueLength = settings.maxQueueLength
        rules.restrictions = settings.restrictions
        rules.clockSetbackToleranceMs = Int64(settings.clockSetbackToleranceHours) * 3_600_000
        self.ledger = SeatLedger(configuration: rules, licenses: licenses.effective)
        let recoveredCount = recovered.count
        self.ledger.reserveCapacity(leases: recoveredCount)
        self.ledger.apply(contentsOf: consume recovered)
        self.ledger.observedTimeMs = log.auditHead?.timeMs ?? 0
        // Heartbeats are not logged: every recovered lease gets one full TTL to be renewed.
        self.ledger.renewAll(at: self.nowMs)
        // A durable mark of the time at this start: it also gives the snapshot that a recovery
        // may take next (after passing a damaged one) a sequence number of its own. (A standby
        // of a cluster appends nothing: it marks the time when it becomes active.)
        if log.acceptsAppends { self.markClock() }
        // Exposed at 0 from the start, so that an alert on them needs no "absent" case.
        for direction in ["forward", "backward"] { _ = self.counter("licensed_clock_steps_total", [("direction", direction)]) }
        _ = self.counter("licensed_clock_setback_episodes_total", [])
        _ = self.counter("licensed_client_clock_skew_total", [])
        self.audit(
            "start",
            actor: "server",
            details: [("version", .string(ServerContext.serverVersion)), ("recovered", .int(Int64(recoveredCount)))] + recoveryDetails
        )
        self.auditLicenses(licenses, actor: "server")
        self.watchClock()
    }

    /// Appends a durable mark of the wall-clock time now.
    func markClock() {
        let mark = LedgerChange.clockMarked(atMs: self.nowMs)
        self.ledger.apply(mark)
        self.replies.lastAppended = self.log.append([mark], audit: [], wakeWriter: true)
    }

    /// Holds `reply` for `handler` until everything appended so far is durable.
    func replyWhenDurable(_ reply: Licensed_V1_ServerMessage, to handler: SessionHandler) -> Bool {
        self.replies.hold(.message(reply), for: handler)
    }

    /// Answers a change to `handler` once everything appended so far is durable (at once when it is).
    func acknowledge(_ reply: OutgoingReply, to handler: SessionHandler) {
        if !self.replies.hold(reply, for: handler) { handler.writeDeferred(reply) }
    }

    /// The log reports `sequence` durable: release the replies waiting for it, one flush per connection.
    func durable(upTo sequence: UInt64) {
        var touched: [SessionHandler] = []
        self.replies.release(upTo: sequence) { handler, reply in
            if handler.writeDeferred(reply) { touched.append(handler) }
        }
        for handler in touched { handler.flushDeferred() }
    }

    /// The log can no longer make changes durable: every reply still waiting is answered
    /// UNAVAILABLE instead (its change may or may not have reached the disk; a retry with the
    /// same checkout_key finds out), and nothing more is served.
    func logFailed(_ message: String) {
        guard self.failure == nil else { return }
        self.failure = message
        self.logger.critical("the commit log failed; nothing more is acknowledged: \(message)")
        let error = self.unavailable.protocolError
        Self.send(
            self.replies.abandonAll().map { held in
                var reply = Licensed_V1_ServerMessage()
                reply.requestID = held.reply.requestID
                reply.error = error
                return (held.target, reply)
            }
        )
        self.stopReaper()
        self.stopDirectorySync()
    }

    /// Writes `replies`, then flushes each connection once.
    private static func send(_ replies: [(target: SessionHandler, reply: Licensed_V1_ServerMessage)]) {
        var touched: [SessionHandler] = []
        for (handler, reply) in replies where handler.writeDeferred(reply) { touched.append(handler) }
        for handler in touched { handler.flushDeferred() }
    }

    /// The refusal of every request once the log failed.
    var unavailable: LicenseError {
        LicenseError(.unavailable, "the licence server cannot record changes (\(self.failure ?? "")); not acknowledged, try again later")
    }

    /// Takes a snapshot now of a frozen copy of the ledger (the loop goes on serving).
    func takeSnapshot(reason: String, done: (@Sendable (Result<SnapshotResult, StoreError>) -> Void)? = nil) {
        guard self.failure == nil else {
            done?(.failure(StoreError("the commit log failed; no snapshot is taken")))
            return
        }
        let logger = self.logger
        let metrics = self.context.metrics
        let host = NIOLoopBound(self, eventLoop: self.eventLoop)
        let loop = self.eventLoop
        let started = self.log.snapshot(self.ledger, takenAtMs: self.nowMs) { result in
            switch result {
            case .success(let snapshot):
                metrics.snapshotDuration.recordMilliseconds(snapshot.durationMs)
                logger.info(
                    "snapshot written",
                    metadata: [
                        "reason": "\(reason)", "sequence": "\(snapshot.sequence)", "leases": "\(snapshot.leases)",
                        "bytes": "\(snapshot.sizeBytes)", "duration_ms": "\(snapshot.durationMs)", "file": "\(snapshot.file)",
                    ]
                )
            case .failure(let error):
                logger.error("snapshot failed: \(error)")
            }
            loop.execute { host.value.snapshotRunning = false }
            done?(result)
        }
        if started {
            self.snapshotRunning = true
        } else {
            done?(.failure(StoreError("a snapshot is already being written")))
        }
    }

    func snapshotIfDue() {
        guard !self.snapshotRunning else { return }
        let since = self.log.sinceSnapshot
        if since.records >= self.context.configuration.snapshotEveryRecords || since.bytes >= self.context.configuration.snapshotEveryBytes
        {
            self.takeSnapshot(reason: "log passed \(since.records) records / \(since.bytes) bytes")
        }
    }

    // MARK: - Sessions

    /// A new random id (a lease's, a session's).
    func newID() -> ID128 {
        let words = self.randomIDs.next()
        return ID128(high: words.high, low: words.low)
    }

    func open(_ identity: ClientIdentity, connection: SessionHandler) -> SessionID {
        let id = self.newID()
        self.ledger.openSession(id, identity: identity)
        self.connections[id] = connection
        return id
    }

    /// What became of a Hello that resumes a session.
    enum Resumption {
        /// `connection` holds the session now.
        case resumed
        /// No such session (ended, or never known): the client starts a new one.
        case unknown
        /// The connection holding the session came from a newer resume of the same client.
        case stale
    }

    /// Attaches `connection` to an existing session; a connection still attached to it is told
    /// and closed (the client has moved on) — unless that connection's resume is newer than
    /// `connection`'s `attempt` (a Hello the client gave up on, arriving late), which is refused.
    func resume(_ id: SessionID, attempt: UInt64, connection: SessionHandler) -> Resumption {
        let previous = self.connections[id]
        if let previous, previous !== connection, attempt > 0, previous.resumeAttempt >= attempt {
            return .stale
        }
        guard self.ledger.resumeSession(id) != nil else { return .unknown }
        if let previous, previous !== connection {
            previous.supersede()
        }
        self.connections[id] = connection
        return .resumed
    }

    /// Tells the session holding `lease`, if it is connected, what became of it.
    func tell(holderOf lease: Lease, _ kind: Licensed_V1_Event.Kind, _ message: String) {
        var event = Licensed_V1_Event()
        event.kind = kind
        event.leaseID = .init(lease.id.bytes)
        event.feature = lease.feature
        event.message = message
        self.connections[lease.sessionID]?.push(event)
    }

    func detach(_ id: SessionID, connection: SessionHandler) {
        guard self.connections[id] === connection else { return }
        self.connections[id] = nil
        self.subscribers.remove(id)
        for waiterID in self.ledger.detachSession(id) { self.queued.waiters[waiterID] = nil }
    }

    /// Admits a new connection from `address`, or says which limit it would pass.
    func admitConnection(from address: String) -> LicenseError? { self.limits.admit(from: address) }

    func releaseConnection(from address: String) { self.limits.release(from: address) }
}

extension LedgerHost {
    /// Runs `body` on the ledger where it is stored. A non-mutating ledger method called on
    /// `self.ledger` directly first copies the whole ledger out of this object (224 bytes and
    /// some twenty retains, then as many releases: 0.65% of the daemon's CPU at full load, from
    /// one such call per check-out); through an `inout` access it reads the stored one.
    @inline(__always)
    func inPlace<Result>(_ body: (inout SeatLedger) -> Result) -> Result { body(&self.ledger) }
}
