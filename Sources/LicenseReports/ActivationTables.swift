import LicenseCore
public import LicenseProtocol

/// Activations and bulk runs as tables (`licensectl activations export|history --csv`, the
/// console's downloads): one layout, whoever writes it.
public enum ActivationTables {
    /// One row per activation: part name, part id, assigned date, status, device id, device name,
    /// user, last seen.
    public static func activations(_ activations: [Licensed_V1_ActivationInfo]) -> ReportTable {
        ReportTable(
            columns: ["Part Name", "Part ID", "Assigned Date", "Status", "Device ID", "Device Name", "User", "Last Seen"],
            rows: activations.map { a in
                [
                    .text(a.partName), .text(a.licenseID), .text(Timestamp.iso8601(a.activatedAtMs)), .text(a.status),
                    .text(a.activationID), .text(a.machineName), .text(a.user), .text(Timestamp.iso8601(a.lastSeenMs)),
                ]
            }
        )
    }

    /// One row per device row of every run.
    public static func runs(_ runs: [Licensed_V1_AssignmentRun]) -> ReportTable {
        ReportTable(
            columns: ["Run", "Time", "Actor", "Part", "Action", "Row", "Device", "Result", "Reason", "Activation"],
            rows: runs.flatMap { run in
                run.results.map { r -> [ReportTable.Cell] in
                    [
                        .text(run.runID), .text(Timestamp.iso8601(run.atMs)), .text(run.actor), .text(run.part),
                        .text(run.revoke ? "revoke" : "assign"), .int(Int64(r.row)), .text(r.device),
                        .text(r.applied ? "applied" : "failed"),
                        .text(r.reason), .text(r.activationID),
                    ]
                }
            }
        )
    }
}
