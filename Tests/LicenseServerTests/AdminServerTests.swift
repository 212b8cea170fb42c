import Foundation
import LicenseClient
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseServer
import LicenseTestSupport
import SwiftProtobuf
import Testing

@Suite("Administration through the server")
struct AdminServerTests {
    @Test("a client token can neither list nor revoke; an operator lists and revokes a user's leases and the holder is told")
    func revoke() async throws {
        let operatorToken = "ops-token"
        try await withTestServer(
            configure: { $0.tokens = [.init(hash: SHA256.hash(Array(operatorToken.utf8)), role: .operator)] },
            licenses: [FloatingSeatServerTests.license(count: 5)]
        ) { server, port in
            let ada = FloatingSeatServerTests.client(port, user: "ada")
            let bob = FloatingSeatServerTests.client(port, user: "bob")
            let adaLease = try await ada.checkOut(feature: "cad")
            _ = try await ada.checkOut(feature: "cad")
            _ = try await bob.checkOut(feature: "cad")
            for body in [Licensed_V1_ClientMessage.OneOf_Body.leases(.init()), .revoke(.with { $0.user = "ada" })] {
                let denied = await #expect(throws: LicenseClientError.self) { try await bob.administer(body) }
                #expect(denied?.code == .permissionDenied)
            }
            let ops = FloatingSeatServerTests.client(port, user: "ops", token: operatorToken)
            guard case .leases(let listed) = try await ops.administer(.leases(.with { $0.user = "ada" })) else {
                Issue.record("no lease listing")
                return
            }
            #expect(listed.leases.count == 2)
            #expect(listed.leases.allSatisfy { $0.holder.user == "ada" })
            guard case .revoke(let revoked) = try await ops.administer(.revoke(.with { $0.user = "ada" })) else {
                Issue.record("no revoke answer")
                return
            }
            #expect(revoked.leases == 2)
            var lost: [LicenseClient.Event] = []
            for await event in ada.events {
                lost.append(event)
                if lost.count == 2 { break }
            }
            #expect(lost.contains(.leaseLost(adaLease, reason: "an administrator checked in your lease of 'cad'")))
            #expect(try await server.withLedger { $0.seatsInUse(of: "cad") } == 1)
            let missing = await #expect(throws: LicenseClientError.self) {
                try await ops.administer(.revoke(.with { $0.leaseID = .init(adaLease.id) }))
            }
            #expect(missing?.code == .notFound)
            for client in [ada, bob, ops] { await client.close() }
        }
    }

    @Test(
        "leases a page at a time in lease id order, filtered by text, with the count of all that match; a revoke's reason reaches the holder"
    )
    func pages() async throws {
        let operatorToken = "ops-token"
        try await withTestServer(
            configure: { $0.tokens = [.init(hash: SHA256.hash(Array(operatorToken.utf8)), role: .operator)] },
            licenses: [FloatingSeatServerTests.license(count: 50)]
        ) { _, port in
            var clients: [LicenseClient] = []
            var leases: [[UInt8]] = []
            for n in 0..<25 {
                let client = FloatingSeatServerTests.client(port, user: n % 5 == 0 ? "admin-\(n)" : "user-\(n)")
                leases.append(try await client.checkOut(feature: "cad").id)
                clients.append(client)
            }
            let ops = FloatingSeatServerTests.client(port, user: "ops", token: operatorToken)
            var seen: [Data] = []
            var after = Data()
            var pages = 0
            repeat {
                guard
                    case .leases(let page) = try await ops.administer(
                        .leases(
                            .with {
                                $0.limit = 10; $0.afterLeaseID = after
                            }
                        )
                    )
                else {
                    Issue.record("no lease listing")
                    return
                }
                #expect(page.matched == 25)
                seen += page.leases.map(\.holder.leaseID)
                after = page.leases.last?.holder.leaseID ?? Data()
                pages += 1
                if !page.more { break }
            } while pages < 10
            #expect(pages == 3)
            #expect(seen.count == 25 && Set(seen).count == 25)
            #expect(seen == seen.sorted { $0.lexicographicallyPrecedes($1) }, "pages come in lease id order")
            guard
                case .leases(let admins) = try await ops.administer(
                    .leases(
                        .with {
                            $0.limit = 100; $0.contains = "admin-"
                        }
                    )
                )
            else {
                Issue.record("no filtered listing")
                return
            }
            #expect(admins.matched == 5 && admins.leases.count == 5 && !admins.more)

            guard
                case .revoke = try await ops.administer(
                    .revoke(
                        .with {
                            $0.leaseID = .init(leases[1]); $0.reason = "licence audit"
                        }
                    )
                )
            else {
                Issue.record("no revoke answer")
                return
            }
            for await event in clients[1].events {
                if case .leaseLost(_, let reason) = event {
                    #expect(reason == "an administrator checked in your lease of 'cad': licence audit")
                    break
                }
            }
            for client in clients + [ops] { await client.close() }
        }
    }
}
