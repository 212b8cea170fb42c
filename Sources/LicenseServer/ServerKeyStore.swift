import Foundation
public import LicenseCrypto

/// The server's own Ed25519 key (activation certificates, borrow tokens): read from the configured
/// path, or created on first start in the state directory with mode 0600. It never signs licences.
public enum ServerKeyStore {
    /// Loads the key at `path`, creating it (and its directory) when it does not exist.
    public static func loadOrCreate(at path: String) throws -> Ed25519PrivateKey {
        let fm = FileManager.default
        if fm.fileExists(atPath: path) {
            let pem: String
            do { pem = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw ConfigurationError("cannot read the server key \(path): \(error.localizedDescription)")
            }
            do { return try Ed25519PrivateKey(pem: pem) } catch {
                throw ConfigurationError("the server key \(path) is not an Ed25519 PEM private key: \(error)")
            }
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let key = try Ed25519PrivateKey.generate()
        try PrivateFile.write(Array(try key.pemRepresentation().utf8), to: path)
        return key
    }
}

/// Writes secrets: created with mode 0600 from the start (never world-readable, even briefly),
/// fsynced, then renamed into place.
public enum PrivateFile {
    /// Writes `bytes` to `path` atomically with mode 0600.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ConfigurationError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                close(fd)
                throw ConfigurationError("cannot write \(temporary): \(reason)")
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ConfigurationError("cannot fsync \(temporary): \(reason)")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            throw ConfigurationError("cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
        }
    }
}
