public import LicenseAudit
public import LicenseCore
public import LicenseDirectory
public import LicenseFiles
public import LicenseStore

/// Everything the daemon can be told. Each option has one name, used as the YAML key, as the
/// environment variable `LICENSED_<NAME>` (upper case) and as the flag `--<name>` (dashes);
/// flags win over the environment, which wins over the file, which wins over the defaults.
public struct ServerConfiguration: Sendable, Equatable {
    /// An issuer key the server trusts, by the key id licences name.
    public struct TrustedKey: Sendable, Equatable, Codable {
        /// Key id as in `SignedLicense.key_id`.
        public var id: String
        /// Path of the issuer's public key PEM.
        public var publicKey: String

        /// Creates a trusted key entry.
        public init(id: String, publicKey: String) {
            self.id = id
            self.publicKey = publicKey
        }

        enum CodingKeys: String, CodingKey {
            case id
            case publicKey = "public_key"
        }
    }

    /// Address the protocol listener binds to.
    public var listenHost = "0.0.0.0"
    /// TCP port of the protocol listener (0 = any free port).
    public var port = 27070
    /// Largest frame accepted from a client.
    public var maxFrameBytes = 64 * 1024
    /// Licence files, or directories whose `*.lic` files are read.
    public var licensePaths: [String] = []
    /// Trusted issuer keys.
    public var trustedKeys: [TrustedKey] = []
    /// Where state (server key, write-ahead log, snapshots) lives.
    public var stateDir = "/var/lib/licensed"
    /// The server's own Ed25519 key; empty = `<state_dir>/server-key.pem`, created on first start.
    public var serverKey = ""
    /// An operator-supplied host identity component (for containers and VMs), hashed like the others.
    public var hostID = ""
    /// trace, debug, info, notice, warning, error or critical.
    public var logLevel = "info"
    /// How often clients should heartbeat.
    public var heartbeatIntervalMs = 30_000
    /// Leases not renewed within this time are reclaimed (at least 10000).
    public var leaseTTLMs = 120_000
    /// A connection that has not said Hello within this time is closed.
    public var helloTimeoutMs = 10_000
    /// host:port of the HTTP listener for /metrics, /healthz and /readyz; "off" disables it.
    public var metricsListen = "127.0.0.1:9270"
    /// Groups of users and hosts, as paths ("/emea/sales"), for licence scopes, reservations and
    /// MAX rules: group → members ("alice", or "@ws1" for a host).
    public var groups: [String: [String]] = [:]
    /// Server-side options that tighten licences per feature (FlexLM options file).
    public var restrictions: [SeatLedger.FeatureRestriction] = []
    /// The part (node-locked licence id) an activation gets when it names no licence or feature.
    public var defaultPart = ""
    /// The part used once the default part is used up, if its overage policy allows overage.
    public var overagePart = ""
    /// Activations not seen for this many days are reclaimed.
    public var activationInactivityDays = 90
    /// Activation certificates are valid offline for this many days.
    public var activationValidityDays = 30
    /// A wall clock this many hours behind the newest time the server has seen is a clock
    /// setback: time-limited licences grant nothing until it is right.
    public var clockSetbackToleranceHours = 24
    /// A client whose Hello carries a clock further than this from the server's is logged and counted.
    public var clientClockSkewMs = 300_000
    /// The web console on the operator listener (`metrics_listen`): on when at least one
    /// auditor, operator or admin token is configured, unless this is false.
    public var console = true
    /// How long a console sign-in lasts, in minutes.
    public var consoleSessionMinutes = 480
    /// PEM certificate chain for TLS (HTTPS) on the operator listener — the console, /metrics,
    /// /healthz, /readyz; empty = plain HTTP (the default).
    public var operatorTLSCertificate = ""
    /// PEM private key of `operator_tls_certificate`.
    public var operatorTLSPrivateKey = ""
    /// Most open connections; beyond, a new connection gets RESOURCE_EXHAUSTED and is closed.
    public var maxConnections = 100_000
    /// Most open connections from one network address.
    public var maxConnectionsPerAddress = 1_000
    /// Most leases one session may hold.
    public var maxLeasesPerSession = 1_000
    /// Most check-outs that may wait per feature.
    public var maxQueueLength = 1_000
    /// How often the reaper looks for lapsed leases.
    public var reaperIntervalMs = 1_000
    /// Most leases one pass of the reaper reclaims; when more lapsed, the next pass follows at
    /// once, after the requests that arrived meanwhile.
    public var reaperBatch = 1_024
    /// `always`: fsync before acknowledging (the default); `none`: for tests and throw-away demos only.
    public var sync = LedgerStore.SyncPolicy.always
    /// Which thread writes and syncs the log of a single server: `loop` (the serving loop, after
    /// each pass over its connections; the default) or `thread` (one of its own, for storage
    /// whose fsync is slow enough to hold heartbeats up). A cluster node's log always has its own.
    public var walWriter = LedgerStore.Writer.loop
    /// Take a snapshot once the log holds this many records since the last one.
    public var snapshotEveryRecords = 200_000
    /// ... or this many bytes.
    public var snapshotEveryBytes = 64 * 1024 * 1024
    /// Snapshots kept (at least 2), with the log since the oldest: one damaged snapshot costs nothing.
    public var snapshotsRetained = 2
    /// Access tokens by role, as SHA-256 hashes (hex); see `licensectl token hash`.
    public var tokens: [TokenAuthority.Entry] = []
    /// Refuse sessions whose Hello presents no token (clients must have a `client` token or better).
    public var requireClientToken = false
    /// Directory of the audit trail; empty = `<state_dir>/audit`.
    public var auditDir = ""
    /// Start a new audit file once the current one reaches this size.
    public var auditMaxFileBytes = 64 * 1024 * 1024
    /// How audit records are written: compact binary records (read out by `licensectl audit
    /// export`), or JSON lines for sites whose log shippers read the files.
    public var auditFormat: AuditFormat = .compact
    /// How rotated audit files are compressed (read back transparently by verify, export and
    /// reports); nil keeps them as written.
    public var auditCompression: FileCompression? = .zstd
    /// Most audit files kept, the current one included (0 = keep all).
    public var auditRetentionFiles = 0
    /// Most bytes of audit files kept on disk (0 = no limit).
    public var auditRetentionBytes = 0
    /// Audit files last written more than this many days ago are removed (0 = keep all).
    public var auditRetentionDays = 0
    /// The local administration socket (grants `admin` to whoever can connect); "off" disables it.
    public var adminSocket = "/run/licensed/admin.sock"
    /// After this many refused tokens from one address within a minute, its Hellos are answered slowly.
    public var badTokenLimit = 5
    /// How long a refused Hello from an address over `bad_token_limit` is held before its answer.
    public var badTokenDelayMs = 2_000

