import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseProtocol

struct Cluster: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The nodes of a cluster on etcd.",
        subcommands: [Status.self]
    )

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Each node of the server's cluster: role, epoch, applied change, lag and last snapshot (any node answers)."
        )

        @OptionGroup var options: ServerOptions

        func run() async throws {
            let client = try self.options.client(admin: true)
            defer { Task { await client.close() } }
            let status: Licensed_V1_ClusterStatusResponse
            do {
                guard case .clusterStatus(let response) = try await client.administer(.clusterStatus(.init())) else {
                    throw CLIError("the server answered ClusterStatus with another message")
                }
                status = response
            } catch let error as LicenseClientError {
                throw CLIError(error)
            }
            if self.options.json {
                try printJSON([
                    "cluster": status.cluster, "answered_by": status.nodeID, "head_sequence": status.headSequence,
                    "oldest_sequence": status.oldestSequence,
                    "nodes": status.nodes.map { node -> [String: Any] in
                        [
                            "node_id": node.nodeID, "address": node.clientAddress, "role": node.role, "epoch": node.epoch,
                            "applied_sequence": node.appliedSequence, "lag": node.lag, "snapshot_sequence": node.snapshotSequence,
                            "reported_at_ms": node.reportedAtMs, "started_at_ms": node.startedAtMs,
                        ]
                    },
                ])
                return
            }
            guard !status.cluster.isEmpty else {
                print("a single node (no cluster): last change \(status.headSequence)")
                return
            }
            print(
                "cluster \(status.cluster) (answered by \(status.nodeID)): log head \(status.headSequence), etcd holds changes from \(status.oldestSequence)"
            )
            print("")
            let rows =
                [["NODE", "ADDRESS", "ROLE", "EPOCH", "APPLIED", "LAG", "SNAPSHOT", "REPORTED"]]
                + status.nodes.map { node in
                    let age =
                        node.reportedAtMs == 0
                        ? "never" : "\(max(0, Int64(Date().timeIntervalSince1970 * 1000) - node.reportedAtMs) / 1000) s ago"
                    return [
                        node.nodeID, node.clientAddress, node.role, "\(node.epoch)", "\(node.appliedSequence)", "\(node.lag)",
                        "\(node.snapshotSequence)", age,
                    ]
                }
            let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                print(
                    zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                        .trimmingCharacters(in: .whitespaces)
                )
            }
        }
    }
}
