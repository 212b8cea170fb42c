/// Who a session belongs to, as its Hello said and the server resolved.
///
/// A value type whose fields live in one shared, immutable box: every lease copies its
/// session's identity, and a box is 8 bytes a lease where six inline fields were 88 (80 MB at a
/// million leases). Setting a field makes a new box, so copies never see each other's changes.
public struct ClientIdentity: Sendable, Hashable, Codable {
    final class Box: Sendable {
        let user: String
        let host: String
        let clientName: String
        let clientVersion: String
        let groups: [String]
        let address: String

        init(user: String, host: String, clientName: String, clientVersion: String, groups: [String], address: String) {
            self.user = user
            self.host = host
            self.clientName = clientName
            self.clientVersion = clientVersion
            self.groups = groups
            self.address = address
        }
    }

    private var box: Box

    /// Operating-system user name.
    public var user: String {
        get { self.box.user }
        set { self = self.with(user: newValue) }
    }
    /// Client host name.
    public var host: String {
        get { self.box.host }
        set { self = self.with(host: newValue) }
    }
    /// Client software name.
    public var clientName: String {
        get { self.box.clientName }
        set { self = self.with(clientName: newValue) }
    }
    /// Client software version (compared with feature version ceilings).
    public var clientVersion: String {
        get { self.box.clientVersion }
        set { self = self.with(clientVersion: newValue) }
    }
    /// Groups the user or host belongs to, from the server configuration ("/emea/sales").
    public var groups: [String] {
        get { self.box.groups }
        set { self = self.with(groups: newValue) }
    }
    /// The peer's network address as text ("10.1.2.3", "fd00::7"), for allowed_networks.
    public var address: String {
        get { self.box.address }
        set { self = self.with(address: newValue) }
    }

    /// Creates an identity.
    public init(
        user: String,
        host: String,
        clientName: String = "",
        clientVersion: String = "",
        groups: [String] = [],
        address: String = ""
    ) {
        self.box = Box(user: user, host: host, clientName: clientName, clientVersion: clientVersion, groups: groups, address: address)
    }

    private func with(
        user: String? = nil,
        host: String? = nil,
        clientName: String? = nil,
        clientVersion: String? = nil,
        groups: [String]? = nil,
        address: String? = nil
    ) -> ClientIdentity {
        ClientIdentity(
            user: user ?? self.user,
            host: host ?? self.host,
            clientName: clientName ?? self.clientName,
            clientVersion: clientVersion ?? self.clientVersion,
            groups: groups ?? self.groups,
            address: address ?? self.address
        )
    }

    /// True when both share one box (then they are equal without comparing fields).
    func sharesStorage(with other: ClientIdentity) -> Bool { self.box === other.box }

    public static func == (lhs: ClientIdentity, rhs: ClientIdentity) -> Bool {
        lhs.box === rhs.box
            || (lhs.user == rhs.user && lhs.host == rhs.host && lhs.clientName == rhs.clientName
                && lhs.clientVersion == rhs.clientVersion && lhs.groups == rhs.groups && lhs.address == rhs.address)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.user)
        hasher.combine(self.host)
        hasher.combine(self.clientName)
        hasher.combine(self.clientVersion)
        hasher.combine(self.groups)
        hasher.combine(self.address)
    }

    enum CodingKeys: String, CodingKey {
        case user, host, clientName, clientVersion, groups, address
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            user: try container.decode(String.self, forKey: .user),
            host: try container.decode(String.self, forKey: .host),
            clientName: try container.decode(String.self, forKey: .clientName),
            clientVersion: try container.decode(String.self, forKey: .clientVersion),
            groups: try container.decode([String].self, forKey: .groups),
            address: try container.decode(String.self, forKey: .address)
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.user, forKey: .user)
        try container.encode(self.host, forKey: .host)
        try container.encode(self.clientName, forKey: .clientName)
        try container.encode(self.clientVersion, forKey: .clientVersion)
        try container.encode(self.groups, forKey: .groups)
        try container.encode(self.address, forKey: .address)
    }
}
