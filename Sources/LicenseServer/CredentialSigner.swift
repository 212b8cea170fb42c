import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import SwiftProtobuf

/// Signs what a client keeps and checks offline with the server's public key: the borrow token
/// of a borrowed lease, and the certificate of an activated machine. Each in its own signature
/// domain, so that one can never pass for the other.
struct CredentialSigner {
    /// The server's key.
    let key: Ed25519PrivateKey
    /// How long a certificate lets a machine run without asking the server again.
    let activationValidityMs: Int64

    /// The signed token of a borrowed lease (empty if it cannot be signed).
    func borrowToken(for lease: Lease) -> Data {
        var claims = Licensed_V1_BorrowClaims()
        claims.leaseID = .init(lease.id.bytes)
        claims.licenseID = lease.licenseID
        claims.feature = lease.feature
        claims.count = lease.count
        claims.user = lease.identity.user
        claims.host = lease.identity.host
        claims.issuedAtMs = lease.grantedAtMs
        claims.expiresAtMs = lease.expiresAtMs
        guard let claimBytes: [UInt8] = try? claims.serializedBytes(),
            let signature = try? self.key.signature(for: claimBytes, in: .borrow)
        else { return Data() }
        var token = Licensed_V1_BorrowToken()
        token.claims = .init(claimBytes)
        token.signature = .init(signature)
        return (try? token.serializedBytes() as [UInt8]).map { Data($0) } ?? Data()
    }

    /// The signed certificate a machine keeps for offline use, valid from `now`.
    func certificate(for activated: SeatLedger.Activated, at now: Int64) -> Licensed_V1_ActivationCertificate {
        var claims = Licensed_V1_ActivationClaims()
        claims.activationID = activated.activation.id
        claims.licenseID = activated.activation.licenseID
        claims.features = activated.activation.features
        claims.fingerprint = activated.activation.fingerprint
        claims.issuedAtMs = now
        claims.validUntilMs = now + self.activationValidityMs
        claims.fingerprintMatch = Int32(activated.rule.rawValue)
        var certificate = Licensed_V1_ActivationCertificate()
        if let bytes: [UInt8] = try? claims.serializedBytes(), let signature = try? self.key.signature(for: bytes, in: .activation) {
            certificate.claims = .init(bytes)
            certificate.signature = .init(signature)
        }
        return certificate
    }
}
