import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import SwiftProtobuf

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Features, seats in use, licences and their state (lmstat-like)."
    )

    @OptionGroup var options: ServerOptions
    @Flag(help: "Show each holder (needs an auditor, operator or admin token).") var holders = false
    @Argument(help: "Only these features.") var features: [String] = []

    func run() async throws {
        let client = try self.options.client(admin: self.holders)
        let status: Licensed_V1_StatusResponse
        do {
            status = try await client.status(features: self.features, includeHolders: self.holders)
        } catch let error as LicenseClientError {
            await client.close()
            throw CLIError(error)
        }
        await client.close()
        if self.options.json {
            var options = JSONEncodingOptions()
            options.preserveProtoFieldNames = true
            options.alwaysPrintInt64sAsNumbers = true
            print(try status.jsonString(options: options))
            return
        }
        self.printTable(status)
    }

    private func printTable(_ status: Licensed_V1_StatusResponse) {
        print(
            "licence server \(status.serverVersion), \(status.sessions) session(s), server key \([UInt8](status.serverPublicKey).hexString.prefix(16))…"
        )
        if status.clockSetbackMs > 0 {
            print(
                "CLOCK SETBACK: the server's clock (\(Timestamp.iso8601(status.serverTimeMs))) is \(SeatLedger.duration(status.clockSetbackMs)) behind the newest time it has seen (\(Timestamp.iso8601(status.clockReferenceMs))); licences with an end date, a trial or a maintenance date grant nothing until it is set right"
            )
        }
        if status.hasDirectory, status.directory.configured {
            let directory = status.directory
            let age =
                directory.syncedAtMs == 0 ? "never read" : "read \(SeatLedger.duration(status.serverTimeMs - directory.syncedAtMs)) ago"
            var line = "directory: \(directory.users) user(s), \(directory.units) unit(s), \(directory.disabled) disabled; tree \(age)"
            if !directory.source.isEmpty { line += " from \(directory.source)" }
            if !directory.lastError.isEmpty {
                line += "; LAST SYNC FAILED \(Timestamp.iso8601(directory.lastAttemptMs)): \(directory.lastError)"
            }
            print(line)
        }
        print("")
        var rows = [["FEATURE", "IN USE", "CAPACITY", "OVERAGE", "QUEUED"]]
        for feature in status.features {
            rows.append([
                feature.feature, "\(feature.inUse)", feature.unlimited ? "unlimited" : "\(feature.capacity)", "\(feature.overage)",
                "\(feature.queued)",
            ])
        }
        Self.printRows(rows)
        if self.holders {
            var holderRows = [["FEATURE", "LEASE", "USER", "HOST", "SEATS", "SINCE", "EXPIRES", "FLAGS"]]
            for feature in status.features {
                for holder in feature.holders {
                    let flags = [holder.overage ? "overage" : "", holder.shared ? "shared" : "", holder.borrowed ? "borrowed" : ""]
                        .filter { !$0.isEmpty }.joined(separator: ",")
                    holderRows.append([
                        feature.feature, [UInt8](holder.leaseID).hexString, holder.user, holder.host, "\(holder.count)",
                        Timestamp.iso8601(holder.sinceMs), Timestamp.iso8601(holder.expiresAtMs), flags,
                    ])
                }
            }
            print("")
            Self.printRows(holderRows)
        }
        print("")
        var licenseRows = [["LICENCE", "STATE", "EXPIRES", "FEATURES"]]
        for license in status.licenses {
            licenseRows.append([
                license.licenseID, license.state.name, Timestamp.iso8601(license.expiresAtMs),
                license.features.joined(separator: ","),
            ])
        }
        Self.printRows(licenseRows)
        if !status.rejected.isEmpty {
            print("")
            var rejectedRows = [["REJECTED FILE", "BLOCK", "LICENCE", "REASON"]]
            for rejected in status.rejected {
                rejectedRows.append([rejected.file, "\(rejected.block)", rejected.licenseID, rejected.reason])
            }
            Self.printRows(rejectedRows)
        }
    }

    static func printRows(_ rows: [[String]]) {
        guard let columns = rows.first?.count else { return }
        let widths = (0..<columns).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let line = row.enumerated().map { i, cell in
                i == columns - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }
            print(line.joined(separator: "  "))
        }
    }
}
