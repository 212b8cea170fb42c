import COpenSSL

/// Runs `body` with a read-only OpenSSL memory BIO over `bytes`.
func withReadBIO<T>(_ bytes: [UInt8], _ body: (OpaquePointer) throws -> T) throws -> T {
    try bytes.withUnsafeBytes { raw in
        guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else {
            throw CryptoError("cannot allocate an OpenSSL memory buffer")
        }
        defer { BIO_free(bio) }
        return try body(bio)
    }
}

/// Runs `write` against a fresh memory BIO and returns everything written to it.
func collectBIO(_ write: (OpaquePointer) -> Int32) throws -> [UInt8] {
    guard let bio = BIO_new(BIO_s_mem()) else {
        throw CryptoError("cannot allocate an OpenSSL memory buffer")
    }
    defer { BIO_free(bio) }
    guard write(bio) == 1 else { throw CryptoError("cannot encode key as PEM") }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32($0.count)) }
        if n <= 0 { break }
        result.append(contentsOf: chunk[0..<Int(n)])
    }
    return result
}
