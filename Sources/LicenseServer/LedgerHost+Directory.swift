import Dispatch
import Foundation
import LicenseAudit
import LicenseCore
import LicenseDirectory
import LicenseProtocol
import Logging
import NIOCore

/// The directory's tree as the serving loop holds it: the last good tree (groups, cost centres
/// and locations of the users it names), the last attempt and its error, and the leavers being
/// reclaimed from.
struct DirectoryState {
    var tree: DirectoryTree?
    var lastAttemptMs: Int64 = 0
    var lastError: String?
    /// Users that left (disabled, or gone from the directory), since when and why; they are
    /// refused check-outs and activations, and their activations go after the grace period.
    var leavers: [String: (sinceMs: Int64, reason: String)] = [:]
}

/// The organisation from the directory: identities carry its units, groups, cost centres and
/// locations; a sync swaps a new tree in at once on the loop and reclaims from leavers, with the
/// directory as the audit trail's actor.
extension LedgerHost {
    static let directoryActor = "directory"

    /// The groups (configuration's and directory's), cost centre and location of `user` on `host`.
    func directoryIdentity(_ identity: ClientIdentity) -> ClientIdentity {
        var identity = identity
        var groups = self.context.configuration.groups(user: identity.user, host: identity.host)
        if let user = self.directory.tree?.users[identity.user] {
            groups += user.groupPaths
            identity.costCentre = user.costCentre
            identity.location = user.location
        } else {
            identity.costCentre = ""
            identity.location = ""
        }
        identity.groups = Array(Set(groups)).sorted()
        return identity
    }

    /// Why `user` may take nothing now (a leaver), or nil.
    func directoryRefusal(user: String) -> LicenseError? {
        guard let leaver = self.directory.leavers[user] else { return nil }
        return LicenseError(.userNotAllowed, "user '\(user)' is \(leaver.reason) (since \(Timestamp.iso8601(leaver.sinceMs)))")
    }

    var directoryStatus: Licensed_V1_DirectoryStatus { self.directoryStatus(of: self.directory.tree) }

    /// The directory's status with `tree` as its tree.
    func directoryStatus(of tree: DirectoryTree?) -> Licensed_V1_DirectoryStatus {
        var status = Licensed_V1_DirectoryStatus()
        status.configured = self.context.configuration.directory.enabled
        if let tree {
            status.syncedAtMs = tree.syncedAtMs
            status.users = UInt32(tree.users.count)
            status.units = UInt32(tree.units.count)
            status.disabled = UInt32(tree.disabledCount)
            status.source = tree.source
            status.durationMs = tree.durationMs
        }
        status.lastAttemptMs = self.directory.lastAttemptMs
        status.lastError = self.directory.lastError ?? ""
        return status
    }

