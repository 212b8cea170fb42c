import DequeModule
import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import Logging
import Metrics
import NIOCore
import SwiftProtobuf

/// The reaper: leases whose heartbeats stopped, and activations idle too long, are reclaimed.
extension LedgerHost {
    func startReaper() {
        let interval = TimeAmount.milliseconds(Int64(self.context.configuration.reaperIntervalMs))
        let host = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.reaper = self.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            host.value.reap()
        }
    }

    func stopReaper() {
        self.reaper?.cancel()
        self.reaper = nil
    }

    /// Reclaims leases whose TTL lapsed, logs each and tells its session if it is connected.
    func reap() {
        self.watchClock()
        // A standby copies what the active node reclaims; a node unsure of its lease (etcd out
        // of reach) reclaims nothing: its clients could not renew either.
        guard self.mayWrite else {
            if self.cluster?.isActive == true, self.cluster?.fencedSinceMs == nil { self.cluster?.fencedSinceMs = self.nowMs }
            self.snapshotIfDue()
            return
        }
        if let since = self.cluster?.fencedSinceMs {
            // Serving again: every lease gets a fresh TTL, as after a failover, so that holders
            // who could not renew while etcd was out of reach are not reclaimed for it.
            self.cluster?.fencedSinceMs = nil
            self.ledger.renewAll(at: self.nowMs)
            self.logger.notice(
                "etcd confirms this node's lease again; every lease gets a fresh TTL",
                metadata: ["paused_ms": "\(self.nowMs - since)"]
            )
        }
        self.reapTicks += 1
        if self.reapTicks % 60 == 1 { self.reapActivations() }  // idle for days: once a minute is plenty
        defer {
            self.serveQueues()
            self.snapshotIfDue()
        }
        self.reclaimLapsed()
    }

    /// Reclaims up to `reaper_batch` lapsed leases; when that many were, the next pass follows
    /// once the loop has read and answered what arrived meanwhile. (One pass over a million
    /// leases lapsing together held the loop for seconds.)
    func reclaimLapsed() {
        let limit = self.context.configuration.reaperBatch
        let reclaimed = self.ledger.reap(at: self.nowMs, limit: limit)
        defer { if reclaimed.count >= limit { self.reclaimMoreSoon() } }
        self.commit(reclaimed.map(\.change), actor: "server", leases: reclaimed.map(\.lease))
        for (lease, _) in reclaimed {
            self.count("licensed_leases_reclaimed_total", [("feature", lease.feature), ("cause", "expired")])
            self.logger.info(
                "lease reclaimed",
                metadata: [
                    "lease": "\(lease.id)", "feature": "\(lease.feature)", "license": "\(lease.licenseID)", "cause": "expired",
                    "user": "\(lease.identity.user)", "host": "\(lease.identity.host)",
                ]
            )
            self.tell(holderOf: lease, .leaseReclaimed, "lease of '\(lease.feature)' reclaimed: no heartbeat within \(lease.ttlMs) ms")
        }
    }

    /// Queues the next pass of `reclaimLapsed`. Not `execute`: the loop runs tasks queued by a
    /// task in the same turn, before it reads any socket again; a task due in a millisecond is
    /// not due when this turn looks for more, so the sockets come first.
    private func reclaimMoreSoon() {
        guard !self.reclaimQueued else { return }
        self.reclaimQueued = true
        let host = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.eventLoop.scheduleTask(in: .milliseconds(1)) {
            let host = host.value
            host.reclaimQueued = false
            // Not when the reaper stopped (the server is stopping) or the node may not write.
            guard host.reaper != nil, host.mayWrite else { return }
            host.reclaimLapsed()
            host.serveQueues()
        }
    }

    /// Reclaims activations idle past the configured threshold.
    func reapActivations() {
        let threshold = Int64(self.context.configuration.activationInactivityDays) * 86_400_000
        let reclaimed = self.ledger.reapInactiveActivations(inactivityMs: threshold, at: self.nowMs)
        self.commit(reclaimed.map(\.change), actor: "server")
        for (activation, _) in reclaimed {
            self.count("licensed_activations_reclaimed_total", [("license", activation.licenseID)])
            self.logger.info(
                "activation reclaimed",
                metadata: [
                    "activation": "\(activation.id)", "license": "\(activation.licenseID)", "machine": "\(activation.machineName)",
                    "cause": "inactive",
                ]
            )
        }
    }
}
