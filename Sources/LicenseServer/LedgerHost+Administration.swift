import DequeModule
import Foundation
import LicenseAudit
import LicenseCore
import LicenseCrypto
import LicenseDirectory
import LicenseProtocol
import LicenseStore
import Logging
import Metrics
import NIOCore
import SwiftProtobuf

/// Administration: leases, revocation, status, licence reloads and the shutdown broadcast.
extension LedgerHost {
    func leases(_ request: Licensed_V1_LeasesRequest) -> Result<Licensed_V1_LeasesResponse, LicenseError> {
        func matches(_ lease: Lease) -> Bool {
            (request.feature.isEmpty || lease.feature == request.feature)
                && (request.user.isEmpty || lease.identity.user == request.user)
                && (request.host.isEmpty || lease.identity.host == request.host)
                && (request.contains.isEmpty || lease.identity.user.contains(request.contains)
                    || lease.identity.host.contains(request.contains))
        }
        func info(_ lease: Lease) -> Licensed_V1_LeaseInfo {
            var info = Licensed_V1_LeaseInfo()
            info.feature = lease.feature
            info.holder = self.ledger.holder(of: lease)
            return info
        }
        var response = Licensed_V1_LeasesResponse()
        guard request.limit > 0 else {
            response.leases = self.ledger.leases.values.filter(matches)
                .sorted { ($0.feature, $0.grantedAtMs, $0.id) < ($1.feature, $1.grantedAtMs, $1.id) }
                .map(info)
            return .success(response)
        }
        // One page in lease id order: one pass that keeps the `limit` smallest ids after the
        // cursor (a sorted array: limit is small), never a sort of every lease.
        let limit = Int(min(request.limit, 10_000))
        let after = request.afterLeaseID.isEmpty ? nil : LeaseID(bytes: request.afterLeaseID)
        guard request.afterLeaseID.isEmpty || after != nil else {
            return .failure(LicenseError(.invalidArgument, "after_lease_id must be 16 bytes"))
        }
        var page: [LeaseID] = []
        page.reserveCapacity(limit + 1)
        var matched: UInt64 = 0
        for shard in 0..<self.ledger.leases.shardCount {
            for lease in self.ledger.leases.leases(inShard: shard) where matches(lease) {
                matched += 1
                guard after.map({ lease.id > $0 }) ?? true else { continue }
                if page.count == limit + 1, lease.id >= page[limit] { continue }
                let index = page.firstIndex { $0 > lease.id } ?? page.endIndex
                page.insert(lease.id, at: index)
                if page.count > limit + 1 { page.removeLast() }
            }
        }
        response.more = page.count > limit
        response.matched = matched
        response.leases = page.prefix(limit).compactMap { self.ledger.leases[$0].map(info) }
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
            if case .success = self.checkIn(lease: id, session: session, role: role, reason: request.reason) { response.leases += 1 }
        }
        for id in activationIDs {
            if case .success(let changes) = self.ledger.deactivate(id, user: "", asAdmin: true, at: self.nowMs) {
                self.commit(
                    changes,
                    actor: self.actor(of: session),
                    details: [("role", .string(role.rawValue))] + (request.reason.isEmpty ? [] : [("reason", .string(request.reason))])
                )
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

    func status(_ request: Licensed_V1_StatusRequest, role: Role) -> Result<Licensed_V1_StatusResponse, LicenseError> {
        if request.includeHolders, !role.seesHolders {
            return .failure(LicenseError(.permissionDenied, "seeing holders needs an auditor, operator or admin token"))
        }
        var response = self.ledger.status(
            features: request.features,
            includeHolders: request.includeHolders,
            includeLicenses: request.includeLicenses,
            at: self.nowMs
        )
        response.rejected = self.loaded.rejected.map(\.protocolForm)
        response.serverPublicKey = .init(self.context.serverPublicKey)
        response.serverVersion = ServerContext.serverVersion
        response.serverTimeMs = self.nowMs
        response.clockReferenceMs = self.ledger.clockReferenceMs
        response.clockSetbackMs = self.ledger.clockSetbackMs(at: response.serverTimeMs)
        for index in response.features.indices {
            response.features[index].denialsLastHour = self.recentDenials.lastHour(
                response.features[index].feature,
                at: response.serverTimeMs
            )
        }
        if let snapshot = self.log.lastSnapshot {
            response.lastSnapshotMs = snapshot.takenAtMs
            response.lastSnapshotSequence = snapshot.sequence
        }
        if self.context.configuration.directory.enabled { response.directory = self.directoryStatus }
        if let cluster = self.cluster {
            response.clusterRole = cluster.isActive ? "active" : "standby"
            response.clusterNode = cluster.nodeID
        }
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
            self.checkThresholds(Array(Set(self.ledger.status(includeHolders: false, at: self.nowMs).features.map(\.feature))))
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
    /// The one reload path (SIGHUP and `licensectl reload` alike): tells systemd RELOADING=1,
    /// rereads the licence files off the loop, serves them from the loop, and tells systemd
    /// READY=1 whatever the outcome (a failed reload keeps the previous licences in force).
    func reload(actor: String, done: @escaping @Sendable (Result<Licensed_V1_ReloadResponse, LicenseError>) -> Void) {
        guard let reloader = self.context.reloader else {
            done(.failure(LicenseError(.unimplemented, "this server was started without a way to reread its licences")))
            return
        }
        let notifier = self.context.notifier
        notifier.notify("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())")
        let loop = self.eventLoop
        let host = NIOLoopBound(self, eventLoop: loop)
        Task {
            do {
                let result = try await reloader()
                loop.execute {
                    let response = host.value.replaceLicenses(result, actor: actor)
                    notifier.notify("READY=1\nSTATUS=\(host.value.statusLine)")
                    done(.success(response))
                }
            } catch {
                notifier.notify("READY=1")
                done(.failure(LicenseError(.invalidArgument, "reload failed, the previous licences stay in force: \(error)")))
            }
        }
    }

    /// Runs an administrative request whose work must not block the loop, and answers it later.
    func administer(_ body: Licensed_V1_ClientMessage.OneOf_Body, requestID: UInt64, actor: String, replyTo handler: SessionHandler) {
        let loop = self.eventLoop
        let target = NIOLoopBound(handler, eventLoop: loop)
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
            self.reload(actor: actor) { result in answer(result.map { .reload($0) }) }
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
