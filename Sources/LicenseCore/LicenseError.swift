public import LicenseProtocol

/// A request the domain refused, with the protocol code the client sees and a message for a person
/// that says what to do.
public struct LicenseError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The protocol's error code.
    public var code: Licensed_V1_Error.Code
    /// What happened and what to do.
    public var message: String
    /// For `notActive`: where the active server is (host:port; empty when unknown).
    public var activeServer: String

    /// Creates an error.
    public init(_ code: Licensed_V1_Error.Code, _ message: String, activeServer: String = "") {
        self.code = code
        self.message = message
        self.activeServer = activeServer
    }

    public var description: String { "\(self.code): \(self.message)" }

    /// The protocol form.
    public var protocolError: Licensed_V1_Error {
        var error = Licensed_V1_Error()
        error.code = self.code
        error.message = self.message
        error.activeServer = self.activeServer
        return error
    }
}
