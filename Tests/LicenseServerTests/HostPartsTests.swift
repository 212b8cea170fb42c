import Foundation
import LicenseClient
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import SwiftProtobuf
import Testing

@testable import LicenseServer

/// The parts the ledger host is made of, each on its own: connection limits, the token throttle,
/// threshold levels, held replies and the signer of offline credentials.
@Suite("Ledger host parts")
struct HostPartsTests {
    @Test("connection limits: in all and per address; a refused connection counts nothing; release frees a place")
    func connectionLimits() {
        var limits = ConnectionLimits(maxConnections: 3, maxPerAddress: 2)
        let first = limits.admit(from: "10.0.0.1")
        let second = limits.admit(from: "10.0.0.1")
        #expect(first == nil && second == nil)
        let perAddress = limits.admit(from: "10.0.0.1")
        #expect(perAddress?.code == .resourceExhausted)
        #expect(perAddress?.message == "10.0.0.1 has its maximum of 2 connections")
        let other = limits.admit(from: "10.0.0.2")
        #expect(other == nil)
        let total = limits.admit(from: "10.0.0.3")
        #expect(total?.message.contains("maximum of 3 connections") == true)
        #expect(limits.open == 3)
        limits.release(from: "10.0.0.1")
        #expect(limits.count(from: "10.0.0.1") == 1)
        let freed = limits.admit(from: "10.0.0.3")
        #expect(freed == nil)
        // A release of an address never admitted changes nothing.
        limits.release(from: "10.9.9.9")
        #expect(limits.open == 3)
    }

    @Test("token throttle: answers are delayed past the limit within a minute, and not once the minute passed")
    func tokenThrottle() {
        var throttle = TokenThrottle(limit: 2, delayMs: 2_000, maxAddresses: 3)
        let t0: Int64 = 1_000_000
        let delays = [
            throttle.refused(from: "a", at: t0), throttle.refused(from: "a", at: t0 + 1), throttle.refused(from: "a", at: t0 + 2),
            throttle.refused(from: "b", at: t0 + 3),
            // A minute later the old refusals no longer count.
            throttle.refused(from: "a", at: t0 + 60_003),
            // Past `maxAddresses`, addresses without a recent refusal are forgotten.
            throttle.refused(from: "c", at: t0 + 120_010), throttle.refused(from: "d", at: t0 + 120_011),
        ]
        #expect(delays == [0, 0, 2_000, 0, 0, 0, 0])
        #expect(throttle.trackedAddresses <= 3)
    }

    @Test(
        "threshold level: the highest threshold reached",
        arguments: [
            (UInt32(0), UInt32?(10), UInt32(0)), (7, 10, 0), (8, 10, 80), (9, 10, 80), (10, 10, 100), (12, 10, 100),
            (5, nil, 0), (5, 0, 0),
        ]
    )
    func thresholdLevel(inUse: UInt32, capacity: UInt32?, level: UInt32) {
        #expect(ThresholdWatch.level(inUse: inUse, capacity: capacity, thresholds: [80, 100]) == level)
    }

    @Test("threshold crossings: one per change of level, up and down, none while the level holds")
    func thresholdCrossings() {
        var watch = ThresholdWatch(thresholds: [80, 100])
        let below = watch.observe(feature: "cad", inUse: 7, capacity: 10)
        #expect(below == nil)
        let up = watch.observe(feature: "cad", inUse: 8, capacity: 10)
        #expect(up?.up == true)
        #expect(up?.threshold == 80)
        #expect(up?.message == "'cad' reached 80% of its capacity: 8 of 10 seats in use")
        let holding = watch.observe(feature: "cad", inUse: 9, capacity: 10)
        #expect(holding == nil)
        let full = watch.observe(feature: "cad", inUse: 10, capacity: 10)
        #expect(full?.threshold == 100)
        let down = watch.observe(feature: "cad", inUse: 3, capacity: 10)
        #expect(down?.up == false)
        #expect(down?.threshold == 100)
        #expect(down?.message == "'cad' fell back below 100% of its capacity: 3 of 10 seats in use")
        #expect(watch.levels.isEmpty)
    }

    final class Connection {}

    static func reply(_ id: UInt64) -> Licensed_V1_ServerMessage {
        var reply = Licensed_V1_ServerMessage()
        reply.requestID = id
        return reply
    }

    /// The replies `release(upTo:)` hands over, in order.
    static func release(_ replies: inout HeldReplies<Connection, Licensed_V1_ServerMessage>, upTo sequence: UInt64) -> [(
        target: Connection, reply: Licensed_V1_ServerMessage
    )] {
        var released: [(target: Connection, reply: Licensed_V1_ServerMessage)] = []
        replies.release(upTo: sequence) { released.append(($0, $1)) }
        return released
    }

