import ArgumentParser
import Foundation
import LicenseCommandLine
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import SwiftProtobuf

struct License: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sign, inspect and verify licence files.",
        subcommands: [Sign.self, Inspect.self, Verify.self]
    )

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Sign a licence spec (protobuf JSON of licensed.v1.License) and print the licence block, with a readable header of what it grants above it.",
            discussion: "Example: licensectl license sign --key issuer.pem --key-id acme-2026 spec.json > customer.lic"
        )

        @Option(help: "The issuer's private key PEM.") var key: String
        @Option(help: "Key id the licence server maps to the issuer's public key.") var keyId: String
        @Argument(help: "Licence spec: protobuf JSON of licensed.v1.License.") var spec: String

        func run() throws {
            let key: Ed25519PrivateKey
            do { key = try Ed25519PrivateKey(pem: try Files.readText(self.key)) } catch let error as CryptoError {
                throw CLIError("\(self.key): \(error)")
            }
            let license: Licensed_V1_License
            do { license = try Licensed_V1_License(jsonString: try Files.readText(self.spec)) } catch let error as CLIError {
                throw error
            } catch {
                throw CLIError("\(self.spec) is not a licensed.v1.License in protobuf JSON: \(error)")
            }
            let signed: Licensed_V1_SignedLicense
            do { signed = try LicenseIssuer.sign(license, with: key, keyID: self.keyId) } catch let error as LicenseError {
                throw CLIError(error.message)
            }
            FileHandle.standardOutput.write(Data(try LicenseFile.armorWithHeader(signed, license: license).utf8))
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every licence of a file as JSON with its verification result.",
            discussion:
                "A block's readable header (the '# key: value' lines `license sign` writes above it) is checked against the signed licence: each disagreement is a warning on standard error and in \"header_warnings\"."
        )

        @Option(help: "Issuer public key PEM to verify with; without it signatures are not checked.") var pub: String?
        @Argument(help: "Licence file.") var file: String

        func run() throws {
            let text = try Files.readText(self.file)
            let key = try self.pub.map { try PublicKeys.read($0) }
            var entries: [Any] = []
            for block in LicenseFile.parse(text) {
                var entry: [String: Any] = ["block": block.number]
                switch block.content {
                case .failure(let rejection):
                    entry["verification"] = rejection.description
                case .success(let signed):
                    entry["key_id"] = signed.keyID
                    entry["signature_hex"] = [UInt8](signed.signature).hexString
                    if let key {
                        let verifier = LicenseVerifier(trustedKeys: [signed.keyID: key], serverHostIDs: nil)
                        switch verifier.verify(signed, at: SystemClock().nowMs()) {
                        case .success: entry["verification"] = "valid"
                        case .failure(let rejected): entry["verification"] = rejected.rejection.description
                        }
                    } else {
                        entry["verification"] = "not checked (no --pub given)"
                    }
                    // Shown even when the signature fails, marked by "verification", so a bad file can be examined.
                    if let license = try? Licensed_V1_License(serializedBytes: [UInt8](signed.license)) {
                        if let json = try? license.jsonString(options: Self.jsonOptions),
                            let object = try? JSONSerialization.jsonObject(with: Data(json.utf8))
                        {
                            entry["license"] = object
                        }
                        let warnings = LicenseFile.headerMismatches(block.header, license: license, keyID: signed.keyID)
                        if !warnings.isEmpty {
                            entry["header_warnings"] = warnings
                            for warning in warnings {
                                FileHandle.standardError.write(
                                    Data("licensectl: warning: \(self.file) block \(block.number) (line \(block.line)): \(warning)\n".utf8)
                                )
                            }
                        }
                    }
                }
                entries.append(entry)
            }
            let data = try JSONSerialization.data(withJSONObject: entries, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        }

        static var jsonOptions: JSONEncodingOptions {
            var options = JSONEncodingOptions()
            options.preserveProtoFieldNames = true
            return options
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify every licence block of a file; exit 0 only if every block verifies."
        )

        @Option(help: "Issuer public key PEM.") var pub: String
        @Option(help: "Also require this key id in every block.") var keyId: String?
        @Argument(help: "Licence file.") var file: String

        func run() throws {
            let text = try Files.readText(self.file)
            let key = try PublicKeys.read(self.pub)
            let blocks = LicenseFile.parse(text)
            guard !blocks.isEmpty else { throw CLIError("\(self.file) holds no licence block") }
            var failures = 0
            for block in blocks {
                switch block.content {
                case .failure(let rejection):
                    failures += 1
                    print("block \(block.number): REJECTED: \(rejection)")
                case .success(let signed):
                    let keyID = self.keyId ?? signed.keyID
                    let verifier = LicenseVerifier(trustedKeys: [keyID: key], serverHostIDs: nil)
                    switch verifier.verify(signed, at: SystemClock().nowMs()) {
                    case .success(let license):
                        print("block \(block.number): OK licence '\(license.id)' (key id \(signed.keyID))")
                    case .failure(let rejected):
                        failures += 1
                        print("block \(block.number): REJECTED: \(rejected.rejection)")
                    }
                }
            }
            if failures > 0 { throw CLIError("\(failures) of \(blocks.count) licence block(s) in \(self.file) failed verification") }
        }
    }
}

enum PublicKeys {
    static func read(_ path: String) throws -> Ed25519PublicKey {
        do { return try Ed25519PublicKey(pem: try Files.readText(path)) } catch let error as CryptoError {
            throw CLIError("\(path): \(error)")
        }
    }
}
