import ArgumentParser
import LicenseCommandLine
import LicenseCrypto

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Access tokens: the server's config stores only their SHA-256.",
        subcommands: [Generate.self, Hash.self]
    )

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a random token and print it with its config line.")

        @Option(help: "Role the token grants: client, auditor, operator or admin.") var role = "admin"

        func run() throws {
            guard ["client", "auditor", "operator", "admin"].contains(self.role) else {
                throw CLIError("--role must be client, auditor, operator or admin")
            }
            let token = SecureRandom.bytes(24).hexString
            print("token:  \(token)")
            print("config: tokens: [{role: \(self.role), sha256: \(SHA256.hash(Array(token.utf8)).hexString)}]")
        }
    }

    struct Hash: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the SHA-256 of a token, for the server's config.")

        @Argument(help: "The token.") var token: String

        func run() throws {
            print(SHA256.hash(Array(self.token.utf8)).hexString)
        }
    }
}
