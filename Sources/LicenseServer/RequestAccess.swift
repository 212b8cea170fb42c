import LicenseCore
import LicenseProtocol

/// Which role each request needs: the one place it is said. Requests not named here are open to
/// every session (`client`); finer rules inside a request (another session's lease, holders in a
/// status) stay with the request, as `Role.mayRevoke` and `Role.seesHolders`.
enum RequestAccess {
    /// The least role that may send `body`: decided before anything is built for the message
    /// (every request asks, check-outs and check-ins included).
    static func role(for body: Licensed_V1_ClientMessage.OneOf_Body) -> Role {
        switch body {
        case .leases, .queue, .activations, .history, .subscribe, .clusterStatus: .auditor
        case .revoke, .assign, .fulfil, .reload, .snapshot, .directorySync: .operator
        default: .client
        }
    }

    /// What `body` does, for a refusal's message.
    private static func what(_ body: Licensed_V1_ClientMessage.OneOf_Body) -> String {
        switch body {
        case .leases: "listing leases"
        case .queue: "listing the queue"
        case .activations: "listing activations"
        case .history: "history"
        case .subscribe: "subscribing to threshold events"
        case .clusterStatus: "cluster status"
        case .revoke: "revoking"
        case .assign: "assigning parts"
        case .fulfil: "fulfilling an air-gapped machine's request"
        case .reload: "reload"
        case .snapshot: "snapshot"
        case .directorySync: "a directory sync"
        default: body.requestName
        }
    }

    /// PERMISSION_DENIED when `role` may not send `body`, saying which tokens may.
    static func refusal(for body: Licensed_V1_ClientMessage.OneOf_Body, role: Role) -> LicenseError? {
        let required = Self.role(for: body)
        guard role < required else { return nil }
        let what = Self.what(body)
        let allowed = Role.allCases.filter { $0 >= required }.map(\.rawValue)
        let tokens = allowed.count > 1 ? allowed.dropLast().joined(separator: ", ") + " or " + allowed.last! : allowed[0]
        return LicenseError(.permissionDenied, "\(what) needs an \(tokens) token")
    }
}
