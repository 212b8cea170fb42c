import Foundation
import GRPCCore
package import GRPCNIOTransportHTTP2
import SwiftProtobuf
import Synchronization

/// A client of etcd's v3 gRPC API (KV, Watch, Lease, Maintenance), over one HTTP/2 channel to the
/// first endpoint that answers (gRPC's pick-first: when that member goes away the channel moves
/// to the next). Every unary call has a deadline; a call that cannot reach a member within it
/// fails with `EtcdError.unavailable`, and its outcome (for a write) is then unknown — the caller
/// resolves it by reading, never by guessing.
///
/// `run()` must be running (in a task of the caller's) for calls to make progress; `close()` ends
/// it. Only the messages and fields licensed uses are declared (Protos/etcd).
package final class EtcdClient: Sendable {
    package typealias Transport = HTTP2ClientTransport.Posix

    let grpc: GRPCClient<Transport>
    let kv: Etcdserverpb_KV.Client<Transport>
    let watchService: Etcdserverpb_Watch.Client<Transport>
    let lease: Etcdserverpb_Lease.Client<Transport>
    let maintenance: Etcdserverpb_Maintenance.Client<Transport>
    /// Deadline of each unary call.
    package let callTimeout: Duration

    /// A client of the members at `endpoints`.
    package init(_ configuration: EtcdConfiguration) throws(EtcdError) {
        let security: Transport.TransportSecurity
        if let tls = configuration.tls {
            security = .tls { config in
                if let certificate = tls.certificateFile, let key = tls.keyFile {
                    config.certificateChain = [.file(path: certificate, format: .pem)]
                    config.privateKey = .file(path: key, format: .pem)
                }
                if let ca = tls.caFile {
                    config.trustRoots = .certificates([.file(path: ca, format: .pem)])
                }
            }
        } else {
            security = .plaintext
        }
        let members = try EtcdMembers(configuration.endpoints)
        var resolvers = NameResolverRegistry()
        resolvers.registerFactory(EtcdMembersResolver())
        let transport: Transport
        do {
            transport = try Transport(
                target: members,
                transportSecurity: security,
                config: .defaults { config in
                    // Reconnect quickly: a member that went away is replaced by the next in
                    // well under an election TTL.
                    config.backoff.initial = .milliseconds(50)
                    config.backoff.max = .milliseconds(500)
                    config.connection.maxIdleTime = nil
                    config.http2.maxFrameSize = 1 << 20
                },
                resolverRegistry: resolvers
            )
        } catch {
            throw EtcdError.invalid("cannot set up the etcd client: \(error)")
        }
        let grpc = GRPCClient(transport: transport)
        self.grpc = grpc
        self.kv = Etcdserverpb_KV.Client(wrapping: grpc)
        self.watchService = Etcdserverpb_Watch.Client(wrapping: grpc)
        self.lease = Etcdserverpb_Lease.Client(wrapping: grpc)
        self.maintenance = Etcdserverpb_Maintenance.Client(wrapping: grpc)
        self.callTimeout = configuration.callTimeout
    }

    /// Runs the connections until `close()`. Calls made while it is not running wait.
    package func run() async throws {
        try await grpc.runConnections()
    }

    /// Ends `run()` once the calls in flight are done; new calls fail.
    package func close() {
        grpc.beginGracefulShutdown()
    }

    var unaryOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = callTimeout
        options.waitForReady = true
        return options
    }

    // MARK: - KV

    /// The keys of `range` (a linearizable read unless `serializable`).
    package func range(
        _ range: EtcdKeyRange,
        revision: Int64 = 0,
        limit: Int64 = 0,
        keysOnly: Bool = false,
        serializable: Bool = false
    ) async throws(EtcdError) -> Etcdserverpb_RangeResponse {
        var request = Etcdserverpb_RangeRequest()
        request.key = range.key
        request.rangeEnd = range.end
        request.revision = revision
        request.limit = limit
        request.keysOnly = keysOnly
        request.serializable = serializable
        return try await call { try await self.kv.range(request, options: self.unaryOptions) }
    }

    /// The key `key`, or nil.
    package func get(_ key: [UInt8]) async throws(EtcdError) -> Mvccpb_KeyValue? {
        try await range(EtcdKeyRange(key: key)).kvs.first
    }

    /// Writes `value` at `key`, attached to `lease` (0: none).
    @discardableResult
    package func put(_ key: [UInt8], _ value: [UInt8], lease: Int64 = 0) async throws(EtcdError) -> Etcdserverpb_PutResponse {
        var request = Etcdserverpb_PutRequest()
        request.key = Data(key)
        request.value = Data(value)
        request.lease = lease
        return try await call { try await self.kv.put(request, options: self.unaryOptions) }
    }

    /// Deletes the keys of `range`; returns how many.
    @discardableResult
    package func delete(_ range: EtcdKeyRange) async throws(EtcdError) -> Int64 {
        var request = Etcdserverpb_DeleteRangeRequest()
        request.key = range.key
        request.rangeEnd = range.end
        return try await call { try await self.kv.deleteRange(request, options: self.unaryOptions) }.deleted
    }

    /// Applies `success` when every comparison of `compare` holds, else `failure`, atomically.
    package func txn(
        compare: [Etcdserverpb_Compare],
        success: [Etcdserverpb_RequestOp],
        failure: [Etcdserverpb_RequestOp] = []
    ) async throws(EtcdError) -> Etcdserverpb_TxnResponse {
        var request = Etcdserverpb_TxnRequest()
        request.compare = compare
        request.success = success
        request.failure = failure
        return try await call { try await self.kv.txn(request, options: self.unaryOptions) }
    }

    /// Discards etcd's history before `revision` (keys' current values stay).
    package func compact(revision: Int64) async throws(EtcdError) {
        var request = Etcdserverpb_CompactionRequest()
        request.revision = revision
        _ = try await call { try await self.kv.compact(request, options: self.unaryOptions) }
    }

    // MARK: - Leases

    /// A new lease of `ttlSeconds`; returns its id and the TTL etcd chose.
    package func grantLease(ttlSeconds: Int64) async throws(EtcdError) -> (id: Int64, ttlSeconds: Int64) {
        var request = Etcdserverpb_LeaseGrantRequest()
        request.ttl = ttlSeconds
        let response = try await call { try await self.lease.leaseGrant(request, options: self.unaryOptions) }
        guard response.error.isEmpty else { throw EtcdError.failed("lease grant: \(response.error)") }
        return (response.id, response.ttl)
    }

    /// Ends a lease and deletes its keys.
    package func revokeLease(_ id: Int64) async throws(EtcdError) {
        var request = Etcdserverpb_LeaseRevokeRequest()
        request.id = id
        _ = try await call { try await self.lease.leaseRevoke(request, options: self.unaryOptions) }
    }

    /// Keeps lease `id` alive: sends a renewal every `interval` on one stream and reports each
    /// answer to `renewed` with the instant its request was sent (etcd's new deadline is no
    /// earlier than that instant plus the TTL). Returns when the lease has expired (a TTL of 0 or
    /// less) and throws when the stream fails; cancel the task to stop.
    package func keepAlive(
        lease id: Int64,
        every interval: Duration,
        renewed: @escaping @Sendable (_ ttlSeconds: Int64, _ sentAt: ContinuousClock.Instant) -> Void
    ) async throws(EtcdError) {
        let sent = SentInstants()
        try await call {
            try await self.lease.leaseKeepAlive(
                requestProducer: { writer in
                    var request = Etcdserverpb_LeaseKeepAliveRequest()
                    request.id = id
                    while true {
                        sent.push(.now)
                        try await writer.write(request)
                        try await Task.sleep(for: interval)
                    }
                },
                onResponse: { response in
                    for try await message in response.messages {
                        let sentAt = sent.pop() ?? .now
                        if message.ttl <= 0 { return }
                        renewed(message.ttl, sentAt)
                    }
                    throw EtcdError.unavailable("the keep-alive stream ended")
                }
            )
        }
    }

    // MARK: - Watch

    /// Watches `range` from `startRevision` (0: now) on one stream, handing each response with
    /// events (and each progress notification) to `handle`, in order. Returns when `handle`
    /// returns false; throws `EtcdError.compacted` when `startRevision` was compacted, and
    /// `EtcdError.unavailable` when the stream fails.
    package func watch(
        _ range: EtcdKeyRange,
        startRevision: Int64,
        progressNotify: Bool = true,
        handle: @escaping @Sendable (Etcdserverpb_WatchResponse) async throws -> Bool
    ) async throws(EtcdError) {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = range.key
        create.rangeEnd = range.end
        create.startRevision = startRevision
        create.progressNotify = progressNotify
        var watchRequest = Etcdserverpb_WatchRequest()
        watchRequest.createRequest = create
        let request = watchRequest
        try await call {
            try await self.watchService.watch(
                requestProducer: { writer in
                    try await writer.write(request)
                    // etcd ends the watch when the request side closes: keep it open.
                    while true { try await Task.sleep(for: .seconds(3600)) }
                },
                onResponse: { response in
                    for try await message in response.messages {
                        if message.canceled {
                            if message.compactRevision > 0 { throw EtcdError.compacted(message.compactRevision) }
                            throw EtcdError.failed("watch cancelled: \(message.cancelReason)")
                        }
                        if message.created && message.events.isEmpty { continue }
                        if try await !handle(message) { return }
                    }
                    throw EtcdError.unavailable("the watch stream ended")
                }
            )
        }
    }

    // MARK: - Maintenance

    /// The status of the member this client is connected to.
    package func status() async throws(EtcdError) -> Etcdserverpb_StatusResponse {
        try await call { try await self.maintenance.status(Etcdserverpb_StatusRequest(), options: self.unaryOptions) }
    }

    /// Runs `body`, turning gRPC's errors into `EtcdError`.
    func call<Result: Sendable>(_ body: () async throws -> Result) async throws(EtcdError) -> Result {
        do {
            return try await body()
        } catch let error as EtcdError {
            throw error
        } catch let error as RPCError {
            throw EtcdError(error)
        } catch is CancellationError {
            throw EtcdError.cancelled
        } catch {
            throw EtcdError.unavailable("\(error)")
        }
    }
}

/// The instants keep-alive requests were sent, matched to their answers in order.
final class SentInstants: Sendable {
    private let instants = Mutex<[ContinuousClock.Instant]>([])

    func push(_ instant: ContinuousClock.Instant) {
        instants.withLock { $0.append(instant) }
    }

    func pop() -> ContinuousClock.Instant? {
        instants.withLock { $0.isEmpty ? nil : $0.removeFirst() }
    }
}
