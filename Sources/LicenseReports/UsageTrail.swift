public import LicenseAudit

/// What the audit trail says happened, in the shape reports need: each lease as a span from its
/// grant to its release, each denial, each activation and its end, and the licences in force
/// after each start and reload. Read in one pass; nothing else is kept, so reports cannot drift
/// from the trail.
public struct UsageTrail: Sendable {
    /// One lease: who held how many seats of what, from when to when.
    public struct Span: Sendable, Equatable {
        public var lease: String
        public var feature: String
        public var license: String
        public var user: String
        public var host: String
        public var groups: [String]
        public var count: Int64
        public var grantedMs: Int64
        /// When it was checked in, reclaimed or revoked; nil while still held.
        public var endMs: Int64?
        public var overage: Bool
        /// How long the check-out waited in the queue, when it did.
        public var waitedMs: Int64?
        /// checked_in, expired, revoked, base_released.
        public var cause: String?
    }

    /// A refused check-out.
    public struct Denial: Sendable, Equatable {
        public var timeMs: Int64
        public var feature: String
        public var user: String
        public var host: String
        public var groups: [String]
        public var count: Int64
        /// The protocol code: NO_SEATS, DEADLINE_EXCEEDED, LICENSE_EXPIRED, ...
        public var code: String
    }

    /// A licence as its `license` record describes it.
    public struct License: Sendable, Equatable {
        public var id: String
        public var product: String
        public var model: String
        /// HARD, TRUE_UP or UNLIMITED.
        public var policy: String
        /// Feature name and purchased count, in licence order.
        public var features: [(name: String, count: Int64)]
        public var maxActivations: Int64
        public var notBeforeMs: Int64
        public var notAfterMs: Int64
        public var graceMs: Int64

        public static func == (a: License, b: License) -> Bool {
            a.id == b.id && a.policy == b.policy && a.features.map(\.name) == b.features.map(\.name)
                && a.features.map(\.count) == b.features.map(\.count) && a.notAfterMs == b.notAfterMs
        }
    }

    /// An activation starting (+1) or ending (-1).
    public struct ActivationChange: Sendable, Equatable {
        public var timeMs: Int64
        public var activation: String
        public var license: String
        public var delta: Int
    }

    /// Every lease granted, in grant order.
    public private(set) var spans: [Span] = []
    /// Every denial, in order.
    public private(set) var denials: [Denial] = []
    /// The licences in force from each start or reload on.
    public private(set) var licenseSets: [(sinceMs: Int64, licenses: [License])] = []
    /// Activations made and ended, in order.
    public private(set) var activations: [ActivationChange] = []
    /// Records read.
    public private(set) var records = 0
    /// Time of the first and last record read.
    public private(set) var firstMs: Int64?
    public private(set) var lastMs: Int64?

    private var openLeases: [String: Int] = [:]
    private var activationLicense: [String: String] = [:]

    /// An empty trail, to `add` records to.
    public init() {}

    /// Reads `files` up to (not including) `untilMs`.
    public static func read(_ files: [AuditTrail.File], untilMs: Int64 = .max) throws -> UsageTrail {
        var trail = UsageTrail()
        try AuditTrail.forEachRecord(in: files) { record in
            guard record.timeMs < untilMs else { return false }
            trail.add(record)
            return true
        }
        return trail
    }

    /// Takes one record into account (records must come in trail order).
    public mutating func add(_ record: AuditRecord) {
        self.records += 1
        if self.firstMs == nil { self.firstMs = record.timeMs }
        self.lastMs = record.timeMs
        switch record.action {
        case "grant", "checkin", "reclaim", "revoke", "deny", "license", "activate", "deactivate", "reclaim_activation",
            "revoke_activation":
            break
        case "start", "reload":
            self.licenseSets.append((record.timeMs, []))
            return
        default:
            return
        }
        guard let pairs = record.details else { return }
        let details = Details(pairs)
        switch record.action {
        case "grant":
            let lease = details.string("lease")
            guard !lease.isEmpty, self.openLeases[lease] == nil else { return }
            self.openLeases[lease] = self.spans.count
            self.spans.append(
                Span(
                    lease: lease,
                    feature: details.string("feature"),
                    license: details.string("license"),
                    user: details.string("user"),
                    host: details.string("host"),
                    groups: details.strings("groups"),
                    count: max(details.int("count") ?? 1, 1),
                    grantedMs: details.int("granted_ms") ?? record.timeMs,
                    endMs: nil,
                    overage: details.bool("overage"),
                    waitedMs: details.int("waited_ms"),
                    cause: nil
                )
            )
        case "checkin", "reclaim", "revoke":
            guard let index = self.openLeases.removeValue(forKey: details.string("lease")) else { return }
            self.spans[index].endMs = record.timeMs
            self.spans[index].cause = details.string("cause")
        case "deny":
            self.denials.append(
                Denial(
                    timeMs: record.timeMs,
                    feature: details.string("feature"),
                    user: details.string("user"),
                    host: details.string("host"),
                    groups: details.strings("groups"),
                    count: details.int("count") ?? 1,
                    code: details.string("code")
                )
            )
        case "license":
            let features = details.strings("features").compactMap { entry -> (name: String, count: Int64)? in
                guard let equals = entry.lastIndex(of: "="), let count = Int64(entry[entry.index(after: equals)...]) else { return nil }
                return (String(entry[..<equals]), count)
            }
            let license = License(
                id: details.string("license"),
                product: details.string("product"),
                model: details.string("model"),
                policy: details.string("policy"),
                features: features,
                maxActivations: details.int("max_activations") ?? 0,
                notBeforeMs: details.int("not_before_ms") ?? 0,
                notAfterMs: details.int("not_after_ms") ?? 0,
                graceMs: details.int("grace_ms") ?? 0
            )
            if self.licenseSets.isEmpty { self.licenseSets.append((record.timeMs, [])) }
            self.licenseSets[self.licenseSets.count - 1].licenses.append(license)
        case "activate":
            let id = details.string("activation")
            guard self.activationLicense[id] == nil else { return }  // a re-activation of the same machine
            let license = details.string("license")
            self.activationLicense[id] = license
            self.activations.append(ActivationChange(timeMs: record.timeMs, activation: id, license: license, delta: 1))
        default:  // deactivate, reclaim_activation, revoke_activation
            let id = details.string("activation")
            guard let license = self.activationLicense.removeValue(forKey: id) else { return }
            self.activations.append(ActivationChange(timeMs: record.timeMs, activation: id, license: license, delta: -1))
        }
    }

    /// The licences in force at `timeMs` (those of the last start or reload before it).
    public func licenses(at timeMs: Int64) -> [License] {
        self.licenseSets.last(where: { $0.sinceMs <= timeMs })?.licenses ?? []
    }
}

/// Lookup in a record's details.
struct Details {
    let pairs: [(String, AuditEvent.Value)]

    init(_ pairs: [(String, AuditEvent.Value)]) { self.pairs = pairs }

    func value(_ key: String) -> AuditEvent.Value? {
        for (name, value) in self.pairs where name == key { return value }
        return nil
    }

    func string(_ key: String) -> String {
        if case .string(let text) = self.value(key) { return text }
        return ""
    }

    func strings(_ key: String) -> [String] {
        if case .strings(let list) = self.value(key) { return list }
        return []
    }

    func int(_ key: String) -> Int64? {
        if case .int(let number) = self.value(key) { return number }
        return nil
    }

    func bool(_ key: String) -> Bool {
        if case .bool(let flag) = self.value(key) { return flag }
        return false
    }
}
