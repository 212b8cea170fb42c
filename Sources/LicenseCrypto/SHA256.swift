import COpenSSL

/// SHA-256 through OpenSSL.
public enum SHA256 {
    /// The 32-byte digest of `data`.
    public static func hash(_ data: some Collection<UInt8>) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let bytes = Array(data)
        let ok = bytes.withUnsafeBufferPointer { buf in
            EVP_Digest(buf.baseAddress, buf.count, &digest, &length, EVP_sha256(), nil)
        }
        // EVP_Digest with SHA-256 on memory cannot fail short of OpenSSL being unusable.
        precondition(ok == 1 && length == 32, "OpenSSL SHA-256 failed")
        return digest
    }
}

extension Array where Element == UInt8 {
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
