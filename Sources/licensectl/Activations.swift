import ArgumentParser
import Foundation
import LicenseAudit
import LicenseClient
import LicenseCommandLine
import LicenseCore
import LicenseProtocol
import LicenseReports
import SwiftProtobuf

struct Activations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Node-locked activations: bulk assignment of parts to devices, listing, export, history.",
        subcommands: [Assign.self, Revoke.self, List.self, Export.self, History.self]
    )

    struct Assign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Assign a part to every device of a CSV file (a DeviceID or fingerprint column).",
            discussion: "Each row is applied or rejected with a reason; the run is recorded for `licensectl activations history`."
        )
        @OptionGroup var options: ServerOptions
        @Option(help: "The part (node-locked licence id).") var part: String
        @Argument(help: "CSV file with a header row naming a DeviceID or fingerprint column.") var file: String

        func run() async throws { try await bulk(self.options, part: self.part, file: self.file, revoke: false) }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a part from every device of a CSV file.")
        @OptionGroup var options: ServerOptions
        @Option(help: "The part (node-locked licence id).") var part: String
        @Argument(help: "CSV file with a header row naming a DeviceID or fingerprint column.") var file: String

        func run() async throws { try await bulk(self.options, part: self.part, file: self.file, revoke: true) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List activations (auditor token or above).")
        @OptionGroup var options: ServerOptions

        func run() async throws {
            let activations = try await fetchActivations(self.options)
            if self.options.json {
                try printJSON(activations.map(row))
                return
            }
            var rows = [["ACTIVATION", "PART", "DEVICE", "USER", "ASSIGNED", "LAST SEEN", "STATUS"]]
            for a in activations {
                rows.append([
                    a.activationID, a.licenseID, a.machineName, a.user, Timestamp.iso8601(a.activatedAtMs), Timestamp.iso8601(a.lastSeenMs),
                    a.status,
                ])
            }
            Status.printRows(rows)
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Activations as CSV: part name, part id, assigned date, status, device id, device name, user, last seen."
        )
        @OptionGroup var options: ServerOptions

        func run() async throws {
            Report.write(ActivationTables.activations(try await fetchActivations(self.options)).render(.csv))
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Recorded bulk runs with per-row results (--csv for a CSV export).")
        @OptionGroup var options: ServerOptions
        @Option(help: "Only runs in this month (YYYY-MM).") var month = ""
        @Flag(help: "CSV: one line per row of every run.") var csv = false

        func run() async throws {
            let client = try self.options.client(admin: true)
            defer { Task { await client.close() } }
            var request = Licensed_V1_HistoryRequest()
            request.month = self.month
            guard case .history(let response) = try await administer(client, .history(request)) else { throw CLIError("unexpected answer") }
            if self.csv {
                Report.write(ActivationTables.runs(response.runs).render(.csv))
            } else if self.options.json {
                var options = JSONEncodingOptions()
                options.preserveProtoFieldNames = true
                print(try response.jsonString(options: options))
            } else {
                for run in response.runs {
                    let applied = run.results.filter(\.applied).count
                    print(
                        "\(run.runID)  \(Timestamp.iso8601(run.atMs))  \(run.actor)  \(run.revoke ? "revoke" : "assign") \(run.part): \(applied) applied, \(run.results.count - applied) failed"
                    )
                }
            }
        }
    }
}

private func row(_ a: Licensed_V1_ActivationInfo) -> [String: Any] {
    [
        "activation_id": a.activationID, "part": a.licenseID, "part_name": a.partName, "device": a.machineName, "user": a.user,
        "assigned_at_ms": a.activatedAtMs, "last_seen_ms": a.lastSeenMs, "status": a.status, "features": a.features,
    ]
}

private func administer(_ client: LicenseClient, _ body: Licensed_V1_ClientMessage.OneOf_Body) async throws
    -> Licensed_V1_ServerMessage.OneOf_Body
{
    do { return try await client.administer(body) } catch let error as LicenseClientError { throw CLIError(error) }
}

private func fetchActivations(_ options: ServerOptions) async throws -> [Licensed_V1_ActivationInfo] {
    let client = try options.client(admin: true)
    defer { Task { await client.close() } }
    guard case .activations(let response) = try await administer(client, .activations(.init())) else { throw CLIError("unexpected answer") }
    return response.activations
}

private func bulk(_ options: ServerOptions, part: String, file: String, revoke: Bool) async throws {
    let rows: [Licensed_V1_DeviceRow]
    do { rows = try DeviceCSV.parse(try Files.readText(file), source: file) } catch let error as DeviceCSV.Problem {
        throw CLIError(error.message)
    }
    let client = try options.client(admin: true)
    defer { Task { await client.close() } }
    var request = Licensed_V1_AssignRequest()
    request.part = part
    request.revoke = revoke
    request.rows = rows
    guard case .assign(let response) = try await administer(client, .assign(request)) else { throw CLIError("unexpected answer") }
    let run = response.run
    if options.json {
        try printJSON([
            "run_id": run.runID,
            "results": run.results.map {
                ["row": $0.row, "device": $0.device, "applied": $0.applied, "reason": $0.reason, "activation_id": $0.activationID]
            },
        ])
    } else {
        for r in run.results {
            print("row \(r.row) \(r.device): \(r.applied ? "applied" : "FAILED")\(r.reason.isEmpty ? "" : " — \(r.reason)")")
        }
        let applied = run.results.filter(\.applied).count
        print("run \(run.runID): \(applied) applied, \(run.results.count - applied) failed")
    }
}
