import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseCore
import LicenseCrypto
import LicenseProtocol

/// `licensectl directory sync [--dry-run]`: the organisation from LDAP / Active Directory, now.
struct Directory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The directory the organisation comes from (LDAP / Active Directory).",
        subcommands: [Sync.self]
    )

    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read the directory now: swap its units, groups, cost centres and locations in, and reclaim from leavers.",
            discussion: """
                Users disabled in the directory, or gone from it, lose their leases at once (their holders are told) and their \
                activations after directory_activation_grace_seconds. --dry-run only lists what would be reclaimed. Operator \
                token or above.
                """
        )

        @OptionGroup var options: ServerOptions
        @Flag(help: "List what would be reclaimed; change nothing.") var dryRun = false

        func run() async throws {
            let client = try self.options.client(admin: true)
            defer { Task { await client.close() } }
            var request = Licensed_V1_DirectorySyncRequest()
            request.dryRun = self.dryRun
            let answer: Licensed_V1_ServerMessage.OneOf_Body
            do { answer = try await client.administer(.directorySync(request)) } catch let error as LicenseClientError {
                throw CLIError(error)
            }
            guard case .directorySync(let response) = answer else {
                throw CLIError("the server answered DirectorySync with another message")
            }
            if self.options.json {
                try printJSON([
                    "dry_run": response.dryRun, "users": response.directory.users, "units": response.directory.units,
                    "disabled": response.directory.disabled, "source": response.directory.source,
                    "duration_ms": response.directory.durationMs,
                    "reclaimed": response.reclaimed.map { reclaim -> [String: Any] in
                        [
                            "user": reclaim.user, "reason": reclaim.reason, "leases": reclaim.leaseIds.map { [UInt8]($0).hexString },
                            "activations": reclaim.activationIds, "activations_in_grace": reclaim.activationsInGrace,
                            "grace_ends_ms": reclaim.graceEndsMs,
                        ]
                    },
                ])
                return
            }
            let directory = response.directory
            print(
                "\(response.dryRun ? "dry run: read" : "synced") \(directory.users) user(s) in \(directory.units) unit(s) "
                    + "(\(directory.disabled) disabled) from \(directory.source) in \(directory.durationMs) ms"
            )
            let verb = response.dryRun ? "would revoke" : "revoked"
            for reclaim in response.reclaimed {
                var parts = ["\(verb) \(reclaim.leaseIds.count) lease(s)"]
                if !reclaim.activationIds.isEmpty {
                    parts.append("\(response.dryRun ? "would deactivate" : "deactivated") \(reclaim.activationIds.count) activation(s)")
                }
                if !reclaim.activationsInGrace.isEmpty {
                    parts.append("\(reclaim.activationsInGrace.count) activation(s) kept until \(Timestamp.iso8601(reclaim.graceEndsMs))")
                }
                print("\(reclaim.user) (\(reclaim.reason)): \(parts.joined(separator: ", "))")
            }
        }
    }
}