    @Test("held replies: released in order once what precedes them is durable; nothing held when all is durable")
    func heldReplies() {
        let a = Connection()
        let b = Connection()
        var replies = HeldReplies<Connection, Licensed_V1_ServerMessage>(durable: 10)
        let durableAlready = replies.hold(Self.reply(1), for: a)
        #expect(durableAlready == false)
        replies.lastAppended = 12
        let held = [replies.hold(Self.reply(2), for: a)]
        replies.lastAppended = 15
        let more = [replies.hold(Self.reply(3), for: b), replies.hold(Self.reply(4), for: a)]
        #expect(held + more == [true, true, true])
        let none = Self.release(&replies, upTo: 11)
        #expect(none.isEmpty)
        let first = Self.release(&replies, upTo: 14)
        #expect(first.map(\.reply.requestID) == [2])
        #expect(first.first?.target === a)
        // A report lower than one already made changes nothing.
        let lower = Self.release(&replies, upTo: 13)
        #expect(lower.isEmpty)
        #expect(replies.durable == 14)
        let rest = Self.release(&replies, upTo: 15)
        #expect(rest.map(\.reply.requestID) == [3, 4])
        #expect(replies.count == 0)
        replies.lastAppended = 16
        let last = replies.hold(Self.reply(5), for: b)
        #expect(last)
        let abandoned = replies.abandonAll()
        #expect(abandoned.map(\.reply.requestID) == [5])
        #expect(replies.count == 0)
    }

    @Test("signer: a borrow token and an activation certificate verify with the server key, each only in its own domain")
    func signer() throws {
        let key = try Ed25519PrivateKey.generate()
        let publicKey = try key.publicKey.rawRepresentation
        let signer = CredentialSigner(key: key, activationValidityMs: 86_400_000)
        let t0: Int64 = 1_790_000_000_000
        var license = Licensed_V1_License()
        license.id = "L"
        license.model = .floating
        var feature = Licensed_V1_Feature()
        feature.name = "cad"
        feature.count = 2
        license.features = [feature]
        license.lease.maxBorrowMs = 86_400_000
        var nodeLocked = Licensed_V1_License()
        nodeLocked.id = "N"
        nodeLocked.model = .nodeLocked
        var viewer = Licensed_V1_Feature()
        viewer.name = "viewer"
        viewer.count = 2
        nodeLocked.features = [viewer]
        var ledger = SeatLedger(
            configuration: .init(defaultLeaseTTLMs: 60_000),
            licenses: [
                VerifiedLicense(license: license, keyID: "k", file: "t.lic", block: 1),
                VerifiedLicense(license: nodeLocked, keyID: "k", file: "t.lic", block: 2),
            ]
        )
        let session = SessionID(bytes: Array(repeating: 1, count: 16))!
        ledger.openSession(session, identity: ClientIdentity(user: "ada", host: "ws1"))
        let grant = try ledger.checkOut(
            .init(sessionID: session, feature: "cad", newLeaseID: LeaseID(bytes: Array(repeating: 2, count: 16))!, borrowMs: 3_600_000),
            at: t0
        ).get()
        let token = [UInt8](signer.borrowToken(for: grant.lease))
        let claims = try BorrowTokenVerifier.verify(token, serverPublicKey: publicKey, at: t0 + 1)
        #expect(claims.feature == "cad")
        #expect(claims.user == "ada")
        #expect(claims.expiresAtMs == t0 + 3_600_000)
        var forged = token
        forged[forged.count - 1] ^= 1
        #expect(throws: LicenseClientError.self) { try BorrowTokenVerifier.verify(forged, serverPublicKey: publicKey, at: t0 + 1) }

        let fingerprint = ["mid", "uuid", "mac", "host"]
        let activated = try ledger.activate(
            .init(
                licenseID: "N",
                fingerprint: fingerprint,
                machineName: "m",
                identity: ClientIdentity(user: "ada", host: "ws1"),
                newActivationID: "act-1"
            ),
            at: t0
        ).get()
        let certificate = signer.certificate(for: activated, at: t0)
        let certified = try ActivationCertificateVerifier.verify(
            certificate,
            serverPublicKey: publicKey,
            fingerprint: fingerprint,
            at: t0 + 1
        )
        #expect(certified.activationID == "act-1")
        #expect(certified.validUntilMs == t0 + 86_400_000)
        // The borrow token's claims and signature do not pass for a certificate.
        let decoded = try Licensed_V1_BorrowToken(serializedBytes: token)
        var swapped = Licensed_V1_ActivationCertificate()
        swapped.claims = decoded.claims
        swapped.signature = decoded.signature
        #expect(throws: LicenseClientError.self) {
            try ActivationCertificateVerifier.verify(swapped, serverPublicKey: publicKey, fingerprint: fingerprint, at: t0 + 1)
        }
    }
}
