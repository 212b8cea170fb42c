import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseCore
import LicenseCrypto
import LicenseHost
import LicenseProtocol
import SwiftProtobuf

struct Fingerprint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Print this machine's fingerprint (hashed machine-id, DMI product UUID, MACs of physical NICs, host name) and where it runs (physical or virtual machine, container, cloud instance)."
    )

    @Option(help: "An extra component for containers and VMs (default $LICENSED_FINGERPRINT_COMPONENT).") var component = ""
    @Flag(help: "List the components as JSON.") var json = false
    @Flag(help: "Only the environment: physical or virtual machine (and which), container, cloud instance.") var environment = false

    func run() throws {
        let detected = HostEnvironment.detect()
        if self.environment {
            if self.json {
                var fields: [String: Any] = [
                    "machine": detected.machine.rawValue, "kinds": detected.kinds, "description": detected.description,
                ]
                if let value = detected.hypervisor { fields["hypervisor"] = value }
                if let value = detected.container { fields["container"] = value }
                if let value = detected.cloud { fields["cloud"] = value }
                if let value = detected.instanceID { fields["instance_id"] = value }
                try printJSON(fields)
            } else {
                print(detected.description)
            }
            return
        }
        let components = MachineFingerprint.components(operatorSupplied: self.component)
        if self.json {
            try printJSON(components.map { ["kind": $0.kind, "id": $0.id] })
        } else {
            for c in components { print("\(c.id)  \(c.kind)") }
            print("environment: \(detected)")
        }
    }
}

struct Activate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Activate a node-locked licence on this machine and save its certificate."
    )

    @OptionGroup var options: ServerOptions
    @Option(help: "The licence id (neither this nor --feature: the server's default part).") var license = ""
    @Option(help: "Or a feature the licence must grant.") var feature = ""
    @Option(help: "A readable machine name (default: the host name).") var machineName = ""
    @Option(help: "An extra fingerprint component (default $LICENSED_FINGERPRINT_COMPONENT).") var component = ""
    @Option(help: "Write the activation certificate here.") var out: String?

    func run() async throws {
        let fingerprint = MachineFingerprint.components(operatorSupplied: self.component).map(\.id)
        let client = try self.options.client()
        defer { Task { await client.close() } }
        let response: Licensed_V1_ActivateResponse
        do {
            response = try await client.activate(
                licenseID: self.license,
                feature: self.feature,
                fingerprint: fingerprint,
                machineName: self.machineName,
                environment: HostEnvironment.detect().report
            )
        } catch let error as LicenseClientError {
            throw CLIError(error)
        }
        let key = [UInt8](await client.session?.serverPublicKey ?? Data())
        let claims = try ActivationCertificateVerifier.verify(
            response.certificate,
            serverPublicKey: key,
            fingerprint: fingerprint,
            at: Int64(Date().timeIntervalSince1970 * 1000)
        )
        if let out = self.out {
            let bytes: [UInt8] = try response.certificate.serializedBytes()
            try Files.write(bytes, to: out)
        }
        if self.options.json {
            try printJSON([
                "activation_id": response.activationID, "license_id": claims.licenseID, "features": claims.features,
                "existing": response.existing, "overage": response.overage, "valid_until_ms": claims.validUntilMs,
            ])
        } else {
            print(
                "\(response.existing ? "already activated" : "activated"): \(response.activationID) (licence \(claims.licenseID), features \(claims.features.joined(separator: ",")))"
            )
            print(
                "certificate verifies offline until \(Timestamp.iso8601(claims.validUntilMs))\(self.out.map { "; saved to \($0)" } ?? "")"
            )
        }
    }
}

struct Deactivate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Free an activation (to move the licence to another machine).")

    @OptionGroup var options: ServerOptions
    @Argument(help: "Activation id.") var activation: String

    func run() async throws {
        let client = try self.options.client()
        defer { Task { await client.close() } }
        do { try await client.deactivate(self.activation) } catch let error as LicenseClientError { throw CLIError(error) }
        if self.options.json { try printJSON(["deactivated": self.activation]) } else { print("deactivated \(self.activation)") }
    }
}
