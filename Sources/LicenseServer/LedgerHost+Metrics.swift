import DequeModule
import Foundation
import LicenseCore
import LicenseCrypto
import LicenseDirectory
import LicenseProtocol
import LicenseStore
import Logging
import Metrics
import NIOCore
import SwiftProtobuf

/// Metrics, readiness and the status line, read from the ledger.
extension LedgerHost {
    func count(_ label: String, _ dimensions: [(String, String)]) {
        self.counter(label, dimensions).increment()
    }

    /// The check-out and check-in counters of `feature`: one lookup of the feature's name,
    /// instead of a dimensions array and the hash of three strings per request.
    ///
    /// The feature asked for last is checked first: a run of requests for one feature (a
    /// check-out and its check-in, a site's main product) skips hashing its name (about 400
    /// instructions a lookup, `licensed-micro serve`); another feature costs one comparison more.
    func counters(of feature: String) -> FeatureCounters {
        if let last = self.lastFeatureCounters, last.feature == feature { return last.counters }
        let counters = self.lookUpCounters(of: feature)
        self.lastFeatureCounters = (feature, counters)
        return counters
    }

    private func lookUpCounters(of feature: String) -> FeatureCounters {
        if let known = self.featureCounters[feature] { return known }
        let made = FeatureCounters(
            checkouts: self.counter("licensed_checkouts_total", [("feature", feature)]),
            checkins: self.counter("licensed_checkins_total", [("feature", feature)])
        )
        self.featureCounters[feature] = made
        return made
    }

    /// The counter of `label` and `dimensions`, made on first use.
    func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        if dimensions.count == 1 {
            let key = OneDimensionCounter(label: label, name: dimensions[0].0, value: dimensions[0].1)
            if let counter = self.oneDimensionCounters[key] { return counter }
            let counter = self.context.metrics.counter(label, dimensions)
            self.oneDimensionCounters[key] = counter
            return counter
        }
        let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        if let counter = self.counters[key] { return counter }
        let counter = self.context.metrics.counter(label, dimensions)
        self.counters[key] = counter
        return counter
    }

    /// Ready to serve: listening, and at least one licence loaded that grants (during a clock
    /// setback, a perpetual one).
    var isReady: Bool {
        self.listening && self.failure == nil && !self.loaded.effective.isEmpty && self.mayWrite
            && (self.clockSetbackMs == nil || self.loaded.effective.contains { !$0.license.isTimeLimited })
    }

    /// Why not ready, for /readyz.
    var readiness: String {
        if !self.listening { return "not listening (starting or stopping)" }
        if let failure = self.failure { return "the commit log failed: \(failure)" }
        if self.loaded.effective.isEmpty { return "no valid licence loaded (\(self.loaded.rejected.count) rejected)" }
        if let setback = self.clockSetbackReason {
            return self.isReady ? "ready for perpetual licences only; \(setback)" : setback
        }
        if let cluster = self.cluster {
            switch cluster.role {
            case .standby(let active):
                return
                    "standby of its cluster (active: \(active.isEmpty ? "none now" : active)): load balancers send clients to the active one"
            case .active where !cluster.mayAct():
                return "active, but its etcd lease is not confirmed: nothing is acknowledged until it is"
            case .active:
                break
            }
        }
        return "ready: \(self.loaded.effective.count) licence(s), \(self.ledger.leases.count) lease(s)"
    }

    /// Sets the gauges of current state from the ledger (at scrape time).
    func refreshGauges() {
        let metrics = self.context.metrics
        let status = self.ledger.status(includeHolders: false, at: self.nowMs)
        for feature in status.features {
            let labels = [("feature", feature.feature)]
            metrics.gauge("licensed_seats_total", labels).record(feature.unlimited ? -1 : Int64(feature.capacity))
            metrics.gauge("licensed_seats_in_use", labels).record(Int64(feature.inUse))
            metrics.gauge("licensed_seats_overage", labels).record(Int64(feature.overage))
            metrics.gauge("licensed_seats_queued", labels).record(Int64(feature.queued))
        }
        for license in status.licenses where license.expiresAtMs != 0 {
            metrics.gauge("licensed_license_expiry_timestamp_seconds", [("license", license.licenseID)]).record(
                Double(license.expiresAtMs) / 1000
            )
        }
        for feature in status.features where !feature.unlimited && feature.capacity > 0 {
            metrics.gauge("licensed_seats_utilisation_ratio", [("feature", feature.feature)]).record(
                Double(feature.inUse) / Double(feature.capacity)
            )
        }
        metrics.gauge("licensed_sessions").record(Int64(status.sessions))
        metrics.gauge("licensed_leases").record(Int64(self.ledger.leases.count))
        metrics.gauge("licensed_licenses_loaded").record(Int64(self.loaded.effective.count))
        metrics.gauge("licensed_licenses_rejected").record(Int64(self.loaded.rejected.count))
        metrics.gauge("licensed_ready").record(self.isReady ? 1 : 0)
        metrics.gauge("licensed_clock_setback_seconds").record(Double(self.clockSetbackMs ?? 0) / 1000)
        metrics.gauge("licensed_clock_reference_timestamp_seconds").record(Double(self.ledger.clockReferenceMs) / 1000)
        if let tree = self.directory.tree {
            metrics.gauge("licensed_directory_users").record(Int64(tree.users.count))
            metrics.gauge("licensed_directory_units").record(Int64(tree.units.count))
            metrics.gauge("licensed_directory_last_success_timestamp_seconds").record(Double(tree.syncedAtMs) / 1000)
            metrics.gauge("licensed_directory_leavers").record(Int64(self.directory.leavers.count))
        }
        if self.context.configuration.directory.enabled {
            metrics.gauge("licensed_directory_sync_failing").record(self.directory.lastError == nil ? 0 : 1)
        }
        if let cluster = self.cluster {
            let facts = cluster.facts()
            metrics.gauge("licensed_cluster_active").record(cluster.isActive ? 1 : 0)
            metrics.gauge("licensed_cluster_epoch").record(facts.epoch)
            metrics.gauge("licensed_cluster_applied_sequence").record(Int64(self.log.lastAssigned))
            metrics.gauge("licensed_cluster_head_sequence").record(Int64(max(facts.head, self.log.lastAssigned)))
            metrics.gauge("licensed_cluster_lag").record(Int64(facts.head > self.log.lastAssigned ? facts.head - self.log.lastAssigned : 0))
            metrics.gauge("licensed_cluster_elections").record(Int64(facts.elections))
        }
    }

    /// One line for systemd's STATUS=.
    var statusLine: String {
        let inUse = self.ledger.seatsInUseTotal
        return "\(inUse) seat(s) in use, \(self.ledger.leases.count) lease(s), \(self.ledger.sessionCount) session(s)"
    }
}

/// A feature's counters of the hot path.
struct FeatureCounters {
    let checkouts: Counter
    let checkins: Counter
}

/// The key of a counter with one dimension.
struct OneDimensionCounter: Hashable {
    var label: String
    var name: String
    var value: String
}
