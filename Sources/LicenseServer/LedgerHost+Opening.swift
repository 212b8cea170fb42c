import CMalloc
import CoreMetrics
import Dispatch
package import LicenseCore
import LicenseFiles
package import LicenseStore
import Logging
package import NIOCore

/// The one way a ledger is opened — by the daemon, the fuzz harness and the tests alike: open the
/// commit log and recover, replay into a host, start the log with signals that reach the host on
/// its loop, and make the state on disk whole before serving.
extension LedgerHost {
    /// Opens the ledger of `context` on `eventLoop` with the log of `source`.
    package static func open(
        context: ServerContext,
        licenses: LicenseLoadResult,
        log source: CommitLogSource,
        on eventLoop: any EventLoop
    ) throws -> (host: NIOLoopBoundBox<LedgerHost>, log: any CommitLog) {
        let logger = context.logger
        var (log, recovered) = try source.open(context)
        for (severity, message) in recovered.findings {
            switch severity {
            case .warning: logger.warning("\(message)")
            case .error: logger.error("\(message)")
            case .critical: logger.critical("\(message)")
            }
        }
        // Moved out, so that the host's replay holds the only reference and takes each change
        // out of the array in place: a second reference made it copy the whole array first
        // (about 100 MB at a million leases, written to freshly faulted pages).
        let changes = recovered.changes
        recovered.changes = []
        let host = LedgerHost(
            eventLoop: eventLoop,
            context: context,
            licenses: licenses,
            log: log,
            recovered: consume changes,
            recoveryDetails: recovered.auditDetails
        )
        var summary = Logger.Metadata()
        summary["leases"] = "\(host.ledger.leases.count)"
        for (key, value) in recovered.summary { summary[key] = "\(value)" }
        logger.info("ledger recovered", metadata: summary)
        let needsSnapshot = recovered.needsSnapshot
        let ledger = host.ledger
        // The recovered changes are applied and freed: give their memory back to the system
        // (glibc keeps freed heap otherwise: 596 MB of RSS after recovering a million leases
        // instead of the 480 MB the same ledger takes when built by requests).
        malloc_trim(0)
        let box = NIOLoopBoundBox.makeBoxSendingValue(host, eventLoop: eventLoop)
        let metrics = context.metrics
        let clustered = context.configuration.clustered
        log.start(
            CommitLogSignals(
                durable: { sequence in eventLoop.execute { box.value.durable(upTo: sequence) } },
                fatal: { message in
                    // The host answers the held replies first; the daemon's default then exits.
                    // A loop that does not get to it within 2 s (hung) does not hold the exit up.
                    let answered = DispatchSemaphore(value: 0)
                    eventLoop.execute {
                        box.value.logFailed(message)
                        answered.signal()
                    }
                    _ = answered.wait(timeout: .now() + .seconds(2))
                    context.logFailed(message)
                },
                synced: { records, nanoseconds in
                    (clustered ? metrics.clusterCommit : metrics.walSync).recordNanoseconds(Int64(nanoseconds))
                    metrics.walBatch.record(records)
                }
            )
        )
        if needsSnapshot {
            // A damaged file cost this recovery its redundancy (or, after accepted loss, left a
            // gap in the log): write a fresh snapshot before serving, so the state on disk is
            // whole again and two readable snapshots are kept from the next one on.
            do {
                let snapshot = try log.snapshotAndWait(ledger, takenAtMs: context.clock.nowMs())
                logger.notice("snapshot written after recovery", metadata: ["file": "\(snapshot.file)"])
            } catch {
                log.close()
                throw ConfigurationError("cannot write the snapshot recovery needs: \(error.message)")
            }
        }
        return (box, log)
    }
}
