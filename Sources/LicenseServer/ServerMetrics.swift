import CoreMetrics
import Metrics
public import Prometheus

typealias Counter = CoreMetrics.Counter
typealias Gauge = CoreMetrics.Gauge
typealias Timer = CoreMetrics.Timer
typealias Recorder = CoreMetrics.Recorder

/// The daemon's metrics, through swift-metrics with a Prometheus registry of the server's own (so
/// several servers in one process, as in tests, keep separate numbers).
///
/// Counters move as events happen; gauges of current state (seats, sessions, expiry) are set
/// from the ledger when /metrics is scraped, so the request path never updates a gauge.
public final class ServerMetrics: Sendable {
    /// The registry /metrics renders.
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory

    /// Creates the metrics with a fresh registry.
    public init() {
        self.registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: self.registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10),
        ]
        self.factory = factory
        // Made once: the writer thread records into them after every group commit.
        self.walSync = Timer(label: "licensed_wal_sync_seconds", dimensions: [], preferredDisplayUnit: .seconds, factory: factory)
        self.walBatch = Recorder(label: "licensed_wal_batch_records", dimensions: [], aggregate: true, factory: factory)
        self.clusterCommit = Timer(
            label: "licensed_cluster_commit_seconds",
            dimensions: [],
            preferredDisplayUnit: .seconds,
            factory: factory
        )
        self.snapshotDuration = Timer(
            label: "licensed_snapshot_duration_seconds",
            dimensions: [],
            preferredDisplayUnit: .seconds,
            factory: factory
        )
    }

    func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Counter {
        Counter(label: label, dimensions: dimensions, factory: self.factory)
    }

    func gauge(_ label: String, _ dimensions: [(String, String)] = []) -> Gauge {
        Gauge(label: label, dimensions: dimensions, factory: self.factory)
    }

    /// Time of each write-ahead log group commit (write + fdatasync).
    let walSync: Timer
    /// Records per group commit.
    let walBatch: Recorder
    /// Time of each etcd transaction that commits a batch of a cluster's log (cluster mode; the
    /// local copy's fsync is off the reply path there).
    let clusterCommit: Timer
    /// Duration of the last snapshot.
    let snapshotDuration: Timer
}
