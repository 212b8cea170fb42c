import Configuration
import Foundation
import LicenseAudit
import LicenseCore
import LicenseCrypto
import LicenseDirectory
import LicenseFiles
import LicenseStore
import Yams

extension ServerConfiguration {
    /// One settable option: its name and how a text value sets it (for env and flags).
    public struct Option: Sendable {
        /// snake_case name: the YAML key; `LICENSED_<NAME>` and `--<name-with-dashes>` derive from it.
        public var name: String
        /// What it sets, for `--help` and the example config.
        public var help: String
        let apply: @Sendable (inout ServerConfiguration, String) throws -> Void

        /// The environment variable.
        public var environmentVariable: String { "LICENSED_" + self.name.uppercased() }
        /// The command-line flag.
        public var flag: String { "--" + self.name.replacingOccurrences(of: "_", with: "-") }
    }

    /// Every option. Lists are comma-separated in env and flags; trusted keys as `id=path`.
    public static let options: [Option] = [
        Option(name: "listen_host", help: "address the protocol listener binds to") { $0.listenHost = $1 },
        Option(name: "port", help: "TCP port of the protocol listener") { $0.port = try int($1, "port") },
        Option(name: "max_frame_bytes", help: "largest frame accepted from a client") { $0.maxFrameBytes = try int($1, "max_frame_bytes") },
        Option(name: "license_paths", help: "licence files or directories of *.lic files") { $0.licensePaths = list($1) },
        Option(name: "trusted_keys", help: "trusted issuer keys as id=path.pem") { config, value throws in
            config.trustedKeys = try list(value).map { (entry: String) throws -> TrustedKey in
                let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ConfigurationError("trusted_keys entry '\(entry)' is not id=path") }
                return TrustedKey(id: parts[0], publicKey: parts[1])
            }
        },
        Option(name: "state_dir", help: "directory for the server key, log and snapshots") { $0.stateDir = $1 },
        Option(name: "server_key", help: "the server's Ed25519 key PEM") { $0.serverKey = $1 },
        Option(name: "host_id", help: "operator-supplied host identity component") { $0.hostID = $1 },
        Option(name: "log_level", help: "trace, debug, info, notice, warning, error, critical") { $0.logLevel = $1 },
        Option(name: "heartbeat_interval_ms", help: "how often clients heartbeat") {
            $0.heartbeatIntervalMs = try int($1, "heartbeat_interval_ms")
        },
        Option(name: "lease_ttl_ms", help: "lease lifetime without a heartbeat") { $0.leaseTTLMs = try int($1, "lease_ttl_ms") },
        Option(name: "hello_timeout_ms", help: "time a connection has to say Hello") {
            $0.helloTimeoutMs = try int($1, "hello_timeout_ms")
        },
        Option(name: "sync", help: "always (fsync before acknowledging) or none (tests and demos only)") { config, value in
            guard let policy = LedgerStore.SyncPolicy(rawValue: value) else {
                throw ConfigurationError("sync must be 'always' or 'none', not '\(value)'")
            }
            config.sync = policy
        },
        Option(name: "wal_writer", help: "loop (the serving loop writes and syncs, the default) or thread (a thread of its own)") {
            config,
            value in
            guard let writer = LedgerStore.Writer(rawValue: value) else {
                throw ConfigurationError("wal_writer must be 'loop' or 'thread', not '\(value)'")
            }
            config.walWriter = writer
        },
        Option(name: "snapshot_every_records", help: "snapshot after this many log records") {
            $0.snapshotEveryRecords = try int($1, "snapshot_every_records")
        },
        Option(name: "snapshot_every_bytes", help: "snapshot after this many log bytes") {
            $0.snapshotEveryBytes = try int($1, "snapshot_every_bytes")
        },
        Option(name: "snapshots_retained", help: "snapshots kept with the log since the oldest (at least 2)") {
            $0.snapshotsRetained = try int($1, "snapshots_retained")
        },
        Option(name: "groups", help: "groups as /path=member,member,@host;/path2=... (YAML: a mapping of lists)") { config, value in
            var groups: [String: [String]] = [:]
            for entry in value.split(separator: ";") {
                let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                guard parts.count == 2, parts[0].hasPrefix("/") else {
                    throw ConfigurationError("groups entry '\(entry)' is not /group=member,member,@host")
                }
                groups[parts[0].trimmingCharacters(in: .whitespaces)] = list(parts[1])
            }
            config.groups = groups
        },
        Option(name: "restrictions", help: "server-side options per feature, as JSON (YAML: a list)") { config, value in
            config.restrictions = try parseRestrictions(value)
        },
        Option(name: "default_part", help: "part for activations that name no licence or feature") { $0.defaultPart = $1 },
        Option(name: "overage_part", help: "part once the default part is used up (overage-allowing policy only)") { $0.overagePart = $1 },
        Option(name: "activation_inactivity_days", help: "reclaim activations not seen for this many days") {
            $0.activationInactivityDays = try int($1, "activation_inactivity_days")
        },
        Option(name: "activation_validity_days", help: "offline validity of activation certificates, in days") {
            $0.activationValidityDays = try int($1, "activation_validity_days")
        },
        Option(name: "clock_setback_tolerance_hours", help: "a clock this far behind the newest time seen stops time-limited licences") {
            $0.clockSetbackToleranceHours = try int($1, "clock_setback_tolerance_hours")
        },
        Option(name: "client_clock_skew_ms", help: "log and count a client Hello whose clock is further than this from the server's") {
            $0.clientClockSkewMs = try int($1, "client_clock_skew_ms")
        },
        Option(name: "console", help: "the web console on the metrics listener when a token of auditor or above is set (true/false)") {
            $0.console = try bool($1, "console")
        },
        Option(name: "console_session_minutes", help: "how long a web console sign-in lasts") {
            $0.consoleSessionMinutes = try int($1, "console_session_minutes")
        },
        Option(name: "operator_tls_certificate", help: "PEM certificate chain: HTTPS on the metrics listener and console (default off)") {
            $0.operatorTLSCertificate = $1
        },
        Option(name: "operator_tls_private_key", help: "PEM private key of operator_tls_certificate") { $0.operatorTLSPrivateKey = $1 },
        Option(name: "max_connections", help: "most open connections") { $0.maxConnections = try int($1, "max_connections") },
        Option(name: "max_connections_per_address", help: "most open connections from one address") {
            $0.maxConnectionsPerAddress = try int($1, "max_connections_per_address")
        },
        Option(name: "max_leases_per_session", help: "most leases one session may hold") {
            $0.maxLeasesPerSession = try int($1, "max_leases_per_session")
        },
        Option(name: "max_queue_length", help: "most check-outs waiting per feature") {
            $0.maxQueueLength = try int($1, "max_queue_length")
        },
        Option(name: "metrics_listen", help: "host:port for /metrics, /healthz, /readyz, or off") { $0.metricsListen = $1 },
        Option(name: "reaper_interval_ms", help: "how often lapsed leases are looked for") {
            $0.reaperIntervalMs = try int($1, "reaper_interval_ms")
        },
        Option(name: "reaper_batch", help: "most leases reclaimed in one pass; more follow at once, between requests") {
            $0.reaperBatch = try int($1, "reaper_batch")
        },
        Option(name: "require_client_token", help: "refuse sessions that present no token (true/false)") {
            $0.requireClientToken = try bool($1, "require_client_token")
        },
        Option(name: "utilisation_thresholds", help: "utilisation thresholds in percent, comma-separated (e.g. 90,100)") {
            config,
            value in
            config.utilisationThresholds = try list(value).map { try int($0, "utilisation_thresholds") }.sorted()
        },
        Option(name: "audit_dir", help: "directory of the audit trail (default <state_dir>/audit)") { $0.auditDir = $1 },
        Option(name: "audit_max_file_bytes", help: "start a new audit file past this size") {
            $0.auditMaxFileBytes = try int($1, "audit_max_file_bytes")
        },
        Option(name: "audit_format", help: "how audit records are written: compact (the default) or jsonl") {
            guard let format = AuditFormat(rawValue: $1.trimmingCharacters(in: .whitespaces).lowercased()) else {
                throw ConfigurationError("audit_format must be compact or jsonl, not '\($1)'")
            }
            $0.auditFormat = format
        },
        Option(name: "audit_compress", help: "compress rotated audit files: zstd, gzip or false (true = zstd)") {
            $0.auditCompression = try compression($1, "audit_compress")
        },
        Option(name: "audit_retention_files", help: "most audit files kept, the current one included (0 = all)") {
            $0.auditRetentionFiles = try int($1, "audit_retention_files")
        },
        Option(name: "audit_retention_bytes", help: "most bytes of audit files kept (0 = no limit)") {
            $0.auditRetentionBytes = try int($1, "audit_retention_bytes")
        },
        Option(name: "audit_retention_days", help: "remove audit files last written more than this many days ago (0 = keep)") {
            $0.auditRetentionDays = try int($1, "audit_retention_days")
        },
        Option(name: "tls_certificate", help: "PEM certificate chain: TLS on the protocol listener (default off)") {
            $0.tlsCertificate = $1
        },
        Option(name: "tls_private_key", help: "PEM private key of tls_certificate") { $0.tlsPrivateKey = $1 },
        Option(
            name: "cluster_etcd_endpoints",
            help: "etcd members host:port,...: run as a node of a cluster (YAML: cluster: etcd_endpoints:)"
        ) {
            $0.clusterEtcdEndpoints = list($1)
        },
        Option(name: "cluster_name", help: "the cluster's name, its key prefix in etcd (/licensed/<name>/)") { $0.clusterName = $1 },
        Option(name: "cluster_node_id", help: "this node's id in the cluster (default: the host name)") { $0.clusterNodeID = $1 },
        Option(name: "cluster_advertise_address", help: "host:port clients use for this node (default: host name and port)") {
            $0.clusterAdvertiseAddress = $1
        },
        Option(
            name: "cluster_election_ttl_seconds",
            help: "etcd lease of a node's registration: a dead active is replaced after about this"
        ) {
            $0.clusterElectionTTLSeconds = try int($1, "cluster_election_ttl_seconds")
        },
        Option(name: "cluster_etcd_ca", help: "PEM CA of the etcd members (set = TLS to etcd)") { $0.clusterEtcdCA = $1 },
        Option(name: "cluster_etcd_certificate", help: "PEM client certificate for etcd") { $0.clusterEtcdCertificate = $1 },
        Option(name: "cluster_etcd_key", help: "PEM key of cluster_etcd_certificate") { $0.clusterEtcdKey = $1 },
        Option(name: "directory_urls", help: "ldap:// or ldaps:// URLs of the directory, tried in order (YAML: directory: urls:)") {
            $0.directory.urls = list($1)
        },
        Option(name: "directory_start_tls", help: "upgrade ldap:// with StartTLS (true/false)") {
            $0.directory.startTLS = try bool($1, "directory_start_tls")
        },
        Option(name: "directory_ca", help: "PEM CA of the directory's certificate (default: the system's)") { $0.directory.caFile = $1 },
        Option(name: "directory_bind_dn", help: "DN to bind as (empty: anonymous)") { $0.directory.bindDN = $1 },
        Option(name: "directory_password_file", help: "file holding the bind password") { $0.directory.passwordFile = $1 },
        Option(name: "directory_base_dn", help: "where users and units are searched; its value is the root unit") {
            $0.directory.baseDN = $1
        },
        Option(name: "directory_user_filter", help: "LDAP filter of user entries") { $0.directory.userFilter = $1 },
        Option(name: "directory_user_attribute", help: "attribute holding the user name (AD: sAMAccountName)") {
            $0.directory.userAttribute = $1
        },
        Option(name: "directory_host_attribute", help: "attribute holding the user's host (empty: none)") {
            $0.directory.hostAttribute = $1
        },
        Option(name: "directory_unit_attribute", help: "attribute holding the unit as a path (empty: the DN's ou= components)") {
            $0.directory.unitAttribute = $1
        },
        Option(name: "directory_cost_centre_attribute", help: "attribute holding the cost centre") {
            $0.directory.costCentreAttribute = $1
        },
        Option(name: "directory_location_attribute", help: "attribute holding the location") { $0.directory.locationAttribute = $1 },
        Option(name: "directory_member_of_attribute", help: "attribute listing the user's group DNs (empty: none)") {
            $0.directory.memberOfAttribute = $1
        },
        Option(name: "directory_group_filter", help: "LDAP filter of group entries listing members (empty: none)") {
            $0.directory.groupFilter = $1
        },
        Option(name: "directory_group_member_attribute", help: "attribute of a group entry listing member DNs") {
            $0.directory.groupMemberAttribute = $1
        },
        Option(name: "directory_disabled_filter", help: "LDAP filter of disabled users (AD: userAccountControl bit 2)") {
            $0.directory.disabledFilter = $1
        },
        Option(name: "directory_timeout_seconds", help: "seconds a directory search may take") {
            $0.directory.timeoutSeconds = try int($1, "directory_timeout_seconds")
        },
        Option(name: "directory_page_size", help: "entries per page of a directory search") {
            $0.directory.pageSize = try int($1, "directory_page_size")
        },
        Option(name: "directory_sync_seconds", help: "how often the directory is read") {
            $0.directorySyncSeconds = try int($1, "directory_sync_seconds")
        },
        Option(name: "directory_activation_grace_seconds", help: "leavers keep their activations this long") {
            $0.directoryActivationGraceSeconds = try int($1, "directory_activation_grace_seconds")
        },
        Option(name: "directory_dry_run", help: "report what syncs would reclaim, reclaim nothing (true/false)") {
            $0.directoryDryRun = try bool($1, "directory_dry_run")
        },
        Option(name: "tls_client_ca", help: "PEM CA of client certificates; set = clients must present one (mTLS)") {
            $0.tlsClientCA = $1
        },
        Option(name: "admin_socket", help: "local admin Unix socket path (grants admin), or off") { $0.adminSocket = $1 },
        Option(name: "bad_token_limit", help: "refused tokens per address per minute before answers are slowed") {
            $0.badTokenLimit = try int($1, "bad_token_limit")
        },
        Option(name: "bad_token_delay_ms", help: "delay of a refused Hello past bad_token_limit") {
            $0.badTokenDelayMs = try int($1, "bad_token_delay_ms")
        },
        Option(name: "tokens", help: "access tokens as role:sha256hex, comma-separated") { config, value in
            config.tokens = try list(value).map { entry in
                let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, let role = Role(rawValue: parts[0]) else {
                    throw ConfigurationError("tokens entry '\(entry)' is not role:sha256hex with role client, auditor, operator or admin")
                }
                guard let hash = [UInt8](hexString: parts[1]), hash.count == 32 else {
                    throw ConfigurationError("tokens entry for role \(parts[0]) is not a 64-digit SHA-256 hex hash")
                }
                return TokenAuthority.Entry(hash: hash, role: role)
            }
        },
    ]

    /// Builds the configuration from the defaults, then `yaml` (if any), then the layers of
    /// `reader(environment:arguments:overrides:)` (a flag wins over `overrides`, which win over
    /// `LICENSED_*` variables), then validates it. Every argument must be a known option's flag.
    public static func load(
        yaml: String?,
        environment: [String: String],
        arguments: [String],
        overrides: [String: String] = [:]
    ) throws -> ServerConfiguration {
        var config = ServerConfiguration()
        if let yaml { try config.apply(yaml: yaml) }
        try Self.checkFlags(arguments)
        for (name, _) in overrides where !self.options.contains(where: { $0.name == name }) {
            throw ConfigurationError("unknown option '\(name)'")
        }
        let reader = Self.reader(environment: environment, arguments: arguments, overrides: overrides)
        for option in self.options {
            if let value = Self.value(option.name, in: reader) { try option.apply(&config, value) }
        }
        try config.validate()
        return config
    }

    /// The layers above the config file, through swift-configuration's providers, first wins:
    /// the command line (`--listen-host`), then `overrides`, then the environment under the
    /// `licensed` prefix (`LICENSED_LISTEN_HOST`). The config file is not one of them: its
    /// provider would pass an unknown (misspelt) key silently and cannot express the option
    /// values that are lists of mappings (`trusted_keys`, `tokens`, `restrictions`).
    static func reader(environment: [String: String], arguments: [String], overrides: [String: String] = [:]) -> ConfigReader {
        var providers: [any ConfigProvider] = [CommandLineArgumentsProvider(arguments: ["licensed"] + arguments)]
        if !overrides.isEmpty {
            let values = Dictionary(
                uniqueKeysWithValues: overrides.map { name, value in
                    (AbsoluteConfigKey(Self.key(name).components), ConfigValue(.stringArray(Self.items(value)), isSecret: false))
                }
            )
            providers.append(InMemoryProvider(name: "overrides", values: values))
        }
        providers.append(EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: ConfigKey("licensed")))
        return ConfigReader(providers: providers)
    }

    /// The value the command line gives option `name`, if any (before any file or variable).
    public static func flagValue(_ name: String, in arguments: [String]) -> String? {
        Self.value(name, in: ConfigReader(provider: CommandLineArgumentsProvider(arguments: ["licensed"] + arguments)))
    }

    /// Option `name`'s text in `reader`. Read as a list and joined again: the command-line
    /// provider splits every value at its commas (a list option's form), and asked for a string
    /// it would pass a split value over to the next, weaker layer.
    static func value(_ name: String, in reader: ConfigReader) -> String? {
        reader.stringArray(forKey: Self.key(name))?.joined(separator: ",")
    }

    /// `text` split at its commas, as the providers split values.
    static func items(_ text: String) -> [String] { text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }

    /// The swift-configuration key of option `name`: its words (`listen_host` → `listen.host`).
    static func key(_ name: String) -> ConfigKey { ConfigKey(name.split(separator: "_").map(String.init)) }

    /// Every argument is `--<option> VALUE` or `--<option>=VALUE` of a known option, once.
    public static func checkFlags(_ arguments: [String]) throws {
        var index = 0
        var seen = Set<String>()
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.hasPrefix("--") else { throw ConfigurationError("unexpected argument '\(argument)'") }
            let flag = String(argument.prefix { $0 != "=" })
            guard let option = self.options.first(where: { $0.flag == flag }) else {
                throw ConfigurationError("unknown option '\(flag)' (licensed --help lists them)")
            }
            guard seen.insert(option.name).inserted else { throw ConfigurationError("\(flag) is given twice") }
            if argument.contains("=") {
                index += 1
            } else {
                guard index + 1 < arguments.count, !arguments[index + 1].hasPrefix("--") else {
                    throw ConfigurationError("\(flag) needs a value")
                }
                index += 2
            }
        }
    }

    /// Every option for `--help`: its flag, variable and what it sets, from the one table.
    public static var optionsHelp: String {
        Self.options.map { "  \($0.flag) (\($0.environmentVariable))\n      \($0.help)" }.joined(separator: "\n")
    }

    /// Applies the keys of a YAML document; unknown keys are an error (a typo must not pass silently).
    mutating func apply(yaml: String) throws {
        let node: Node?
        do { node = try Yams.compose(yaml: yaml) } catch { throw ConfigurationError("config is not valid YAML: \(error)") }
        guard let node else { return }  // empty file
        guard let mapping = node.mapping else { throw ConfigurationError("config must be a YAML mapping of option names to values") }
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.string else { throw ConfigurationError("config keys must be strings") }
            if key == "cluster" || key == "directory", let section = valueNode.mapping {
                // A section: `cluster: {etcd_endpoints: …}` sets cluster_etcd_endpoints, `directory: {urls: …}` directory_urls.
                for (innerKey, innerValue) in section {
                    guard let name = innerKey.string else { throw ConfigurationError("config keys must be strings") }
                    try self.apply(key: key + "_" + name, value: innerValue)
                }
            } else {
                try self.apply(key: key, value: valueNode)
            }
        }
    }

    /// Applies one YAML key and its value.
    private mutating func apply(key: String, value valueNode: Node) throws {
        do {
            guard let option = Self.options.first(where: { $0.name == key }) else {
                throw ConfigurationError("unknown config option '\(key)'")
            }
            if key == "groups", let mapping = valueNode.mapping {
                var text: [String] = []
                for (group, members) in mapping {
                    guard let name = group.string, let list = members.sequence?.compactMap(\.string) else {
                        throw ConfigurationError("groups must map each /group to a list of members")
                    }
                    text.append("\(name)=\(list.joined(separator: ","))")
                }
                try option.apply(&self, text.joined(separator: ";"))
            } else if key == "restrictions" {
                // Through JSON, the same form the flag and the environment variable take.
                let any = try Yams.load(yaml: Yams.serialize(node: valueNode))
                let data = try JSONSerialization.data(withJSONObject: any ?? [])
                try option.apply(&self, String(decoding: data, as: UTF8.self))
            } else if key == "tokens", let entries = valueNode.sequence {
                let joined = try entries.map { entry in
                    guard let role = entry.mapping?["role"]?.string, let hash = entry.mapping?["sha256"]?.string else {
                        throw ConfigurationError("each tokens entry needs 'role' and 'sha256'")
                    }
                    return "\(role):\(hash)"
                }
                try option.apply(&self, joined.joined(separator: ","))
            } else if key == "trusted_keys", let entries = valueNode.sequence {
                self.trustedKeys = try entries.map { (entry: Node) throws -> TrustedKey in
                    guard let id = entry.mapping?["id"]?.string, let path = entry.mapping?["public_key"]?.string else {
                        throw ConfigurationError("each trusted_keys entry needs 'id' and 'public_key'")
                    }
                    return TrustedKey(id: id, publicKey: path)
                }
            } else if let items = valueNode.sequence {
                let strings = items.compactMap(\.string)
                guard strings.count == items.count else { throw ConfigurationError("option '\(key)' must be a list of strings") }
                try option.apply(&self, strings.joined(separator: ","))
            } else if let scalar = valueNode.string {
                try option.apply(&self, scalar)
            } else {
                throw ConfigurationError("option '\(key)' has a value of the wrong shape")
            }
        }
    }
}

