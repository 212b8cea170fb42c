import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseProtocol

/// The command-line tool for everything but the daemon itself.
@main
struct Licensectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licensectl",
        abstract: "Keys, licence files and the licence server, from the command line.",
        subcommands: [
            Keys.self, License.self, Token.self, Ping.self, Status.self, Checkout.self, Checkin.self, Reload.self, Snapshot.self,
            Fingerprint.self, Activate.self, Deactivate.self, Activations.self, OfflineActivation.self, Leases.self, Revoke.self,
            Queue.self,
            Audit.self, Report.self, Watch.self, Cluster.self, Directory.self,
        ]
    )
}
