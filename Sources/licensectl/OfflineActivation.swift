import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseCore
import LicenseCrypto
import LicenseHost
import LicenseProtocol
import SwiftProtobuf

/// Air-gapped activation (FlexNet's and Sentinel's request and response files): `request` on the
/// offline machine, `fulfil` by an operator on a connected one, `install` back on the offline
/// machine; `return` and a second `fulfil` free the activation again.
struct OfflineActivation: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activation",
        abstract: "Air-gapped activation by request and response files: request, fulfil, install, verify, return.",
        discussion: """
            On the offline machine:   licensectl activation request --license NL --out request.json
            On a connected machine:   licensectl activation fulfil request.json --out certificate.lic   (operator token)
            Back on the offline one:  licensectl activation install certificate.lic
            Moving the licence away:  licensectl activation return --out return.json, then fulfil return.json
            """,
        subcommands: [Request.self, Fulfil.self, Install.self, Verify.self, Return.self]
    )

    /// This machine's fingerprint (with the operator's extra component, as `licensectl activate`).
    struct Machine: ParsableArguments {
        @Option(help: "An extra fingerprint component (default $LICENSED_FINGERPRINT_COMPONENT).") var component = ""
        @Option(help: "Where installed activations are kept (default $LICENSED_ACTIVATION_DIR or ~/.local/share/licensed/activations).")
        var dir: String?

        var fingerprint: [String] { MachineFingerprint.components(operatorSupplied: self.component).map(\.id) }
        var directory: String { self.dir ?? OfflineActivations.directory() }
    }

    static func write(_ request: Licensed_V1_OfflineRequest, to path: String) throws {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        try Files.write(Array((try request.jsonString(options: options) + "\n").utf8), to: path)
    }

    static func newRequest(_ action: Licensed_V1_OfflineRequest.Action) -> Licensed_V1_OfflineRequest {
        var request = Licensed_V1_OfflineRequest()
        request.action = action
        request.createdAtMs = SystemClock().nowMs()
        request.requestID = SecureRandom.bytes(8).hexString
        return request
    }

    static func serverKey(_ hex: String?) throws -> [UInt8]? {
        guard let hex else { return nil }
        guard let bytes = [UInt8](hexString: hex), bytes.count == 32 else {
            throw CLIError("--server-key is the server's Ed25519 public key as 64 hex digits (licensectl status --json shows it)")
        }
        return bytes
    }

    struct Request: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "On the offline machine: write an activation request (fingerprint and identity; no secret) for an operator."
        )
        @Option(help: "The licence id to activate.") var license = ""
        @Option(help: "Or a feature the licence must grant.") var feature = ""
        @Option(help: "A readable machine name (default: the host name).") var machineName = ""
        @Option(help: "The user the activation is for (default: this user).") var user = ""
        @OptionGroup var machine: Machine
        @Option(help: "Write the request here.") var out: String

        func run() throws {
            guard !self.license.isEmpty || !self.feature.isEmpty else { throw CLIError("give --license or --feature") }
            var request = OfflineActivation.newRequest(.activate)
            request.activate.licenseID = self.license
            request.activate.feature = self.feature
            request.activate.fingerprint = self.machine.fingerprint
            request.activate.machineName = self.machineName.isEmpty ? ProcessInfo.processInfo.hostName : self.machineName
            request.activate.user = self.user.isEmpty ? ServerOptions.localUser : self.user
            let detected = HostEnvironment.detect()
            request.activate.environment = detected.kinds
            request.activate.environmentDescription = detected.description
            try OfflineActivation.write(request, to: self.out)
            print(
                "wrote \(self.out) (request \(request.requestID), machine '\(request.activate.machineName)', user '\(request.activate.user)')"
            )
            print("an operator fulfils it on a connected machine: licensectl activation fulfil \(self.out) --out certificate.lic")
        }
    }

    struct Fulfil: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "On a connected machine (operator token): activate, or return, on an offline machine's behalf."
        )
        @OptionGroup var options: ServerOptions
        @Argument(help: "The request file the offline machine wrote.") var request: String
        @Option(help: "For an activation: write the certificate file to carry back here.") var out: String?

        func run() async throws {
            let offline: Licensed_V1_OfflineRequest
            do { offline = try Licensed_V1_OfflineRequest(jsonString: try Files.readText(self.request)) } catch let error as CLIError {
                throw error
            } catch {
                throw CLIError("\(self.request) is not an activation request (licensectl activation request writes one): \(error)")
            }
            if offline.action == .activate, self.out == nil { throw CLIError("give --out for the certificate file") }
            var fulfil = Licensed_V1_FulfilRequest()
            fulfil.request = offline
            let client = try self.options.client()
            defer { Task { await client.close() } }
            let answer: Licensed_V1_ServerMessage.OneOf_Body
            do { answer = try await client.administer(.fulfil(fulfil)) } catch let error as LicenseClientError { throw CLIError(error) }
            guard case .fulfil(let response) = answer else { throw CLIError("the server answered Fulfil with another message") }
            if offline.action == .return {
                print(
                    "deactivated \(response.deactivatedActivationID) (returned by machine '\(offline.activate.machineName.isEmpty ? "?" : offline.activate.machineName)')"
                )
                return
            }
            try Files.write(Array(try OfflineActivations.armor(response.activation).utf8), to: self.out!)
            print(
                "activated \(response.activation.activationID) for machine '\(offline.activate.machineName)'; carry \(self.out!) back and run there: licensectl activation install \(self.out!)"
            )
        }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "On the offline machine: check a certificate file against this machine and the server key, and keep it for offline checks."
        )
        @Argument(help: "The certificate file from `activation fulfil`.") var file: String
        @Option(help: "The server's public key (64 hex digits) the certificate must be signed by (default: the key the file names).")
        var serverKey: String?
        @OptionGroup var machine: Machine
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let activation: Licensed_V1_OfflineActivation
            let claims: Licensed_V1_ActivationClaims
            do {
                activation = try OfflineActivations.read(try Files.readText(self.file))
                claims = try OfflineActivations.install(
                    activation,
                    fingerprint: self.machine.fingerprint,
                    serverKey: try OfflineActivation.serverKey(self.serverKey),
                    directory: self.machine.directory,
                    at: SystemClock().nowMs()
                )
            } catch let error as LicenseClientError {
                throw CLIError("\(self.file): \(error.message)")
            }
            OfflineActivation.report(activation, claims, json: self.json, verb: "installed in \(self.machine.directory)")
        }
    }

    static func report(_ activation: Licensed_V1_OfflineActivation, _ claims: Licensed_V1_ActivationClaims, json: Bool, verb: String) {
        if json {
            try? printJSON([
                "activation_id": activation.activationID, "license_id": claims.licenseID, "features": claims.features,
                "valid_until_ms": claims.validUntilMs, "server_key_sha256": SHA256.hash([UInt8](activation.serverPublicKey)).hexString,
            ])
        } else {
            print("\(activation.activationID) (licence \(claims.licenseID), features \(claims.features.joined(separator: ","))) \(verb)")
            print("valid offline until \(Timestamp.iso8601(claims.validUntilMs))")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "On the offline machine: is there an installed activation that lets this machine use a feature now?"
        )
        @Option(help: "The feature.") var feature: String
        @Option(help: "The server's public key (64 hex digits) the certificate must be signed by.") var serverKey: String?
        @OptionGroup var machine: Machine
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            do {
                let (activation, claims) = try OfflineActivations.verify(
                    feature: self.feature,
                    fingerprint: self.machine.fingerprint,
                    serverKey: try OfflineActivation.serverKey(self.serverKey),
                    directory: self.machine.directory,
                    at: SystemClock().nowMs()
                )
                OfflineActivation.report(activation, claims, json: self.json, verb: "lets this machine use '\(self.feature)'")
            } catch let error as LicenseClientError {
                throw CLIError(error.message)
            }
        }
    }

    struct Return: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "On the offline machine: remove an installed activation and write the return request that frees it on the server."
        )
        @Option(help: "The activation to return (default: the only one installed).") var activation: String?
        @OptionGroup var machine: Machine
        @Option(help: "Write the return request here.") var out: String

        func run() throws {
            let installed = OfflineActivations.installed(in: self.machine.directory)
            let id: String
            if let activation = self.activation {
                guard installed.contains(where: { $0.activationID == activation }) else {
                    throw CLIError("activation \(activation) is not installed in \(self.machine.directory)")
                }
                id = activation
            } else {
                guard installed.count == 1 else {
                    throw CLIError("\(installed.count) activations are installed in \(self.machine.directory); name one with --activation")
                }
                id = installed[0].activationID
            }
            var request = OfflineActivation.newRequest(.return)
            request.activationID = id
            request.fingerprint = self.machine.fingerprint
            request.activate.machineName = ProcessInfo.processInfo.hostName
            // The request first: a return that removed the certificate but wrote no request would
            // leave the seat taken with nothing to free it.
            try OfflineActivation.write(request, to: self.out)
            try OfflineActivations.remove(id, directory: self.machine.directory)
            print("removed \(id) from this machine; wrote \(self.out): an operator frees it with licensectl activation fulfil \(self.out)")
        }
    }
}