    /// Takes the outcome of a directory read: a failure keeps the last tree; a tree is swapped in
    /// (every session's identity refreshed) and leavers are reclaimed from — unless `dryRun`, which
    /// only reports what would be reclaimed and changes nothing.
    func applyDirectory(_ outcome: Result<DirectoryTree, DirectoryError>, dryRun: Bool) -> Result<
        Licensed_V1_DirectorySyncResponse, LicenseError
    > {
        let now = self.nowMs
        self.directory.lastAttemptMs = now
        let tree: DirectoryTree
        switch outcome {
        case .failure(let error):
            self.directory.lastError = error.message
            self.count("licensed_directory_syncs_total", [("result", "failed")])
            let kept =
                self.directory.tree.map { "the tree read \(Timestamp.iso8601($0.syncedAtMs)) keeps serving" } ?? "no tree was read yet"
            self.logger.error("directory sync failed: \(error.message); \(kept)")
            return .failure(LicenseError(.unavailable, "directory sync failed: \(error.message); \(kept)"))
        case .success(let read):
            tree = read
        }
        var response = Licensed_V1_DirectorySyncResponse()
        response.dryRun = dryRun || self.context.configuration.directoryDryRun
        // Who leaves now, who stays gone, who came back.
        var leavers = self.directory.leavers
        for (name, reason) in tree.leavers(since: self.directory.tree) where leavers[name] == nil { leavers[name] = (now, reason) }
        for name in Array(leavers.keys) {
            if let user = tree.users[name], !user.disabled { leavers[name] = nil }
        }
        let grace = Int64(self.context.configuration.directoryActivationGraceSeconds) * 1000
        // One pass over the leases and one over the activations for every leaver together (a
        // directory may hold thousands of disabled accounts; the ledger a million leases).
        var leasesOf: [String: [LeaseID]] = [:]
        var activationsOf: [String: [String]] = [:]
        if !leavers.isEmpty {
            for lease in self.ledger.leases.values where !lease.lingering && leavers[lease.identity.user] != nil {
                leasesOf[lease.identity.user, default: []].append(lease.id)
            }
            for activation in self.ledger.allActivations where leavers[activation.user] != nil {
                activationsOf[activation.user, default: []].append(activation.id)
            }
        }
        for name in leavers.keys.sorted() {
            let (since, reason) = leavers[name]!
            var reclaim = Licensed_V1_DirectoryReclaim()
            reclaim.user = name
            reclaim.reason = reason
            reclaim.leaseIds = (leasesOf[name] ?? []).sorted().map { .init($0.bytes) }
            let activations = activationsOf[name] ?? []
            if now >= since + grace {
                reclaim.activationIds = activations
            } else {
                reclaim.activationsInGrace = activations
                if !activations.isEmpty { reclaim.graceEndsMs = since + grace }
            }
            // Listed when something is taken, or when the user left since the last tree (not every
            // long-disabled account of a directory at the first sync).
            let left = self.directory.tree?.users[name].map { !$0.disabled } ?? false
            guard !reclaim.leaseIds.isEmpty || !activations.isEmpty || left else { continue }
            response.reclaimed.append(reclaim)
        }
        if response.dryRun {
            // Nothing changes: not the tree, not the leavers, not a lease.
            response.directory = self.directoryStatus(of: tree)
            response.directory.lastError = ""
            self.logger.notice(
                "directory dry run",
                metadata: ["users": "\(tree.users.count)", "would_reclaim": "\(response.reclaimed.map(\.user).joined(separator: ","))"]
            )
            self.directory.lastError = nil
            self.count("licensed_directory_syncs_total", [("result", "dry_run")])
            return .success(response)
        }
        self.directory.tree = tree
        self.directory.lastError = nil
        self.directory.leavers = leavers
        self.ledger.refreshIdentities { self.directoryIdentity($0) }
        // A standby of a cluster keeps the tree and its leavers; the active node reclaims.
        for reclaim in response.reclaimed where self.mayWrite {
            let details: [(String, AuditEvent.Value)] = [("user", .string(reclaim.user)), ("reason", .string(reclaim.reason))]
            if self.directory.leavers[reclaim.user]?.sinceMs == now {
                self.audit("directory_leaver", actor: Self.directoryActor, subject: "user:\(reclaim.user)", details: details)
            }
            for id in reclaim.leaseIds.compactMap({ LeaseID(bytes: $0) }) {
                _ = self.checkIn(
                    lease: id,
                    session: self.directorySession,
                    role: .admin,
                    reason: "user \(reclaim.user) is \(reclaim.reason)",
                    actor: Self.directoryActor,
                    teller: "the directory sync"
                )
            }
            for id in reclaim.activationIds {
                if case .success(let changes) = self.ledger.deactivate(id, user: "", asAdmin: true, at: now) {
                    self.commit(changes, actor: Self.directoryActor, details: details)
                }
            }
        }
        self.count("licensed_directory_syncs_total", [("result", "ok")])
        response.directory = self.directoryStatus
        self.logger.info(
            "directory synced",
            metadata: [
                "users": "\(tree.users.count)", "units": "\(tree.units.count)", "disabled": "\(tree.disabledCount)",
                "duration_ms": "\(tree.durationMs)", "source": "\(tree.source)", "leavers": "\(self.directory.leavers.count)",
            ]
        )
        return .success(response)
    }
}

extension LedgerHost {
    /// Reads the directory now and every `directory_sync_seconds` (when one is configured).
    func startDirectorySync() {
        guard self.context.configuration.directory.enabled else { return }
        let interval = TimeAmount.seconds(Int64(self.context.configuration.directorySyncSeconds))
        let host = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.directorySync = self.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { _ in
            host.value.syncDirectory(dryRun: false) { _ in }
        }
    }

    func stopDirectorySync() {
        self.directorySync?.cancel()
        self.directorySync = nil
    }

    /// Reads the directory on a thread of its own, then applies the outcome on the loop and
    /// passes the result to `done` (on the loop). One read at a time: a sync asked for while one
    /// runs is told so.
    func syncDirectory(dryRun: Bool, done: @escaping (Result<Licensed_V1_DirectorySyncResponse, LicenseError>) -> Void) {
        let settings = self.context.configuration.directory
        guard settings.enabled else {
            done(.failure(LicenseError(.notFound, "no directory is configured (directory_urls)")))
            return
        }
        guard !self.directoryReading else {
            done(.failure(LicenseError(.unavailable, "a directory sync is running; try again when it ends")))
            return
        }
        self.directoryReading = true
        let loop = self.eventLoop
        let host = NIOLoopBound(self, eventLoop: loop)
        let finish = NIOLoopBound(done, eventLoop: loop)
        DispatchQueue.global().async {
            let outcome = Result { () throws(DirectoryError) -> DirectoryTree in try DirectoryReader.read(settings) }
            loop.execute {
                host.value.directoryReading = false
                finish.value(host.value.applyDirectory(outcome, dryRun: dryRun))
            }
        }
    }

    /// `DirectorySync` from an operator: the reply follows the read.
    func directorySync(
        _ request: Licensed_V1_DirectorySyncRequest,
        requestID: UInt64,
        session: SessionID,
        role: Role,
        replyTo handler: SessionHandler
    ) {
        let target = NIOLoopBound(handler, eventLoop: self.eventLoop)
        self.syncDirectory(dryRun: request.dryRun) { result in
            let body = result.map { Licensed_V1_ServerMessage.OneOf_Body.directorySync($0) }
            self.auditAdministration(.directorySync(request), result: body, session: session, role: role)
            var reply = Licensed_V1_ServerMessage()
            reply.requestID = requestID
            switch result {
            case .success(let response): reply.directorySync = response
            case .failure(let error): reply.error = error.protocolError
            }
            // What the sync revoked is on disk before the operator hears it was done.
            if case .success = result, self.replyWhenDurable(reply, to: target.value) { return }
            target.value.writeDeferred(reply)
            target.value.flushDeferred()
        }
    }
}
