import COpenSSL

/// OpenSSL keeps failures in a per-thread queue; read and empty it so one failure's reason is
/// not reported against a later call.
enum OpenSSLErrorQueue {
    static func drain() -> String? {
        var last: String?
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            last = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return last
    }
}
