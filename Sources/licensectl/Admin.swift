import ArgumentParser
import LicenseClient
import LicenseProtocol

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the server reread its licence files without dropping a lease (as SIGHUP does)."
    )

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let client = try self.options.client()
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
        let client = try self.options.client()
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
