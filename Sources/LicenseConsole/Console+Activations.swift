import Foundation
import HTTPTypes
import Hummingbird
import LicenseAudit
import LicenseClient
import LicenseCore
import LicenseProtocol
import LicenseReports
import LicenseServer

/// The activations page: node-locked activations listed and searched a page at a time,
/// deactivated one by one, assigned or revoked in bulk from an uploaded CSV file (the server
/// answers per row; the run is kept in its history), exported as CSV.
extension Console {
    func activationsPage(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        let contains = request.uri.queryParameters.get("contains").map { String($0) } ?? ""
        var query = Licensed_V1_ActivationsRequest()
        query.contains = contains
        query.limit = UInt32(Self.pageSize)
        query.afterActivationID = request.uri.queryParameters.get("after").map { String($0) } ?? ""
        guard case .activations(let page) = try await session.client.administer(.activations(query)) else {
            throw HTTPError(.internalServerError, message: "the server answered Activations with another message")
        }
        let status = try await session.client.status(features: ["-"], includeLicenses: true)
        let parts = status.licenses.filter { $0.license.model == .nodeLocked }.map(\.licenseID)
        let mayChange = session.role >= .operator
        var values: [String: Any] = [
            "contains": contains, "containsQuery": Self.queryValue(contains), "matched": page.matched, "pageSize": Self.pageSize,
            "mayChange": mayChange, "parts": parts.map { ["id": $0] },
            "activations": page.activations.map { activation -> [String: Any] in
                [
                    "id": activation.activationID, "part": activation.licenseID, "partName": activation.partName,
                    "device": activation.machineName, "user": activation.user, "assigned": Timestamp.iso8601(activation.activatedAtMs),
                    "lastSeen": Timestamp.iso8601(activation.lastSeenMs), "status": activation.status,
                    "statusClass": activation.status == "active" ? "good" : "bad", "mayChange": mayChange, "csrf": session.csrf,
                ]
            },
        ]
        if page.more, let last = page.activations.last { values["next"] = Self.queryValue(last.activationID) }
        if let notice = request.uri.queryParameters.get("notice"), !notice.isEmpty { values["notice"] = String(notice) }
        return self.page("activations", title: "Activations", values, session: session)
    }

    /// Every matching activation as CSV, in the columns of `licensectl activations export`.
    func activationsCSV(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        var query = Licensed_V1_ActivationsRequest()
        query.contains = request.uri.queryParameters.get("contains").map { String($0) } ?? ""
        guard case .activations(let all) = try await session.client.administer(.activations(query)) else {
            throw HTTPError(.internalServerError, message: "the server answered Activations with another message")
        }
        return Self.csv(
            ActivationTables.activations(all.activations).render(.csv),
            filename: "activations-\(JSONText.iso8601(ms: Self.nowMs).prefix(10)).csv"
        )
    }

    func deactivate(_ session: ConsoleSession, _ form: [String: String]) async throws -> Response {
        guard let id = form["activation"], !id.isEmpty else { return Self.refusal("say which activation to deactivate") }
        var request = Licensed_V1_RevokeRequest()
        request.activationID = id
        request.reason = form["reason"] ?? ""
        let notice: String
        do {
            guard case .revoke = try await session.client.administer(.revoke(request)) else {
                throw HTTPError(.internalServerError, message: "the server answered Revoke with another message")
            }
            notice = "Deactivated \(id)."
        } catch let error as LicenseClientError {
            if error.code == .permissionDenied { return Self.refusal(error.message) }
            notice = "Not deactivated: \(error.message)"
        }
        return .redirect(to: "/activations?notice=" + Self.queryValue(notice))
    }

    /// A bulk run from an uploaded device list: the server applies or refuses each row and
    /// records the run; the browser is sent to the run's results.
    func bulk(_ session: ConsoleSession, _ form: [String: String]) async throws -> Response {
        let part = form["part"] ?? ""
        guard !part.isEmpty else { return .redirect(to: "/activations?notice=" + Self.queryValue("Choose the part to assign.")) }
        let rows: [Licensed_V1_DeviceRow]
        do { rows = try DeviceCSV.parse(form["devices"] ?? "", source: "the uploaded file") } catch {
            return .redirect(to: "/activations?notice=" + Self.queryValue("Nothing done: \(error.message)."))
        }
        var request = Licensed_V1_AssignRequest()
        request.part = part
        request.revoke = form["action"] == "revoke"
        request.rows = rows
        do {
            guard case .assign(let response) = try await session.client.administer(.assign(request)) else {
                throw HTTPError(.internalServerError, message: "the server answered Assign with another message")
            }
            return .redirect(to: "/activations/history?run=" + Self.queryValue(response.run.runID))
        } catch let error as LicenseClientError {
            if error.code == .permissionDenied { return Self.refusal(error.message) }
            return .redirect(to: "/activations?notice=" + Self.queryValue("Nothing done: \(error.message)"))
        }
    }

    /// Recorded bulk runs, newest first; with `run`, that run's rows.
    func historyPage(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        let runs = try await self.runs(session, month: request.uri.queryParameters.get("month").map { String($0) } ?? "")
        let chosen = request.uri.queryParameters.get("run").map { String($0) }
        var values: [String: Any] = [
            "runs": runs.reversed().map { run -> [String: Any] in
                let applied = run.results.filter(\.applied).count
                return [
                    "id": run.runID, "idQuery": Self.queryValue(run.runID), "at": Timestamp.iso8601(run.atMs), "actor": run.actor,
                    "part": run.part, "action": run.revoke ? "revoke" : "assign", "applied": applied, "failed": run.results.count - applied,
                ]
            }
        ]
        if let chosen, let run = runs.first(where: { $0.runID == chosen }) {
            let applied = run.results.filter(\.applied).count
            values["run"] =
                [
                    "id": run.runID, "action": run.revoke ? "revoke" : "assign", "part": run.part, "applied": applied,
                    "failed": run.results.count - applied,
                    "results": run.results.map { row -> [String: Any] in
                        [
                            "row": row.row, "device": row.device, "result": row.applied ? "applied" : "failed",
                            "resultClass": row.applied ? "good" : "bad", "reason": row.reason, "activation": row.activationID,
                        ]
                    },
                ] as [String: Any]
        }
        return self.page("history", title: "Bulk runs", values, session: session)
    }

    /// Every row of every recorded run as CSV (`licensectl activations history --csv`).
    func historyCSV(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        let runs = try await self.runs(session, month: request.uri.queryParameters.get("month").map { String($0) } ?? "")
        return Self.csv(ActivationTables.runs(runs).render(.csv), filename: "bulk-runs.csv")
    }

    func runs(_ session: ConsoleSession, month: String) async throws -> [Licensed_V1_AssignmentRun] {
        var request = Licensed_V1_HistoryRequest()
        request.month = month
        guard case .history(let history) = try await session.client.administer(.history(request)) else {
            throw HTTPError(.internalServerError, message: "the server answered History with another message")
        }
        return history.runs
    }
}