    /// PEM certificate chain for TLS on the protocol listener; empty = plain TCP (the default).
    public var tlsCertificate = ""
    /// PEM private key of `tls_certificate`.
    public var tlsPrivateKey = ""
    /// PEM CA certificates that sign client certificates; set = clients must present one (mTLS).
    public var tlsClientCA = ""

    /// True when the listener speaks TLS.
    public var tlsEnabled: Bool { !self.tlsCertificate.isEmpty }

    /// etcd members (`host:port`) of the cluster this node belongs to; empty = a single node
    /// (the default: no etcd is needed).
    public var clusterEtcdEndpoints: [String] = []
    /// The cluster's name: its keys in etcd are under `/licensed/<name>/`.
    public var clusterName = "licensed"
    /// This node's id in the cluster (default: the host name).
    public var clusterNodeID = ""
    /// host:port clients use to reach this node (default: the host name and `port`).
    public var clusterAdvertiseAddress = ""
    /// The etcd lease of this node's registration, in seconds: a dead active node is replaced
    /// after about this long.
    public var clusterElectionTTLSeconds = 3
    /// PEM CA of the etcd members' certificates (set = TLS to etcd).
    public var clusterEtcdCA = ""
    /// PEM client certificate for etcd (when its members require one).
    public var clusterEtcdCertificate = ""
    /// PEM key of `cluster_etcd_certificate`.
    public var clusterEtcdKey = ""

    /// The directory the organisation is read from (YAML section `directory:`; off by default).
    public var directory = DirectorySettings()
    /// How often the directory is read, in seconds.
    public var directorySyncSeconds = 900
    /// Leavers' activations are deactivated this long after the sync that first saw them leave.
    public var directoryActivationGraceSeconds = 7 * 86_400
    /// Only report what a sync would reclaim; reclaim nothing (the tree is still used for groups).
    public var directoryDryRun = false

    /// True when this node is part of a cluster on etcd.
    public var clustered: Bool { !self.clusterEtcdEndpoints.isEmpty }

    /// Utilisation thresholds in percent of a feature's capacity: crossing one (up or back down)
    /// logs a line, writes an audit record and tells subscribed admin sessions.
    public var utilisationThresholds: [Int] = [90, 100]

    /// Where the audit trail is written.
    public var auditDirectory: String { self.auditDir.isEmpty ? self.stateDir + "/audit" : self.auditDir }

    /// The defaults.
    public init() {}

