public import LicenseProtocol

/// A request the server refused, or a connection that failed. `code` is the protocol's error
/// code (UNAVAILABLE for connection failures); `message` says what happened and what to do.
public struct LicenseClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The protocol code.
    public var code: Licensed_V1_Error.Code
    /// For a person.
    public var message: String

    /// Creates an error.
    public init(code: Licensed_V1_Error.Code, message: String) {
        self.code = code
        self.message = message
    }

    /// From a server `Error`.
    public init(_ error: Licensed_V1_Error) {
        self.init(code: error.code, message: error.message)
    }

    public var description: String { "\(self.code.name): \(self.message)" }

    static func unavailable(_ message: String) -> LicenseClientError {
        LicenseClientError(code: .unavailable, message: message)
    }
}

extension Licensed_V1_Error.Code {
    /// The code as the protocol names it ("NO_SEATS").
    public var name: String {
        switch self {
        case .unspecified: "CODE_UNSPECIFIED"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .unauthenticated: "UNAUTHENTICATED"
        case .permissionDenied: "PERMISSION_DENIED"
        case .notFound: "NOT_FOUND"
        case .noSeats: "NO_SEATS"
        case .licenseExpired: "LICENSE_EXPIRED"
        case .notYetValid: "NOT_YET_VALID"
        case .versionNotAllowed: "VERSION_NOT_ALLOWED"
        case .networkNotAllowed: "NETWORK_NOT_ALLOWED"
        case .userNotAllowed: "USER_NOT_ALLOWED"
        case .activationLimit: "ACTIVATION_LIMIT"
        case .deviceLimit: "DEVICE_LIMIT"
        case .baseRequired: "BASE_REQUIRED"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .unimplemented: "UNIMPLEMENTED"
        case .unavailable: "UNAVAILABLE"
        case .internal: "INTERNAL"
        case .UNRECOGNIZED(let value): "UNRECOGNIZED(\(value))"
        }
    }
}
