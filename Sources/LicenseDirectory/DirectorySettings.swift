/// Where the organisation comes from: an LDAP directory (OpenLDAP, Active Directory) and how its
/// entries map onto users, organisational units, cost centres, locations, groups and the
/// disabled flag. Defaults fit an OpenLDAP `inetOrgPerson` tree; the README gives the Active
/// Directory mapping.
public struct DirectorySettings: Sendable, Equatable {
    /// `ldap://host:port` or `ldaps://host:port` URLs, tried in order (empty = no directory).
    public var urls: [String] = []
    /// Upgrade `ldap://` with StartTLS (required when set).
    public var startTLS = false
    /// PEM CA that signs the directory's certificate (empty: the system's).
    public var caFile = ""
    /// Bind DN (empty with no password file: anonymous).
    public var bindDN = ""
    /// File holding the bind password (its first line).
    public var passwordFile = ""
    /// Where users and units are searched.
    public var baseDN = ""
    /// Which entries are users.
    public var userFilter = "(objectClass=inetOrgPerson)"
    /// The attribute holding the user name clients present (AD: sAMAccountName).
    public var userAttribute = "uid"
    /// An attribute holding the user's host, if any (empty: none).
    public var hostAttribute = ""
    /// An attribute holding the organisational unit as a path ("OU 1/OU 1.1"); empty: the unit is
    /// the `ou=` components of the entry's DN below the base.
    public var unitAttribute = ""
    /// The attribute holding the cost centre (empty: none).
    public var costCentreAttribute = "departmentNumber"
    /// The attribute holding the location (empty: none).
    public var locationAttribute = "l"
    /// The attribute listing the DNs of the user's groups (AD and OpenLDAP's memberof overlay:
    /// memberOf; empty: none). Each group becomes `/groups/<cn>`.
    public var memberOfAttribute = "memberOf"
    /// Group entries searched for members, when the directory has no memberOf (empty: none).
    public var groupFilter = ""
    /// The attribute of a group entry listing member DNs.
    public var groupMemberAttribute = "member"
    /// Users matching this filter too are disabled (AD:
    /// `(userAccountControl:1.2.840.113556.1.4.803:=2)`; empty: nobody).
    public var disabledFilter = ""
    /// Seconds a search may take.
    public var timeoutSeconds = 10
    /// Entries per page (Simple Paged Results; Active Directory's own limit is 1000).
    public var pageSize = 500

    public init() {}

    /// True when a directory is configured.
    public var enabled: Bool { !self.urls.isEmpty }

    /// What is wrong with the settings, naming the option (nil: usable).
    public var problem: String? {
        guard self.enabled else { return nil }
        for url in self.urls where !(url.hasPrefix("ldap://") || url.hasPrefix("ldaps://")) {
            return "directory_urls: '\(url)' is not an ldap:// or ldaps:// URL"
        }
        if self.baseDN.isEmpty { return "directory_base_dn is needed with directory_urls" }
        if self.userAttribute.isEmpty { return "directory_user_attribute must not be empty" }
        if !self.userFilter.hasPrefix("(") { return "directory_user_filter '\(self.userFilter)' is not an LDAP filter in parentheses" }
        if !self.disabledFilter.isEmpty, !self.disabledFilter.hasPrefix("(") {
            return "directory_disabled_filter '\(self.disabledFilter)' is not an LDAP filter in parentheses"
        }
        if !self.groupFilter.isEmpty, !self.groupFilter.hasPrefix("(") {
            return "directory_group_filter '\(self.groupFilter)' is not an LDAP filter in parentheses"
        }
        if !(1...300).contains(self.timeoutSeconds) { return "directory_timeout_seconds must be between 1 and 300" }
        if !(1...10_000).contains(self.pageSize) { return "directory_page_size must be between 1 and 10000" }
        return nil
    }
}

/// A directory that could not be read: which server, and why, in the directory's own words.
public struct DirectoryError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}