    /// Checks the values that have ranges.
    public func validate() throws {
        if self.clustered {
            // etcd refuses leases shorter than 1.5 election timeouts (1.5 s at its defaults).
            guard (2...300).contains(self.clusterElectionTTLSeconds) else {
                throw ConfigurationError("cluster_election_ttl_seconds \(self.clusterElectionTTLSeconds) is not between 2 and 300")
            }
            guard self.clusterName.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }),
                !self.clusterName.isEmpty
            else {
                throw ConfigurationError("cluster_name '\(self.clusterName)' may hold letters, digits, '-', '_' and '.' only")
            }
            guard self.clusterEtcdCertificate.isEmpty == self.clusterEtcdKey.isEmpty else {
                throw ConfigurationError("cluster_etcd_certificate and cluster_etcd_key go together: set both or neither")
            }
        }
        guard (0...65535).contains(self.port) else { throw ConfigurationError("port \(self.port) is not between 0 and 65535") }
        guard self.maxFrameBytes >= 64, self.maxFrameBytes <= 16 * 1024 * 1024 else {
            throw ConfigurationError("max_frame_bytes \(self.maxFrameBytes) is not between 64 and 16777216")
        }
        guard self.leaseTTLMs >= 10_000 else { throw ConfigurationError("lease_ttl_ms \(self.leaseTTLMs) is below the minimum of 10000") }
        guard self.heartbeatIntervalMs > 0, self.heartbeatIntervalMs < self.leaseTTLMs else {
            throw ConfigurationError("heartbeat_interval_ms must be above 0 and below lease_ttl_ms (\(self.leaseTTLMs))")
        }
        guard self.helloTimeoutMs > 0 else { throw ConfigurationError("hello_timeout_ms must be above 0") }
        if self.metricsListen != "off" { _ = try self.metricsAddress() }
        guard self.snapshotEveryRecords >= 100, self.snapshotEveryBytes >= 4096 else {
            throw ConfigurationError("snapshot_every_records must be at least 100 and snapshot_every_bytes at least 4096")
        }
        guard self.reaperIntervalMs >= 10, self.reaperIntervalMs <= 60_000 else {
            throw ConfigurationError("reaper_interval_ms must be between 10 and 60000")
        }
        guard self.reaperBatch >= 1 else { throw ConfigurationError("reaper_batch must be at least 1") }
        guard Self.logLevels.contains(self.logLevel) else {
            throw ConfigurationError("log_level '\(self.logLevel)' is not one of \(Self.logLevels.joined(separator: ", "))")
        }
        guard self.tlsCertificate.isEmpty == self.tlsPrivateKey.isEmpty else {
            throw ConfigurationError("tls_certificate and tls_private_key go together: set both or neither")
        }
        if let problem = self.directory.problem { throw ConfigurationError(problem) }
        guard self.directorySyncSeconds >= 10, self.directoryActivationGraceSeconds >= 0 else {
            throw ConfigurationError("directory_sync_seconds must be at least 10 and directory_activation_grace_seconds not negative")
        }
        guard self.operatorTLSCertificate.isEmpty == self.operatorTLSPrivateKey.isEmpty else {
            throw ConfigurationError("operator_tls_certificate and operator_tls_private_key go together: set both or neither")
        }
        guard self.tlsClientCA.isEmpty || self.tlsEnabled else {
            throw ConfigurationError("tls_client_ca needs tls_certificate and tls_private_key (client certificates are a TLS feature)")
        }
        for threshold in self.utilisationThresholds where !(1...1000).contains(threshold) {
            throw ConfigurationError("utilisation_thresholds: \(threshold) is not a percentage between 1 and 1000")
        }
        guard self.snapshotsRetained >= 2 else {
            throw ConfigurationError(
                "snapshots_retained \(self.snapshotsRetained) is below 2: recovery needs an older snapshot to fall back on"
            )
        }
        guard self.auditRetentionFiles >= 0, self.auditRetentionBytes >= 0, self.auditRetentionDays >= 0 else {
            throw ConfigurationError("audit_retention_files, audit_retention_bytes and audit_retention_days must not be negative")
        }
        guard self.auditRetentionFiles == 0 || self.auditRetentionFiles >= 2 else {
            throw ConfigurationError("audit_retention_files must be 0 (keep all) or at least 2 (the current file and one more)")
        }
        guard self.auditMaxFileBytes >= 4096 else { throw ConfigurationError("audit_max_file_bytes must be at least 4096") }
        guard self.badTokenLimit >= 0, self.badTokenDelayMs >= 0, self.badTokenDelayMs <= 60_000 else {
            throw ConfigurationError("bad_token_limit must be at least 0 and bad_token_delay_ms between 0 and 60000")
        }
        guard self.consoleSessionMinutes >= 1 else { throw ConfigurationError("console_session_minutes must be at least 1") }
        // Below an hour, NTP's corrections and a resumed laptop's first minutes would stop licences.
        guard self.clockSetbackToleranceHours >= 1, self.clientClockSkewMs >= 0 else {
            throw ConfigurationError("clock_setback_tolerance_hours must be at least 1 and client_clock_skew_ms not negative")
        }
        for key in self.trustedKeys where key.id.isEmpty || key.publicKey.isEmpty {
            throw ConfigurationError("every trusted_keys entry needs an id and a public_key path")
        }
    }

    /// `metrics_listen` as host and port; nil when off.
    public func metricsAddress() throws -> (host: String, port: Int)? {
        guard self.metricsListen != "off" else { return nil }
        guard let colon = self.metricsListen.lastIndex(of: ":"),
            let port = Int(self.metricsListen[self.metricsListen.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw ConfigurationError("metrics_listen '\(self.metricsListen)' is not host:port or off")
        }
        var host = String(self.metricsListen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    /// The groups `user` on `host` belongs to.
    public func groups(user: String, host: String) -> [String] {
        self.groups.filter { $0.value.contains(user) || $0.value.contains("@" + host) }.map(\.key).sorted()
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
}

/// A configuration value that cannot be used; the message names the option.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    /// What is wrong and with which option.
    public var message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}
