import Foundation
import LicenseAudit
import LicenseClient
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseServer
import LicenseStore
import LicenseTestSupport
import NIOCore
import SwiftProtobuf
import Testing

@Suite("Security: tokens, the admin socket, the audit trail, TLS")
struct SecurityServerTests {
    /// The trail's records once it holds at least `count` (the writer thread writes them shortly after).
    static func auditRecords(_ directory: String, atLeast count: Int) async throws -> [AuditRecord] {
        for _ in 0..<200 {
            var records: [AuditRecord] = []
            // Read while the daemon writes: a last line caught half-written is read again next time.
            if let files = try? AuditTrail.files(in: directory) {
                do {
                    try AuditTrail.forEachRecord(in: files) { record in
                        records.append(record)
                        return true
                    }
                } catch {
                    records = []
                }
            }
            if records.count >= count { return records }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("the audit trail in \(directory) never reached \(count) records")
        return []
    }

    static func detail(_ record: AuditRecord, _ key: String) -> AuditEvent.Value? {
        record.details?.first(where: { $0.0 == key })?.1
    }

    @Test("wrong tokens are refused and audited; past the limit each refusal is held back; a good token still gets in")
    func refusedTokens() async throws {
        let scratch = try TemporaryDirectory()
        let auditDirectory = scratch.path("state/audit")
        let good = "auditor-token"
        try await withTestServer(
            configure: {
                $0.tokens = [.init(hash: SHA256.hash(Array(good.utf8)), role: .auditor)]
                $0.badTokenLimit = 2
                $0.badTokenDelayMs = 400
            },
            licenses: [FloatingSeatServerTests.license(count: 1)],
            stateDirectory: scratch.path("state")
        ) { _, port in
            var elapsed: [Duration] = []
            for attempt in 0..<3 {
                let intruder = FloatingSeatServerTests.client(port, user: "mallory", token: "guess-\(attempt)")
                let started = ContinuousClock.now
                let refused = await #expect(throws: LicenseClientError.self) { try await intruder.connect() }
                elapsed.append(ContinuousClock.now - started)
                #expect(refused?.code == .unauthenticated)
                await intruder.close()
            }
            // The third refusal is past the limit of 2 and waits the configured delay (a lower bound: delays only add).
            #expect(elapsed[2] >= .milliseconds(400))
            let auditor = FloatingSeatServerTests.client(port, user: "ann", token: good)
            #expect(try await auditor.connect().role == "auditor")
            await auditor.close()
            let records = try await Self.auditRecords(auditDirectory, atLeast: 3)
            let rejected = records.filter { $0.action == "token_rejected" }
            #expect(rejected.count == 3)
            #expect(rejected.allSatisfy { $0.actor == "127.0.0.1" && Self.detail($0, "user") == .string("mallory") })
        }
    }

    @Test("with require_client_token, a Hello without a token is refused and a client token is accepted")
    func requireClientToken() async throws {
        let token = "client-token"
        try await withTestServer(
            configure: {
                $0.requireClientToken = true
                $0.tokens = [.init(hash: SHA256.hash(Array(token.utf8)), role: .client)]
            },
            licenses: [FloatingSeatServerTests.license(count: 1)]
        ) { _, port in
            let anonymous = FloatingSeatServerTests.client(port, user: "anon")
            let refused = await #expect(throws: LicenseClientError.self) { try await anonymous.checkOut(feature: "cad") }
            #expect(refused?.code == .unauthenticated)
            #expect(refused?.message.contains("requires a token") == true)
            await anonymous.close()
            let member = FloatingSeatServerTests.client(port, user: "member", token: token)
            _ = try await member.checkOut(feature: "cad")
            await member.close()
        }
    }

    @Test("the local admin socket grants admin without a token: it lists holders and revokes, and the holder is told")
    func adminSocket() async throws {
        let scratch = try TemporaryDirectory()
        let socket = scratch.path("admin.sock")
        let auditDirectory = scratch.path("state/audit")
        try await withTestServer(
            configure: { $0.adminSocket = socket },
            licenses: [FloatingSeatServerTests.license(count: 2)],
            stateDirectory: scratch.path("state")
        ) { server, port in
            let attributes = try FileManager.default.attributesOfItem(atPath: socket)
            #expect((attributes[.posixPermissions] as? Int) == 0o660)
            let ada = FloatingSeatServerTests.client(port, user: "ada")
            let lease = try await ada.checkOut(feature: "cad")
            var configuration = LicenseClient.Configuration(user: "root", clientHost: "console", clientName: "test")
            configuration.unixSocketPath = socket
            let admin = LicenseClient(configuration: configuration)
            #expect(try await admin.connect().role == "admin")
            guard case .leases(let listed) = try await admin.administer(.leases(.init())) else {
                Issue.record("no lease listing")
                return
            }
            #expect(listed.leases.map(\.holder.user) == ["ada"])
            guard case .revoke(let revoked) = try await admin.administer(.revoke(.with { $0.leaseID = .init(lease.id) })) else {
                Issue.record("no revoke answer")
                return
            }
            #expect(revoked.leases == 1)
            for await event in ada.events {
                if case .leaseLost(let lost, _) = event {
                    #expect(lost.id == lease.id)
                    break
                }
            }
            #expect(try await server.withLedger { $0.seatsInUse(of: "cad") } == 0)
            let records = try await Self.auditRecords(auditDirectory, atLeast: 4)
            let revoke = try #require(records.first { $0.action == "revoke" })
            #expect(revoke.actor == "root@console")
            #expect(Self.detail(revoke, "role") == .string("admin"))
            #expect(Self.detail(revoke, "user") == .string("ada"))
            #expect(records.contains { $0.action == "admin" && $0.subject == "request:Leases" })
            await ada.close()
            await admin.close()
        }
    }

    @Test("a run of check-outs leaves a verified trail of grants, denials with reasons, check-ins and reclamations")
    func auditOfACheckOutRun() async throws {
        let scratch = try TemporaryDirectory()
        let clock = ManualClock(startMs: 1_790_000_000_000)
        let auditDirectory = scratch.path("state/audit")
        try await withTestServer(
            configure: { $0.utilisationThresholds = [] },
            licenses: [FloatingSeatServerTests.license(count: 2, ttlMs: 20_000)],
            clock: clock,
            stateDirectory: scratch.path("state")
        ) { server, port in
            let ada = FloatingSeatServerTests.client(port, user: "ada")
            let bob = FloatingSeatServerTests.client(port, user: "bob")
            let first = try await ada.checkOut(feature: "cad")
            clock.advance(byMs: 1_000)
            _ = try await ada.checkOut(feature: "cad")
            let denied = await #expect(throws: LicenseClientError.self) { try await bob.checkOut(feature: "cad") }
            #expect(denied?.code == .noSeats)
            clock.advance(byMs: 60_000)
            _ = try await ada.checkIn(first)
            _ = try await bob.checkOut(feature: "cad")
            await bob.close()
            await ada.close()
            // Nobody heartbeats any more: both remaining leases lapse and are reclaimed.
            clock.advance(byMs: 200_000)
            try await server.reapNow()
            let all = try await Self.auditRecords(auditDirectory, atLeast: 9)
            // The server's start and the licence in force come first: reports read capacities from them.
            #expect(all.prefix(2).map(\.action) == ["start", "license"])
            #expect(Self.detail(all[1], "features") == .strings(["cad=2"]))
            #expect(Self.detail(all[1], "policy") == .string("HARD"))
            let records = Array(all.dropFirst(2))
            let actions = records.map(\.action)
            #expect(actions == ["grant", "grant", "deny", "checkin", "grant", "reclaim", "reclaim"])
            #expect(all.map(\.sequence) == Array(1...9))
            let deny = records[2]
            #expect(deny.actor == "bob@h-bob")
            #expect(Self.detail(deny, "code") == .string("NO_SEATS"))
            #expect(Self.detail(deny, "feature") == .string("cad"))
            // The holder's own grants and check-in name the holder (written from the lease).
            #expect(records[0].actor == "ada@h-ada" && records[1].actor == "ada@h-ada" && records[4].actor == "bob@h-bob")
            let checkin = records[3]
            #expect(checkin.actor == "ada@h-ada")
            #expect(Self.detail(checkin, "held_ms") == .int(61_000))
            #expect(Self.detail(checkin, "cause") == .string("checked_in"))
            #expect(records[5].actor == "server")
            #expect(Self.detail(records[5], "cause") == .string("expired"))
            #expect(records[0].timeMs == 1_790_000_000_000)
            let verification = try AuditTrail.verify(try AuditTrail.files(in: auditDirectory))
            #expect(verification.failure == nil)
            #expect(verification.records == 9)
        }
        // A restart continues the same chain.
        try await withTestServer(
            configure: { $0.utilisationThresholds = [] },
            licenses: [FloatingSeatServerTests.license(count: 2)],
            clock: clock,
            stateDirectory: scratch.path("state")
        ) { _, port in
            let carol = FloatingSeatServerTests.client(port, user: "carol")
            _ = try await carol.checkOut(feature: "cad")
            await carol.close()
            let records = try await Self.auditRecords(auditDirectory, atLeast: 12)
            #expect(records.suffix(3).map(\.action) == ["start", "license", "grant"])
            #expect(records.last?.sequence == 12)
        }
        let verification = try AuditTrail.verify(try AuditTrail.files(in: scratch.path("state/audit")))
        #expect(verification.failure == nil)
    }

    @Test("utilisation thresholds: each crossing, up or down, is an event to subscribers, an audit record and a gauge")
    func thresholds() async throws {
        let scratch = try TemporaryDirectory()
        let auditDirectory = scratch.path("state/audit")
        let token = "watcher"
        try await withTestServer(
            configure: {
                $0.utilisationThresholds = [50, 100]
                $0.tokens = [.init(hash: SHA256.hash(Array(token.utf8)), role: .auditor)]
            },
            licenses: [FloatingSeatServerTests.license(count: 4)],
            stateDirectory: scratch.path("state")
        ) { server, port in
            let watcher = FloatingSeatServerTests.client(port, user: "ops", token: token)
            let subscription = try await watcher.subscribe()
            #expect(subscription.thresholdsPercent == [50, 100])
            #expect(subscription.levelsPercent.isEmpty)
            let user = FloatingSeatServerTests.client(port, user: "ada")
            let denied = await #expect(throws: LicenseClientError.self) { try await user.subscribe() }
            #expect(denied?.code == .permissionDenied)
            var leases: [LicenseClient.Lease] = []
            for _ in 0..<4 { leases.append(try await user.checkOut(feature: "cad")) }
            _ = try await user.checkIn(leases[0])
            var messages: [String] = []
            for await event in watcher.events {
                if case .thresholdCrossed(let feature, let message) = event {
                    #expect(feature == "cad")
                    messages.append(message)
                    if messages.count == 3 { break }
                }
            }
            #expect(
                messages == [
                    "'cad' reached 50% of its capacity: 2 of 4 seats in use", "'cad' reached 100% of its capacity: 4 of 4 seats in use",
                    "'cad' fell back below 100% of its capacity: 3 of 4 seats in use",
                ]
            )
            let metrics = String(decoding: try await server.renderMetrics().get(), as: UTF8.self)
            #expect(metrics.contains("licensed_seats_utilisation_ratio{feature=\"cad\"} 0.75"))
            let records = try await Self.auditRecords(auditDirectory, atLeast: 12)
            let crossings = records.filter { $0.action == "threshold" }
            #expect(crossings.map { Self.detail($0, "threshold_pct") } == [.int(50), .int(100), .int(100)])
            #expect(crossings.map { Self.detail($0, "direction") } == [.string("up"), .string("up"), .string("down")])
            await user.close()
            await watcher.close()
        }
    }

