import DequeModule
import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import Logging
import Metrics
import NIOCore
import SwiftProtobuf

/// Owns the seat ledger on one event loop: every session handler of the server runs on that same
/// loop and calls it directly, so a request costs no hop, no lock and no actor switch (the design
/// PERFORMANCE.md asks for: one writer, fed in place). Also runs the reaper on that loop and
/// pushes events to sessions.
final class LedgerHost {
    let eventLoop: any EventLoop
    private(set) var ledger: SeatLedger
    private(set) var loaded: LicenseLoadResult
    let context: ServerContext
    var logger: Logger
    /// The connection attached to each session, to push events to.
    private var connections: [SessionID: SessionHandler] = [:]
    private var reaper: RepeatedTask?
    /// The commit log every change goes to before its request is answered.
    let log: any CommitLog
    /// Set when the log failed: nothing more is acknowledged or served.
    private(set) var failure: String?
    /// Highest sequence number known to be on disk.
    private(set) var durableSequence: UInt64
    /// Sequence number of the last change this loop appended (read without the store's lock).
    var lastAppended: UInt64
    /// Replies held until their changes are durable, in sequence order.
    private var waiting = Deque<(sequence: UInt64, handler: SessionHandler, reply: Licensed_V1_ServerMessage)>()
    private var snapshotRunning = false
    /// Queued check-outs: who to answer, by waiter id.
    private var waiters: [UInt64: (handler: SessionHandler, requestID: UInt64)] = [:]
    private var nextWaiterID: UInt64 = 0
    private var reapTicks = 0
    private var openConnections = 0
    private var connectionsByAddress: [String: Int] = [:]
    private var queueTimer: Scheduled<Void>?
    private var queueTimerDeadline: Int64?
    /// Counters by name and labels, made once each.
    private var counters: [String: Counter] = [:]
    /// Sessions told about threshold crossings.
    var subscribers = Set<SessionID>()
    /// Per feature, the highest utilisation threshold reached (absent = below all).
    var thresholdLevels: [String: UInt32] = [:]
    /// Times of recent refused tokens, by address (the last minute's).
    var refusedTokens: [String: [Int64]] = [:]
    /// A wake-up of the log's writer is queued on the loop (see `wakeWriterSoon`).
    var writerWakeScheduled = false
    /// True once the listener is bound; false again when stopping.
    var listening = false
    /// Notices steps of the wall clock (see `nowMs`).
    private var clockSteps = ClockStepDetector()

    init(
        eventLoop: any EventLoop,
        context: ServerContext,
        licenses: LicenseLoadResult,
        log: any CommitLog,
        recovered: [LedgerChange],
        recoveryDetails: [(String, AuditEvent.Value)] = []
    ) {
        self.eventLoop = eventLoop
        self.context = context
        self.logger = context.logger
        self.loaded = licenses
        self.log = log
        self.durableSequence = log.lastAssigned
        self.lastAppended = self.durableSequence
        var configuration = SeatLedger.Configuration(defaultLeaseTTLMs: Int64(context.configuration.leaseTTLMs))
        configuration.minimumLeaseTTLMs = min(10_000, Int64(context.configuration.leaseTTLMs))
        configuration.maximumQueueLength = context.configuration.maxQueueLength
        configuration.restrictions = context.configuration.restrictions
        self.ledger = SeatLedger(configuration: configuration, licenses: licenses.effective)
        self.ledger.reserveCapacity(leases: recovered.count)
        for change in recovered { self.ledger.apply(change) }
        // Heartbeats are not logged: every recovered lease gets one full TTL to be renewed.
        self.ledger.renewAll(at: self.nowMs)
        // A durable mark of the time at this start: it also gives the snapshot that a recovery
        // may take next (after passing a damaged one) a sequence number of its own.
        let mark = LedgerChange.clockMarked(atMs: self.nowMs)
        self.ledger.apply(mark)
        self.lastAppended = log.append([mark], audit: [], wakeWriter: true)
        // Exposed at 0 from the start, so that an alert on them needs no "absent" case.
        for direction in ["forward", "backward"] { _ = self.counter("licensed_clock_steps_total", [("direction", direction)]) }
        self.audit(
            "start",
            actor: "server",
            details: [("version", .string(ServerContext.serverVersion)), ("recovered", .int(Int64(recovered.count)))] + recoveryDetails
        )
        self.auditLicenses(licenses, actor: "server")
    }

    // MARK: - Metrics and health

    func count(_ label: String, _ dimensions: [(String, String)]) {
        self.counter(label, dimensions).increment()
    }

