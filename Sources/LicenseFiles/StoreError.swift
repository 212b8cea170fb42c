#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A storage failure: what was being done, to which file, and the system's reason.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    /// For a person.
    public var message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }

    package static func errno(_ what: String, _ path: String) -> StoreError {
        StoreError("\(what) \(path): \(String(cString: strerror(Glibc.errno)))")
    }
}
