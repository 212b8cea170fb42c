public import Foundation
public import LicenseCore
import LicenseCrypto
public import LicenseProtocol
import SwiftProtobuf

/// Activations of an air-gapped machine: the file an operator's `licensectl activation fulfil`
/// writes (an armored `OfflineActivation`, which survives e-mail as licence files do), and the
/// directory where `install` keeps them for offline checks — `$LICENSED_ACTIVATION_DIR`, else
/// `~/.local/share/licensed/activations` — as `<activation id>.act`, the serialized
/// `OfflineActivation` the C library's `lc_offline_verify` reads too.
public enum OfflineActivations {
    /// The line that opens an activation file's block.
    public static let beginMarker = "-----BEGIN LICENSED ACTIVATION-----"
    /// The line that closes it.
    public static let endMarker = "-----END LICENSED ACTIVATION-----"
    /// The name ending of installed activations.
    public static let fileExtension = "act"

    /// Where installed activations are kept.
    public static func directory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let directory = environment["LICENSED_ACTIVATION_DIR"], !directory.isEmpty { return directory }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.local/share/licensed/activations"
    }

    /// The activation file for `activation`: a readable header, then the armored block.
    public static func armor(_ activation: Licensed_V1_OfflineActivation) throws -> String {
        let claims = try Licensed_V1_ActivationClaims(serializedBytes: [UInt8](activation.certificate.claims))
        let header = [
            "activation: \(activation.activationID)", "licence: \(claims.licenseID)",
            "features: \(claims.features.joined(separator: ", "))",
            "valid offline until: \(Timestamp.iso8601(claims.validUntilMs))",
            "server key sha256: \(SHA256.hash([UInt8](activation.serverPublicKey)).hexString)",
            "install on the machine that asked: licensectl activation install THIS-FILE",
        ]
        let bytes: [UInt8] = try activation.serializedBytes()
        return header.map { "# " + $0 + "\n" }.joined() + ArmoredText.armor(bytes, begin: self.beginMarker, end: self.endMarker)
    }

    /// The activation in an activation file's text (forgiving what e-mail does, as licence files).
    public static func read(_ text: String) throws -> Licensed_V1_OfflineActivation {
        let blocks = ArmoredText.blocks(in: text, begin: self.beginMarker, end: self.endMarker)
        guard blocks.count == 1, let block = blocks.first else {
            throw LicenseClientError(
                code: .invalidArgument,
                message: "an activation file holds one \(self.beginMarker) block; found \(blocks.count)"
            )
        }
        let bytes: [UInt8]
        switch block.bytes {
        case .success(let decoded): bytes = decoded
        case .failure(let problem): throw LicenseClientError(code: .invalidArgument, message: problem.message)
        }
        do { return try Licensed_V1_OfflineActivation(serializedBytes: bytes) } catch {
            throw LicenseClientError(code: .invalidArgument, message: "the activation block is not an OfflineActivation")
        }
    }

    /// Checks `activation` on this machine — the server's signature (by `serverKey` when given,
    /// else by the key the file names), its offline validity, `fingerprint` under the licence's
    /// rule — and keeps it in `directory`. Returns its claims; throws saying why not.
    @discardableResult
    public static func install(
        _ activation: Licensed_V1_OfflineActivation,
        fingerprint: [String],
        serverKey: [UInt8]? = nil,
        directory: String = Self.directory(),
        at nowMs: Int64
    ) throws -> Licensed_V1_ActivationClaims {
        let claims = try self.check(activation, fingerprint: fingerprint, serverKey: serverKey, at: nowMs)
        guard claims.activationID == activation.activationID, Self.isSafeName(activation.activationID) else {
            throw LicenseClientError(code: .invalidArgument, message: "the activation id of the file and of its certificate differ")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let bytes: [UInt8] = try activation.serializedBytes()
            try Data(bytes).write(to: URL(fileURLWithPath: self.path(of: activation.activationID, in: directory)), options: .atomic)
        } catch {
            throw LicenseClientError(
                code: .unavailable,
                message: "cannot write the activation to \(directory): \(error.localizedDescription)"
            )
        }
        return claims
    }

    /// The installed activation that lets this machine (`fingerprint`) use `feature` now, with its
    /// claims; throws saying why none does (the reasons of each installed one).
    public static func verify(
        feature: String,
        fingerprint: [String],
        serverKey: [UInt8]? = nil,
        directory: String = Self.directory(),
        at nowMs: Int64
    ) throws -> (activation: Licensed_V1_OfflineActivation, claims: Licensed_V1_ActivationClaims) {
        var reasons: [String] = []
        for activation in self.installed(in: directory) {
            do {
                let claims = try self.check(activation, fingerprint: fingerprint, serverKey: serverKey, at: nowMs)
                if claims.features.contains(feature) { return (activation, claims) }
                reasons.append("\(activation.activationID): does not grant '\(feature)'")
            } catch let error as LicenseClientError {
                reasons.append("\(activation.activationID): \(error.message)")
            }
        }
        throw LicenseClientError(
            code: .notFound,
            message: "no installed activation in \(directory) lets this machine use '\(feature)'"
                + (reasons.isEmpty ? "" : ": " + reasons.joined(separator: "; "))
        )
    }

    /// Every activation installed in `directory` (unreadable files are skipped).
    public static func installed(in directory: String = Self.directory()) -> [Licensed_V1_OfflineActivation] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            $0.hasSuffix("." + self.fileExtension)
        }
        return names.sorted().compactMap { name in
            FileManager.default.contents(atPath: directory + "/" + name).flatMap { try? Licensed_V1_OfflineActivation(serializedBytes: $0) }
        }
    }

    /// Removes installed activation `id` (a return); false when it was not installed.
    @discardableResult
    public static func remove(_ id: String, directory: String = Self.directory()) throws -> Bool {
        guard Self.isSafeName(id) else { return false }
        let path = self.path(of: id, in: directory)
        guard FileManager.default.fileExists(atPath: path) else { return false }
        try FileManager.default.removeItem(atPath: path)
        return true
    }

    static func check(_ activation: Licensed_V1_OfflineActivation, fingerprint: [String], serverKey: [UInt8]?, at nowMs: Int64) throws
        -> Licensed_V1_ActivationClaims
    {
        let key = [UInt8](activation.serverPublicKey)
        if let serverKey, serverKey != key {
            throw LicenseClientError(
                code: .permissionDenied,
                message:
                    "the activation is signed by server key \(SHA256.hash(key).hexString.prefix(16))…, not the expected \(SHA256.hash(serverKey).hexString.prefix(16))…"
            )
        }
        return try ActivationCertificateVerifier.verify(activation.certificate, serverPublicKey: key, fingerprint: fingerprint, at: nowMs)
    }

    static func path(of id: String, in directory: String) -> String { directory + "/" + id + "." + self.fileExtension }

    /// Activation ids are the server's `act-` and hex: nothing that could leave the directory.
    static func isSafeName(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 64 && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }
}
