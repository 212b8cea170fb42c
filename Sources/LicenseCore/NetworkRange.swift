import Foundation

/// An IPv4 or IPv6 network in CIDR notation ("10.0.0.0/8", "fd00::/8"), for allowed_networks.
public struct NetworkRange: Sendable, Hashable, CustomStringConvertible {
    let bytes: [UInt8]
    let prefixLength: Int

    /// Parses "address/prefix" (or a bare address, meaning that one address).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let address = Self.parseAddress(String(parts[0])) else { return nil }
        let maximum = address.count * 8
        if parts.count == 2 {
            guard let prefix = Int(parts[1]), (0...maximum).contains(prefix) else { return nil }
            self.prefixLength = prefix
        } else {
            self.prefixLength = maximum
        }
        self.bytes = address
    }

    /// True when `address` (text) lies in this network. IPv4-mapped IPv6 addresses match IPv4 ranges.
    public func contains(_ address: String) -> Bool {
        guard var candidate = Self.parseAddress(address) else { return false }
        if candidate.count == 16, self.bytes.count == 4, candidate[0..<10].allSatisfy({ $0 == 0 }), candidate[10] == 0xff,
            candidate[11] == 0xff
        {
            candidate = Array(candidate[12...])
        }
        guard candidate.count == self.bytes.count else { return false }
        var remaining = self.prefixLength
        for i in 0..<self.bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            if candidate[i] & mask != self.bytes[i] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String { "\(Self.format(self.bytes))/\(self.prefixLength)" }

    static func parseAddress(_ text: String) -> [UInt8]? {
        if text.contains(":") { return self.parseIPv6(text) }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard let value = UInt8(part) else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    static func parseIPv6(_ text: String) -> [UInt8]? {
        var text = text
        if let percent = text.firstIndex(of: "%") { text = String(text[..<percent]) }  // zone id
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var result: [UInt16] = []
            let pieces = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, piece) in pieces.enumerated() {
                if piece.contains("."), i == pieces.count - 1, let v4 = Self.parseAddress(String(piece)), v4.count == 4 {
                    result.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    result.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                } else {
                    guard let value = UInt16(piece, radix: 16), piece.count <= 4 else { return nil }
                    result.append(value)
                }
            }
            return result
        }
        guard let head = groups(halves[0]) else { return nil }
        let tail = halves.count == 2 ? groups(halves[1]) : []
        guard let tail else { return nil }
        let missing = 8 - head.count - tail.count
        guard (halves.count == 2 && missing >= 0) || (halves.count == 1 && missing == 0) else { return nil }
        let all = head + Array(repeating: 0, count: missing) + tail
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }

    static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(
            separator: ":"
        )
    }
}
