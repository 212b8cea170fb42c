import Foundation
public import LicenseProtocol

/// MaaS360-style assignment of parts (node-locked licences) to devices. A part without `requires`
/// is a base part; one with `requires` is an add-on that needs one of those base parts on the same
/// device. A device keeps at least one base part. Assigning a part whose features cover, or are
/// covered by, a part of the same kind on the device replaces that part (upgrade or downgrade).
extension SeatLedger {
    /// One device as a bulk row names it: by device id (the machine name given at activation) or
    /// by fingerprint.
    public struct Device: Sendable, Hashable {
        /// Device id; empty when the row gives a fingerprint.
        public var deviceID: String
        /// Fingerprint component ids; empty when the row gives a device id.
        public var fingerprint: [String]

        /// Creates a device reference.
        public init(deviceID: String = "", fingerprint: [String] = []) {
            self.deviceID = deviceID
            self.fingerprint = fingerprint
        }

        /// How the device is written in reports.
        public var label: String { self.deviceID.isEmpty ? self.fingerprint.joined(separator: " ") : self.deviceID }
    }

    /// The activations on `device`.
    public func activations(on device: Device) -> [Activation] {
        self.activations.values.filter { activation in
            if !device.deviceID.isEmpty { return activation.machineName == device.deviceID }
            let rule = self.nodeLocked[activation.licenseID]?.license.fingerprintMatch ?? .most
            return FingerprintMatch.matches(bound: activation.fingerprint, presented: device.fingerprint, rule: rule)
        }.sorted { $0.id < $1.id }
    }

    func isBase(_ licenseID: String) -> Bool { self.nodeLocked[licenseID]?.license.requires.isEmpty ?? true }

    /// Assigns `part` to `device`: returns the new (or existing) activation and what changed.
    public mutating func assign(part: String, to device: Device, by identity: ClientIdentity, newActivationID: String, at nowMs: Int64)
        -> Result<(activation: Activation, replaced: [Activation], changes: [LedgerChange]), LicenseError>
    {
        guard let pool = self.nodeLocked[part] else { return .failure(LicenseError(.notFound, "no node-locked part '\(part)'")) }
        let state = self.state(of: pool, at: nowMs)
        guard Self.isUsable(state) else {
            return .failure(self.unusableError(pool, state: state, for: "part assignment", at: nowMs))
        }
        let present = self.activations(on: device)
        if let existing = present.first(where: { $0.licenseID == part }) {
            return .success((existing, [], []))
        }
        guard !present.isEmpty || !device.fingerprint.isEmpty || !device.deviceID.isEmpty else {
            return .failure(LicenseError(.invalidArgument, "the row names no device"))
        }
        let newFeatures = Set(pool.license.features.map(\.name))
        let base = pool.license.requires.isEmpty
        if !base, !present.contains(where: { pool.license.requires.contains($0.licenseID) }) {
            return .failure(
                LicenseError(
                    .baseRequired,
                    "part '\(part)' is an add-on; the device needs a base part first (\(pool.license.requires.joined(separator: " or ")))"
                )
            )
        }
        // Upgrade or downgrade: a part of the same kind whose features cover or are covered.
        let replaced = present.filter { old in
            guard self.isBase(old.licenseID) == base else { return false }
            let oldFeatures = Set(old.features)
            return newFeatures.isSuperset(of: oldFeatures) || oldFeatures.isSuperset(of: newFeatures)
        }
        // Free the replaced parts first, so they do not count against the new part's limit.
        var changes: [LedgerChange] = replaced.map { .deactivated(id: $0.id, cause: .revoked, atMs: nowMs) }
        for change in changes { self.apply(change) }
        let fingerprint = device.fingerprint.isEmpty ? (present.first?.fingerprint ?? [device.deviceID]) : device.fingerprint
        let request = Activate(
            licenseID: part,
            fingerprint: fingerprint,
            machineName: device.deviceID.isEmpty ? (present.first?.machineName ?? "") : device.deviceID,
            identity: identity,
            newActivationID: newActivationID
        )
        switch self.activate(request, at: nowMs) {
        case .success(let activated):
            changes += activated.changes
            return .success((activated.activation, replaced, changes))
        case .failure(let error):
            // Put the replaced parts back: nothing changes when the assignment fails.
            for old in replaced { self.apply(.activated(old)) }
            return .failure(error)
        }
    }

