/// Who a session belongs to, as its Hello said.
public struct ClientIdentity: Sendable, Hashable, Codable {
    /// Operating-system user name.
    public var user: String
    /// Client host name.
    public var host: String
    /// Client software name.
    public var clientName: String
    /// Client software version (compared with feature version ceilings).
    public var clientVersion: String

    /// Creates an identity.
    public init(user: String, host: String, clientName: String = "", clientVersion: String = "") {
        self.user = user
        self.host = host
        self.clientName = clientName
        self.clientVersion = clientVersion
    }
}
