// The protocol's names for error codes, for messages, logs and metric labels.
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
        case .notActive: "NOT_ACTIVE"
        case .staleResume: "STALE_RESUME"
        case .environmentNotAllowed: "ENVIRONMENT_NOT_ALLOWED"
        case .clockSetback: "CLOCK_SETBACK"
        case .UNRECOGNIZED(let value): "UNRECOGNIZED(\(value))"
        }
    }
}

extension Licensed_V1_LicenseStatus.State {
    /// The state as the protocol names it ("COMPLIANT"), for licensectl status and the console.
    public var name: String {
        switch self {
        case .unspecified: "STATE_UNSPECIFIED"
        case .compliant: "COMPLIANT"
        case .atRisk: "AT_RISK"
        case .expiring: "EXPIRING"
        case .expired: "EXPIRED"
        case .notYetValid: "NOT_YET_VALID"
        case .clockSetback: "CLOCK_SETBACK"
        case .UNRECOGNIZED(let value): "UNRECOGNIZED(\(value))"
        }
    }
}