    /// The counter of `label` and `dimensions`, made on first use.
    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        if let counter = self.counters[key] { return counter }
        let counter = self.context.metrics.counter(label, dimensions)
        self.counters[key] = counter
        return counter
    }

    /// Ready to serve: listening, and at least one licence loaded.
    var isReady: Bool { self.listening && self.failure == nil && !self.loaded.effective.isEmpty }

    /// Why not ready, for /readyz.
    var readiness: String {
        if !self.listening { return "not listening (starting or stopping)" }
        if let failure = self.failure { return "the commit log failed: \(failure)" }
        if self.loaded.effective.isEmpty { return "no valid licence loaded (\(self.loaded.rejected.count) rejected)" }
        return "ready: \(self.loaded.effective.count) licence(s), \(self.ledger.leases.count) lease(s)"
    }

    /// Sets the gauges of current state from the ledger (at scrape time).
    func refreshGauges() {
        let metrics = self.context.metrics
        let status = self.ledger.status(includeHolders: false, at: self.nowMs)
        for feature in status.features {
            let labels = [("feature", feature.feature)]
            metrics.gauge("licensed_seats_total", labels).record(feature.unlimited ? -1 : Int64(feature.capacity))
            metrics.gauge("licensed_seats_in_use", labels).record(Int64(feature.inUse))
            metrics.gauge("licensed_seats_overage", labels).record(Int64(feature.overage))
            metrics.gauge("licensed_seats_queued", labels).record(Int64(feature.queued))
        }
        for license in status.licenses where license.expiresAtMs != 0 {
            metrics.gauge("licensed_license_expiry_timestamp_seconds", [("license", license.licenseID)]).record(
                Double(license.expiresAtMs) / 1000
            )
        }
        for feature in status.features where !feature.unlimited && feature.capacity > 0 {
            metrics.gauge("licensed_seats_utilisation_ratio", [("feature", feature.feature)]).record(
                Double(feature.inUse) / Double(feature.capacity)
            )
        }
        metrics.gauge("licensed_sessions").record(Int64(status.sessions))
        metrics.gauge("licensed_leases").record(Int64(self.ledger.leases.count))
        metrics.gauge("licensed_licenses_loaded").record(Int64(self.loaded.effective.count))
        metrics.gauge("licensed_licenses_rejected").record(Int64(self.loaded.rejected.count))
        metrics.gauge("licensed_ready").record(self.isReady ? 1 : 0)
    }

    /// One line for systemd's STATUS=.
    var statusLine: String {
        let inUse = self.ledger.seatsInUseTotal
        return "\(inUse) seat(s) in use, \(self.ledger.leases.count) lease(s), \(self.ledger.sessionCount) session(s)"
    }

    // MARK: - Durability

    /// Holds `reply` for `handler` until everything appended so far is on disk.
    func replyWhenDurable(_ reply: Licensed_V1_ServerMessage, to handler: SessionHandler) -> Bool {
        let sequence = self.lastAppended
        guard sequence > self.durableSequence else { return false }
        self.waiting.append((sequence, handler, reply))
        return true
    }

    /// The writer reports `sequence` durable: release the replies waiting for it, one flush per connection.
    func durable(upTo sequence: UInt64) {
        self.durableSequence = max(self.durableSequence, sequence)
        var touched: [ObjectIdentifier: SessionHandler] = [:]
        while let first = self.waiting.first, first.sequence <= self.durableSequence {
            self.waiting.removeFirst()
            first.handler.writeDeferred(first.reply)
            touched[ObjectIdentifier(first.handler)] = first.handler
        }
        for handler in touched.values { handler.flushDeferred() }
    }

    /// The log can no longer make changes durable: every reply still waiting is answered
    /// UNAVAILABLE instead (its change may or may not have reached the disk; a retry with the
    /// same checkout_key finds out), and nothing more is served.
    func logFailed(_ message: String) {
        guard self.failure == nil else { return }
        self.failure = message
        self.logger.critical("the commit log failed; nothing more is acknowledged: \(message)")
        var touched: [ObjectIdentifier: SessionHandler] = [:]
        while let held = self.waiting.popFirst() {
            var reply = Licensed_V1_ServerMessage()
            reply.requestID = held.reply.requestID
            reply.error = self.unavailable.protocolError
            held.handler.writeDeferred(reply)
            touched[ObjectIdentifier(held.handler)] = held.handler
        }
        for handler in touched.values { handler.flushDeferred() }
        self.stopReaper()
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

    private func snapshotIfDue() {
        guard !self.snapshotRunning else { return }
        let since = self.log.sinceSnapshot
        if since.records >= self.context.configuration.snapshotEveryRecords || since.bytes >= self.context.configuration.snapshotEveryBytes
        {
            self.takeSnapshot(reason: "log passed \(since.records) records / \(since.bytes) bytes")
        }
    }

    /// Wall-clock now, for the ledger. Every reading is checked against the monotonic clock, so
    /// that a step of the wall clock is noticed before any deadline is compared with it.
    var nowMs: Int64 {
        let wall = self.context.clock.nowMs()
        if let step = self.clockSteps.observe(wallMs: wall, monotonicMs: self.context.clock.monotonicMs()) {
            self.clockStepped(byMs: step)
        }
        return wall
    }

    /// The wall clock jumped by `step` ms while the monotonic clock did not (NTP's first sync, an
    /// operator, a resumed machine): every deadline moves with it and keeps the time it had left,
    /// so no lease is reclaimed early or held late. Logged once per step, counted and audited.
    private func clockStepped(byMs step: Int64) {
        self.ledger.shiftDeadlines(byMs: step)
        let hours = String(format: "%.1f", Double(abs(step)) / 3_600_000)
        self.count("licensed_clock_steps_total", [("direction", step > 0 ? "forward" : "backward")])
        self.logger.warning(
            "wall clock stepped \(step > 0 ? "forward" : "back") by \(hours) hours (\(step) ms; the monotonic clock did not move): every lease, heartbeat and queue deadline keeps the time it had left",
            metadata: ["step_ms": "\(step)"]
        )
        self.audit("clock_step", actor: "server", details: [("step_ms", .int(step))])
    }

    // MARK: - Reaper

    func startReaper() {
        let interval = TimeAmount.milliseconds(Int64(self.context.configuration.reaperIntervalMs))
        let host = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.reaper = self.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            host.value.reap()
        }
    }

    func stopReaper() {
        self.reaper?.cancel()
        self.reaper = nil
    }

    /// Reclaims leases whose TTL lapsed, logs each and tells its session if it is connected.
    func reap() {
        self.reapTicks += 1
        if self.reapTicks % 60 == 1 { self.reapActivations() }  // idle for days: once a minute is plenty
        defer {
            self.serveQueues()
            self.snapshotIfDue()
        }
        let reclaimed = self.ledger.reap(at: self.nowMs)
        self.commit(reclaimed.map(\.change), actor: "server", leases: reclaimed.map(\.lease))
        for (lease, _) in reclaimed {
            self.count("licensed_leases_reclaimed_total", [("feature", lease.feature), ("cause", "expired")])
            self.logger.info(
                "lease reclaimed",
                metadata: [
                    "lease": "\(lease.id)", "feature": "\(lease.feature)", "license": "\(lease.licenseID)", "cause": "expired",
                    "user": "\(lease.identity.user)", "host": "\(lease.identity.host)",
                ]
            )
            var event = Licensed_V1_Event()
            event.kind = .leaseReclaimed
            event.leaseID = .init(lease.id.bytes)
            event.feature = lease.feature
            event.message = "lease of '\(lease.feature)' reclaimed: no heartbeat within \(lease.ttlMs) ms"
            self.connections[lease.sessionID]?.push(event)
        }
    }

    // MARK: - Sessions

    func open(_ identity: ClientIdentity, connection: SessionHandler) -> SessionID {
        let id = SessionID(bytes: SecureRandom.bytes(16))!
        self.ledger.openSession(id, identity: identity)
        self.connections[id] = connection
        return id
    }

    /// Attaches `connection` to an existing session; a connection still attached to it is told
    /// and closed (the client has moved on).
    func resume(_ id: SessionID, connection: SessionHandler) -> ClientIdentity? {
        guard let identity = self.ledger.resumeSession(id) else { return nil }
        if let previous = self.connections[id], previous !== connection {
            previous.supersede()
        }
        self.connections[id] = connection
        return identity
    }

    /// The connection a session's events go to.
    func connectionForEvents(_ id: SessionID) -> SessionHandler? { self.connections[id] }

    func detach(_ id: SessionID, connection: SessionHandler) {
        guard self.connections[id] === connection else { return }
        self.connections[id] = nil
        self.subscribers.remove(id)
        for waiterID in self.ledger.detachSession(id) { self.waiters[waiterID] = nil }
    }

    // MARK: - Requests

    /// What became of a check-out: answered now, or waiting in the feature's queue.
    enum CheckOutOutcome {
        case answer(Result<Licensed_V1_CheckOutResponse, LicenseError>)
        case queued
    }

    func checkOut(_ request: Licensed_V1_CheckOutRequest, session: SessionID, requestID: UInt64, handler: SessionHandler) -> CheckOutOutcome
    {
        guard !request.feature.isEmpty else { return .answer(.failure(LicenseError(.invalidArgument, "CheckOut needs a feature name"))) }
        guard request.checkoutKey.count <= 64 else {
            return .answer(.failure(LicenseError(.invalidArgument, "checkout_key is longer than 64 bytes")))
        }
        guard request.count <= 1_000_000 else {
            return .answer(.failure(LicenseError(.invalidArgument, "count \(request.count) is not a seat count")))
        }
        let held = self.ledger.leaseCount(ofSession: session)
        if held >= self.context.configuration.maxLeasesPerSession {
            return .answer(.failure(LicenseError(.resourceExhausted, "this session holds its maximum of \(held) leases")))
        }
        guard request.borrowMs <= UInt64(Int64.max / 2) else {
            return .answer(.failure(LicenseError(.invalidArgument, "borrow_ms \(request.borrowMs) is not a duration")))
        }
        let command = SeatLedger.CheckOut(
            sessionID: session,
            feature: request.feature,
            version: request.version,
            count: request.count,
            checkoutKey: [UInt8](request.checkoutKey),
            newLeaseID: LeaseID(bytes: SecureRandom.bytes(16))!,
            borrowMs: Int64(request.borrowMs),
            buildDateMs: request.buildDateMs
        )
        let now = self.nowMs
        switch self.ledger.checkOut(command, at: now) {
        case .failure(let error) where error.code == .noSeats && request.waitMs > 0:
            self.nextWaiterID += 1
            let waiterID = self.nextWaiterID
            if let refused = self.ledger.enqueue(command, waiterID: waiterID, waitMs: Int64(request.waitMs), at: now) {
                return .answer(.failure(self.denied(refused, command)))
            }
            self.waiters[waiterID] = (handler, requestID)
            self.logger.info("check-out queued", metadata: ["feature": "\(request.feature)", "wait_ms": "\(request.waitMs)"])
            self.scheduleQueueDeadline()
            return .queued
        case .failure(let error):
            return .answer(.failure(self.denied(error, command)))
        case .success(let grant):
            return .answer(.success(self.granted(grant, at: now)))
        }
    }

    private func denied(_ error: LicenseError, _ command: SeatLedger.CheckOut) -> LicenseError {
        let feature = command.feature
        self.auditDenial(error, feature: feature, count: command.count, session: command.sessionID)
        self.count("licensed_denials_total", [("feature", feature), ("reason", error.code.name)])
        self.logger.info("check-out denied", metadata: ["feature": "\(feature)", "code": "\(error.code)", "reason": "\(error.message)"])
        return error
    }

    /// Logs a grant, appends its changes to the log, and builds the reply (with a signed token for a borrow).
    private func granted(_ grant: SeatLedger.Grant, at now: Int64, waitedMs: Int64? = nil) -> Licensed_V1_CheckOutResponse {
        let lease = grant.lease
        self.commit(grant.changes, actor: Self.actor(lease.identity), waitedMs: waitedMs)
        if !grant.replayed {
            self.count("licensed_checkouts_total", [("feature", lease.feature)])
            self.logger.info(
                "check-out granted",
                metadata: [
                    "lease": "\(lease.id)", "feature": "\(lease.feature)", "license": "\(lease.licenseID)", "count": "\(lease.count)",
                    "overage": "\(lease.overage)", "borrowed": "\(lease.borrowed)", "user": "\(lease.identity.user)",
                    "host": "\(lease.identity.host)",
                ]
            )
        }
        var response = Licensed_V1_CheckOutResponse()
        response.leaseID = .init(lease.id.bytes)
        response.licenseID = lease.licenseID
        response.feature = lease.feature
        response.count = lease.count
        response.expiresAtMs = lease.expiresAtMs
        response.overage = lease.overage
        response.warnings = grant.warnings
        response.fencingToken = lease.fencingToken
        response.replayed = grant.replayed
        if lease.borrowed {
            var claims = Licensed_V1_BorrowClaims()
            claims.leaseID = .init(lease.id.bytes)
            claims.licenseID = lease.licenseID
            claims.feature = lease.feature
            claims.count = lease.count
            claims.user = lease.identity.user
            claims.host = lease.identity.host
            claims.issuedAtMs = lease.grantedAtMs
            claims.expiresAtMs = lease.expiresAtMs
            if let claimBytes: [UInt8] = try? claims.serializedBytes(),
                let signature = try? self.context.serverKey.signature(for: claimBytes, in: .borrow)
            {
                var token = Licensed_V1_BorrowToken()
                token.claims = .init(claimBytes)
                token.signature = .init(signature)
                response.borrowToken = (try? token.serializedBytes() as [UInt8]).map { Data($0) } ?? Data()
            }
        }
        return response
    }

    // MARK: - Activations

    func activate(_ request: Licensed_V1_ActivateRequest, session: SessionID) -> Result<Licensed_V1_ActivateResponse, LicenseError> {
        guard let identity = self.ledger.identity(ofSession: session) else {
            return .failure(LicenseError(.invalidArgument, "unknown session"))
        }
        guard request.fingerprint.count <= 64, request.fingerprint.allSatisfy({ $0.count <= 128 }) else {
            return .failure(LicenseError(.invalidArgument, "a fingerprint has at most 64 components of at most 128 characters"))
        }
        var who = identity
        if !request.user.isEmpty { who.user = request.user }
        var licenseID = request.licenseID
        if licenseID.isEmpty && request.feature.isEmpty {
            let configuration = self.context.configuration
            guard
                let part = self.ledger.partForNewActivation(defaultPart: configuration.defaultPart, overagePart: configuration.overagePart)
            else {
                return .failure(LicenseError(.invalidArgument, "Activate needs a license_id or a feature (no default part is configured)"))
            }
            licenseID = part
        }
        let command = SeatLedger.Activate(
            licenseID: licenseID,
            feature: request.feature,
            fingerprint: request.fingerprint,
            machineName: request.machineName.isEmpty ? identity.host : request.machineName,
            identity: who,
            newActivationID: "act-" + SecureRandom.bytes(12).hexString
        )
        switch self.ledger.activate(command, at: self.nowMs) {
        case .failure(let error):
            self.audit(
                "deny_activation",
                actor: Self.actor(identity),
                subject: request.licenseID.isEmpty ? "feature:\(request.feature)" : "license:\(request.licenseID)",
                details: [
                    ("license", .string(request.licenseID)), ("feature", .string(request.feature)), ("code", .string(error.code.name)),
                    ("reason", .string(error.message)),
                ]
            )
            self.count("licensed_activation_denials_total", [("reason", error.code.name)])
            self.logger.info(
                "activation denied",
                metadata: ["license": "\(request.licenseID)", "feature": "\(request.feature)", "code": "\(error.code.name)"]
            )
            return .failure(error)
        case .success(let activated):
            self.commit(activated.changes, actor: Self.actor(identity))
            if !activated.existing {
                self.count("licensed_activations_total", [("license", activated.activation.licenseID)])
                self.logger.info(
                    "machine activated",
                    metadata: [
                        "activation": "\(activated.activation.id)", "license": "\(activated.activation.licenseID)",
                        "machine": "\(activated.activation.machineName)", "user": "\(activated.activation.user)",
                        "overage": "\(activated.activation.overage)",
                    ]
                )
            }
            var response = Licensed_V1_ActivateResponse()
            response.activationID = activated.activation.id
            response.certificate = self.certificate(activated)
            response.overage = activated.activation.overage
            response.existing = activated.existing
            return .success(response)
        }
    }

    func validateActivation(_ request: Licensed_V1_ValidateActivationRequest) -> Result<
        Licensed_V1_ValidateActivationResponse, LicenseError
    > {
        switch self.ledger.validateActivation(request.activationID, fingerprint: request.fingerprint, at: self.nowMs) {
        case .failure(let error):
            return .failure(error)
        case .success(let activated):
            self.commit(activated.changes, actor: activated.activation.user + "@" + activated.activation.machineName)
            var response = Licensed_V1_ValidateActivationResponse()
            response.certificate = self.certificate(activated)
            return .success(response)
        }
    }

    func deactivate(_ request: Licensed_V1_DeactivateRequest, session: SessionID, role: Role) -> Result<
        Licensed_V1_DeactivateResponse, LicenseError
    > {
        let user = self.ledger.identity(ofSession: session)?.user ?? ""
        switch self.ledger.deactivate(request.activationID, user: user, asAdmin: role.mayRevoke, at: self.nowMs) {
        case .failure(let error):
            return .failure(error)
        case .success(let changes):
            self.commit(changes, actor: self.actor(of: session))
            self.logger.info("machine deactivated", metadata: ["activation": "\(request.activationID)", "by": "\(user)"])
            var response = Licensed_V1_DeactivateResponse()
            response.activationID = request.activationID
            return .success(response)
        }
    }

    func assign(_ request: Licensed_V1_AssignRequest, session: SessionID, role: Role) -> Result<Licensed_V1_AssignResponse, LicenseError> {
        guard !request.part.isEmpty else { return .failure(LicenseError(.invalidArgument, "Assign needs a part")) }
        guard request.rows.count <= 100_000 else { return .failure(LicenseError(.resourceExhausted, "at most 100000 rows per run")) }
        let identity = self.ledger.identity(ofSession: session) ?? ClientIdentity(user: "", host: "")
        let rows = request.rows.map { (row: $0.row, device: SeatLedger.Device(deviceID: $0.deviceID, fingerprint: $0.fingerprint)) }
        let (run, changes) = self.ledger.bulk(
            part: request.part,
            revoke: request.revoke,
            rows: rows,
            by: identity,
            runID: "run-" + SecureRandom.bytes(8).hexString,
            newActivationID: { "act-" + SecureRandom.bytes(12).hexString },
            at: self.nowMs
        )
        self.commit(changes, actor: Self.actor(identity), details: [("role", .string(role.rawValue)), ("run", .string(run.runID))])
        let applied = run.results.filter(\.applied).count
        self.logger.info(
            request.revoke ? "bulk revoke" : "bulk assignment",
            metadata: [
                "run": "\(run.runID)", "part": "\(run.part)", "applied": "\(applied)", "failed": "\(run.results.count - applied)",
                "actor": "\(run.actor)",
            ]
        )
        var response = Licensed_V1_AssignResponse()
        response.run = run
        return .success(response)
    }

    func activations() -> Result<Licensed_V1_ActivationsResponse, LicenseError> {
        var response = Licensed_V1_ActivationsResponse()
        let now = self.nowMs
        response.activations = self.ledger.allActivations.map { activation in
            var info = Licensed_V1_ActivationInfo()
            info.activationID = activation.id
            info.licenseID = activation.licenseID
            info.partName = self.ledger.partName(activation.licenseID)
            info.features = activation.features
            info.machineName = activation.machineName
            info.user = activation.user
            info.activatedAtMs = activation.activatedAtMs
            info.lastSeenMs = activation.lastSeenMs
            info.status = self.ledger.status(of: activation, at: now)
            return info
        }
        return .success(response)
    }

    func history(_ request: Licensed_V1_HistoryRequest) -> Result<Licensed_V1_HistoryResponse, LicenseError> {
        var response = Licensed_V1_HistoryResponse()
        response.runs = self.ledger.assignmentRuns.filter { request.month.isEmpty || Timestamp.iso8601($0.atMs).hasPrefix(request.month) }
        return .success(response)
    }

    // MARK: - Limits

    /// Admits a new connection from `address`, or says which limit it would pass.
    func admitConnection(from address: String) -> LicenseError? {
        let limits = self.context.configuration
        if self.openConnections >= limits.maxConnections {
            return LicenseError(.resourceExhausted, "the server has its maximum of \(limits.maxConnections) connections; try again later")
        }
        if self.connectionsByAddress[address, default: 0] >= limits.maxConnectionsPerAddress {
            return LicenseError(.resourceExhausted, "\(address) has its maximum of \(limits.maxConnectionsPerAddress) connections")
        }
        self.openConnections += 1
        self.connectionsByAddress[address, default: 0] += 1
        return nil
    }

    func releaseConnection(from address: String) {
        self.openConnections -= 1
        self.connectionsByAddress[address, default: 1] -= 1
        if self.connectionsByAddress[address] == 0 { self.connectionsByAddress[address] = nil }
    }

    // MARK: - Administration

    func leases(_ request: Licensed_V1_LeasesRequest) -> Result<Licensed_V1_LeasesResponse, LicenseError> {
        var response = Licensed_V1_LeasesResponse()
        response.leases = self.ledger.leases.values
            .filter { lease in
                (request.feature.isEmpty || lease.feature == request.feature)
                    && (request.user.isEmpty || lease.identity.user == request.user)
                    && (request.host.isEmpty || lease.identity.host == request.host)
            }
            .sorted { ($0.feature, $0.grantedAtMs, $0.id) < ($1.feature, $1.grantedAtMs, $1.id) }
            .map { lease in
                var info = Licensed_V1_LeaseInfo()
                info.feature = lease.feature
                info.holder = self.ledger.holder(of: lease)
                return info
            }
        return .success(response)
    }

    /// Takes back a lease, an activation, or everything of a user or host; holders are told.
    func revoke(_ request: Licensed_V1_RevokeRequest, session: SessionID, role: Role) -> Result<Licensed_V1_RevokeResponse, LicenseError> {
        var leaseIDs: [LeaseID] = []
        var activationIDs: [String] = []
        switch request.target {
        case .leaseID(let bytes):
            guard let id = LeaseID(bytes: bytes) else { return .failure(LicenseError(.invalidArgument, "lease_id must be 16 bytes")) }
            leaseIDs = [id]
        case .activationID(let id):
            activationIDs = [id]
        case .user(let user):
            leaseIDs = self.ledger.leases.values.filter { $0.identity.user == user && !$0.lingering }.map(\.id)
            activationIDs = self.ledger.allActivations.filter { $0.user == user }.map(\.id)
        case .host(let host):
            leaseIDs = self.ledger.leases.values.filter { $0.identity.host == host && !$0.lingering }.map(\.id)
            activationIDs = self.ledger.allActivations.filter { $0.machineName == host }.map(\.id)
        case .none:
            return .failure(LicenseError(.invalidArgument, "Revoke needs a lease_id, activation_id, user or host"))
        }
        var response = Licensed_V1_RevokeResponse()
        for id in leaseIDs {
            var checkIn = Licensed_V1_CheckInRequest()
            checkIn.leaseID = .init(id.bytes)
            if case .success = self.checkIn(checkIn, session: session, role: role) { response.leases += 1 }
        }
        for id in activationIDs {
            if case .success(let changes) = self.ledger.deactivate(id, user: "", asAdmin: true, at: self.nowMs) {
                self.commit(changes, actor: self.actor(of: session), details: [("role", .string(role.rawValue))])
                response.activations += 1
            }
        }
        if leaseIDs.count == 1 && activationIDs.isEmpty && response.leases == 0 {
            return .failure(LicenseError(.notFound, "no such lease"))
        }
        if activationIDs.count == 1 && leaseIDs.isEmpty && response.activations == 0 {
            return .failure(LicenseError(.notFound, "no such activation"))
        }
        self.logger.notice(
            "revoked",
            metadata: [
                "leases": "\(response.leases)", "activations": "\(response.activations)",
                "target": "\(request.target.map { "\($0)" } ?? "")",
            ]
        )
        return .success(response)
    }

    /// The signed certificate a machine keeps for offline use.
    private func certificate(_ activated: SeatLedger.Activated) -> Licensed_V1_ActivationCertificate {
        var claims = Licensed_V1_ActivationClaims()
        claims.activationID = activated.activation.id
        claims.licenseID = activated.activation.licenseID
        claims.features = activated.activation.features
        claims.fingerprint = activated.activation.fingerprint
        claims.issuedAtMs = self.nowMs
        claims.validUntilMs = self.nowMs + Int64(self.context.configuration.activationValidityDays) * 86_400_000
        claims.fingerprintMatch = Int32(activated.rule.rawValue)
        var certificate = Licensed_V1_ActivationCertificate()
        if let bytes: [UInt8] = try? claims.serializedBytes(),
            let signature = try? self.context.serverKey.signature(for: bytes, in: .activation)
        {
            certificate.claims = .init(bytes)
            certificate.signature = .init(signature)
        }
        return certificate
    }

    /// Reclaims activations idle past the configured threshold.
    func reapActivations() {
        let threshold = Int64(self.context.configuration.activationInactivityDays) * 86_400_000
        let reclaimed = self.ledger.reapInactiveActivations(inactivityMs: threshold, at: self.nowMs)
        self.commit(reclaimed.map(\.change), actor: "server")
        for (activation, _) in reclaimed {
            self.count("licensed_activations_reclaimed_total", [("license", activation.licenseID)])
            self.logger.info(
                "activation reclaimed",
                metadata: [
                    "activation": "\(activation.id)", "license": "\(activation.licenseID)", "machine": "\(activation.machineName)",
                    "cause": "inactive",
                ]
            )
        }
    }

    // MARK: - The wait queues

    /// Grants what waiting check-outs can now have (after any seat came free) and answers them.
    func serveQueues() {
        let now = self.nowMs
        for (waiter, result) in self.ledger.serveQueues(at: now) {
            guard let (handler, requestID) = self.waiters.removeValue(forKey: waiter.id) else { continue }
            var reply = Licensed_V1_ServerMessage()
            reply.requestID = requestID
            switch result {
            case .success(let grant):
                reply.checkOut = self.granted(grant, at: now, waitedMs: now - waiter.sinceMs)
                if handler.isConnected, self.replyWhenDurable(reply, to: handler) { continue }
            case .failure(let error):
                reply.error = self.denied(error, waiter.request).protocolError
            }
            handler.writeDeferred(reply)
            handler.flushDeferred()
        }
    }

    /// Answers DEADLINE_EXCEEDED to waiters whose wait ran out, and arms the next deadline.
    func expireWaiters() {
        self.queueTimer = nil
        for waiter in self.ledger.expireWaiters(at: self.nowMs) {
            guard let (handler, requestID) = self.waiters.removeValue(forKey: waiter.id) else { continue }
            var reply = Licensed_V1_ServerMessage()
            reply.requestID = requestID
            reply.error =
                self.denied(
                    LicenseError(
                        .deadlineExceeded,
                        "no seat of '\(waiter.request.feature)' came free within \(waiter.deadlineMs - waiter.sinceMs) ms"
                    ),
                    waiter.request
                ).protocolError
            handler.writeDeferred(reply)
            handler.flushDeferred()
        }
        self.scheduleQueueDeadline()
    }

    private func scheduleQueueDeadline() {
        guard let next = self.ledger.nextQueueDeadline else {
            self.queueTimer?.cancel()
            self.queueTimer = nil
            return
        }
        if let armed = self.queueTimerDeadline, armed <= next, self.queueTimer != nil { return }
        self.queueTimer?.cancel()
        let host = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.queueTimerDeadline = next
        self.queueTimer = self.eventLoop.scheduleTask(in: .milliseconds(max(0, next - self.nowMs) + 1)) { host.value.expireWaiters() }
    }

    /// Waiting check-outs, for the admin queue listing.
    func queue(_ request: Licensed_V1_QueueRequest) -> Result<Licensed_V1_QueueResponse, LicenseError> {
        var response = Licensed_V1_QueueResponse()
        for waiter in self.ledger.waiters(feature: request.feature) {
            var queued = Licensed_V1_QueuedRequest()
            queued.feature = waiter.request.feature
            let identity = self.ledger.identity(of: waiter)
            queued.user = identity?.user ?? ""
            queued.host = identity?.host ?? ""
            queued.count = max(waiter.request.count, 1)
            queued.sinceMs = waiter.sinceMs
            queued.deadlineMs = waiter.deadlineMs
            response.queued.append(queued)
        }
        return .success(response)
    }

    func checkIn(_ request: Licensed_V1_CheckInRequest, session: SessionID, role: Role) -> Result<Licensed_V1_CheckInResponse, LicenseError>
    {
        guard let id = LeaseID(bytes: request.leaseID) else {
            return .failure(LicenseError(.invalidArgument, "lease_id must be 16 bytes, not \(request.leaseID.count)"))
        }
        switch self.ledger.checkIn(id, by: session, asAdmin: role.mayRevoke, at: self.nowMs) {
        case .failure(let error):
            return .failure(error)
        case .success(let checkIn):
            var details: [(String, AuditEvent.Value)] = []
            if checkIn.lease.sessionID != session { details.append(("role", .string(role.rawValue))) }
            self.commit(
                checkIn.changes,
                actor: self.actor(of: session),
                leases: [checkIn.lease] + checkIn.releasedAddOns,
                details: details
            )
            self.count("licensed_checkins_total", [("feature", checkIn.lease.feature)])
            let lease = checkIn.lease
            self.logger.info(
                "checked in",
                metadata: [
                    "lease": "\(lease.id)", "feature": "\(lease.feature)", "license": "\(lease.licenseID)",
                    "user": "\(lease.identity.user)",
                ]
            )
            if lease.sessionID != session {
                var event = Licensed_V1_Event()
                event.kind = .leaseRevoked
                event.leaseID = .init(lease.id.bytes)
                event.feature = lease.feature
                event.message = "an administrator checked in your lease of '\(lease.feature)'"
                self.connections[lease.sessionID]?.push(event)
            }
            var response = Licensed_V1_CheckInResponse()
            response.leaseID = request.leaseID
            response.releasedAddons = checkIn.releasedAddOns.map { .init($0.id.bytes) }
            // A seat may have come free: the queue's head gets it at once.
            self.serveQueues()
            return .success(response)
        }
    }

    func heartbeat(_ request: Licensed_V1_HeartbeatRequest, session: SessionID) -> Result<Licensed_V1_HeartbeatResponse, LicenseError> {
        var ids: [LeaseID] = []
        ids.reserveCapacity(request.leaseIds.count)
        for bytes in request.leaseIds {
            guard let id = LeaseID(bytes: bytes) else {
                return .failure(LicenseError(.invalidArgument, "every lease id must be 16 bytes"))
            }
            ids.append(id)
        }
        let outcome = self.ledger.heartbeat(session: session, leaseIDs: ids, at: self.nowMs)
        var response = Licensed_V1_HeartbeatResponse()
        response.renewed = UInt32(outcome.renewed)
        response.expiresAtMs = outcome.expiresAtMs
        response.lostLeaseIds = outcome.lost.map { .init($0.bytes) }
        return .success(response)
    }

    func status(_ request: Licensed_V1_StatusRequest, role: Role) -> Result<Licensed_V1_StatusResponse, LicenseError> {
        if request.includeHolders, !role.seesHolders {
            return .failure(LicenseError(.permissionDenied, "seeing holders needs an auditor, operator or admin token"))
        }
        var response = self.ledger.status(features: request.features, includeHolders: request.includeHolders, at: self.nowMs)
        response.rejected = self.loaded.rejected.map(\.protocolForm)
        response.serverPublicKey = .init(self.context.serverPublicKey)
        response.serverVersion = ServerContext.serverVersion
        if role.seesHolders, let head = self.log.auditHead {
            response.auditSequence = head.sequence
            response.auditHash = head.hash
        }
        return .success(response)
    }

    /// Tells every connected session the server is going away.
    /// Serves `result`'s licences from now on (SIGHUP, `licensectl reload`). Leases stay; a
    /// licence that shrank is AT_RISK in status; a removed feature stops granting.
    func replaceLicenses(_ result: LicenseLoadResult, actor: String) -> Licensed_V1_ReloadResponse {
        self.loaded = result
        self.audit(
            "reload",
            actor: actor,
            details: [
                ("loaded", .strings(result.effective.map(\.license.id).sorted())), ("rejected", .int(Int64(result.rejected.count))),
                ("leases", .int(Int64(self.ledger.leases.count))),
            ]
        )
        self.auditLicenses(result, actor: actor)
        self.ledger.replaceLicenses(result.effective)
        defer {
            self.serveQueues()
            // Capacities changed: levels may have too.
            self.checkThresholds(Set(self.ledger.status(includeHolders: false, at: self.nowMs).features.map(\.feature)))
        }
        for rejected in result.rejected { self.logger.error("\(rejected)") }
        self.logger.info(
            "licences reloaded",
            metadata: [
                "loaded": "\(result.effective.count)", "rejected": "\(result.rejected.count)", "leases": "\(self.ledger.leases.count)",
            ]
        )
        var event = Licensed_V1_Event()
        event.kind = .licensesReloaded
        event.message = "the licence server reloaded its licences"
        for connection in self.connections.values { connection.push(event) }
        var response = Licensed_V1_ReloadResponse()
        response.loaded = UInt32(result.effective.count)
        response.rejected = result.rejected.map(\.protocolForm)
        return response
    }

    func broadcastShutdown() {
        var event = Licensed_V1_Event()
        event.kind = .serverShuttingDown
        event.message = "the licence server is shutting down; reconnect with resume_session_id"
        for connection in self.connections.values { connection.push(event, thenClose: true) }
    }
}

