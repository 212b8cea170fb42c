public import Foundation

/// A 128-bit random identifier, stored as two words so it hashes and compares cheaply.
public struct ID128: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// First 8 bytes, big-endian.
    public var high: UInt64
    /// Last 8 bytes, big-endian.
    public var low: UInt64

    /// Creates an id from its two words.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.high)
        hasher.combine(self.low)
    }

    /// What `Set` and `Dictionary` hash with: the table's per-process random seed and the two
    /// words through MurmurHash3's 64-bit finaliser, one word at a time, instead of a SipHash
    /// round trip per lookup. Ids are drawn at random by the server; a client that sends ids of
    /// its choosing cannot make them collide without the seed (the second word must cancel a
    /// mix of the first with it). At a million leases, hashing ids was about a tenth of a
    /// restart's replay (four lookups or inserts per lease), and it is on every request's path.
    public func _rawHashValue(seed: Int) -> Int {
        Int(truncatingIfNeeded: Self.mix(Self.mix(self.low ^ UInt64(bitPattern: Int64(seed))) ^ self.high))
    }

    @inline(__always)
    private static func mix(_ word: UInt64) -> UInt64 {
        var mixed = (word ^ word >> 33) &* 0xFF51_AFD7_ED55_8CCD
        mixed = (mixed ^ mixed >> 33) &* 0xC4CE_B9FE_1A85_EC53
        return mixed ^ mixed >> 33
    }

    /// Reads exactly 16 bytes; nil for any other length. Inlinable, so that it is specialised
    /// for the caller's collection (Data, [UInt8]) instead of walking it through witness tables.
    @inlinable
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        if let id = bytes.withContiguousStorageIfAvailable({ Self(words: UnsafeRawBufferPointer($0)) }) {
            self = id
            return
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        var index = bytes.startIndex
        for _ in 0..<8 {
            high = high << 8 | UInt64(bytes[index])
            bytes.formIndex(after: &index)
        }
        for _ in 0..<8 {
            low = low << 8 | UInt64(bytes[index])
            bytes.formIndex(after: &index)
        }
        self.init(high: high, low: low)
    }

    /// Reads exactly 16 bytes of `Data` (protobuf's bytes fields) through its buffer, not byte
    /// by byte through its subscript; nil for any other length.
    public init?(bytes: Data) {
        guard bytes.count == 16 else { return nil }
        self = bytes.withUnsafeBytes { Self(words: $0) }
    }

    /// From 16 big-endian bytes.
    @usableFromInline
    init(words buffer: UnsafeRawBufferPointer) {
        self.init(
            high: UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        )
    }

    /// The 16 bytes, big-endian.
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 16) { buffer, count in
            for i in 0..<8 {
                buffer[i] = UInt8(truncatingIfNeeded: self.high >> (56 - 8 * i))
                buffer[8 + i] = UInt8(truncatingIfNeeded: self.low >> (56 - 8 * i))
            }
            count = 16
        }
    }

    /// 32 lower-case hex digits.
    public var description: String {
        // Written straight into the string's storage (two radix conversions and padding cost 4% of
        // the audit writer's time, which renders two ids per record).
        String(unsafeUninitializedCapacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            digits.withUTF8Buffer { hex in
                for i in 0..<16 {
                    buffer[i] = hex[Int(truncatingIfNeeded: self.high >> (60 - 4 * UInt64(i)) & 0xf)]
                    buffer[16 + i] = hex[Int(truncatingIfNeeded: self.low >> (60 - 4 * UInt64(i)) & 0xf)]
                }
            }
            return 32
        }
    }

    /// Parses 32 hex digits.
    public init?(hex: some StringProtocol) {
        guard hex.count == 32, let high = UInt64(hex.prefix(16), radix: 16), let low = UInt64(hex.suffix(16), radix: 16) else {
            return nil
        }
        self.init(high: high, low: low)
    }

    public static func < (lhs: ID128, rhs: ID128) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

/// Identifies a lease: 128 random bits chosen by the server at grant.
public typealias LeaseID = ID128

/// Identifies a session: 128 random bits chosen by the server at Hello.
public typealias SessionID = ID128
