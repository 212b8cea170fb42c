import Foundation
import LicenseAudit
import LicenseDirectory
import LicenseFiles
import LicenseServer
import LicenseStore
import Testing

@Suite("Server configuration")
struct ServerConfigurationTests {
    @Test("defaults, then the YAML file, then LICENSED_* variables, then flags")
    func precedence() throws {
        let yaml = """
            port: 1000
            listen_host: 10.0.0.1
            log_level: debug
            license_paths: [/a.lic, /b]
            trusted_keys:
              - {id: acme, public_key: /k.pem}
            """
        let environment = ["LICENSED_PORT": "2000", "LICENSED_LOG_LEVEL": "warning", "UNRELATED": "x"]
        let config = try ServerConfiguration.load(yaml: yaml, environment: environment, arguments: ["--port", "3000"])
        #expect(config.port == 3000)  // flag beats env beats file
        #expect(config.logLevel == "warning")  // env beats file
        #expect(config.listenHost == "10.0.0.1")  // file beats default
        #expect(config.licensePaths == ["/a.lic", "/b"])
        #expect(config.trustedKeys == [.init(id: "acme", publicKey: "/k.pem")])
        #expect(config.leaseTTLMs == ServerConfiguration().leaseTTLMs)  // default
    }

    @Test("every option has a YAML key, an environment variable and a flag")
    func names() {
        let names = ServerConfiguration.options.map(\.name)
        #expect(Set(names).count == names.count)
        #expect(ServerConfiguration.options.first { $0.name == "lease_ttl_ms" }?.environmentVariable == "LICENSED_LEASE_TTL_MS")
        #expect(ServerConfiguration.options.first { $0.name == "lease_ttl_ms" }?.flag == "--lease-ttl-ms")
    }

