import Foundation
import LicenseCore
import LicenseCrypto
public import LicenseProtocol
import SwiftProtobuf

/// Offline check of an activation certificate: the server's signature over its claims, its
/// offline validity, and that this machine's fingerprint matches the one bound under the
/// licence's rule.
public enum ActivationCertificateVerifier {
    /// The claims of `certificate` when it is valid on a machine presenting `fingerprint` at
    /// `nowMs`; throws saying why not.
    public static func verify(
        _ certificate: Licensed_V1_ActivationCertificate,
        serverPublicKey: [UInt8],
        fingerprint: [String],
        at nowMs: Int64
    ) throws -> Licensed_V1_ActivationClaims {
        let key: Ed25519PublicKey
        do { key = try Ed25519PublicKey(rawRepresentation: serverPublicKey) } catch {
            throw LicenseClientError(code: .invalidArgument, message: "the server public key is not an Ed25519 key")
        }
        guard key.isValidSignature([UInt8](certificate.signature), for: [UInt8](certificate.claims), in: .activation) else {
            throw LicenseClientError(
                code: .permissionDenied,
                message: "the activation certificate's signature does not verify with the server key"
            )
        }
        let claims: Licensed_V1_ActivationClaims
        do { claims = try Licensed_V1_ActivationClaims(serializedBytes: [UInt8](certificate.claims)) } catch {
            throw LicenseClientError(code: .invalidArgument, message: "the activation certificate's claims do not parse")
        }
        guard nowMs < claims.validUntilMs else {
            throw LicenseClientError(
                code: .licenseExpired,
                message: "the activation certificate was valid offline until \(claims.validUntilMs); validate online"
            )
        }
        let rule = Licensed_V1_FingerprintMatch(rawValue: Int(claims.fingerprintMatch)) ?? .most
        guard FingerprintMatch.matches(bound: claims.fingerprint, presented: fingerprint, rule: rule) else {
            throw LicenseClientError(
                code: .permissionDenied,
                message: "this machine's fingerprint does not match activation \(claims.activationID)"
            )
        }
        return claims
    }

    /// The same, for a serialized certificate.
    public static func verify(_ bytes: [UInt8], serverPublicKey: [UInt8], fingerprint: [String], at nowMs: Int64) throws
        -> Licensed_V1_ActivationClaims
    {
        let certificate: Licensed_V1_ActivationCertificate
        do { certificate = try Licensed_V1_ActivationCertificate(serializedBytes: bytes) } catch {
            throw LicenseClientError(code: .invalidArgument, message: "the activation certificate does not parse")
        }
        return try self.verify(certificate, serverPublicKey: serverPublicKey, fingerprint: fingerprint, at: nowMs)
    }
}
