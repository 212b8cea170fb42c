public import LicenseProtocol

/// A licence whose issuer signature verified with a trusted key, with where it came from.
public struct VerifiedLicense: Sendable, Hashable {
    /// The signed licence content.
    public var license: Licensed_V1_License
    /// The trusted key that signed it.
    public var keyID: String
    /// File it was loaded from.
    public var file: String
    /// 1-based block number in that file.
    public var block: Int

    /// Creates a verified licence record.
    public init(license: Licensed_V1_License, keyID: String, file: String, block: Int) {
        self.license = license
        self.keyID = keyID
        self.file = file
        self.block = block
    }

    /// Where the licence stands at `nowMs`.
    public func state(at nowMs: Int64) -> Licensed_V1_LicenseStatus.State {
        Self.state(
            at: nowMs,
            notBeforeMs: self.license.notBeforeMs,
            notAfterMs: self.license.notAfterMs,
            graceMs: self.license.gracePeriodMs
        )
    }

    /// Where a licence valid from `notBeforeMs` to `notAfterMs` (0: unbounded) with `graceMs` of
    /// grace stands at `nowMs`.
    static func state(at nowMs: Int64, notBeforeMs: Int64, notAfterMs: Int64, graceMs: Int64) -> Licensed_V1_LicenseStatus.State {
        if notBeforeMs != 0, nowMs < notBeforeMs { return .notYetValid }
        if notAfterMs != 0, nowMs > notAfterMs {
            return nowMs > notAfterMs + graceMs ? .expired : .expiring
        }
        return .compliant
    }
}

/// A licence block that was not loaded, and why.
public struct RejectedLicenseBlock: Sendable, Hashable, CustomStringConvertible {
    /// File it was read from.
    public var file: String
    /// 1-based block number in that file (0 when the whole file could not be read).
    public var block: Int
    /// Why.
    public var rejection: LicenseRejection
    /// Licence id when it could be read.
    public var licenseID: String

    /// Creates a rejection record.
    public init(file: String, block: Int, rejection: LicenseRejection, licenseID: String = "") {
        self.file = file
        self.block = block
        self.rejection = rejection
        self.licenseID = licenseID
    }

    /// The one log line: file, block number, licence id, reason.
    public var description: String {
        let id = self.licenseID.isEmpty ? "" : " (licence '\(self.licenseID)')"
        return "\(self.file): block \(self.block)\(id) rejected: \(self.rejection)"
    }

    /// The protocol form.
    public var protocolForm: Licensed_V1_RejectedLicense {
        var r = Licensed_V1_RejectedLicense()
        r.file = self.file
        r.block = UInt32(self.block)
        r.reason = self.rejection.reason
        r.licenseID = self.licenseID
        return r
    }
}

extension Licensed_V1_License {
    /// True when the licence depends on the date: an end date, a trial or a maintenance date. A
    /// clock set back (see `SeatLedger.clockSetbackMs`) stops such licences, not perpetual ones.
    public var isTimeLimited: Bool { self.notAfterMs != 0 || self.trialDays > 0 || self.maintenanceUntilMs != 0 }
}