    @Test("audit_compress: zstd by default and for true, gzip, none for false; anything else names the option and the choices")
    func auditCompression() throws {
        #expect(ServerConfiguration().auditCompression == .zstd)
        let cases: [(String, FileCompression?)] = [
            ("zstd", .zstd), ("true", .zstd), ("gzip", .gzip), ("GZIP", .gzip), ("false", nil), ("off", nil),
        ]
        for (value, expected) in cases {
            let config = try ServerConfiguration.load(yaml: "audit_compress: \(value)", environment: [:], arguments: [])
            #expect(config.auditCompression == expected, "\(value)")
        }
        let flag = try ServerConfiguration.load(yaml: "audit_compress: zstd", environment: [:], arguments: ["--audit-compress", "gzip"])
        #expect(flag.auditCompression == .gzip)
        let error = #expect(throws: (any Error).self) {
            try ServerConfiguration.load(yaml: "audit_compress: lz4", environment: [:], arguments: [])
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("audit_compress must be zstd, gzip, true (zstd) or false, not 'lz4'"))
    }

    @Test("audit_format: compact by default, jsonl on request, as a key, a variable or a flag; anything else names the choices")
    func auditFormat() throws {
        #expect(ServerConfiguration().auditFormat == .compact)
        #expect(try ServerConfiguration.load(yaml: "audit_format: jsonl", environment: [:], arguments: []).auditFormat == .jsonl)
        #expect(
            try ServerConfiguration.load(yaml: "", environment: ["LICENSED_AUDIT_FORMAT": "JSONL"], arguments: []).auditFormat == .jsonl
        )
        let flag = try ServerConfiguration.load(yaml: "audit_format: jsonl", environment: [:], arguments: ["--audit-format", "compact"])
        #expect(flag.auditFormat == .compact)
        let error = #expect(throws: (any Error).self) {
            try ServerConfiguration.load(yaml: "audit_format: xml", environment: [:], arguments: [])
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("audit_format must be compact or jsonl, not 'xml'"))
    }

    @Test("the example config documents every option and parses")
    func exampleConfig() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../systemd/licensed.yaml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for option in ServerConfiguration.options {
            #expect(text.contains("\n\(option.name):"), "systemd/licensed.yaml lacks \(option.name)")
        }
        _ = try ServerConfiguration.load(yaml: text, environment: [:], arguments: [])
    }

    @Test("the cluster section, its variables and flags; the example three-node configuration parses")
    func clusterSection() throws {
        let yaml = "cluster:\n  etcd_endpoints: [10.0.0.1:2379, 10.0.0.2:2379]\n  name: site\n  node_id: a\n  election_ttl_seconds: 5\n"
        let fromSection = try ServerConfiguration.load(yaml: yaml, environment: [:], arguments: [])
        #expect(fromSection.clustered)
        #expect(fromSection.clusterEtcdEndpoints == ["10.0.0.1:2379", "10.0.0.2:2379"])
        #expect(fromSection.clusterName == "site" && fromSection.clusterNodeID == "a" && fromSection.clusterElectionTTLSeconds == 5)
        let fromEnvironment = try ServerConfiguration.load(
            yaml: "",
            environment: ["LICENSED_CLUSTER_ETCD_ENDPOINTS": "e1:2379,e2:2379", "LICENSED_CLUSTER_NODE_ID": "b"],
            arguments: ["--cluster-advertise-address", "b.example:27070"]
        )
        #expect(fromEnvironment.clusterEtcdEndpoints == ["e1:2379", "e2:2379"])
        #expect(fromEnvironment.clusterNodeID == "b" && fromEnvironment.clusterAdvertiseAddress == "b.example:27070")
        #expect(!(try ServerConfiguration.load(yaml: "", environment: [:], arguments: [])).clustered)
        for (bad, named) in [
            ("cluster: {etcd_endpoints: [e:1], election_ttl_seconds: 1}", "cluster_election_ttl_seconds"),
            ("cluster: {etcd_endpoints: [e:1], name: 'a/b'}", "cluster_name"),
            ("cluster: {etcd_endpoints: [e:1], etcd_key: k.pem}", "cluster_etcd_certificate"),
            ("cluster: {etcd_endpoint: [e:1]}", "cluster_etcd_endpoint"),
        ] {
            let error = #expect(throws: ConfigurationError.self) {
                try ServerConfiguration.load(yaml: bad, environment: [:], arguments: [])
            }
            #expect(error?.message.contains(named) == true, "\(error?.message ?? "")")
        }
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../systemd/cluster")
        for node in 1...3 {
            let text = try String(contentsOfFile: directory.appendingPathComponent("node\(node).yaml").path, encoding: .utf8)
            let configuration = try ServerConfiguration.load(yaml: text, environment: [:], arguments: [])
            #expect(configuration.clusterNodeID == "licence-\(node)")
            #expect(configuration.clusterEtcdEndpoints.count == 3)
        }
    }

    @Test("the directory section, its variables and flags; bad directory settings name the option")
    func directorySection() throws {
        let yaml = """
            directory:
              urls: [ldaps://dc1.corp.example.com, ldaps://dc2.corp.example.com]
              base_dn: DC=corp,DC=example
              user_attribute: sAMAccountName
              disabled_filter: (userAccountControl:1.2.840.113556.1.4.803:=2)
              sync_seconds: 300
            """
        let configuration = try ServerConfiguration.load(yaml: yaml, environment: [:], arguments: [])
        #expect(configuration.directory.urls == ["ldaps://dc1.corp.example.com", "ldaps://dc2.corp.example.com"])
        #expect(configuration.directory.baseDN == "DC=corp,DC=example")
        #expect(configuration.directory.userAttribute == "sAMAccountName")
        #expect(configuration.directory.disabledFilter == "(userAccountControl:1.2.840.113556.1.4.803:=2)")
        #expect(configuration.directorySyncSeconds == 300)
        let flags = try ServerConfiguration.load(
            yaml: "",
            environment: ["LICENSED_DIRECTORY_BASE_DN": "o=Global"],
            arguments: ["--directory-urls", "ldap://a:389,ldap://b:389", "--directory-dry-run", "true"]
        )
        #expect(flags.directory.urls == ["ldap://a:389", "ldap://b:389"] && flags.directory.baseDN == "o=Global" && flags.directoryDryRun)
        for (bad, named) in [
            ("directory: {urls: [http://x], base_dn: o=G}", "directory_urls"),
            ("directory: {urls: [ldap://x]}", "directory_base_dn"),
            ("directory: {urls: [ldap://x], base_dn: o=G, disabled_filter: 'employeeType=disabled'}", "directory_disabled_filter"),
            ("directory: {urls: [ldap://x], base_dn: o=G, sync_seconds: 1}", "directory_sync_seconds"),
        ] {
            let error = #expect(throws: ConfigurationError.self) {
                try ServerConfiguration.load(yaml: bad, environment: [:], arguments: [])
            }
            #expect(error?.message.contains(named) == true, "\(error?.message ?? "")")
        }
    }

    @Test(
        "bad values are refused with a message naming the option",
        arguments: [
            ("port: 70000", "port"),
            ("port: banana", "port"),
            ("lease_ttl_ms: 5000", "lease_ttl_ms"),
            ("log_level: loud", "log_level"),
            ("prot: 1", "prot"),
            ("- just a list", "mapping"),
            ("tokens: [{role: king, sha256: 00}]", "tokens"),
            ("trusted_keys: [{id: x}]", "trusted_keys"),
            ("clock_setback_tolerance_hours: 0", "clock_setback_tolerance_hours"),
            ("wal_writer: disk", "wal_writer"),
        ]
    )
    func badValues(_ yaml: String, _ named: String) {
        let error = #expect(throws: ConfigurationError.self) { try ServerConfiguration.load(yaml: yaml, environment: [:], arguments: []) }
        #expect(error?.message.contains(named) == true, "\(error?.message ?? "")")
    }

    @Test("flags through the command-line provider: both spellings, lists, a flag over overrides over variables")
    func flags() throws {
        let environment = ["LICENSED_LOG_LEVEL": "warning", "LICENSED_STATE_DIR": "/env", "LICENSED_PORT": "2000"]
        let config = try ServerConfiguration.load(
            yaml: nil,
            environment: environment,
            arguments: ["--port=3000", "--license-paths", "/a.lic,/b", "--utilisation-thresholds", "100,80", "--wal-writer", "thread"],
            overrides: ["state_dir": "/demo", "port": "4000"]
        )
        #expect(config.port == 3000)
        #expect(config.walWriter == .thread)
        #expect(ServerConfiguration().walWriter == .loop)
        #expect(config.licensePaths == ["/a.lic", "/b"])
        #expect(config.utilisationThresholds == [80, 100])
        #expect(config.stateDir == "/demo")  // overrides beat variables
        #expect(config.logLevel == "warning")
        #expect(ServerConfiguration.flagValue("license_paths", in: ["--license-paths", "/x"]) == "/x")
        #expect(ServerConfiguration.flagValue("state_dir", in: ["--license-paths", "/x"]) == nil)
    }

    @Test(
        "bad arguments are refused with one message",
        arguments: [
            (["--prot", "1"], "unknown option '--prot'"),
            (["--port"], "--port needs a value"),
            (["--port", "--sync", "none"], "--port needs a value"),
            (["--port", "1", "--port", "2"], "--port is given twice"),
            (["stray"], "unexpected argument 'stray'"),
        ]
    )
    func badArguments(_ arguments: [String], _ message: String) {
        let error = #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.load(yaml: nil, environment: [:], arguments: arguments)
        }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
    }

    @Test("--help lists every option with its flag and variable, from the one table")
    func help() {
        let help = ServerConfiguration.optionsHelp
        for option in ServerConfiguration.options {
            #expect(help.contains("\(option.flag) (\(option.environmentVariable))\n      \(option.help)"))
        }
    }

    @Test("tokens: hashes only, roles ordered, constant-time match")
    func tokens() throws {
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  // sha256("test")
        let config = try ServerConfiguration.load(yaml: "tokens: [{role: auditor, sha256: \(hash)}]", environment: [:], arguments: [])
        let authority = TokenAuthority(entries: config.tokens)
        #expect(authority.role(for: "test") == .auditor)
        #expect(authority.role(for: "") == .client)
        #expect(authority.role(for: "Test") == nil)
        #expect(Role.admin > Role.operator && Role.operator > Role.auditor && Role.auditor > Role.client)
    }
}
