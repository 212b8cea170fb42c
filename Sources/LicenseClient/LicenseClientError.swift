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

    static func invalidArgument(_ message: String) -> LicenseClientError {
        LicenseClientError(code: .invalidArgument, message: message)
    }

    static func unavailable(_ message: String) -> LicenseClientError {
        LicenseClientError(code: .unavailable, message: message)
    }
}
