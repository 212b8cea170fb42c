/// A node-locked grant: a licence bound to one machine's fingerprint.
public struct Activation: Sendable, Hashable {
    /// The activation's id ("act-" and 24 hex digits).
    public var id: String
    /// The node-locked licence.
    public var licenseID: String
    /// Features the machine may use.
    public var features: [String]
    /// Fingerprint component ids bound (the latest the machine presented).
    public var fingerprint: [String]
    /// A readable machine name.
    public var machineName: String
    /// The user it was activated for.
    public var user: String
    /// When it was activated.
    public var activatedAtMs: Int64
    /// When the machine was last seen (activation or validation).
    public var lastSeenMs: Int64
    /// Granted beyond max_activations (TRUE_UP).
    public var overage: Bool

    /// Creates an activation.
    public init(
        id: String,
        licenseID: String,
        features: [String],
        fingerprint: [String],
        machineName: String,
        user: String,
        activatedAtMs: Int64,
        lastSeenMs: Int64,
        overage: Bool
    ) {
        self.id = id
        self.licenseID = licenseID
        self.features = features
        self.fingerprint = fingerprint
        self.machineName = machineName
        self.user = user
        self.activatedAtMs = activatedAtMs
        self.lastSeenMs = lastSeenMs
        self.overage = overage
    }
}
