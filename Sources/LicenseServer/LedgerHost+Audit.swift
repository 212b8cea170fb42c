package import LicenseAudit
package import LicenseCore
import LicenseProtocol
import LicenseStore
import Logging
import NIOCore

/// The audit trail's side of the ledger: every change that goes to the write-ahead log goes with
/// its audit record (same batch, same fsync), and what changes nothing (denials, refused tokens,
/// administrators' reads) is recorded too.
extension LedgerHost {
    /// Who a session is, for the trail: `user@host`.
    func actor(of session: SessionID) -> String { ChangeActor.of(session, in: self).name }

    static func actor(_ identity: ClientIdentity) -> String { AuditLeaseRecord.holder(identity) }

    /// Who made a batch of changes, for their audit records.
    package enum ChangeActor {
        /// A session with this identity. The records of its own leases name their holder, whose
        /// `user@host` the audit writer writes from the lease: a check-out and its check-in build
        /// no actor string on the serving loop (about 1,600 instructions a pair).
        case session(ClientIdentity)
        /// Anyone else: `server`, `admin-socket`, a directory, an activation's device.
        case named(String)

        /// The actor of a session, by its id.
        static func of(_ session: SessionID, in host: LedgerHost) -> ChangeActor {
            host.inPlace { $0.identity(ofSession: session) }.map { .session($0) } ?? .named("session:\(session)")
        }

        var name: String {
            switch self {
            case .session(let identity): LedgerHost.actor(identity)
            case .named(let name): name
            }
        }

        /// The actor of `lease`'s record: nil when it is the lease's holder.
        func name(recordOf lease: Lease) -> String? {
            if case .session(let identity) = self, identity.isSameUserAndHost(as: lease.identity) {
                return nil
            }
            return self.name
        }
    }

    /// Logs `changes` and their audit records. `leases` are the leases the changes end (gone from
    /// the ledger by now), so that their records say what was held, by whom and for how long.
    /// `time` is when they were made (the clock is read when not given).
    func commit(
        _ changes: [LedgerChange],
        actor: String,
        leases: [Lease] = [],
        waitedMs: Int64? = nil,
        details: [(String, AuditEvent.Value)] = [],
        at time: Int64? = nil
    ) {
        self.commit(changes, by: .named(actor), leases: leases, waitedMs: waitedMs, details: details, at: time)
    }

    /// `commit` by `actor`.
    func commit(
        _ changes: [LedgerChange],
        by actor: ChangeActor,
        leases: [Lease] = [],
        waitedMs: Int64? = nil,
        details: [(String, AuditEvent.Value)] = [],
        at time: Int64? = nil
    ) {
        guard !changes.isEmpty else { return }
        let now = time ?? self.nowMs
        let ended = EndedLeases(leases)
        var events: [AuditEvent] = []
        events.reserveCapacity(changes.count)
        for change in changes {
            if let event = Self.auditEvent(for: change, actor: actor, leases: ended, waitedMs: waitedMs, details: details, at: now) {
                events.append(event)
            }
        }
        self.replies.lastAppended = self.log.append(changes, audit: events, wakeWriter: false)
        self.wakeWriterSoon()
        if !self.thresholds.thresholds.isEmpty {
            self.checkThresholds(self.featuresTouched(by: changes, leases: ended))
        }
    }

    /// Records something that changes no state.
    func audit(_ action: String, actor: String, subject: String = "", details: [(String, AuditEvent.Value)] = []) {
        self.log.audit(
            [AuditEvent(timeMs: self.nowMs, action: action, actor: actor, subject: subject, details: details)],
            wakeWriter: false
        )
        self.wakeWriterSoon()
    }

    /// Wakes the log's writer once the loop has handled what it is handling now (every request
    /// read in this pass): one wake-up per batch of requests, not one per change.
    func wakeWriterSoon() {
        guard self.eventLoop.inEventLoop else {
            // Built before the loop serves (start-up records): wake it now.
            self.log.wakeWriter()
            return
        }
        guard !self.writerWakeScheduled else { return }
        self.writerWakeScheduled = true
        let host = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.eventLoop.execute {
            host.value.writerWakeScheduled = false
            host.value.log.wakeWriter()
        }
    }

