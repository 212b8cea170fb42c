import Foundation

/// Reads the organisation from the directory: one connection (the first URL that answers), one
/// paged search for users (and one for the disabled among them, and one for group entries when
/// the directory has no memberOf), mapped onto a `DirectoryTree`. Blocking: call it off the
/// serving loop.
public enum DirectoryReader {
    /// Reads `settings`' directory now.
    public static func read(_ settings: DirectorySettings, nowMs: () -> Int64 = DirectoryReader.now) throws(DirectoryError)
        -> DirectoryTree
    {
        let started = nowMs()
        if let problem = settings.problem { throw DirectoryError(problem) }
        let password = try self.password(settings)
        var failures: [String] = []
        for url in settings.urls {
            let connection: LDAPConnection
            do { connection = try LDAPConnection(url: url, settings: settings, password: password) } catch {
                failures.append(error.message)
                continue
            }
            var attributes = [settings.userAttribute, settings.hostAttribute, settings.unitAttribute, settings.costCentreAttribute]
            attributes += [settings.locationAttribute, settings.memberOfAttribute]
            let wanted = attributes.filter { !$0.isEmpty }
            let entries = try connection.search(
                base: settings.baseDN,
                filter: settings.userFilter,
                attributes: wanted,
                pageSize: settings.pageSize
            )
            var disabled = Set<String>()
            if !settings.disabledFilter.isEmpty {
                let filter = "(&\(settings.userFilter)\(settings.disabledFilter))"
                for entry in try connection.search(base: settings.baseDN, filter: filter, attributes: ["1.1"], pageSize: settings.pageSize)
                {
                    disabled.insert(entry.dn.lowercased())
                }
            }
            var memberships: [String: [String]] = [:]
            if !settings.groupFilter.isEmpty {
                let groups = try connection.search(
                    base: settings.baseDN,
                    filter: settings.groupFilter,
                    attributes: ["cn", settings.groupMemberAttribute],
                    pageSize: settings.pageSize
                )
                for group in groups {
                    let path = self.groupPath(dn: group.dn, cn: group.first("cn"))
                    for member in group.all(settings.groupMemberAttribute) { memberships[member.lowercased(), default: []].append(path) }
                }
            }
            let tree = try self.tree(
                entries: entries.map { ($0.dn, $0.attributes) },
                disabled: disabled,
                memberships: memberships,
                settings: settings,
                syncedAtMs: nowMs()
            )
            return DirectoryTree(
                users: Array(tree.users.values),
                units: tree.units,
                syncedAtMs: tree.syncedAtMs,
                durationMs: nowMs() - started,
                source: url
            )
        }
        throw DirectoryError(failures.joined(separator: "; "))
    }

    /// The tree of already-read user entries (by DN and lower-case attribute names): the mapping,
    /// apart from the connection.
    static func tree(
        entries: [(dn: String, attributes: [String: [String]])],
        disabled: Set<String>,
        memberships: [String: [String]],
        settings: DirectorySettings,
        syncedAtMs: Int64
    ) throws(DirectoryError) -> DirectoryTree {
        guard let base = LDAPConnection.components(of: settings.baseDN) else {
            throw DirectoryError("directory_base_dn '\(settings.baseDN)' is not a DN")
        }
        // The root unit is the base itself: "Global" for o=Global, "corp.example" for dc=corp,dc=example.
        let root = "/" + base.map { rdn in rdn.map(\.value).joined(separator: "+") }.joined(separator: ".")
        var units = Set([root])
        var users: [DirectoryTree.User] = []
        for (dn, attributes) in entries {
            let entry = LDAPConnection.Entry(dn: dn, attributes: attributes)
            guard let name = entry.first(settings.userAttribute), !name.isEmpty else { continue }
            var unit = root
            if let value = entry.first(settings.unitAttribute) {
                for part in value.split(separator: "/") where !part.isEmpty { unit += "/" + part }
            } else if let rdns = LDAPConnection.components(of: dn) {
                // The ou= components below the base, outermost first.
                for rdn in rdns.dropFirst().dropLast(base.count).reversed() {
                    if let ou = rdn.first(where: { $0.attribute.lowercased() == "ou" }) { unit += "/" + ou.value }
                }
            }
            var path = unit
            while path != root, !path.isEmpty {
                units.insert(path)
                path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            }
            var groups = entry.all(settings.memberOfAttribute).map { self.groupPath(dn: $0, cn: nil) }
            groups += memberships[dn.lowercased()] ?? []
            users.append(
                DirectoryTree.User(
                    name: name,
                    dn: dn,
                    unit: unit,
                    groups: Array(Set(groups)).sorted(),
                    costCentre: entry.first(settings.costCentreAttribute) ?? "",
                    location: entry.first(settings.locationAttribute) ?? "",
                    host: entry.first(settings.hostAttribute) ?? "",
                    disabled: disabled.contains(dn.lowercased())
                )
            )
        }
        return DirectoryTree(users: users, units: units, syncedAtMs: syncedAtMs)
    }

    /// `/groups/<cn>` of a group DN (its first RDN's value when no cn is given).
    static func groupPath(dn: String, cn: String?) -> String {
        let name = cn ?? LDAPConnection.components(of: dn)?.first?.first?.value ?? dn
        return "/groups/" + name
    }

    static func password(_ settings: DirectorySettings) throws(DirectoryError) -> String {
        guard !settings.passwordFile.isEmpty else { return "" }
        guard let text = try? String(contentsOfFile: settings.passwordFile, encoding: .utf8) else {
            throw DirectoryError("directory_password_file \(settings.passwordFile) cannot be read")
        }
        return String(text.split(whereSeparator: \.isNewline).first ?? "")
    }

    public static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
