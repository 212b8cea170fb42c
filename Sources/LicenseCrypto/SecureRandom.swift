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
