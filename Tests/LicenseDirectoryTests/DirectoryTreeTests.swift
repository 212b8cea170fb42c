import Testing

@testable import LicenseDirectory

@Suite("The organisation from directory entries")
struct DirectoryTreeTests {
    static func settings(_ change: (inout DirectorySettings) -> Void = { _ in }) -> DirectorySettings {
        var settings = DirectorySettings()
        settings.urls = ["ldap://127.0.0.1:1"]
        settings.baseDN = "o=Global"
        change(&settings)
        return settings
    }

    static func person(_ dn: String, _ uid: String, _ extra: [String: [String]] = [:]) -> (dn: String, attributes: [String: [String]]) {
        (dn, ["uid": [uid], "departmentnumber": ["CC-100"], "l": ["Berlin"]].merging(extra) { _, new in new })
    }

    @Test("units are the DN's ou= components below the base, outermost first, under the base as root; parents are units too")
    func unitsFromDNs() throws {
        let tree = try DirectoryReader.tree(
            entries: [
                Self.person("uid=ann,ou=OU 1.1,ou=OU 1,o=Global", "ann"),
                Self.person("uid=cat,ou=OU 2.1,ou=OU 2,o=Global", "cat", ["departmentnumber": ["CC-200"], "l": ["Paris"]]),
                Self.person("uid=root,o=Global", "root"),
                // Escaped characters in a DN are OpenLDAP's to parse, not ours.
                Self.person("uid=odd,ou=R\\2CD,o=Global", "odd"),
            ],
            disabled: ["uid=cat,ou=ou 2.1,ou=ou 2,o=global"],
            memberships: [:],
            settings: Self.settings(),
            syncedAtMs: 1
        )
        #expect(tree.users["ann"]?.unit == "/Global/OU 1/OU 1.1")
        #expect(tree.users["ann"]?.costCentre == "CC-100")
        #expect(tree.users["ann"]?.location == "Berlin")
        #expect(tree.users["cat"]?.unit == "/Global/OU 2/OU 2.1")
        #expect(tree.users["cat"]?.costCentre == "CC-200")
        #expect(tree.users["root"]?.unit == "/Global")
        #expect(tree.users["odd"]?.unit == "/Global/R,D")
        #expect(tree.units == ["/Global", "/Global/OU 1", "/Global/OU 1/OU 1.1", "/Global/OU 2", "/Global/OU 2/OU 2.1", "/Global/R,D"])
        #expect(tree.users["cat"]?.disabled == true, "the disabled search's DNs match whatever their case")
        #expect(tree.users["ann"]?.disabled == false)
    }

    @Test(
        "an AD-style base names the root unit by its dc= values; a unit attribute overrides the DN; memberOf and group entries give groups"
    )
    func activeDirectoryMapping() throws {
        let settings = Self.settings {
            $0.baseDN = "DC=corp,DC=example"
            $0.userAttribute = "sAMAccountName"
            $0.unitAttribute = "department"
        }
        let tree = try DirectoryReader.tree(
            entries: [
                (
                    "CN=Ann Lee,OU=Staff,DC=corp,DC=example",
                    [
                        "samaccountname": ["ann"], "department": ["Engineering/CFD"],
                        "memberof": ["CN=CAD Users,OU=Groups,DC=corp,DC=example"],
                    ]
                ),
                ("CN=Bob,OU=Staff,DC=corp,DC=example", ["samaccountname": ["bob"]]),
                ("CN=No Name,OU=Staff,DC=corp,DC=example", [:]),
            ],
            disabled: ["cn=bob,ou=staff,dc=corp,dc=example"],
            memberships: ["cn=bob,ou=staff,dc=corp,dc=example": ["/groups/Contractors"]],
            settings: settings,
            syncedAtMs: 1
        )
        #expect(tree.users.count == 2, "an entry without a user name is skipped")
        #expect(tree.users["ann"]?.unit == "/corp.example/Engineering/CFD")
        #expect(tree.users["ann"]?.groups == ["/groups/CAD Users"])
        #expect(tree.users["ann"]?.groupPaths == ["/corp.example/Engineering/CFD", "/groups/CAD Users"])
        #expect(tree.users["bob"]?.unit == "/corp.example/Staff")
        #expect(tree.users["bob"]?.groups == ["/groups/Contractors"])
        #expect(tree.users["bob"]?.disabled == true)
    }

    @Test("leavers: the disabled, and those gone since the last tree")
    func leavers() {
        let before = DirectoryTree(
            users: [.init(name: "ann", unit: "/G"), .init(name: "bob", unit: "/G"), .init(name: "cat", unit: "/G")],
            units: ["/G"],
            syncedAtMs: 1
        )
        let after = DirectoryTree(
            users: [.init(name: "ann", unit: "/G"), .init(name: "cat", unit: "/G", disabled: true)],
            units: ["/G"],
            syncedAtMs: 2
        )
        let leavers = after.leavers(since: before)
        #expect(leavers.map(\.name) == ["cat", "bob"])
        #expect(leavers.map(\.reason) == ["disabled in the directory", "no longer in the directory"])
        #expect(after.leavers(since: nil).map(\.name) == ["cat"])
    }

    @Test("settings are checked, naming the option")
    func settingsProblems() {
        #expect(DirectorySettings().problem == nil, "no directory: nothing to check")
        #expect(Self.settings { $0.urls = ["http://x"] }.problem?.contains("directory_urls") == true)
        #expect(Self.settings { $0.baseDN = "" }.problem?.contains("directory_base_dn") == true)
        #expect(Self.settings { $0.disabledFilter = "employeeType=disabled" }.problem?.contains("directory_disabled_filter") == true)
        #expect(Self.settings().problem == nil)
    }

    @Test("a directory that does not answer: the error names the URL")
    func unreachable() {
        let error = #expect(throws: DirectoryError.self) { try DirectoryReader.read(Self.settings { $0.timeoutSeconds = 2 }) }
        #expect(error?.message.contains("ldap://127.0.0.1:1") == true)
    }
}