extension LedgerHost {
    /// The ledger, for inspection and administration on the loop.
    var ledgerForInspection: SeatLedger {
        get { self.ledger }
        set { self.ledger = newValue }
    }
}

extension LedgerHost {
    /// Runs an administrative request whose work must not block the loop, and answers it later.
    func administer(_ body: Licensed_V1_ClientMessage.OneOf_Body, requestID: UInt64, actor: String, replyTo handler: SessionHandler) {
        let loop = self.eventLoop
        let target = NIOLoopBound(handler, eventLoop: loop)
        let host = NIOLoopBound(self, eventLoop: loop)
        let answer: @Sendable (Result<Licensed_V1_ServerMessage.OneOf_Body, LicenseError>) -> Void = { result in
            loop.execute {
                var reply = Licensed_V1_ServerMessage()
                reply.requestID = requestID
                switch result {
                case .success(let body): reply.body = body
                case .failure(let error): reply.error = error.protocolError
                }
                target.value.writeDeferred(reply)
                target.value.flushDeferred()
            }
        }
        switch body {
        case .reload:
            guard let reloader = self.context.reloader else {
                answer(.failure(LicenseError(.unimplemented, "this server was started without a way to reread its licences")))
                return
            }
            Task {
                do {
                    let result = try await reloader()
                    loop.execute { answer(.success(.reload(host.value.replaceLicenses(result, actor: actor)))) }
                } catch {
                    answer(.failure(LicenseError(.invalidArgument, "reload failed, the previous licences stay in force: \(error)")))
                }
            }
        case .snapshot:
            self.audit("snapshot", actor: actor)
            self.takeSnapshot(reason: "requested by an administrator") { result in
                switch result {
                case .success(let snapshot):
                    var response = Licensed_V1_SnapshotResponse()
                    response.sequence = snapshot.sequence
                    response.sizeBytes = UInt64(snapshot.sizeBytes)
                    response.durationMs = UInt32(snapshot.durationMs)
                    answer(.success(.snapshot(response)))
                case .failure(let error):
                    answer(.failure(LicenseError(.unavailable, "snapshot failed: \(error)")))
                }
            }
        default:
            answer(.failure(LicenseError(.unimplemented, "not an administrative request")))
        }
    }
}
