import Foundation
public import LicenseCrypto
public import LicenseProtocol
import SwiftProtobuf

/// What an issuer (the vendor) does: sign licences. The daemon never does this.
public enum LicenseIssuer {
    /// Signs `license` with the issuer's key under `keyID`.
    public static func sign(_ license: Licensed_V1_License, with key: Ed25519PrivateKey, keyID: String) throws -> Licensed_V1_SignedLicense
    {
        if let problem = self.problem(with: license) {
            throw LicenseError(.invalidArgument, "refusing to sign: \(problem)")
        }
        guard !keyID.isEmpty else { throw LicenseError(.invalidArgument, "refusing to sign: the key id is empty") }
        let bytes: [UInt8] = try license.serializedBytes()
        var signed = Licensed_V1_SignedLicense()
        signed.license = .init(bytes)
        signed.signature = .init(try key.signature(for: bytes, in: .license))
        signed.keyID = keyID
        return signed
    }

    /// What makes `license` unusable, or nil when it is well-formed.
    public static func problem(with license: Licensed_V1_License) -> String? {
        if license.id.isEmpty { return "the licence has no id" }
        if license.features.isEmpty { return "licence '\(license.id)' grants no feature" }
        if let unnamed = license.features.firstIndex(where: { $0.name.isEmpty }) {
            return "feature \(unnamed + 1) of licence '\(license.id)' has no name"
        }
        if license.notAfterMs != 0, license.notBeforeMs > license.notAfterMs {
            return "licence '\(license.id)' has not_before_ms after not_after_ms"
        }
        if license.gracePeriodMs < 0 { return "licence '\(license.id)' has a negative grace_period_ms" }
        for (field, values) in [("server_environments", license.serverEnvironments), ("client_environments", license.clientEnvironments)] {
            if let unknown = values.first(where: { !EnvironmentRule.kinds.contains($0) }) {
                return
                    "licence '\(license.id)' names '\(unknown)' in \(field); the kinds are \(EnvironmentRule.kinds.sorted().joined(separator: ", "))"
            }
        }
        return nil
    }
}
