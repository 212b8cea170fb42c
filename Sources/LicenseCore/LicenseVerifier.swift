import Foundation
public import LicenseCrypto
public import LicenseProtocol
import SwiftProtobuf

/// Decides which licence blocks grant anything on this server: the issuer signature must verify
/// with a trusted key, the licence must be bound to this server (or to none), and it must not be
/// past its grace period. Pure: files are read by the caller, time is passed in.
public struct LicenseVerifier: Sendable {
    /// Trusted issuer public keys by key id.
    public var trustedKeys: [String: Ed25519PublicKey]
    /// This server's fingerprint component ids (hex); a licence with server_hostids must name one.
    /// nil skips the check (offline verification of a licence file by the vendor).
    public var serverHostIDs: Set<String>?
    /// Where this server runs, checked against server_environments; nil skips the check (as
    /// `serverHostIDs`).
    public var serverEnvironment: EnvironmentReport?

    /// Creates a verifier.
    public init(trustedKeys: [String: Ed25519PublicKey], serverHostIDs: Set<String>?, serverEnvironment: EnvironmentReport? = nil) {
        self.trustedKeys = trustedKeys
        self.serverHostIDs = serverHostIDs
        self.serverEnvironment = serverEnvironment
    }

    /// The outcome for every block of one licence file's `text`.
    public func verify(fileText text: String, file: String, at nowMs: Int64) -> LicenseLoadResult {
        var result = LicenseLoadResult()
        for block in LicenseFile.parse(text) {
            switch block.content {
            case .failure(let rejection):
                result.rejected.append(RejectedLicenseBlock(file: file, block: block.number, rejection: rejection))
            case .success(let signed):
                switch self.verify(signed, at: nowMs) {
                case .success(let license):
                    result.accepted.append(VerifiedLicense(license: license, keyID: signed.keyID, file: file, block: block.number))
                case .failure(let rejected):
                    result.rejected.append(
                        RejectedLicenseBlock(file: file, block: block.number, rejection: rejected.rejection, licenseID: rejected.licenseID)
                    )
                }
            }
        }
        return result
    }

    /// A rejection with the licence id when one could be read.
    public struct Rejected: Error, Sendable {
        /// Why.
        public var rejection: LicenseRejection
        /// The licence id, or "" when the licence was not readable or not trustworthy.
        public var licenseID: String
    }

    /// Verifies one signed licence.
    public func verify(_ signed: Licensed_V1_SignedLicense, at nowMs: Int64) -> Result<Licensed_V1_License, Rejected> {
        guard let key = self.trustedKeys[signed.keyID] else {
            return .failure(Rejected(rejection: .unknownKey(signed.keyID), licenseID: ""))
        }
        let licenseBytes = [UInt8](signed.license)
        guard key.isValidSignature([UInt8](signed.signature), for: licenseBytes, in: .license) else {
            return .failure(Rejected(rejection: .badSignature(keyID: signed.keyID), licenseID: ""))
        }
        let license: Licensed_V1_License
        do {
            license = try Licensed_V1_License(serializedBytes: licenseBytes)
        } catch {
            return .failure(Rejected(rejection: .unparseable("signed bytes are not a License: \(error)"), licenseID: ""))
        }
        if let problem = LicenseIssuer.problem(with: license) {
            return .failure(Rejected(rejection: .unparseable(problem), licenseID: license.id))
        }
        if let serverHostIDs = self.serverHostIDs, !license.serverHostids.isEmpty,
            serverHostIDs.isDisjoint(with: license.serverHostids.map { $0.lowercased() })
        {
            return .failure(Rejected(rejection: .wrongServerHost(license.serverHostids), licenseID: license.id))
        }
        if let environment = self.serverEnvironment,
            let refusal = EnvironmentRule.refusal(environment, allowed: license.serverEnvironments, role: "licence server")
        {
            return .failure(Rejected(rejection: .environmentNotAllowed(refusal), licenseID: license.id))
        }
        if license.notAfterMs != 0, nowMs > license.notAfterMs + license.gracePeriodMs {
            return .failure(
                Rejected(rejection: .expired(notAfterMs: license.notAfterMs, graceMs: license.gracePeriodMs), licenseID: license.id)
            )
        }
        return .success(license)
    }
}

/// Licences loaded and blocks rejected, from one file or many.
public struct LicenseLoadResult: Sendable {
    /// Licences that grant.
    public var accepted: [VerifiedLicense] = []
    /// Blocks that grant nothing.
    public var rejected: [RejectedLicenseBlock] = []

    /// An empty result.
    public init() {}

    /// Adds `other`'s licences and rejections.
    public mutating func merge(_ other: LicenseLoadResult) {
        self.accepted += other.accepted
        self.rejected += other.rejected
    }

    /// The accepted licences after supersession: of several with one id, the latest issued_at wins.
    public var effective: [VerifiedLicense] {
        var byID: [String: VerifiedLicense] = [:]
        var order: [String] = []
        for candidate in self.accepted {
            if let existing = byID[candidate.license.id] {
                if candidate.license.issuedAtMs > existing.license.issuedAtMs { byID[candidate.license.id] = candidate }
            } else {
                byID[candidate.license.id] = candidate
                order.append(candidate.license.id)
            }
        }
        return order.compactMap { byID[$0] }
    }
}