    /// A Hello whose token was refused: recorded, and counted against its address. Returns how
    /// long to hold the answer: 0 until the address passes `bad_token_limit` refusals within a
    /// minute, then `bad_token_delay_ms`, so guessing tokens costs time.
    func refusedToken(from address: String, details: [(String, AuditEvent.Value)]) -> Int64 {
        let now = self.nowMs
        self.audit("token_rejected", actor: address, details: [("address", .string(address))] + details)
        self.count("licensed_tokens_rejected_total", [])
        return self.tokenThrottle.refused(from: address, at: now)
    }

    /// One `license` record per licence in force, so that reports read capacities, policies and
    /// expiry dates from the trail itself (at start and at every reload).
    func auditLicenses(_ loaded: LicenseLoadResult, actor: String) {
        let now = self.nowMs
        let events = loaded.effective.map { verified -> AuditEvent in
            let license = verified.license
            let policy: String =
                switch license.overage {
                case .trueUp: "TRUE_UP"
                case .unlimited: "UNLIMITED"
                default: "HARD"
                }
            let model: String =
                switch license.model {
                case .nodeLocked: "NODE_LOCKED"
                case .site: "SITE"
                default: "FLOATING"
                }
            return AuditEvent(
                timeMs: now,
                action: "license",
                actor: actor,
                subject: "license:\(license.id)",
                details: [
                    ("license", .string(license.id)), ("product", .string(license.product)), ("licensee", .string(license.licensee)),
                    ("model", .string(model)), ("policy", .string(policy)),
                    ("features", .strings(license.features.map { "\($0.name)=\($0.count)" })),
                    ("max_activations", .int(Int64(license.maxActivations))), ("not_before_ms", .int(license.notBeforeMs)),
                    ("not_after_ms", .int(license.notAfterMs)), ("grace_ms", .int(license.gracePeriodMs)),
                    ("trial_days", .int(Int64(license.trialDays))), ("file", .string(verified.file)),
                ]
            )
        }
        self.log.audit(events, wakeWriter: true)
    }

    /// A refused check-out, with the reason.
    func auditDenial(_ error: LicenseError, feature: String, count: UInt32, session: SessionID) {
        let identity = self.inPlace { $0.identity(ofSession: session) }
        self.audit(
            "deny",
            actor: identity.map(Self.actor) ?? "session:\(session)",
            subject: "feature:\(feature)",
            details: [
                ("feature", .string(feature)), ("count", .int(Int64(max(count, 1)))), ("code", .string(error.code.name)),
                ("reason", .string(error.message)), ("user", .string(identity?.user ?? "")), ("host", .string(identity?.host ?? "")),
                ("groups", .strings(identity?.groups ?? [])),
            ]
        )
    }

    package static func leaseDetails(_ lease: Lease) -> [(String, AuditEvent.Value)] {
        AuditLeaseRecord.details(of: lease, id: lease.id.description)
    }

