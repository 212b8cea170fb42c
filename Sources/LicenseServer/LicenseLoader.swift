import Foundation
public import LicenseCore
import LicenseCrypto

/// Reads licence files and trusted keys from disk and hands them to the pure `LicenseVerifier`.
public struct LicenseLoader: Sendable {
    /// The verifier the files are checked with.
    public var verifier: LicenseVerifier

    /// Builds a loader from the configuration: reads every trusted key PEM. A key that cannot be
    /// read is a configuration error (the operator named it, so it must exist).
    /// `environment` is where this server runs (checked against server_environments).
    public init(configuration: ServerConfiguration, hostComponents: [FingerprintComponent], environment: EnvironmentReport) throws {
        var keys: [String: Ed25519PublicKey] = [:]
        for trusted in configuration.trustedKeys {
            let pem: String
            do { pem = try String(contentsOfFile: trusted.publicKey, encoding: .utf8) } catch {
                throw ConfigurationError("trusted key '\(trusted.id)': cannot read \(trusted.publicKey)")
            }
            do { keys[trusted.id] = try Ed25519PublicKey(pem: pem) } catch {
                throw ConfigurationError("trusted key '\(trusted.id)': \(trusted.publicKey) is not an Ed25519 public key PEM (\(error))")
            }
        }
        self.verifier = LicenseVerifier(trustedKeys: keys, serverHostIDs: Set(hostComponents.map(\.id)), serverEnvironment: environment)
    }

    /// Loads every licence file under `paths` (a file, or a directory whose `*.lic` files are read
    /// in name order). A path that does not exist, or a directory with no `*.lic` file, is a
    /// configuration error: the operator named it, and serving "no licences" from a typo would
    /// look like every seat being refused. A file that exists but cannot be read, or holds bad
    /// blocks, is a rejection: its good blocks, and the other files, still load.
    public func load(paths: [String], at nowMs: Int64) throws -> LicenseLoadResult {
        var result = LicenseLoadResult()
        for path in paths {
            for file in try Self.files(at: path) {
                guard let data = FileManager.default.contents(atPath: file) else {
                    result.rejected.append(RejectedLicenseBlock(file: file, block: 0, rejection: .unparseable("cannot read the file")))
                    continue
                }
                let text = String(decoding: data, as: UTF8.self)
                let fileResult = self.verifier.verify(fileText: text, file: file, at: nowMs)
                if fileResult.accepted.isEmpty, fileResult.rejected.isEmpty {
                    result.rejected.append(
                        RejectedLicenseBlock(file: file, block: 0, rejection: .unparseable("the file holds no licence block"))
                    )
                }
                result.merge(fileResult)
            }
        }
        return result
    }

    private static func files(at path: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ConfigurationError("license_paths: \(path) does not exist")
        }
        guard isDirectory.boolValue else { return [path] }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
            throw ConfigurationError("license_paths: cannot list the directory \(path)")
        }
        let files = names.filter { $0.hasSuffix(".lic") }.sorted().map { (path as NSString).appendingPathComponent($0) }
        guard !files.isEmpty else { throw ConfigurationError("license_paths: the directory \(path) holds no *.lic file") }
        return files
    }
}
