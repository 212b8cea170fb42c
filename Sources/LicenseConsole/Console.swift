import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import LicenseAudit
import LicenseClient
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseServer
import MultipartKit
import Mustache

/// The web console for operators, on the operator listener: sign-in with the daemon's role tokens
/// (auditor, operator, admin), a session cookie (HttpOnly, SameSite=Strict, Secure under TLS)
/// that expires, a CSRF token in every form, pages rendered on the server from Mustache templates
/// (every client-supplied text escaped), and every action taken through a protocol session with
/// the signed-in token — the server checks the role and writes the audit trail, as for licensectl.
struct Console: Sendable {
    static let cookieName = "licensed_console"
    static let pageSize = 50

    let server: LicenseServer
    let sessions = ConsoleSessions()
    let templates: MustacheLibrary
    /// How long a sign-in lasts.
    let sessionLifetimeMs: Int64
    /// Set the cookie's Secure attribute (the listener speaks TLS).
    let secure: Bool

    init(server: LicenseServer, secure: Bool) throws {
        self.server = server
        self.secure = secure
        self.sessionLifetimeMs = Int64(server.configuration.consoleSessionMinutes) * 60_000
        var library = MustacheLibrary()
        for (name, text) in ConsoleTemplates.all { try library.register(text, named: name) }
        self.templates = library
    }

    /// True when the daemon's configuration turns the console on: at least one token of a role
    /// that may sign in (auditor, operator, admin), and `console` not off.
    static func isEnabled(_ configuration: ServerConfiguration) -> Bool {
        configuration.console && configuration.tokens.contains { $0.role >= .auditor }
    }

    static var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    // MARK: - Routes

