/// Who a session belongs to, as its Hello said and the server resolved.
///
/// A value type whose fields live in one shared, immutable box: every lease copies its
/// session's identity, and a box is 8 bytes a lease where six inline fields were 88 (80 MB at a
/// million leases). Setting a field makes a new box, so copies never see each other's changes.
public struct ClientIdentity: Sendable, Hashable, Codable {
    struct Fields: Sendable, Hashable, Codable {
        var user: String
        var host: String
        var clientName: String
        var clientVersion: String
        var groups: [String]
        var address: String
        var costCentre = ""
        var location = ""
    }

    final class Box: Sendable {
        let fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private(set) var box: Box

    /// Operating-system user name.
    public var user: String {
        get { self.box.fields.user }
        set { self.update { $0.user = newValue } }
    }
    /// Client host name.
    public var host: String {
        get { self.box.fields.host }
        set { self.update { $0.host = newValue } }
    }
    /// Client software name.
    public var clientName: String {
        get { self.box.fields.clientName }
        set { self.update { $0.clientName = newValue } }
    }
    /// Client software version (compared with feature version ceilings).
    public var clientVersion: String {
        get { self.box.fields.clientVersion }
        set { self.update { $0.clientVersion = newValue } }
    }
    /// Groups the user or host belongs to, from the server configuration ("/emea/sales").
    public var groups: [String] {
        get { self.box.fields.groups }
        set { self.update { $0.groups = newValue } }
    }
    /// Cost centre, from the directory (empty: none known).
    public var costCentre: String {
        get { self.box.fields.costCentre }
        set { self.update { $0.costCentre = newValue } }
    }
    /// Location, from the directory (empty: none known).
    public var location: String {
        get { self.box.fields.location }
        set { self.update { $0.location = newValue } }
    }
    /// The peer's network address as text ("10.1.2.3", "fd00::7"), for allowed_networks.
    public var address: String {
        get { self.box.fields.address }
        set { self.update { $0.address = newValue } }
    }

    /// Creates an identity.
    public init(
        user: String,
        host: String,
        clientName: String = "",
        clientVersion: String = "",
        groups: [String] = [],
        address: String = "",
        costCentre: String = "",
        location: String = ""
    ) {
        self.box = Box(
            Fields(
                user: user,
                host: host,
                clientName: clientName,
                clientVersion: clientVersion,
                groups: groups,
                address: address,
                costCentre: costCentre,
                location: location
            )
        )
    }

    private mutating func update(_ change: (inout Fields) -> Void) {
        var fields = self.box.fields
        change(&fields)
        self.box = Box(fields)
    }

    /// True when `other` names the same user on the same host (a lease's identity is its
    /// session's box, so this is usually one pointer comparison).
    public func isSameUserAndHost(as other: ClientIdentity) -> Bool {
        self.box === other.box || (self.box.fields.user == other.box.fields.user && self.box.fields.host == other.box.fields.host)
    }

    /// True when both are the same shared value (one pointer comparison): assigning one to the
    /// other would change nothing.
    public func isIdentical(to other: ClientIdentity) -> Bool { self.box === other.box }

    public static func == (lhs: ClientIdentity, rhs: ClientIdentity) -> Bool {
        lhs.box === rhs.box || lhs.box.fields == rhs.box.fields
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(self.box.fields) }

    public init(from decoder: any Decoder) throws { self.box = Box(try Fields(from: decoder)) }

    public func encode(to encoder: any Encoder) throws { try self.box.fields.encode(to: encoder) }
}
