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

    /// Looks at the wall clock against the newest time the server has seen (at start and every
    /// reaper tick): a clock-setback episode starts, or ends, once — logged, audited and counted
    /// (time-limited licences refuse with CLOCK_SETBACK meanwhile: the ledger decides at each
    /// grant). While the clock is right, advances the durable high-water mark once a minute.
    func watchClock() {
        let now = self.nowMs
        let (behind, reference) = self.inPlace { ($0.clockSetbackMs(at: now), $0.clockReferenceMs) }
        if behind > 0 {
            if self.clockSetbackMs == nil {
                let stopped = self.loaded.effective.filter(\.license.isTimeLimited).map(\.license.id)
                self.count("licensed_clock_setback_episodes_total", [])
                self.logger.error(
                    "clock setback: the wall clock is \(SeatLedger.duration(behind)) behind the newest time this server has seen (\(Timestamp.iso8601(reference))); \(stopped.count) licence(s) with an end date, a trial or a maintenance date grant nothing (CLOCK_SETBACK) until the clock is set right, perpetual licences keep serving",
                    metadata: ["behind_ms": "\(behind)", "licenses": "\(stopped.joined(separator: ","))"]
                )
                self.audit(
                    "clock_setback",
                    actor: "server",
                    details: [
                        ("behind_ms", .int(behind)), ("reference_ms", .int(reference)),
                        ("licenses", .string(stopped.joined(separator: ","))),
                    ]
                )
            }
            self.clockSetbackMs = behind
            return
        }
        if let was = self.clockSetbackMs {
            self.clockSetbackMs = nil
            self.logger.notice(
                "clock setback over: the wall clock is right again (\(Timestamp.iso8601(now))); time-limited licences grant again",
                metadata: ["was_behind_ms": "\(was)"]
            )
            self.audit("clock_setback_cleared", actor: "server", details: [("was_behind_ms", .int(was))])
        }
        if self.mayWrite, self.log.acceptsAppends, self.failure == nil, now - self.ledger.clockHighWaterMs >= 60_000 {
            self.markClock()
        }
    }

    /// Why readiness mentions the clock, or nil while it is right.
    var clockSetbackReason: String? {
        guard let behind = self.clockSetbackMs else { return nil }
        return
            "clock setback: the wall clock is \(SeatLedger.duration(behind)) behind the newest time this server has seen (\(Timestamp.iso8601(self.ledger.clockReferenceMs))); time-limited licences grant nothing until it is set right"
    }

    /// A Hello's client clock far from this server's (beyond `client_clock_skew_ms`): logged
    /// and counted, once per session. Licences date on the server's clock, not the client's.
    func clientClock(_ clientMs: Int64, user: String, host: String) {
        guard clientMs != 0 else { return }
        let skew = clientMs - self.context.clock.nowMs()
        guard abs(skew) > Int64(self.context.configuration.clientClockSkewMs) else { return }
        self.count("licensed_client_clock_skew_total", [])
        self.logger.warning(
            "client clock \(SeatLedger.duration(skew)) \(skew > 0 ? "ahead of" : "behind") this server's",
            metadata: ["user": "\(user)", "host": "\(host)", "skew_ms": "\(skew)"]
        )
    }
}
