/// The organisation as one sync read it: each user with the organisational unit it sits in (a
/// group path, "/Global/OU 1/OU 1.1", so that "full hierarchy" scopes and the nearest-pool choice
/// work on real units), its groups, cost centre, location and whether it is disabled; and every
/// unit found. Built on the sync's thread, handed whole to the serving loop.
public struct DirectoryTree: Sendable, Equatable {
    /// One user.
    public struct User: Sendable, Equatable {
        /// The name clients present (the user attribute's value).
        public var name: String
        public var dn: String
        /// The unit's group path, "/Global/OU 1/OU 1.1".
        public var unit: String
        /// Directory groups as paths, "/groups/<cn>".
        public var groups: [String]
        public var costCentre: String
        public var location: String
        /// The host attribute's value, if configured and set.
        public var host: String
        /// Matches the disabled filter.
        public var disabled: Bool

        public init(
            name: String,
            dn: String = "",
            unit: String,
            groups: [String] = [],
            costCentre: String = "",
            location: String = "",
            host: String = "",
            disabled: Bool = false
        ) {
            self.name = name
            self.dn = dn
            self.unit = unit
            self.groups = groups
            self.costCentre = costCentre
            self.location = location
            self.host = host
            self.disabled = disabled
        }

        /// The unit and every group, for the ledger's group checks (the unit's parents are
        /// implied by its path).
        public var groupPaths: [String] { [self.unit] + self.groups }
    }

    /// By user name.
    public var users: [String: User]
    /// Every unit's path, parents included.
    public var units: Set<String>
    /// When the sync finished (ms since 1970), and how long it took.
    public var syncedAtMs: Int64
    public var durationMs: Int64
    /// The server it was read from.
    public var source: String

    public init(users: [User], units: Set<String>, syncedAtMs: Int64, durationMs: Int64 = 0, source: String = "") {
        var byName: [String: User] = [:]
        for user in users where byName[user.name] == nil { byName[user.name] = user }
        self.users = byName
        self.units = units
        self.syncedAtMs = syncedAtMs
        self.durationMs = durationMs
        self.source = source
    }

    /// Users disabled in the directory.
    public var disabledCount: Int { self.users.values.filter(\.disabled).count }

    /// Who was in `previous` and is now gone or disabled (newly), by name: the leavers to reclaim from.
    public func leavers(since previous: DirectoryTree?) -> [(name: String, reason: String)] {
        var leavers: [(String, String)] = []
        for user in self.users.values.sorted(by: { $0.name < $1.name }) where user.disabled {
            leavers.append((user.name, "disabled in the directory"))
        }
        if let previous {
            for name in previous.users.keys.sorted() where self.users[name] == nil {
                leavers.append((name, "no longer in the directory"))
            }
        }
        return leavers
    }
}