    package static func auditEvent(
        for change: LedgerChange,
        actor changeActor: ChangeActor,
        leases: EndedLeases,
        waitedMs: Int64?,
        details extra: [(String, AuditEvent.Value)],
        at now: Int64
    ) -> AuditEvent? {
        switch change {
        case .granted(let lease):
            // The hot path: the writer thread renders the record from the captured lease.
            return AuditEvent(
                timeMs: now,
                lease: AuditLeaseRecord(
                    lease: lease,
                    actor: changeActor.name(recordOf: lease),
                    kind: .grant(waitedMs: waitedMs),
                    extra: extra
                )
            )
        case .released(let id, let cause, let atMs):
            let record =
                if let lease = leases[id] {
                    AuditLeaseRecord(
                        lease: lease,
                        actor: changeActor.name(recordOf: lease),
                        kind: .release(cause: cause, atMs: atMs),
                        extra: extra
                    )
                } else {
                    AuditLeaseRecord(id: id, actor: changeActor.name, cause: cause, atMs: atMs, extra: extra)
                }
            return AuditEvent(timeMs: now, lease: record)
        case .rebound(let id, let session):
            return AuditEvent(
                timeMs: now,
                action: "rebind",
                actor: changeActor.name,
                subject: "lease:\(id)",
                details: [("lease", .string(id.description)), ("session", .string(session.description))]
            )
        case .lingered(let id, let untilMs):
            var details: [(String, AuditEvent.Value)] =
                leases[id].map(Self.leaseDetails) ?? [("lease", .string(id.description))]
            details.append(("until_ms", .int(untilMs)))
            return AuditEvent(timeMs: now, action: "linger", actor: changeActor.name, subject: "lease:\(id)", details: details)
        case .trialStarted(let licenseID, let atMs):
            return AuditEvent(
                timeMs: now,
                action: "trial_start",
                actor: changeActor.name,
                subject: "license:\(licenseID)",
                details: [("license", .string(licenseID)), ("started_ms", .int(atMs))]
            )
        case .activated(let activation):
            return AuditEvent(
                timeMs: now,
                action: "activate",
                actor: changeActor.name,
                subject: "activation:\(activation.id)",
                details: [
                    ("activation", .string(activation.id)), ("license", .string(activation.licenseID)),
                    ("features", .strings(activation.features)), ("machine", .string(activation.machineName)),
                    ("user", .string(activation.user)), ("overage", .bool(activation.overage)),
                ] + extra
            )
        case .activationSeen:
            return nil  // a daily liveness mark, not an event of interest
        case .deactivated(let id, let cause, _):
            let action: String
            switch cause {
            case .expired: action = "reclaim_activation"
            case .revoked: action = "revoke_activation"
            case .checkedIn, .baseReleased: action = "deactivate"
            }
            return AuditEvent(
                timeMs: now,
                action: action,
                actor: changeActor.name,
                subject: "activation:\(id)",
                details: [("activation", .string(id)), ("cause", .string(cause.rawValue))] + extra
            )
        case .clockMarked:
            return nil  // the start itself is audited ("start")
        case .assignmentRun(let run):
            return AuditEvent(
                timeMs: now,
                action: run.revoke ? "bulk_revoke" : "bulk_assign",
                actor: changeActor.name,
                subject: "run:\(run.runID)",
                details: [
                    ("run", .string(run.runID)), ("part", .string(run.part)), ("rows", .int(Int64(run.results.count))),
                    ("applied", .int(Int64(run.results.filter(\.applied).count))),
                ]
            )
        }
    }
}

/// The leases a batch of changes ends, found by id: by a look along a few (a check-in's lease and
/// its add-ons), through an index for many. A reaper's pass after an outage ends every lease at
/// once, and a look along all of them for each of its changes was quadratic: at a million
/// leases, hours with the serving loop stuck.
package struct EndedLeases {
    private let leases: [Lease]
    private let positions: [LeaseID: Int]?

    /// Leases looked along when there are at most this many.
    static let indexedAbove = 8

    package init(_ leases: [Lease]) {
        self.leases = leases
        if leases.count > Self.indexedAbove {
            var positions = [LeaseID: Int](minimumCapacity: leases.count)
            // The first of a repeated id, as a look along them finds.
            for (position, lease) in leases.enumerated() where positions[lease.id] == nil { positions[lease.id] = position }
            self.positions = positions
        } else {
            self.positions = nil
        }
    }

    /// The ended lease with `id`, if it is one of them.
    package subscript(id: LeaseID) -> Lease? {
        if let positions { return positions[id].map { self.leases[$0] } }
        for lease in self.leases where lease.id == id { return lease }
        return nil
    }
}
