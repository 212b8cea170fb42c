import DequeModule
import Foundation
import LicenseAudit
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import Logging
import Metrics
import NIOCore
import SwiftProtobuf

/// The wall clock as the ledger sees it, watched for steps against the monotonic clock.
extension LedgerHost {
    /// Wall-clock now, for the ledger. Every reading is checked against the monotonic clock, so
    /// that a step of the wall clock is noticed before any deadline is compared with it.
    var nowMs: Int64 {
        let wall = self.context.clock.nowMs()
        if let step = self.clockSteps.observe(wallMs: wall, monotonicMs: self.context.clock.monotonicMs()) {
            self.clockStepped(byMs: step)
        }
        return wall
    }

    /// The wall clock jumped by `step` ms while the monotonic clock did not (NTP's first sync, an
    /// operator, a resumed machine): every deadline moves with it and keeps the time it had left,
    /// so no lease is reclaimed early or held late. Logged once per step, counted and audited.
    func clockStepped(byMs step: Int64) {
        self.ledger.shiftDeadlines(byMs: step)
        let hours = String(format: "%.1f", Double(abs(step)) / 3_600_000)
        self.count("licensed_clock_steps_total", [("direction", step > 0 ? "forward" : "backward")])
        self.logger.warning(
            "wall clock stepped \(step > 0 ? "forward" : "back") by \(hours) hours (\(step) ms; the monotonic clock did not move): every lease, heartbeat and queue deadline keeps the time it had left",
            metadata: ["step_ms": "\(step)"]
        )
        self.audit("clock_step", actor: "server", details: [("step_ms", .int(step))])
    }
}
