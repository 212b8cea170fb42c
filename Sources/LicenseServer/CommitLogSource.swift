import Foundation
public import LicenseAudit
import LicenseCore
import LicenseFiles
public import LicenseStore
import Logging

/// How the ledger's commit log is opened: which `CommitLog` makes changes durable, and what it
/// recovered. The daemon uses `local`; a replicated log is another source, and tests plug in
/// their own. Only this choice knows which log is in use.
public struct CommitLogSource: Sendable {
    /// Opens the log (not yet started) and recovers what it holds.
    public var open: @Sendable (ServerContext) throws -> (any CommitLog, RecoveredLedger)

    /// A source that opens with `open`.
    public init(open: @escaping @Sendable (ServerContext) throws -> (any CommitLog, RecoveredLedger)) {
        self.open = open
    }

    /// This machine's write-ahead log under `<state_dir>/ledger`, with the audit trail written in
    /// the same batches. When recovery cannot prove it holds every acknowledged change it throws
    /// `RecoveryRefusal` (naming the damaged files), unless `acceptDataLoss` — the operator's
    /// explicit, audited decision to serve without what is lost.
    public static func local(acceptDataLoss: Bool = false) -> CommitLogSource {
        CommitLogSource { context in
            let configuration = context.configuration
            let directory = (configuration.stateDir as NSString).appendingPathComponent("ledger")
            let auditLog = try Self.openAuditTrail(context)
            do {
                let (store, recovery) = try LedgerStore.open(
                    directory: directory,
                    sync: configuration.sync,
                    writer: configuration.walWriter,
                    retainedSnapshots: configuration.snapshotsRetained,
                    acceptDataLoss: acceptDataLoss,
                    audit: auditLog
                )
                if configuration.sync == .none {
                    context.logger.warning(
                        "sync: none — acknowledged changes are not fsynced and a crash can lose them; for tests and demos only"
                    )
                }
                return (store, recovery.replay(sync: configuration.sync))
            } catch let error as StoreError {
                throw ConfigurationError("cannot recover the ledger from \(directory): \(error.message)")
            }
        }
    }

    /// Opens the audit trail of `context`'s configuration and schedules its maintenance
    /// (compression and retention), reported in the log.
    public static func openAuditTrail(_ context: ServerContext) throws -> AuditLog {
        let configuration = context.configuration
        let logger = context.logger
        let clock = context.clock
        let auditLog: AuditLog
        do {
            auditLog = try AuditLog.open(
                directory: configuration.auditDirectory,
                maxFileBytes: configuration.auditMaxFileBytes,
                syncs: configuration.sync == .always,
                format: configuration.auditFormat,
                retention: AuditRetention(
                    compression: configuration.auditCompression,
                    maxFiles: configuration.auditRetentionFiles,
                    maxBytes: configuration.auditRetentionBytes,
                    maxAgeMs: Int64(configuration.auditRetentionDays) * 86_400_000,
                    signer: context.serverKey
                ),
                nowMs: { clock.nowMs() }
            )
        } catch let error as StoreError {
            throw ConfigurationError("cannot open the audit trail in \(configuration.auditDirectory): \(error.message)")
        }
        if let cut = auditLog.cutTail {
            logger.warning("audit trail \(cut.file): cut a torn last write (\(cut.droppedBytes) bytes)")
        }
        auditLog.onMaintenance = { result in
            switch result {
            case .success(let report):
                for file in report.compressed { logger.info("audit file compressed", metadata: ["file": "\(file)"]) }
                if let checkpoint = report.checkpoint {
                    logger.notice(
                        "audit retention removed \(report.removed.count) file(s); signed checkpoint at record \(checkpoint.sequence)",
                        metadata: ["removed": "\(report.removed.joined(separator: ","))"]
                    )
                }
            case .failure(let error):
                logger.error("audit maintenance failed (the files stay as they are): \(error.message)")
            }
        }
        auditLog.scheduleMaintenance()
        return auditLog
    }
}
