import Foundation
public import LicenseProtocol
import SwiftProtobuf

/// A licence file: any number of armored `SignedLicense` blocks; everything outside them is comment.
///
/// ```
/// # licence: acme-2026-001
/// # licensee: Example Corp
/// # features: cad.solver 10
/// -----BEGIN LICENSED LICENSE-----
/// base64 of the serialized SignedLicense, wrapped at 64 columns
/// -----END LICENSED LICENSE-----
/// ```
///
/// Files travel by e-mail, so reading forgives what mail does to text: CRLF line ends, lines
/// rewrapped to another width, leading and trailing spaces, and `> ` quoting (nested too). Anything
/// else inside a block's base64 is refused, naming the file's line. The `# key: value` comment
/// lines just above a block are its readable header (`header(for:)` writes them; `headerMismatches`
/// checks them against the signed block): a person can read what a file grants, and a header
/// edited to claim more is caught.
public enum LicenseFile {
    /// The line that opens a block.
    public static let beginMarker = "-----BEGIN LICENSED LICENSE-----"
    /// The line that closes a block.
    public static let endMarker = "-----END LICENSED LICENSE-----"

    /// One block as found in the file, numbered from 1 in file order.
    public struct Block: Sendable {
        /// 1-based position among the file's blocks.
        public var number: Int
        /// 1-based line of the file where the block begins.
        public var line: Int
        /// The comment lines just above the block (quote marks, `#` and surrounding spaces removed):
        /// its readable header, when it has one.
        public var header: [String]
        /// The decoded licence, or why the block could not be decoded.
        public var content: Result<Licensed_V1_SignedLicense, LicenseRejection>
    }

    /// Splits `text` into blocks. Never throws: a bad block is a block whose content is a rejection.
    public static func parse(_ text: String) -> [Block] {
        ArmoredText.blocks(in: text, begin: self.beginMarker, end: self.endMarker).enumerated().map { index, block in
            Block(
                number: index + 1,
                line: block.line,
                header: block.header,
                content: block.bytes.mapError { .unparseable($0.message) }.flatMap(Self.decode)
            )
        }
    }

    /// One armored block for `signed`, ending with a newline.
    public static func armor(_ signed: Licensed_V1_SignedLicense) throws -> String {
        ArmoredText.armor(try signed.serializedBytes(), begin: self.beginMarker, end: self.endMarker)
    }

    /// `armor(signed)` with `license`'s readable header above it, as `licensectl license sign` writes it.
    public static func armorWithHeader(_ signed: Licensed_V1_SignedLicense, license: Licensed_V1_License) throws -> String {
        self.header(for: license, keyID: signed.keyID).map { "# " + $0 + "\n" }.joined() + (try self.armor(signed))
    }

    private static func decode(_ bytes: [UInt8]) -> Result<Licensed_V1_SignedLicense, LicenseRejection> {
        do {
            let signed = try Licensed_V1_SignedLicense(serializedBytes: bytes)
            guard !signed.license.isEmpty, !signed.signature.isEmpty else {
                return .failure(.unparseable("block has no licence or no signature"))
            }
            return .success(signed)
        } catch {
            return .failure(.unparseable("block is not a SignedLicense: \(error)"))
        }
    }

    // MARK: - The readable header

    /// What `license` grants, as `key: value` lines for a person (the file's comment header).
    public static func header(for license: Licensed_V1_License, keyID: String) -> [String] {
        var lines = [
            "licence: \(license.id)",
            "issued: \(Self.date(license.issuedAtMs)) by \(license.issuer.isEmpty ? "-" : license.issuer), key id \(keyID)",
        ]
        lines.append("licensee: \(license.licensee.isEmpty ? "-" : license.licensee)")
        if !license.product.isEmpty { lines.append("product: \(license.product)") }
        lines.append("model: \(Self.modelName(license.model))")
        let features = license.features.map { feature in
            var text = "\(feature.name) \(feature.tokenCost > 0 ? "costs \(feature.tokenCost) token(s)" : "\(feature.count)")"
            if !feature.version.isEmpty { text += " (up to version \(feature.version))" }
            return text
        }
        lines.append("features: \(features.joined(separator: ", "))")
        if license.tokenPool > 0 { lines.append("token pool: \(license.tokenPool)") }
        var dates = license.notBeforeMs == 0 ? "from issue" : "from \(Self.date(license.notBeforeMs))"
        dates += license.notAfterMs == 0 ? ", perpetual" : " until \(Self.date(license.notAfterMs))"
        if license.gracePeriodMs > 0 { dates += " (grace \(license.gracePeriodMs / 86_400_000) days)" }
        lines.append("valid: \(dates)")
        if license.trialDays > 0 { lines.append("trial: \(license.trialDays) days from first use") }
        if license.maintenanceUntilMs != 0 { lines.append("maintenance until: \(Self.date(license.maintenanceUntilMs))") }
        var policy = ["overage \(Self.overageName(license.overage))"]
        if license.maxActivations > 0 { policy.append("max activations \(license.maxActivations)") }
        if license.maxDevicesPerUser > 0 { policy.append("max devices per user \(license.maxDevicesPerUser)") }
        if license.lease.maxBorrowMs > 0 { policy.append("borrow up to \(license.lease.maxBorrowMs / 3_600_000) hours") }
        lines.append("policy: \(policy.joined(separator: ", "))")
        if !license.serverHostids.isEmpty { lines.append("servers: \(license.serverHostids.joined(separator: ", "))") }
        if !license.serverEnvironments.isEmpty {
            lines.append("server environments: \(license.serverEnvironments.joined(separator: ", "))")
        }
        if !license.clientEnvironments.isEmpty {
            lines.append("client environments: \(license.clientEnvironments.joined(separator: ", "))")
        }
        return lines
    }

    /// Where the `key: value` lines of `block`'s header disagree with what its signed licence
    /// says, or leave a line out (empty when it has no header, or an honest one).
    public static func headerMismatches(_ header: [String], license: Licensed_V1_License, keyID: String) -> [String] {
        let claimed = Self.headerFields(header)
        guard claimed.contains(where: { $0.key == "licence" }) else { return [] }  // no header (or not ours): nothing to check
        let actual = Self.headerFields(self.header(for: license, keyID: keyID))
        var mismatches: [String] = []
        for (key, value) in claimed {
            guard let truth = actual.first(where: { $0.key == key })?.value else {
                mismatches.append("the header says '\(key): \(value)', which the signed licence does not say at all")
                continue
            }
            if truth != value { mismatches.append("the header says '\(key): \(value)'; the signed licence says '\(key): \(truth)'") }
        }
        for (key, value) in actual where !claimed.contains(where: { $0.key == key }) {
            mismatches.append("the header leaves out '\(key): \(value)'")
        }
        return mismatches
    }

    /// The `key: value` pairs of header lines, in order (lines without a colon are skipped).
    public static func headerFields(_ lines: [String]) -> [(key: String, value: String)] {
        lines.compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (
                String(line[..<colon]).trimmingCharacters(in: .whitespaces),
                String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            )
        }
    }

    static func date(_ ms: Int64) -> String { ms == 0 ? "-" : Timestamp.iso8601(ms) }

    static func modelName(_ model: Licensed_V1_LicenseModel) -> String {
        switch model {
        case .nodeLocked: "NODE_LOCKED"
        case .site: "SITE"
        default: "FLOATING"
        }
    }

    static func overageName(_ policy: Licensed_V1_OveragePolicy) -> String {
        switch policy {
        case .trueUp: "TRUE_UP"
        case .unlimited: "UNLIMITED"
        default: "HARD"
        }
    }
}
