// swift-tools-version: 6.1
import Foundation
import PackageDescription

/// Settings every target shares: Swift 6 language mode and the upcoming features that make
/// each `public import` and each existential a visible decision.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The server-only modules on the request path (never part of the LicenseClient or
/// LicenseProtocol products, whose users cannot build unsafe flags) drop the run-time exclusivity
/// checks in release builds: the micro-benchmarks measured them at a third of a WAL record's
/// instructions (swift_beginAccess on every field of a class-backed value). Debug builds, and
/// so every test, keep them.
let serverSwiftSettings: [SwiftSetting] = swiftSettings + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "licensed",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "licensed", targets: ["licensed"]),
        .executable(name: "licensectl", targets: ["licensectl"]),
        .executable(name: "licensed-bench", targets: ["licensed-bench"]),
        .library(name: "LicenseClient", targets: ["LicenseClient"]),
        .library(name: "LicenseProtocol", targets: ["LicenseProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Flags and LICENSED_* variables, layered over the config file (command-line provider only:
        // no JSON or YAML providers, see ServerConfiguration+Sources.swift for why).
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: ["CommandLineArguments"]),
        // etcd's gRPC API (the cluster's election and replicated log): the client, its HTTP/2
        // transport, and the protobuf serializers of the generated stubs.
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        // The operator HTTP listener (/metrics, /healthz, /readyz, the web console): routing,
        // middleware and streaming from Hummingbird; pages from Mustache templates.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/vapor/multipart-kit.git", from: "4.7.1"),
    ],
    targets: [
        // The system OpenSSL (libssl-dev): every signature and digest goes through it.
        // glibc's malloc_trim: the daemon hands the memory of a recovery back to the system.
        .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),
        .systemLibrary(name: "CCRC32C", path: "Sources/CCRC32C"),
        .systemLibrary(name: "CWriteback", path: "Sources/CWriteback"),
        // The system zlib (zlib1g-dev): rotated audit files are gzip-compressed and read back through it.
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // libdeflate (libdeflate-dev): rotated audit files are compressed through it, a gzip member
        // per chunk (zlib reads them back as one stream).
        .systemLibrary(
            name: "CDeflate",
            pkgConfig: "libdeflate",
            providers: [.apt(["libdeflate-dev"])]
        ),
        // libzstd (libzstd-dev): rotated audit files are compressed through it by default and read
        // back through it.
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "COpenLDAP",
            pkgConfig: "ldap",
            providers: [.apt(["libldap-dev"])]
        ),
        // The organisation from LDAP / Active Directory (OpenLDAP's client library): users, units,
        // cost centres, locations, groups, the disabled flag.
        .target(
            name: "LicenseDirectory",
            dependencies: ["COpenLDAP"],
            swiftSettings: swiftSettings
        ),
        // Generated protobuf types and the length-prefixed frame codec. No logic.
        .target(
            name: "LicenseProtocol",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // A client of etcd's v3 gRPC API: the generated messages and stubs of the subset of etcd's
        // rpc.proto that licensed uses (Protos/etcd), and a typed client over them.
        .target(
            name: "Etcd",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // Ed25519 keys, signatures, SHA-256 and randomness through OpenSSL.
        .target(
            name: "LicenseCrypto",
            dependencies: ["COpenSSL"],
            swiftSettings: swiftSettings
        ),
        // The pure domain: licences, licence files, verification, fingerprints. No I/O.
        .target(
            name: "LicenseCore",
            dependencies: [
                "LicenseProtocol", "LicenseCrypto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // This machine's identity: fingerprint components read from the system.
        .target(
            name: "LicenseHost",
            dependencies: ["LicenseCore"],
            swiftSettings: swiftSettings
        ),
        // File primitives of the durable modules: whole writes, atomic replacement, directory
        // fsync, compressed files (zstd through libzstd; gzip written through libdeflate, read
        // through zlib), and the errors that name the file.
        .target(
            name: "LicenseFiles",
            dependencies: ["CZlib", "CDeflate", "CZstd", "CWriteback"],
            swiftSettings: swiftSettings
        ),
        // The audit trail: records and their hash chain, the log with rotation, compression and
        // retention, signed checkpoints, rendering, CSV and verification.
        .target(
            name: "LicenseAudit",
            dependencies: ["LicenseFiles", "LicenseCore", "LicenseCrypto"],
            swiftSettings: serverSwiftSettings
        ),
        // Durability: the commit-log seam, the local write-ahead log (group commit), snapshots
        // and recovery.
        .target(
            name: "LicenseStore",
            dependencies: [
                "LicenseFiles", "LicenseAudit", "LicenseCore", "LicenseProtocol", "LicenseCrypto", "CCRC32C",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: serverSwiftSettings
        ),
        // The cluster on etcd: the election of the active node, the replicated commit log, and
        // the standbys' following of it.
        .target(
            name: "LicenseCluster",
            dependencies: [
                "Etcd", "LicenseStore", "LicenseAudit", "LicenseCore", "LicenseProtocol", "LicenseFiles",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // Usage, compliance and forecast reports, computed from the audit trail alone.
        .target(
            name: "LicenseReports",
            dependencies: ["LicenseAudit", "LicenseFiles", "LicenseCore", "LicenseProtocol"],
            swiftSettings: swiftSettings
        ),
        // The daemon's network side: SwiftNIO listener, sessions, dispatch, lifecycle.
        .target(
            name: "LicenseServer",
            dependencies: [
                "LicenseCore", "LicenseProtocol", "LicenseCrypto", "LicenseStore", "LicenseAudit", "LicenseFiles", "CMalloc", "LicenseDirectory",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: serverSwiftSettings
        ),
        // A server as a node of a cluster on etcd: the election, the replicated log and the
        // snapshot transfer put behind LicenseServer's `ServerCluster` (the daemon composes them;
        // the server alone, and its fuzzers, carry no etcd client).
        // The operator HTTP listener on Hummingbird: /metrics, /healthz, /readyz, the cluster's
        // snapshot transfer, and the web console. Composed by the daemon, like the cluster node:
        // the server and its tests do not link an HTTP framework.
        .target(
            name: "LicenseConsole",
            dependencies: [
                "LicenseServer", "LicenseClient", "LicenseCore", "LicenseProtocol", "LicenseAudit", "LicenseReports", "LicenseCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "LicenseClusterNode",
            dependencies: [
                "LicenseServer", "LicenseCluster", "Etcd", "LicenseStore", "LicenseAudit", "LicenseCore", "LicenseCrypto", "LicenseProtocol",
                "LicenseFiles",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The Swift client library.
        .target(
            name: "LicenseClient",
            dependencies: [
                "LicenseProtocol", "LicenseCrypto", "LicenseCore",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "licensed",
            dependencies: [
                "LicenseServer", "LicenseClusterNode", "LicenseConsole", "LicenseStore", "LicenseAudit", "LicenseHost", "LicenseCore", "LicenseCrypto",
                "LicenseProtocol",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // What licensectl and licensed-bench share on the command line: server options, errors, JSON.
        .target(
            name: "LicenseCommandLine",
            dependencies: [
                "LicenseClient", "LicenseProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // The load generator: pipelined connections, closed or open loop, latency histograms.
        .executableTarget(
            name: "licensed-bench",
            dependencies: [
                "LicenseClient", "LicenseCommandLine", "LicenseCrypto", "LicenseProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "licensectl",
            dependencies: [
                "LicenseClient", "LicenseCommandLine", "LicenseHost", "LicenseCore", "LicenseCrypto", "LicenseProtocol", "LicenseAudit", "LicenseFiles",
                "LicenseReports",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Helpers shared by the test targets: scratch directories, the openssl command, a running server.
        .target(
            name: "LicenseTestSupport",
            dependencies: [
                "LicenseServer", "LicenseCore", "LicenseCrypto", "LicenseProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/LicenseTestSupport",
            swiftSettings: swiftSettings
        ),
        // Scale measurements of the store (snapshot and recovery of a million leases).
        .executableTarget(
            name: "licensed-store-bench",
            dependencies: ["LicenseStore", "LicenseCore", "LicenseProtocol"],
            path: "Benchmarks/StoreBenchmark",
            swiftSettings: swiftSettings
        ),
        // The failover drill: a real cluster (3 etcd members, 3 licensed nodes) under kill -9,
        // SIGSTOP and a lost etcd member, with a history checker (scripts/test-cluster, scripts/failover-drill).
        .executableTarget(
            name: "licensed-cluster-drill",
            dependencies: ["LicenseClient", "LicenseTestSupport"],
            path: "Drills/ClusterDrill",
            swiftSettings: swiftSettings
        ),
        // The request path's units, one operation at a time (a check-out, a check-in, a
        // heartbeat, a write-ahead log record, an audit record, a request decoded and its reply
        // encoded, a check-out and check-in through the session handler and ledger host):
        // measured by the HotPath benchmarks and, under callgrind, by licensed-micro.
        .target(
            name: "HotPathOperations",
            dependencies: [
                "LicenseCore", "LicenseProtocol", "LicenseStore", "LicenseAudit", "LicenseServer", "LicenseCrypto", "LicenseFiles",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/HotPathOperations",
            swiftSettings: swiftSettings
        ),
        // Instructions per operation under valgrind's callgrind (perf counters are not available
        // on every machine of this kind): `licensed-micro OPERATION COUNT` (scripts/bench-micro).
        .executableTarget(
            name: "licensed-micro",
            dependencies: ["HotPathOperations", .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/InstructionCount",
            swiftSettings: swiftSettings
        ),
        // Scale measurements of the reports (a million audit records).
        .executableTarget(
            name: "licensed-report-bench",
            dependencies: ["LicenseReports", "LicenseAudit"],
            path: "Benchmarks/ReportBenchmark",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseProtocolTests",
            dependencies: [
                "LicenseProtocol",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EtcdTests",
            dependencies: ["Etcd", "LicenseTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseClusterTests",
            dependencies: [
                "LicenseCluster", "Etcd", "LicenseStore", "LicenseAudit", "LicenseCore", "LicenseProtocol", "LicenseFiles", "LicenseTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseHostTests",
            dependencies: ["LicenseHost"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseDirectoryTests",
            dependencies: ["LicenseDirectory"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseCryptoTests",
            dependencies: ["LicenseCrypto", "LicenseTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseCoreTests",
            dependencies: [
                "LicenseCore", "LicenseCrypto", "LicenseProtocol", "LicenseTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseStoreTests",
            dependencies: [
                "LicenseStore", "LicenseAudit", "LicenseFiles", "LicenseCore", "LicenseCrypto", "LicenseProtocol", "LicenseTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseAuditTests",
            dependencies: ["LicenseAudit", "LicenseFiles", "LicenseCore", "LicenseCrypto", "LicenseTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseReportsTests",
            dependencies: ["LicenseReports", "LicenseAudit", "LicenseCrypto", "LicenseTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LicenseServerTests",
            dependencies: [
                "LicenseServer", "LicenseClient", "LicenseCore", "LicenseCrypto", "LicenseProtocol", "LicenseStore", "LicenseAudit",
                "LicenseFiles", "LicenseHost", "LicenseTestSupport", "LicenseDirectory",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

// Micro-benchmarks of the request path (Benchmarks/HotPath) with ordo-one/benchmark: mallocs,
// time and throughput per operation (`swift package --allow-writing-to-package-directory benchmark
// --target HotPath`, scripts/bench-micro). Only its malloc interposer: the runtime interposer's
// package is not in this machine's mirror, and the benchmarks need no ARC counts from it. Not in
// a fuzzing build: `--sanitize=fuzzer` would link libFuzzer's `main` into the benchmark plugin's
// own tool as well.
if ProcessInfo.processInfo.environment["LICENSED_FUZZ"] == nil {
    package.dependencies.append(.package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]))
    package.targets.append(
        .executableTarget(
            name: "HotPath",
            dependencies: ["HotPathOperations", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/HotPath",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    )
}

// libFuzzer targets (Fuzz/), only when LICENSED_FUZZ is set: `--sanitize=fuzzer` supplies their
// `main`, so an ordinary build must not see them. `scripts/fuzz` builds and runs them.
if ProcessInfo.processInfo.environment["LICENSED_FUZZ"] != nil {
    package.targets += [
        .executableTarget(
            name: "FuzzFrameDecoder",
            dependencies: [
                "LicenseProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Fuzz/FuzzFrameDecoder",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzRequestHandler",
            dependencies: [
                "LicenseServer", "LicenseProtocol", "LicenseCore", "LicenseCrypto", "LicenseStore", "LicenseAudit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Fuzz/FuzzRequestHandler",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzAuditRecord",
            dependencies: ["LicenseAudit", "LicenseCore"],
            path: "Fuzz/FuzzAuditRecord",
            swiftSettings: swiftSettings
        ),
    ]
}
