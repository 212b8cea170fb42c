import COpenSSL

/// Random bytes from OpenSSL's CSPRNG (ids, session ids, lease ids).
public enum SecureRandom {
    /// `count` random bytes.
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) }
        precondition(ok == 1, "OpenSSL RAND_bytes failed: no entropy source")
        return out
    }
}

/// 128-bit random values from OpenSSL's CSPRNG, drawn 4 KiB at a time: every check-out needs a
/// lease id, and a `RAND_bytes` call per id spent more in OpenSSL's per-call work (parameter
/// lookups by name, a fork check, a DRBG generate) than in the 16 bytes. The same generator's
/// output; each value's bytes are cleared from the buffer as it is handed out. Not thread-safe:
/// one owner (the serving loop).
public struct RandomIDs: ~Copyable {
    private static let batch = 4096
    private let buffer: UnsafeMutableRawPointer
    private var offset: Int

    /// An empty source: the first value draws the first batch.
    public init() {
        self.buffer = .allocate(byteCount: Self.batch, alignment: 16)
        self.offset = Self.batch
    }

    deinit {
        self.buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Self.batch)
        self.buffer.deallocate()
    }

    /// The next 128 random bits, as two words.
    public mutating func next() -> (high: UInt64, low: UInt64) {
        if self.offset == Self.batch {
            let ok = RAND_bytes(self.buffer.assumingMemoryBound(to: UInt8.self), Int32(Self.batch))
            precondition(ok == 1, "OpenSSL RAND_bytes failed: no entropy source")
            self.offset = 0
        }
        let words = self.buffer.advanced(by: self.offset).assumingMemoryBound(to: UInt64.self)
        let value = (high: words[0], low: words[1])
        words[0] = 0
        words[1] = 0
        self.offset += 16
        return value
    }
}
