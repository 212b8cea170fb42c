import Foundation
import LicenseCrypto
public import LicenseProtocol
import SwiftProtobuf

/// Offline check of a borrow token: the server's signature over its claims, and its expiry.
public enum BorrowTokenVerifier {
    /// The claims of `token` if the server key `serverPublicKey` (32 raw bytes, from HelloResponse)
    /// signed them and they have not expired at `nowMs`; throws saying why not.
    public static func verify(_ token: [UInt8], serverPublicKey: [UInt8], at nowMs: Int64) throws -> Licensed_V1_BorrowClaims {
        let decoded: Licensed_V1_BorrowToken
        do { decoded = try Licensed_V1_BorrowToken(serializedBytes: token) } catch {
            throw LicenseClientError(code: .invalidArgument, message: "the borrow token does not parse")
        }
        let key: Ed25519PublicKey
        do { key = try Ed25519PublicKey(rawRepresentation: serverPublicKey) } catch {
            throw LicenseClientError(code: .invalidArgument, message: "the server public key is not an Ed25519 key")
        }
        guard key.isValidSignature([UInt8](decoded.signature), for: [UInt8](decoded.claims), in: .borrow) else {
            throw LicenseClientError(code: .permissionDenied, message: "the borrow token's signature does not verify with the server key")
        }
        let claims: Licensed_V1_BorrowClaims
        do { claims = try Licensed_V1_BorrowClaims(serializedBytes: [UInt8](decoded.claims)) } catch {
            throw LicenseClientError(code: .invalidArgument, message: "the borrow token's claims do not parse")
        }
        guard nowMs < claims.expiresAtMs else {
            throw LicenseClientError(code: .licenseExpired, message: "the borrow of '\(claims.feature)' ended at \(claims.expiresAtMs)")
        }
        return claims
    }
}
