public import LicenseProtocol

/// A request the server refused, or a connection that failed. `code` is the protocol's error
/// code (UNAVAILABLE for connection failures); `message` says what happened and what to do.
public struct LicenseClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The protocol code.
    public var code: Licensed_V1_Error.Code
    /// For a person.
    public var message: String
    /// For NOT_ACTIVE: host:port of the cluster's active server (empty when none is).
    public var activeServer: String

    /// Creates an error.
    public init(code: Licensed_V1_Error.Code, message: String, activeServer: String = "") {
        self.code = code
        self.message = message
        self.activeServer = activeServer
    }

    /// From a server `Error`.
    public init(_ error: Licensed_V1_Error) {
        self.init(code: error.code, message: error.message, activeServer: error.activeServer)
    }

    /// True when another server may serve what this one did not: it could not be reached, it
    /// is a standby, or it could not confirm it is still the active one.
    public var tryAnotherServer: Bool { self.code == .unavailable || self.code == .notActive }

    public var description: String { "\(self.code.name): \(self.message)" }

    static func invalidArgument(_ message: String) -> LicenseClientError {
        LicenseClientError(code: .invalidArgument, message: message)
    }

    static func unavailable(_ message: String) -> LicenseClientError {
        LicenseClientError(code: .unavailable, message: message)
    }
}