private func int(_ text: String, _ name: String) throws -> Int {
    guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
        throw ConfigurationError("\(name) must be a whole number, not '\(text)'")
    }
    return value
}

private func bool(_ text: String, _ name: String) throws -> Bool {
    switch text.trimmingCharacters(in: .whitespaces).lowercased() {
    case "true", "yes", "on", "1": return true
    case "false", "no", "off", "0": return false
    default: throw ConfigurationError("\(name) must be true or false, not '\(text)'")
    }
}

private func compression(_ text: String, _ name: String) throws -> FileCompression? {
    if let format = FileCompression(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased()) { return format }
    do {
        return try bool(text, name) ? .zstd : nil
    } catch {
        throw ConfigurationError("\(name) must be zstd, gzip, true (zstd) or false, not '\(text)'")
    }
}

private func list(_ text: String) -> [String] {
    text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// Restrictions as JSON: a list of objects with `feature` and any of `exclude_users`,
/// `exclude_hosts`, `exclude_groups`, `include_users`, `include_hosts`, `include_groups` (lists),
/// `max_per_user` (number) and `reserve` (object: group → seats).
func parseRestrictions(_ json: String) throws -> [SeatLedger.FeatureRestriction] {
    guard let list = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [[String: Any]] else {
        throw ConfigurationError("restrictions must be a list of objects (JSON or YAML)")
    }
    let known: Set<String> = [
        "feature", "exclude_users", "exclude_hosts", "exclude_groups", "include_users", "include_hosts", "include_groups", "max_per_user",
        "reserve",
    ]
    return try list.map { entry in
        if let unknown = entry.keys.first(where: { !known.contains($0) }) {
            throw ConfigurationError("restrictions: unknown key '\(unknown)'")
        }
        func strings(_ key: String) throws -> [String] {
            guard let value = entry[key] else { return [] }
            guard let list = value as? [String] else { throw ConfigurationError("restrictions: '\(key)' must be a list of names") }
            return list
        }
        var rule = SeatLedger.FeatureRestriction(feature: entry["feature"] as? String ?? "")
        rule.excludedUsers = try strings("exclude_users")
        rule.excludedHosts = try strings("exclude_hosts")
        rule.excludedGroups = try strings("exclude_groups")
        rule.includedUsers = try strings("include_users")
        rule.includedHosts = try strings("include_hosts")
        rule.includedGroups = try strings("include_groups")
        if let max = entry["max_per_user"] {
            guard let n = (max as? NSNumber)?.intValue, n >= 0 else {
                throw ConfigurationError("restrictions: 'max_per_user' must be a number")
            }
            rule.maxPerUser = UInt32(n)
        }
        if let reserve = entry["reserve"] {
            guard let map = reserve as? [String: Any] else { throw ConfigurationError("restrictions: 'reserve' must map groups to seats") }
            for (group, seats) in map {
                guard let n = (seats as? NSNumber)?.intValue, n >= 0 else {
                    throw ConfigurationError("restrictions: seats reserved for \(group) must be a number")
                }
                rule.reservations[group] = UInt32(n)
            }
        }
        return rule
    }
}
