/// A failure inside OpenSSL or of key material handed to it.
public struct CryptoError: Error, CustomStringConvertible, Sendable {
    /// What was being done and why it failed, with OpenSSL's own reason when it gave one.
    public let message: String

    /// Creates an error with `message`, followed by OpenSSL's queued error reason if any.
    init(_ message: String, drainingOpenSSLErrors: Bool = true) {
        if drainingOpenSSLErrors, let reason = OpenSSLErrorQueue.drain() {
            self.message = "\(message): \(reason)"
        } else {
            self.message = message
        }
    }

    public var description: String { self.message }
}
