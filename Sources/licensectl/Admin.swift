import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseCore
import LicenseCrypto
import LicenseProtocol

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the server reread its licence files without dropping a lease (as SIGHUP does)."
    )

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let client = try self.options.client(admin: true)
        defer { Task { await client.close() } }
        let response: Licensed_V1_ReloadResponse
        do { response = try await client.reload() } catch let error as LicenseClientError { throw CLIError(error) }
        if self.options.json {
            try printJSON([
                "loaded": response.loaded,
                "rejected": response.rejected.map {
                    ["file": $0.file, "block": $0.block, "reason": $0.reason, "license_id": $0.licenseID]
                },
            ])
        } else {
            print("\(response.loaded) licence(s) loaded, \(response.rejected.count) rejected")
            for rejected in response.rejected { print("rejected: \(rejected.file) block \(rejected.block): \(rejected.reason)") }
        }
    }
}

struct Snapshot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make the server write a snapshot of its ledger now.")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let client = try self.options.client(admin: true)
        defer { Task { await client.close() } }
        let response: Licensed_V1_SnapshotResponse
        do { response = try await client.snapshot() } catch let error as LicenseClientError { throw CLIError(error) }
        if self.options.json {
            try printJSON(["sequence": response.sequence, "size_bytes": response.sizeBytes, "duration_ms": response.durationMs])
        } else {
            print("snapshot at sequence \(response.sequence): \(response.sizeBytes) bytes in \(response.durationMs) ms")
        }
    }
}

struct Leases: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List leases (auditor token or above).")

    @OptionGroup var options: ServerOptions
    @Option(help: "Only this feature.") var feature = ""
    @Option(help: "Only this user.") var user = ""
    @Option(help: "Only this host.") var host = ""

    func run() async throws {
        let client = try self.options.client(admin: true)
        defer { Task { await client.close() } }
        var request = Licensed_V1_LeasesRequest()
        request.feature = self.feature
        request.user = self.user
        request.host = self.host
        let answer: Licensed_V1_ServerMessage.OneOf_Body
        do { answer = try await client.administer(.leases(request)) } catch let error as LicenseClientError { throw CLIError(error) }
        guard case .leases(let response) = answer else { throw CLIError("unexpected answer") }
        if self.options.json {
            try printJSON(
                response.leases.map {
                    [
                        "feature": $0.feature, "lease_id": [UInt8]($0.holder.leaseID).hexString, "user": $0.holder.user,
                        "host": $0.holder.host,
                        "count": $0.holder.count, "since_ms": $0.holder.sinceMs, "expires_at_ms": $0.holder.expiresAtMs,
                        "license_id": $0.holder.licenseID, "fencing_token": $0.holder.fencingToken,
                        "shared": $0.holder.shared, "overage": $0.holder.overage, "borrowed": $0.holder.borrowed,
                    ] as [String: Any]
                }
            )
            return
        }
        var rows = [["FEATURE", "LEASE", "USER", "HOST", "SEATS", "SINCE", "EXPIRES", "LICENCE"]]
        for lease in response.leases {
            let h = lease.holder
            rows.append([
                lease.feature, [UInt8](h.leaseID).hexString, h.user, h.host, "\(h.count)", Timestamp.iso8601(h.sinceMs),
                Timestamp.iso8601(h.expiresAtMs), h.licenseID,
            ])
        }
        Status.printRows(rows)
    }
}

struct Revoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take back a lease, an activation, or everything of a user or host (operator token or above); holders are told."
    )

    @OptionGroup var options: ServerOptions
    @Option(help: "A lease id (32 hex digits).") var lease: String?
    @Option(help: "An activation id.") var activation: String?
    @Option(help: "Every lease and activation of this user.") var user: String?
    @Option(help: "Every lease and activation of this host.") var host: String?
    @Option(help: "Why, for the holder (in its revocation notice) and the audit trail.") var reason = ""

    func run() async throws {
        var request = Licensed_V1_RevokeRequest()
        request.reason = self.reason
        let given = [self.lease, self.activation, self.user, self.host].compactMap { $0 }
        guard given.count == 1 else { throw CLIError("give exactly one of --lease, --activation, --user, --host") }
        if let lease = self.lease {
            guard let bytes = [UInt8](hexString: lease), bytes.count == 16 else {
                throw CLIError("'\(lease)' is not a lease id (32 hex digits)")
            }
            request.leaseID = .init(bytes)
        } else if let activation = self.activation {
            request.activationID = activation
        } else if let user = self.user {
            request.user = user
        } else if let host = self.host {
            request.host = host
        }
        let client = try self.options.client(admin: true)
        defer { Task { await client.close() } }
        let answer: Licensed_V1_ServerMessage.OneOf_Body
        do { answer = try await client.administer(.revoke(request)) } catch let error as LicenseClientError { throw CLIError(error) }
        guard case .revoke(let response) = answer else { throw CLIError("unexpected answer") }
        if self.options.json {
            try printJSON(["leases": response.leases, "activations": response.activations])
        } else {
            print("revoked \(response.leases) lease(s) and \(response.activations) activation(s)")
        }
    }
}

struct Queue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Who waits for seats (auditor token or above).")

    @OptionGroup var options: ServerOptions
    @Option(help: "Only this feature.") var feature = ""

    func run() async throws {
        let client = try self.options.client(admin: true)
        defer { Task { await client.close() } }
        var request = Licensed_V1_QueueRequest()
        request.feature = self.feature
        let answer: Licensed_V1_ServerMessage.OneOf_Body
        do { answer = try await client.administer(.queue(request)) } catch let error as LicenseClientError { throw CLIError(error) }
        guard case .queue(let response) = answer else { throw CLIError("unexpected answer") }
        if self.options.json {
            try printJSON(
                response.queued.map {
                    [
                        "feature": $0.feature, "user": $0.user, "host": $0.host, "count": $0.count, "since_ms": $0.sinceMs,
                        "deadline_ms": $0.deadlineMs,
                    ] as [String: Any]
                }
            )
            return
        }
        var rows = [["FEATURE", "USER", "HOST", "SEATS", "SINCE", "GIVES UP"]]
        for q in response.queued {
            rows.append([q.feature, q.user, q.host, "\(q.count)", Timestamp.iso8601(q.sinceMs), Timestamp.iso8601(q.deadlineMs)])
        }
        Status.printRows(rows)
    }
}
