import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol

/// `licensed --demo`: a throwaway issuer key, a freshly signed demo licence and a state directory,
/// so the daemon runs with no configuration at all.
struct DemoSetup {
    static let feature = "demo.cad"
    static let seats: UInt32 = 5
    let licenseID: String
    let directory: String
    /// An operator token for the web console, made for this run.
    let consoleToken: String
    /// Option values the demo sets unless a flag overrides them.
    let configuration: [String: String]

    static func prepare(directory: String, at nowMs: Int64) throws -> DemoSetup {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let issuer = try Ed25519PrivateKey.generate()
        let publicKeyPath = (directory as NSString).appendingPathComponent("demo-issuer.pub.pem")
        try Data(try issuer.publicKey.pemRepresentation().utf8).write(to: URL(fileURLWithPath: publicKeyPath))

        var license = Licensed_V1_License()
        license.id = "demo-floating"
        license.issuedAtMs = nowMs
        license.issuer = "licensed demo issuer"
        license.licensee = "demo"
        license.product = "Demo CAD"
        var feature = Licensed_V1_Feature()
        feature.name = self.feature
        feature.count = self.seats
        license.features = [feature]
        license.model = .floating
        license.overage = .hard
        license.notBeforeMs = nowMs - 60_000
        license.notAfterMs = nowMs + 30 * 86_400_000
        let signed = try LicenseIssuer.sign(license, with: issuer, keyID: "demo-issuer")
        let licensePath = (directory as NSString).appendingPathComponent("demo.lic")
        let text =
            "# licensed --demo: a throwaway licence, signed by a key that exists only for this run.\n" + (try LicenseFile.armor(signed))
        try Data(text.utf8).write(to: URL(fileURLWithPath: licensePath))

        let consoleToken = SecureRandom.bytes(16).hexString
        return DemoSetup(
            licenseID: license.id,
            directory: directory,
            consoleToken: consoleToken,
            configuration: [
                "tokens": "operator:\(SHA256.hash(Array(consoleToken.utf8)).hexString)",
                "listen_host": "127.0.0.1",
                "license_paths": licensePath,
                "trusted_keys": "demo-issuer=\(publicKeyPath)",
                "state_dir": directory,
                "admin_socket": "\(directory)/admin.sock",
            ]
        )
    }

    func printInstructions(port: Int, host: String, console: String?) {
        let server = "\(host):\(port)"
        let consoleLines =
            console.map {
                "The web console: \($0)  (sign in with the operator token \(self.consoleToken))\n"
            } ?? ""
        // Straight to the file descriptor: stdout may be a pipe, where print() would sit in a buffer.
        let text = """
            licensed --demo is serving licence '\(self.licenseID)' (feature \(Self.feature), \(Self.seats) seats) on \(server)
            state: \(self.directory)/  (throwaway: delete it when done)
            Check a seat out with:
                swift run licensectl checkout \(Self.feature) --server \(server)
            See who holds seats (through the local admin socket) and check the audit trail:
                swift run licensectl leases --admin-socket \(self.directory)/admin.sock
                swift run licensectl audit verify --dir \(self.directory)/audit
            \(consoleLines)
            """
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
