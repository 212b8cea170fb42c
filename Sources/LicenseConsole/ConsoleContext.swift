import Hummingbird
import NIOCore

/// The request context of the operator listener: Hummingbird's core storage and the peer's address
/// (sign-in throttling and the audit trail name it).
struct ConsoleContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The browser's (or scraper's) IP address.
    let address: String

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.address = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}
