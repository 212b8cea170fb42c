import LicenseCore
import LicenseProtocol

/// Which role each request needs: the one place it is said. Requests not named here are open to
/// every session (`client`); finer rules inside a request (another session's lease, holders in a
/// status) stay with the request, as `Role.mayRevoke` and `Role.seesHolders`.
enum RequestAccess {
    /// The least role that may send `body`, and what the request does, for the refusal's message.
    static func requirement(for body: Licensed_V1_ClientMessage.OneOf_Body) -> (role: Role, what: String) {
        switch body {
        case .leases: (.auditor, "listing leases")
        case .queue: (.auditor, "listing the queue")
        case .activations: (.auditor, "listing activations")
        case .history: (.auditor, "history")
        case .subscribe: (.auditor, "subscribing to threshold events")
        case .clusterStatus: (.auditor, "cluster status")
        case .revoke: (.operator, "revoking")
        case .assign: (.operator, "assigning parts")
        case .fulfil: (.operator, "fulfilling an air-gapped machine's request")
        case .reload: (.operator, "reload")
        case .snapshot: (.operator, "snapshot")
        case .directorySync: (.operator, "a directory sync")
        default: (.client, body.requestName)
        }
    }

    /// PERMISSION_DENIED when `role` may not send `body`, saying which tokens may.
    static func refusal(for body: Licensed_V1_ClientMessage.OneOf_Body, role: Role) -> LicenseError? {
        let (required, what) = Self.requirement(for: body)
        guard role < required else { return nil }
        let allowed = Role.allCases.filter { $0 >= required }.map(\.rawValue)
        let tokens = allowed.count > 1 ? allowed.dropLast().joined(separator: ", ") + " or " + allowed.last! : allowed[0]
        return LicenseError(.permissionDenied, "\(what) needs an \(tokens) token")
    }
}
