import LicenseCore
import LicenseProtocol

/// How many connections the server holds, in all and per client address, against
/// `max_connections` and `max_connections_per_address`.
struct ConnectionLimits {
    /// Connections the server holds at most.
    let maxConnections: Int
    /// Connections one address holds at most.
    let maxPerAddress: Int
    private(set) var open = 0
    private var byAddress: [String: Int] = [:]

    init(maxConnections: Int, maxPerAddress: Int) {
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
    }

    /// Counts a new connection from `address`, or says which limit it would pass (and counts nothing).
    mutating func admit(from address: String) -> LicenseError? {
        if self.open >= self.maxConnections {
            return LicenseError(.resourceExhausted, "the server has its maximum of \(self.maxConnections) connections; try again later")
        }
        if self.byAddress[address, default: 0] >= self.maxPerAddress {
            return LicenseError(.resourceExhausted, "\(address) has its maximum of \(self.maxPerAddress) connections")
        }
        self.open += 1
        self.byAddress[address, default: 0] += 1
        return nil
    }

    /// A connection admitted from `address` closed.
    mutating func release(from address: String) {
        guard let count = self.byAddress[address] else { return }
        self.open -= 1
        self.byAddress[address] = count > 1 ? count - 1 : nil
    }

    /// Connections held from `address`.
    func count(from address: String) -> Int { self.byAddress[address, default: 0] }
}
