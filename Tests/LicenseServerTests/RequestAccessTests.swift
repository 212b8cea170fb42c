import LicenseCore
import LicenseProtocol
import Testing

@testable import LicenseServer

/// The role table: which tokens may send which request, and what a refusal says.
@Suite("Request access: one table of roles")
struct RequestAccessTests {
    typealias Body = Licensed_V1_ClientMessage.OneOf_Body

    static let table: [(Body, Role)] = [
        (.checkOut(.init()), .client), (.checkIn(.init()), .client), (.heartbeat(.init()), .client), (.status(.init()), .client),
        (.activate(.init()), .client), (.validateActivation(.init()), .client), (.deactivate(.init()), .client),
        (.leases(.init()), .auditor), (.queue(.init()), .auditor), (.activations(.init()), .auditor), (.history(.init()), .auditor),
        (.subscribe(.init()), .auditor),
        (.revoke(.init()), .operator), (.assign(.init()), .operator), (.reload(.init()), .operator), (.snapshot(.init()), .operator),
    ]

    @Test("each request is allowed from its role up and refused below it, saying which tokens may", arguments: Self.table.indices)
    func roles(index: Int) {
        let (body, required) = Self.table[index]
        #expect(RequestAccess.role(for: body) == required)
        for role in Role.allCases {
            let refusal = RequestAccess.refusal(for: body, role: role)
            if role >= required {
                #expect(refusal == nil)
            } else {
                #expect(refusal?.code == .permissionDenied)
                let expected = required == .auditor ? "needs an auditor, operator or admin token" : "needs an operator or admin token"
                #expect(refusal?.message.hasSuffix(expected) == true)
            }
        }
    }
}
