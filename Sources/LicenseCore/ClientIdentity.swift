/// Who a session belongs to, as its Hello said and the server resolved.
public struct ClientIdentity: Sendable, Hashable, Codable {
    /// Operating-system user name.
    public var user: String
    /// Client host name.
    public var host: String
    /// Client software name.
    public var clientName: String
    /// Client software version (compared with feature version ceilings).
    public var clientVersion: String
    /// Groups the user or host belongs to, from the server configuration ("/emea/sales").
    public var groups: [String]
    /// The peer's network address as text ("10.1.2.3", "fd00::7"), for allowed_networks.
    public var address: String

    /// Creates an identity.
    public init(
        user: String,
        host: String,
        clientName: String = "",
        clientVersion: String = "",
        groups: [String] = [],
        address: String = ""
    ) {
        self.user = user
        self.host = host
        self.clientName = clientName
        self.clientVersion = clientVersion
        self.groups = groups
        self.address = address
    }
}
