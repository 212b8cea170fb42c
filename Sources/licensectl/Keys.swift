import ArgumentParser
import Foundation
import LicenseCommandLine
import LicenseCrypto

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Issuer keys.",
        subcommands: [Generate.self]
    )

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an Ed25519 issuer key pair: OUT.pem (private, mode 0600) and OUT.pub.pem."
        )

        @Option(help: "Path prefix of the key files.")
        var out: String

        @Flag(help: "Replace existing key files.")
        var force = false

        func run() throws {
            let privatePath = self.out + ".pem"
            let publicPath = self.out + ".pub.pem"
            for path in [privatePath, publicPath] where !self.force && FileManager.default.fileExists(atPath: path) {
                throw CLIError("\(path) exists; refusing to overwrite a key (use --force)")
            }
            let key = try Ed25519PrivateKey.generate()
            try Files.writePrivate(Array(try key.pemRepresentation().utf8), to: privatePath)
            try Files.write(Array(try key.publicKey.pemRepresentation().utf8), to: publicPath)
            print("wrote \(privatePath) (private, keep it safe) and \(publicPath) (give it to licence servers)")
            print("public key sha256: \(try key.publicKey.fingerprint)")
        }
    }
}
