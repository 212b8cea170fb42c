import Foundation
public import LicenseCrypto
import LicenseFiles

/// What retention leaves in place of the audit files it removes: the sequence number and hash of
/// the last record removed, signed with the server's key. `audit verify` checks the kept files
/// from there, so a trail that starts after record 1 is proven whole (no file removed from its
/// middle, its first kept record not replaced) without the files that are gone.
///
/// Stored as `audit-checkpoint.json` in the trail's directory, replaced at each removal.
public struct AuditCheckpoint: Sendable, Equatable {
    /// The last record removed.
    public var sequence: UInt64
    /// Its hash (the `prev` of the first record kept).
    public var hash: String
    /// When the files were removed, Unix epoch milliseconds.
    public var timeMs: Int64
    /// The signing key's raw Ed25519 public key.
    public var publicKey: [UInt8]
    /// Ed25519 signature over `payload` in the `auditCheckpoint` domain.
    public var signature: [UInt8]

    /// The file name in the trail's directory.
    public static let fileName = "audit-checkpoint.json"

    /// The bytes the signature covers.
    public var payload: [UInt8] { Array("\(self.sequence)\n\(self.hash)\n\(self.timeMs)".utf8) }

    /// A checkpoint for record `sequence` with `hash`, signed by `key`.
    public init(sequence: UInt64, hash: String, timeMs: Int64, signedBy key: Ed25519PrivateKey) throws {
        self.sequence = sequence
        self.hash = hash
        self.timeMs = timeMs
        self.publicKey = try key.publicKey.rawRepresentation
        self.signature = []
        self.signature = try key.signature(for: self.payload, in: .auditCheckpoint)
    }

    /// What is wrong with the signature (nil: it verifies). With `trustedKey` the checkpoint must
    /// be signed by that key (the server's); without, by the key it names.
    public func signatureProblem(trustedKey: Ed25519PublicKey?) -> String? {
        if let trustedKey, trustedKey.rawRepresentation != self.publicKey {
            return
                "signed by key \(SHA256.hash(self.publicKey).hexString.prefix(16)), not the server's key \(trustedKey.fingerprint.prefix(16))"
        }
        guard let key = try? trustedKey ?? Ed25519PublicKey(rawRepresentation: self.publicKey) else {
            return "names no valid Ed25519 key"
        }
        return key.isValidSignature(self.signature, for: self.payload, in: .auditCheckpoint)
            ? nil : "its signature does not verify (the checkpoint was altered)"
    }

    /// Reads the checkpoint of the trail in `directory`; nil when there is none.
    public static func read(directory: String) throws -> AuditCheckpoint? {
        let path = "\(directory)/\(Self.fileName)"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let bytes = try FileIO.readAll(path)
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let sequence = (object["sequence"] as? NSNumber)?.uint64Value,
            let hash = object["hash"] as? String,
            let timeMs = (object["time_ms"] as? NSNumber)?.int64Value,
            let publicKey = (object["public_key"] as? String).flatMap({ [UInt8](hexString: $0) }),
            let signature = (object["signature"] as? String).flatMap({ [UInt8](hexString: $0) })
        else {
            throw StoreError("\(path) is not an audit checkpoint (damaged or edited)")
        }
        return AuditCheckpoint(sequence: sequence, hash: hash, timeMs: timeMs, publicKey: publicKey, signature: signature)
    }

    /// Writes the checkpoint into `directory` (temporary file, fsync, rename, fsync of the directory).
    func write(directory: String) throws {
        let object: [String: Any] = [
            "sequence": self.sequence, "hash": self.hash, "time_ms": self.timeMs,
            "public_key": self.publicKey.hexString, "signature": self.signature.hexString,
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        try FileIO.writeAtomically(Array(data) + [0x0A], to: "\(directory)/\(Self.fileName)", directory: directory)
    }

    init(sequence: UInt64, hash: String, timeMs: Int64, publicKey: [UInt8], signature: [UInt8]) {
        self.sequence = sequence
        self.hash = hash
        self.timeMs = timeMs
        self.publicKey = publicKey
        self.signature = signature
    }
}