    func addRoutes(to router: Router<ConsoleContext>) {
        router.get("static/console.css") { _, _ in Self.asset(ConsoleTemplates.css, type: "text/css; charset=utf-8") }
        router.get("static/console.js") { _, _ in Self.asset(ConsoleTemplates.javascript, type: "text/javascript; charset=utf-8") }
        router.get("login") { request, _ in
            self.page("login", title: "Sign in", ["next": request.uri.queryParameters.get("next") ?? "/"], session: nil)
        }
        router.post("login") { request, context in try await self.signIn(request, context) }
        router.post("logout") { request, context in
            try await self.withSession(request, context, form: true) { session, _ in
                self.sessions.remove(session.id)
                try? await self.server.auditConsole("console_sign_out", actor: session.actor, details: [("role", session.role.rawValue)])
                var response = Response.redirect(to: "/login")
                response.setCookie(self.cookie(value: "", maxAge: 0))
                return response
            }
        }
        router.get("/") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.dashboard(request, session) }
        }
        router.get("features/:name") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.feature(request, context, session) }
        }
        router.get("licences") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.licences(request, session) }
        }
        router.get("audit") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.auditPage(request, session) }
        }
        router.get("activations") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.activationsPage(request, session) }
        }
        router.get("activations.csv") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.activationsCSV(request, session) }
        }
        router.get("activations/history") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.historyPage(request, session) }
        }
        router.get("activations/history.csv") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.historyCSV(request, session) }
        }
        router.post("activations/deactivate") { request, context in
            try await self.withSession(request, context, form: true, least: .operator) { session, form in
                try await self.deactivate(session, form)
            }
        }
        router.post("activations/bulk") { request, context in
            try await self.withSession(request, context, form: true, least: .operator) { session, form in
                try await self.bulk(session, form)
            }
        }
        router.get("reports") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.reportsPage(request, session) }
        }
        router.get("reports/:report") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.reportCSV(request, context, session) }
        }
        router.get("server") { request, context in
            try await self.withSession(request, context) { session, _ in try await self.serverPage(request, session) }
        }
        router.post("server/reload") { request, context in
            try await self.withSession(request, context, form: true, least: .operator) { session, _ in
                let notice: String
                switch try await session.client.administer(.reload(.init())) {
                case .reload(let reloaded):
                    notice = "Reloaded: \(reloaded.loaded) licence(s) in force, \(reloaded.rejected.count) block(s) rejected."
                default: notice = "The server answered Reload with another message."
                }
                return .redirect(to: "/server?notice=" + Self.queryValue(notice))
            }
        }
        router.post("server/snapshot") { request, context in
            try await self.withSession(request, context, form: true, least: .operator) { session, _ in
                let notice: String
                switch try await session.client.administer(.snapshot(.init())) {
                case .snapshot(let written):
                    notice = "Snapshot written: up to change \(written.sequence), \(written.sizeBytes) bytes in \(written.durationMs) ms."
                default: notice = "The server answered Snapshot with another message."
                }
                return .redirect(to: "/server?notice=" + Self.queryValue(notice))
            }
        }
        router.post("features/:name/revoke") { request, context in
            try await self.withSession(request, context, form: true, least: .operator) { session, form in
                try await self.revoke(context, session, form)
            }
        }
    }

    // MARK: - Sign-in and sessions

    func signIn(_ request: Request, _ context: ConsoleContext) async throws -> Response {
        let form = try await Self.form(request)
        let next = Self.localPath(form["next"])
        let token = form["token"] ?? ""
        let (role, delayMs) = try await self.server.signIn(token: token, address: context.address)
        guard let role else {
            // As a refused Hello token: past bad_token_limit a minute, the answer is held back.
            if delayMs > 0 { try await Task.sleep(for: .milliseconds(delayMs)) }
            return self.page(
                "login",
                title: "Sign in",
                ["next": next, "problem": "That token is not one this server knows."],
                session: nil,
                status: .unauthorized
            )
        }
        guard role >= .auditor else {
            return self.page(
                "login",
                title: "Sign in",
                ["next": next, "problem": "A client token cannot sign in: the console needs an auditor, operator or admin token."],
                session: nil,
                status: .forbidden
            )
        }
        // The session acts through the daemon's own protocol listener, on loopback.
        let port = try await self.server.localAddress.port ?? self.server.configuration.port
        var configuration = LicenseClient.Configuration(
            host: "127.0.0.1",
            port: port,
            user: "console-\(role.rawValue)",
            clientHost: context.address,
            clientName: "licensed-console",
            token: token
        )
        configuration.tls = Self.protocolTLS(self.server.configuration)
        let client = LicenseClient(configuration: configuration)
        let session = self.sessions.create(
            role: role,
            address: context.address,
            lifetimeMs: self.sessionLifetimeMs,
            client: client,
            nowMs: Self.nowMs
        )
        var response = Response.redirect(to: next)
        response.setCookie(self.cookie(value: session.id, maxAge: Int(self.sessionLifetimeMs / 1000)))
        return response
    }

    /// How the console reaches a protocol listener that speaks TLS: it trusts the listener's own
    /// certificate (self-signed, or a chain file that ends in its root) or, under mTLS, the client
    /// CA, and presents the listener's certificate as its own — which the server accepts when its
    /// certificate is issued by that CA. Nil for plain TCP.
    static func protocolTLS(_ configuration: ServerConfiguration) -> ClientTLS? {
        guard configuration.tlsEnabled else { return nil }
        guard !configuration.tlsClientCA.isEmpty else { return ClientTLS(caFile: configuration.tlsCertificate) }
        return ClientTLS(
            caFile: configuration.tlsClientCA,
            certificateFile: configuration.tlsCertificate,
            privateKeyFile: configuration.tlsPrivateKey
        )
    }

    func cookie(value: String, maxAge: Int) -> Cookie {
        Cookie(name: Self.cookieName, value: value, maxAge: maxAge, path: "/", secure: self.secure, httpOnly: true, sameSite: .strict)
    }

    /// Runs `body` for a signed-in session of at least `least`: a page without one redirects to
    /// sign-in, a form without one (or without its CSRF token, or from a role below `least`) is
    /// refused with 403 and audited.
    func withSession(
        _ request: Request,
        _ context: ConsoleContext,
        form: Bool = false,
        least: Role = .auditor,
        _ body: (ConsoleSession, [String: String]) async throws -> Response
    ) async throws -> Response {
        let session = self.sessions.session(request.cookies[Self.cookieName]?.value, nowMs: Self.nowMs)
        guard form else {
            guard let session else {
                let next = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
                return .redirect(to: "/login?next=" + (next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/"))
            }
            return try await body(session, [:])
        }
        let fields = try await Self.form(request)
        guard let session else { return Self.refusal("sign in first") }
        guard session.acceptsCSRF(fields["csrf"]) else {
            try? await self.server.auditConsole(
                "console_refused",
                actor: session.actor,
                details: [("role", session.role.rawValue), ("path", request.uri.path), ("reason", "missing or wrong CSRF token")]
            )
            return Self.refusal("the form's CSRF token is missing or wrong; reload the page")
        }
        guard session.role >= least else {
            try? await self.server.auditConsole(
                "console_refused",
                actor: session.actor,
                details: [("role", session.role.rawValue), ("path", request.uri.path), ("reason", "needs \(least.rawValue)")]
            )
            return Self.refusal("this needs an \(least.rawValue) or admin sign-in")
        }
        return try await body(session, fields)
    }

    // MARK: - Pages

    func dashboard(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        let status = try await session.client.status(includeLicenses: true)
        let (ready, readiness) = try await self.server.readiness().get()
        let now = status.serverTimeMs
        var live: [String: Any] = [
            "readiness": readiness, "readyClass": ready ? "good" : "bad", "version": status.serverVersion, "sessions": status.sessions,
            "features": status.features.map(Self.featureRow),
            // By expiry: what needs attention first (expired, in grace, at risk), then the soonest to end.
            "licences": status.licenses.sorted { Self.expiryOrder($0, now) < Self.expiryOrder($1, now) }.map { licence -> [String: Any] in
                let soon = licence.expiresAtMs > 0 && licence.expiresAtMs - now < 30 * 86_400_000 && licence.state == .compliant
                let expires =
                    licence.expiresAtMs == 0
                    ? "perpetual"
                    : Timestamp.iso8601(licence.expiresAtMs)
                        + (licence.expiresAtMs > now ? " (in \(SeatLedger.duration(licence.expiresAtMs - now)))" : "")
                return [
                    "id": licence.licenseID, "state": licence.state == .expiring ? "EXPIRING (grace)" : licence.state.name,
                    "stateClass": licence.state == .compliant ? (soon ? "warn" : "good") : licence.state == .expiring ? "warn" : "bad",
                    "expires": expires, "model": licence.license.model == .nodeLocked ? "node-locked" : "floating",
                    "features": licence.features.joined(separator: ", "),
                ]
            },
            "rejected": status.rejected.map { ["file": $0.file, "block": $0.block, "reason": $0.reason] as [String: Any] },
        ]
        if status.auditSequence > 0 {
            live["auditSequence"] = status.auditSequence
            live["auditHash"] = String(status.auditHash.prefix(16)) + "…"
        }
        if !status.clusterRole.isEmpty { live["cluster"] = "\(status.clusterRole) (node \(status.clusterNode))" }
        if status.directory.configured {
            let directory = status.directory
            var text =
                directory.syncedAtMs == 0
                ? "no tree read yet"
                : "\(directory.users) users in \(directory.units) units (\(directory.disabled) disabled), read \(Timestamp.iso8601(directory.syncedAtMs)) from \(directory.source)"
            if !directory.lastError.isEmpty { text += "; the last sync failed: \(directory.lastError)" }
            live["directory"] = text
            live["directoryClass"] = directory.lastError.isEmpty ? "good" : "bad"
        }
        live["snapshot"] =
            status.lastSnapshotMs == 0
            ? "none since the ledger began"
            : "\(Timestamp.iso8601(status.lastSnapshotMs)), up to change \(status.lastSnapshotSequence)"
        if status.clockSetbackMs > 0 {
            live["clockSetback"] = "\(SeatLedger.duration(status.clockSetbackMs)) behind the newest time this server has seen"
        }
        let fragment = self.templates.render(live, withTemplate: "dashboard-live") ?? ""
        if request.uri.queryParameters.get("fragment") != nil { return Self.html(fragment) }
        return self.page("dashboard", title: "Dashboard", ["live": fragment], session: session)
    }

    /// Sort key of a licence on the dashboard: expired, in grace, at risk or stopped first; then
    /// the soonest to end; perpetual last.
    static func expiryOrder(_ licence: Licensed_V1_LicenseStatus, _ now: Int64) -> (Int, Int64, String) {
        let urgency: Int =
            switch licence.state {
            case .expired, .clockSetback: 0
            case .expiring: 1
            case .atRisk: 2
            case .notYetValid: 4
            default: 3
            }
        return (urgency, licence.expiresAtMs == 0 ? .max : licence.expiresAtMs, licence.licenseID)
    }

    static func featureRow(_ feature: Licensed_V1_FeatureStatus) -> [String: Any] {
        let percent =
            feature.unlimited || feature.capacity == 0 ? 0 : Int((Double(feature.inUse) * 100 / Double(feature.capacity)).rounded())
        let band = percent >= 100 ? "full" : percent >= 90 ? "high" : percent >= 50 ? "normal" : "low"
        return [
            "name": feature.feature, "path": Self.pathComponent(feature.feature), "inUse": feature.inUse,
            "capacity": feature.unlimited ? "unlimited" : "\(feature.capacity)", "queued": feature.queued, "overage": feature.overage,
            "denials": feature.denialsLastHour,
            "percent": percent, "barWidth": min(percent, 100), "band": band,
        ]
    }

    func feature(_ request: Request, _ context: ConsoleContext, _ session: ConsoleSession) async throws -> Response {
        guard let name = context.parameters.get("name")?.removingPercentEncoding else { return Self.refusal("no feature named") }
        let contains = request.uri.queryParameters.get("contains").map { String($0) } ?? ""
        let after = request.uri.queryParameters.get("after").flatMap { [UInt8](hexString: $0) } ?? []
        var query = Licensed_V1_LeasesRequest()
        query.feature = name
        query.limit = UInt32(Self.pageSize)
        query.afterLeaseID = Data(after)
        query.contains = contains
        guard case .leases(let page) = try await session.client.administer(.leases(query)) else {
            throw HTTPError(.internalServerError, message: "the server answered Leases with another message")
        }
        var queueRequest = Licensed_V1_QueueRequest()
        queueRequest.feature = name
        let queued: [Licensed_V1_QueuedRequest]
        if case .queue(let queue) = try await session.client.administer(.queue(queueRequest)) { queued = queue.queued } else { queued = [] }
        let status = try await session.client.status(features: [name])
        let row = status.features.first.map(Self.featureRow) ?? [:]
        let mayRevoke = session.role >= .operator
        let path = Self.pathComponent(name)
        var values: [String: Any] = [
            "name": name, "path": path, "inUse": row["inUse"] ?? 0, "capacity": row["capacity"] ?? 0,
            "matched": page.matched, "contains": contains,
            "containsQuery": contains.addingPercentEncoding(withAllowedCharacters: CharacterSet.alphanumerics) ?? "",
            "mayRevoke": mayRevoke,
            "pageSize": Self.pageSize,
            "holders": page.leases.map { info -> [String: Any] in
                let holder = info.holder
                return [
                    "user": holder.user, "host": holder.host, "address": holder.address, "since": Timestamp.iso8601(holder.sinceMs),
                    "expires": holder.borrowed
                        ? "borrowed until \(Timestamp.iso8601(holder.expiresAtMs))" : Timestamp.iso8601(holder.expiresAtMs),
                    "lease": [UInt8](holder.leaseID).hexString, "borrowed": holder.borrowed ? "yes" : "", "path": path,
                    "mayRevoke": mayRevoke, "csrf": session.csrf,
                ]
            },
            "queue": queued.map {
                [
                    "user": $0.user, "host": $0.host, "count": $0.count, "since": Timestamp.iso8601($0.sinceMs),
                    "deadline": Timestamp.iso8601($0.deadlineMs),
                ]
                    as [String: Any]
            },
        ]
        // Absent, not empty: a Mustache section shows for any present value.
        if !queued.isEmpty { values["queuedCount"] = queued.count }
        if page.more, let last = page.leases.last { values["next"] = [UInt8](last.holder.leaseID).hexString }
        if let notice = request.uri.queryParameters.get("notice"), !notice.isEmpty { values["notice"] = String(notice) }
        return self.page("feature", title: name, values, session: session)
    }

    func licences(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        let status = try await session.client.status(includeLicenses: true)
        let values: [String: Any] = [
            "licences": status.licenses.map { licence -> [String: Any] in
                // The same words as a licence file's readable header.
                let terms = Dictionary(
                    LicenseFile.headerFields(LicenseFile.header(for: licence.license, keyID: "")).map { ($0.key, $0.value) },
                    uniquingKeysWith: { first, _ in first }
                )
                var row: [String: Any] = [
                    "id": licence.licenseID, "state": licence.state == .expiring ? "EXPIRING (grace)" : licence.state.name,
                    "stateClass": [.compliant, .expiring].contains(licence.state) ? "good" : "bad", "model": terms["model"] ?? "",
                    "licensee": terms["licensee"] ?? "", "features": terms["features"] ?? "", "valid": terms["valid"] ?? "",
                    "policy": terms["policy"] ?? "", "file": licence.file,
                ]
                if let product = terms["product"] { row["product"] = product }
                if let trial = terms["trial"] { row["trial"] = trial }
                if let maintenance = terms["maintenance until"] { row["maintenance"] = maintenance }
                return row
            },
            "rejected": status.rejected.map {
                ["file": $0.file, "block": $0.block, "licence": $0.licenseID, "reason": $0.reason] as [String: Any]
            },
        ]
        return self.page("licences", title: "Licences", values, session: session)
    }

    func serverPage(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        let status = try await session.client.status(features: ["-"])
        let (ready, readiness) = try await self.server.readiness().get()
        var values: [String: Any] = [
            "readiness": readiness, "readyClass": ready ? "good" : "bad", "version": status.serverVersion,
            "serverKey": [UInt8](status.serverPublicKey).hexString,
        ]
        if session.role >= .operator { values["mayOperate"] = true }
        if let notice = request.uri.queryParameters.get("notice"), !notice.isEmpty { values["notice"] = String(notice) }
        return self.page("server", title: "Server", values, session: session)
    }

    /// The newest audit records (filtered by action and actor text), and on request the chain's
    /// verification, both read from the trail's files off the serving threads.
    func auditPage(_ request: Request, _ session: ConsoleSession) async throws -> Response {
        let directory = self.server.configuration.auditDirectory
        let action = request.uri.queryParameters.get("action").map { String($0) } ?? ""
        let actor = request.uri.queryParameters.get("actor").map { String($0) } ?? ""
        let limit = 200
        let records = try await Self.offThread {
            try AuditTrail.recent(in: directory, limit: limit) { record in
                (action.isEmpty || record.action == action) && (actor.isEmpty || record.actor.contains(actor))
            }
        }
        var values: [String: Any] = [
            "action": action, "actorFilter": actor, "limit": limit, "directory": directory,
            "records": records.map { record -> [String: Any] in
                [
                    "sequence": record.sequence, "time": record.time, "action": record.action, "actor": record.actor,
                    "subject": record.subject, "details": record.detailsJSON,
                ]
            },
        ]
        if request.uri.queryParameters.get("verify") != nil {
            let key = try await session.client.status(features: ["-"]).serverPublicKey
            let outcome: String = try await Self.offThread {
                let files = try AuditTrail.files(in: directory)
                let checkpoint = try AuditCheckpoint.read(directory: directory)
                let trusted = try? Ed25519PublicKey(rawRepresentation: [UInt8](key))
                let result = try AuditTrail.verify(files, checkpoint: checkpoint, trustedKey: checkpoint == nil ? nil : trusted)
                if let failure = result.failure { return "BROKEN at \(failure)" }
                let start =
                    result.startsAfterRemovedFiles ? " (older files removed by retention; checked from record \(result.firstSequence))" : ""
                return "OK: \(result.records) records, \(result.firstSequence)…\(result.lastSequence), last hash \(result.lastHash)\(start)"
            }
            values["verification"] = outcome
            values["verificationClass"] = outcome.hasPrefix("OK") ? "good" : "bad"
        }
        return self.page("audit", title: "Audit trail", values, session: session)
    }

    /// Runs blocking file work on a Dispatch thread, not on a Swift concurrency or NIO thread.
    static func offThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }

    static func queryValue(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "" }

    func revoke(_ context: ConsoleContext, _ session: ConsoleSession, _ form: [String: String]) async throws -> Response {
        let name = context.parameters.get("name")?.removingPercentEncoding ?? ""
        var request = Licensed_V1_RevokeRequest()
        request.reason = form["reason"] ?? ""
        if let lease = form["lease"], let bytes = [UInt8](hexString: lease), bytes.count == 16 {
            request.leaseID = Data(bytes)
        } else if let user = form["user"], !user.isEmpty {
            request.user = user
        } else if let host = form["host"], !host.isEmpty {
            request.host = host
        } else {
            return Self.refusal("say which lease, user or host to revoke")
        }
        let notice: String
        do {
            guard case .revoke(let revoked) = try await session.client.administer(.revoke(request)) else {
                throw HTTPError(.internalServerError, message: "the server answered Revoke with another message")
            }
            notice =
                "Revoked \(revoked.leases) lease(s)" + (revoked.activations > 0 ? " and \(revoked.activations) activation(s)" : "") + "."
        } catch let error as LicenseClientError {
            if error.code == .permissionDenied { return Self.refusal(error.message) }
            notice = "Not revoked: \(error.message)"
        }
        return .redirect(
            to: "/features/\(Self.pathComponent(name))?notice="
                + (notice.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
        )
    }

    // MARK: - Rendering

    func page(_ template: String, title: String, _ values: [String: Any], session: ConsoleSession?, status: HTTPResponse.Status = .ok)
        -> Response
    {
        var values = values
        if let session {
            values["csrf"] = session.csrf
            values["actor"] = session.actor
        }
        let body = self.templates.render(values, withTemplate: template) ?? ""
        var layout: [String: Any] = ["title": title, "body": body]
        if let session {
            layout["signedIn"] = true
            layout["csrf"] = session.csrf
            layout["actor"] = "\(session.role.rawValue) (\(session.address))"
        }
        layout["notice"] = values["notice"]
        layout["problem"] = values["problem"]
        return Self.html(self.templates.render(layout, withTemplate: "layout") ?? "", status: status)
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[.contentSecurityPolicy] =
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func asset(_ text: String, type: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.cacheControl] = "max-age=300"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func refusal(_ message: String, status: HTTPResponse.Status = .forbidden) -> Response {
        Self.html("<!doctype html><title>Refused</title><p>\(Self.escape(message))</p>\n", status: status)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
            of: ">",
            with: "&gt;"
        )
        .replacingOccurrences(of: "\"", with: "&quot;").replacingOccurrences(of: "'", with: "&#39;")
    }

    static func pathComponent(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }

    /// The boundary parameter of a multipart Content-Type (quoted or not).
    static func boundary(of contentType: String) -> String? {
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.trimmingCharacters(in: .whitespaces)
            guard pair.lowercased().hasPrefix("boundary=") else { continue }
            let value = pair.dropFirst("boundary=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            return value.isEmpty ? nil : value
        }
        return nil
    }

    /// A redirect target that stays on this site (an absolute path, not //host).
    static func localPath(_ text: String?) -> String {
        guard let text, text.hasPrefix("/"), !text.hasPrefix("//"), !text.contains("\\") else { return "/" }
        return text
    }

    /// The fields of a form: an application/x-www-form-urlencoded body (at most 64 KiB), or a
    /// multipart/form-data one (a file upload, at most 4 MiB; a file's field is its text).
    static func form(_ request: Request) async throws -> [String: String] {
        if let type = request.headers[.contentType], type.lowercased().hasPrefix("multipart/form-data") {
            guard let boundary = Self.boundary(of: type) else { throw HTTPError(.badRequest, message: "multipart body without a boundary") }
            let buffer = try await request.body.collect(upTo: 4 * 1024 * 1024)
            do { return try FormDataDecoder().decode([String: String].self, from: buffer, boundary: boundary) } catch {
                throw HTTPError(.badRequest, message: "the form's multipart body does not parse")
            }
        }
        let buffer = try await request.body.collect(upTo: 64 * 1024)
        var components = URLComponents()
        components.percentEncodedQuery = String(buffer: buffer).replacingOccurrences(of: "+", with: "%20")
        var fields: [String: String] = [:]
        for item in components.queryItems ?? [] where fields[item.name] == nil { fields[item.name] = item.value ?? "" }
        return fields
    }
}