    /// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with the openssl command.
    static func makeCertificates(in scratch: TemporaryDirectory) throws {
        let path = scratch.path
        _ = try OpenSSLCommand.run([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=licensed test CA",
            "-keyout", path("ca.key"), "-out", path("ca.pem"),
        ])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: path("server.ext"), atomically: true, encoding: .utf8)
        for name in ["server", "client"] {
            _ = try OpenSSLCommand.run([
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=\(name)", "-keyout",
                path("\(name).key"),
                "-out", path("\(name).csr"),
            ])
            var sign = [
                "x509", "-req", "-in", path("\(name).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"), "-CAcreateserial", "-days",
                "2",
                "-out", path("\(name).pem"),
            ]
            if name == "server" { sign += ["-extfile", path("server.ext")] }
            _ = try OpenSSLCommand.run(sign)
        }
    }

    @Test("TLS with client certificates: a client with a certificate from the CA is served; without one, or over plain TCP, it is not")
    func mutualTLS() async throws {
        let scratch = try TemporaryDirectory()
        try Self.makeCertificates(in: scratch)
        let (ca, clientCertificate, clientKey) = (scratch.path("ca.pem"), scratch.path("client.pem"), scratch.path("client.key"))
        try await withTestServer(
            configure: {
                $0.tlsCertificate = scratch.path("server.pem")
                $0.tlsPrivateKey = scratch.path("server.key")
                $0.tlsClientCA = scratch.path("ca.pem")
            },
            licenses: [FloatingSeatServerTests.license(count: 1)]
        ) { _, port in
            var configuration = LicenseClient.Configuration(host: "127.0.0.1", port: port, user: "ada", clientName: "test")
            configuration.tls = ClientTLS(caFile: ca, certificateFile: clientCertificate, privateKeyFile: clientKey)
            let trusted = LicenseClient(configuration: configuration)
            let lease = try await trusted.checkOut(feature: "cad")
            _ = try await trusted.checkIn(lease)
            await trusted.close()

            configuration.tls = ClientTLS(caFile: ca)
            let noCertificate = LicenseClient(configuration: configuration)
            await #expect(throws: (any Error).self) { _ = try await noCertificate.checkOut(feature: "cad") }
            await noCertificate.close()

            configuration.tls = nil
            configuration.connectTimeout = .seconds(2)
            let plain = LicenseClient(configuration: configuration)
            await #expect(throws: (any Error).self) { _ = try await plain.checkOut(feature: "cad") }
            await plain.close()
        }
    }
}
