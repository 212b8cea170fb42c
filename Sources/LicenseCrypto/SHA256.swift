import COpenSSL

/// SHA-256 through OpenSSL.
public enum SHA256 {
    /// The 32-byte digest of `data`.
    public static func hash(_ data: some Collection<UInt8>) -> [UInt8] {
        if let digest = data.withContiguousStorageIfAvailable({ Self.hash(bytes: UnsafeRawBufferPointer($0)) }) { return digest }
        return Array(data).withUnsafeBytes { Self.hash(bytes: $0) }
    }
}

extension Array where Element == UInt8 {
    /// Reads hex digits (either case); nil unless the text is an even number of hex digits.
    public init?(hexString text: some StringProtocol) {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let high = value(digits[i]), let low = value(digits[i + 1]) else { return nil }
            bytes.append(high << 4 | low)
            i += 2
        }
        self = bytes
    }

    /// Lower-case hex.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(self.count * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension SHA256 {
    /// The 32-byte digest of the bytes at `buffer`, without copying them.
    public static func hash(bytes buffer: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 32) { digest, count in
            licensed_sha256(buffer.baseAddress, buffer.count, digest.baseAddress!)
            count = 32
        }
    }

    /// Stores the 32-byte digest of the bytes at `buffer` at `digest` (32 bytes or more): no
    /// array per digest, for the audit writer's two hashes per check-out and check-in.
    public static func hash(bytes buffer: UnsafeRawBufferPointer, into digest: UnsafeMutableRawBufferPointer) {
        precondition(digest.count >= 32)
        licensed_sha256(buffer.baseAddress, buffer.count, digest.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }
}
