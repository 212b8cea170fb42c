import Dispatch
import Etcd
import Foundation
import LicenseCluster
import LicenseFiles
import LicenseProtocol
import LicenseServer
import LicenseStore
import Logging
import SwiftProtobuf
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Snapshot transfer between the nodes of a cluster, over the operator's HTTP listener:
/// `GET /cluster/snapshot` with `Authorization: Bearer <the cluster's transfer token>` answers
/// the node's newest local snapshot file (as it is on disk: checked by its CRC on arrival). The
/// token is kept in etcd, so only a holder of the cluster's etcd credentials can ask.
extension ClusterNode {
    /// The answer to `GET /cluster/snapshot`: status code, content type and body.
    public func snapshotFile(authorization: String?) -> (status: Int, contentType: String, body: [UInt8]) {
        guard let token = token.withLock({ $0 }), authorization == "Bearer \(token)" else {
            return (403, "text/plain", Array("a cluster transfer token is required\n".utf8))
        }
        let directory = (context.configuration.stateDir as NSString).appendingPathComponent("ledger")
        do {
            guard let newest = try LedgerStore.newestSnapshot(in: directory) else {
                return (404, "text/plain", Array("this node has no snapshot yet\n".utf8))
            }
            return (200, "application/octet-stream", try FileIO.readAll(newest.path))
        } catch {
            return (500, "text/plain", Array("cannot read the snapshot: \(error)\n".utf8))
        }
    }

    /// Before this node opens its ledger: when the cluster's log no longer holds the changes
    /// after `localLast` (it joined empty, or was away while the log was compacted), the newest
    /// snapshot of a peer that covers the gap, or nil when the log holds everything needed.
    func snapshotNeeded(after localLast: UInt64) throws -> [UInt8]? {
        try Self.blocking { [self] () async throws -> [UInt8]? in
            let configuration = self.context.configuration
            let client = try EtcdClient(
                EtcdConfiguration(endpoints: try Self.endpoints(configuration), tls: Self.tls(configuration), callTimeout: .seconds(5))
            )
            let connections = Task { try? await client.run() }
            defer {
                client.close()
                connections.cancel()
            }
            let head = try await client.get(keys.head).flatMap { LogHead(stored: $0.value) }
            guard let head, head.last > localLast else { return nil }
            let oldest = try await client.range(EtcdKeyRange(prefix: keys.log), limit: 1).kvs.first.flatMap {
                keys.position(ofBatch: $0.key)
            }
            if let oldest, oldest.first <= localLast + 1 { return nil }
            let needed = (oldest?.first ?? head.last + 1) - 1
            let token = String(decoding: try await client.get(keys.transferToken)?.value ?? Data(), as: UTF8.self)
            let peers = try await client.range(EtcdKeyRange(prefix: keys.members)).kvs.compactMap {
                try? Licensed_V1_ClusterMember(serializedBytes: [UInt8]($0.value))
            }.filter { $0.nodeID != member.nodeID && !$0.operatorURL.isEmpty }
            var refusals: [String] = []
            for peer in peers {
                do {
                    let bytes = try await Self.download("\(peer.operatorURL)/cluster/snapshot", token: token)
                    let sequence = try SnapshotFile.decodeLeases(bytes, file: "snapshot of \(peer.nodeID)").snapshot.sequence
                    guard sequence >= needed else {
                        refusals.append("\(peer.nodeID): its snapshot ends at \(sequence), before \(needed)")
                        continue
                    }
                    context.logger.notice(
                        "taking a peer's snapshot: the cluster's log no longer holds what this node lacks",
                        metadata: ["peer": "\(peer.nodeID)", "sequence": "\(sequence)", "bytes": "\(bytes.count)", "had": "\(localLast)"]
                    )
                    return bytes
                } catch {
                    refusals.append("\(peer.nodeID): \(error)")
                }
            }
            throw ConfigurationError(
                "this node lacks the changes \(localLast + 1)…\(needed), which the cluster's log no longer holds, and no peer gave a snapshot covering them (\(refusals.joined(separator: "; ")))"
            )
        }
    }

    /// The etcd members of `configuration`.
    static func endpoints(_ configuration: ServerConfiguration) throws -> [EtcdConfiguration.Endpoint] {
        do {
            return try configuration.clusterEtcdEndpoints.map { try EtcdConfiguration.Endpoint(parsing: $0) }
        } catch {
            throw ConfigurationError("cluster_etcd_endpoints: \(error)")
        }
    }

    /// The TLS settings for etcd of `configuration` (nil: plaintext).
    static func tls(_ configuration: ServerConfiguration) -> EtcdConfiguration.TLS? {
        guard !configuration.clusterEtcdCA.isEmpty || !configuration.clusterEtcdCertificate.isEmpty else { return nil }
        return EtcdConfiguration.TLS(
            caFile: configuration.clusterEtcdCA.isEmpty ? nil : configuration.clusterEtcdCA,
            certificateFile: configuration.clusterEtcdCertificate.isEmpty ? nil : configuration.clusterEtcdCertificate,
            keyFile: configuration.clusterEtcdKey.isEmpty ? nil : configuration.clusterEtcdKey
        )
    }

    static func download(_ url: String, token: String) async throws -> [UInt8] {
        guard let address = URL(string: url) else { throw ConfigurationError("bad peer URL \(url)") }
        var request = URLRequest(url: address, timeoutInterval: 60)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let status = (response as? HTTPURLResponse)?.statusCode, status == 200 else {
            throw ConfigurationError(
                "\(url) answered \((response as? HTTPURLResponse)?.statusCode ?? 0): \(String(decoding: data.prefix(200), as: UTF8.self))"
            )
        }
        return [UInt8](data)
    }

    /// Runs `body` to completion from synchronous start-up code.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<T, any Error>?>(nil)
        Task.detached {
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }
}