    /// Revokes `part` from `device`. A device keeps at least one base part, and a base that
    /// add-ons on the device depend on is not revoked while they remain.
    public mutating func revoke(part: String, from device: Device, at nowMs: Int64) -> Result<[LedgerChange], LicenseError> {
        let present = self.activations(on: device)
        guard let target = present.first(where: { $0.licenseID == part }) else {
            return .failure(LicenseError(.notFound, "device \(device.label) has no part '\(part)'"))
        }
        if self.isBase(part) {
            let bases = present.filter { self.isBase($0.licenseID) }
            guard bases.count > 1 else {
                return .failure(
                    LicenseError(
                        .permissionDenied,
                        "'\(part)' is the last base part of device \(device.label); a device keeps at least one base part"
                    )
                )
            }
            let otherBases = Set(bases.map(\.licenseID)).subtracting([part])
            for addOn in present where !self.isBase(addOn.licenseID) {
                let requires = self.nodeLocked[addOn.licenseID]?.license.requires ?? []
                if !requires.contains(where: otherBases.contains) {
                    return .failure(
                        LicenseError(.permissionDenied, "add-on '\(addOn.licenseID)' on device \(device.label) needs base part '\(part)'")
                    )
                }
            }
        }
        let change = LedgerChange.deactivated(id: target.id, cause: .revoked, atMs: nowMs)
        self.apply(change)
        return .success([change])
    }

    /// The part new activations get when they name none: the default part, or the overage part
    /// when the default is used up and its policy allows overage.
    public func partForNewActivation(defaultPart: String, overagePart: String) -> String? {
        guard let pool = self.nodeLocked[defaultPart] else { return nil }
        let limit = pool.license.maxActivations > 0 ? pool.license.maxActivations : (pool.license.features.map(\.count).max() ?? 0)
        let used = self.activations.values.filter { $0.licenseID == defaultPart }.count
        if pool.unlimited || used < limit { return defaultPart }
        guard !overagePart.isEmpty, pool.license.overage != .hard, pool.license.overage != .unspecified else { return defaultPart }
        return overagePart
    }
}

extension SeatLedger {
    /// Applies `part` to every row (assign, or revoke), each row on its own: applied, or refused
    /// with its reason. The run is recorded for history as the last change.
    public mutating func bulk(
        part: String,
        revoke: Bool,
        rows: [(row: UInt32, device: Device)],
        by identity: ClientIdentity,
        runID: String,
        newActivationID: () -> String,
        at nowMs: Int64
    ) -> (run: Licensed_V1_AssignmentRun, changes: [LedgerChange]) {
        var changes: [LedgerChange] = []
        var run = Licensed_V1_AssignmentRun()
        run.runID = runID
        run.part = part
        run.revoke = revoke
        run.atMs = nowMs
        run.actor = identity.user
        for (number, device) in rows {
            var result = Licensed_V1_RowResult()
            result.row = number
            result.device = device.label
            if device.deviceID.isEmpty && device.fingerprint.isEmpty {
                result.reason = "the row names no device"
            } else if revoke {
                let target = self.activations(on: device).first { $0.licenseID == part }
                switch self.revoke(part: part, from: device, at: nowMs) {
                case .success(let revoked):
                    changes += revoked
                    result.applied = true
                    result.activationID = target?.id ?? ""
                case .failure(let error):
                    result.reason = error.message
                }
            } else {
                switch self.assign(part: part, to: device, by: identity, newActivationID: newActivationID(), at: nowMs) {
                case .success(let assigned):
                    changes += assigned.changes
                    result.applied = true
                    result.activationID = assigned.activation.id
                    if !assigned.replaced.isEmpty {
                        result.reason = "replaced " + assigned.replaced.map(\.licenseID).joined(separator: ", ")
                    }
                    if assigned.changes.isEmpty { result.reason = "already assigned" }
                case .failure(let error):
                    result.reason = error.message
                }
            }
            run.results.append(result)
        }
        let record = LedgerChange.assignmentRun(run)
        self.apply(record)
        changes.append(record)
        return (run, changes)
    }

    /// The part's state for reports: "active", "overage" or "suspended".
    public func status(of activation: Activation, at nowMs: Int64) -> String {
        if let pool = self.nodeLocked[activation.licenseID], !Self.isUsable(self.state(of: pool, at: nowMs)) { return "suspended" }
        return activation.overage ? "overage" : "active"
    }

    /// The product name of a part.
    public func partName(_ licenseID: String) -> String { self.nodeLocked[licenseID]?.license.product ?? "" }
}
