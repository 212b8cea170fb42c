import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseTestSupport
import SwiftProtobuf
import Testing

@Suite("Licence files: signing, parsing, verification")
struct LicenseVerifierTests {
    static let now: Int64 = 1_790_000_000_000
    static let day: Int64 = 86_400_000

    static func license(_ id: String, feature: String = "cad.solver", count: UInt32 = 10) -> Licensed_V1_License {
        var license = Licensed_V1_License()
        license.id = id
        license.issuedAtMs = now - day
        license.licensee = "Example Corp"
        var f = Licensed_V1_Feature()
        f.name = feature
        f.count = count
        license.features = [f]
        license.model = .floating
        return license
    }

    let issuer: Ed25519PrivateKey
    let verifier: LicenseVerifier

    init() throws {
        self.issuer = try Ed25519PrivateKey.generate()
        self.verifier = LicenseVerifier(trustedKeys: ["acme-2026": try self.issuer.publicKey], serverHostIDs: ["aaaa", "bbbb"])
    }

    func armored(_ license: Licensed_V1_License, key: Ed25519PrivateKey? = nil, keyID: String = "acme-2026") throws -> String {
        try LicenseFile.armor(LicenseIssuer.sign(license, with: key ?? self.issuer, keyID: keyID))
    }

    @Test("a signed licence round-trips through the armored file format")
    func roundTrip() throws {
        let text =
            "# comment before\n" + (try self.armored(Self.license("L1"))) + "comment between\n" + (try self.armored(Self.license("L2")))
        let result = self.verifier.verify(fileText: text, file: "a.lic", at: Self.now)
        #expect(result.rejected.isEmpty)
        #expect(result.accepted.map(\.license.id) == ["L1", "L2"])
        #expect(result.accepted.map(\.block) == [1, 2])
        #expect(result.accepted[0].license == Self.license("L1"))
    }

    @Test("a key made by openssl genpkey signs licences the server accepts")
    func opensslGeneratedKey() throws {
        let dir = try TemporaryDirectory()
        _ = try OpenSSLCommand.run(["genpkey", "-algorithm", "ED25519", "-out", dir.path("issuer.pem")])
        let key = try Ed25519PrivateKey(pem: String(contentsOfFile: dir.path("issuer.pem"), encoding: .utf8))
        let pubPEM = try OpenSSLCommand.run(["pkey", "-in", dir.path("issuer.pem"), "-pubout"])
        let verifier = LicenseVerifier(trustedKeys: ["ossl": try Ed25519PublicKey(pem: pubPEM)], serverHostIDs: [])
        let text = try self.armored(Self.license("from-openssl-key"), key: key, keyID: "ossl")
        let result = verifier.verify(fileText: text, file: "o.lic", at: Self.now)
        #expect(result.accepted.map(\.license.id) == ["from-openssl-key"])
    }

    @Test("openssl pkeyutl verifies a licence signature over the documented bytes")
    func opensslVerifiesOurSignature() throws {
        let signed = try LicenseIssuer.sign(Self.license("L1"), with: self.issuer, keyID: "acme-2026")
        let dir = try TemporaryDirectory()
        // Documented: "licensed.v1.license" || 0x00 || serialized License.
        let signedBytes = Array("licensed.v1.license".utf8) + [0] + [UInt8](signed.license)
        try Data(signedBytes).write(to: dir.url.appendingPathComponent("signed.bin"))
        try Data(signed.signature).write(to: dir.url.appendingPathComponent("sig.bin"))
        try self.issuer.publicKey.pemRepresentation().write(toFile: dir.path("pub.pem"), atomically: true, encoding: .utf8)
        let args = ["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", dir.path("pub.pem"), "-sigfile", dir.path("sig.bin")]
        let ok = try OpenSSLCommand.run(args + ["-in", dir.path("signed.bin")])
        #expect(ok.contains("Signature Verified Successfully"))
        // Without the domain prefix the same signature must not verify.
        try Data(signed.license).write(to: dir.url.appendingPathComponent("bare.bin"))
        #expect(throws: OpenSSLCommand.Failed.self) { try OpenSSLCommand.run(args + ["-in", dir.path("bare.bin")]) }
    }

    @Test("one changed byte in the licence is a bad signature")
    func flippedLicenseByte() throws {
        var signed = try LicenseIssuer.sign(Self.license("L1", count: 10), with: self.issuer, keyID: "acme-2026")
        var bytes = [UInt8](signed.license)
        bytes[bytes.count - 1] ^= 0x01
        signed.license = Data(bytes)
        let result = self.verifier.verify(fileText: try LicenseFile.armor(signed), file: "x.lic", at: Self.now)
        #expect(result.accepted.isEmpty)
        #expect(result.rejected.map(\.rejection) == [.badSignature(keyID: "acme-2026")])
        #expect(result.rejected.first?.description.contains("x.lic: block 1") == true)
        #expect(result.rejected.first?.rejection.reason == "bad signature")
    }

    @Test("every single-byte change anywhere in a block is rejected, never accepted")
    func everyFlippedByteRejected() throws {
        let signed = try LicenseIssuer.sign(Self.license("L1"), with: self.issuer, keyID: "acme-2026")
        let original: [UInt8] = try signed.serializedBytes()
        for index in original.indices {
            var bytes = original
            bytes[index] ^= 0x20
            let text = LicenseFile.beginMarker + "\n" + Data(bytes).base64EncodedString() + "\n" + LicenseFile.endMarker + "\n"
            let result = self.verifier.verify(fileText: text, file: "x.lic", at: Self.now)
            #expect(result.accepted.isEmpty, "byte \(index) changed and the licence still loaded")
            #expect(result.rejected.count == 1)
        }
    }

    @Test("a licence signed by an untrusted key is rejected as unknown key")
    func untrustedKey() throws {
        let stranger = try Ed25519PrivateKey.generate()
        let unknownID = self.verifier.verify(
            fileText: try self.armored(Self.license("L1"), key: stranger, keyID: "mallory"),
            file: "m.lic",
            at: Self.now
        )
        #expect(unknownID.rejected.map(\.rejection) == [.unknownKey("mallory")])
        // Claiming a trusted key id does not help: the signature does not verify with that key.
        let spoofed = self.verifier.verify(fileText: try self.armored(Self.license("L1"), key: stranger), file: "m.lic", at: Self.now)
        #expect(spoofed.rejected.map(\.rejection) == [.badSignature(keyID: "acme-2026")])
    }

    @Test("a licence bound to another server is rejected; one bound to this server loads")
    func serverHostBinding() throws {
        var other = Self.license("elsewhere")
        other.serverHostids = ["cccc"]
        var here = Self.license("here")
        here.serverHostids = ["cccc", "BBBB"]
        let text = try self.armored(other) + self.armored(here)
        let result = self.verifier.verify(fileText: text, file: "h.lic", at: Self.now)
        #expect(result.accepted.map(\.license.id) == ["here"])
        #expect(result.rejected.map(\.rejection) == [.wrongServerHost(["cccc"])])
        #expect(result.rejected.first?.licenseID == "elsewhere")
    }

    @Test("expiry: inside the grace period loads as EXPIRING, past it is rejected")
    func expiry() throws {
        var grace = Self.license("grace")
        grace.notAfterMs = Self.now - Self.day
        grace.gracePeriodMs = 15 * Self.day
        var gone = Self.license("gone")
        gone.notAfterMs = Self.now - 20 * Self.day
        gone.gracePeriodMs = 15 * Self.day
        let result = self.verifier.verify(fileText: try self.armored(grace) + self.armored(gone), file: "e.lic", at: Self.now)
        #expect(result.accepted.map(\.license.id) == ["grace"])
        #expect(result.accepted.first?.state(at: Self.now) == .expiring)
        #expect(result.rejected.map(\.rejection.reason) == ["expired"])
    }

    @Test("bad blocks are reported by number while the valid licences of the same file load")
    func mixedFile() throws {
        let stranger = try Ed25519PrivateKey.generate()
        var tampered = try LicenseIssuer.sign(Self.license("tampered"), with: self.issuer, keyID: "acme-2026")
        tampered.signature[0] ^= 0xff
        let text = [
            try self.armored(Self.license("good-1")),
            try LicenseFile.armor(tampered),
            try self.armored(Self.license("unknown"), key: stranger, keyID: "other"),
            LicenseFile.beginMarker + "\nnot base64 at all!!\n" + LicenseFile.endMarker + "\n",
            try self.armored(Self.license("good-2")),
        ].joined(separator: "\n# comment\n")
        let result = self.verifier.verify(fileText: text, file: "mixed.lic", at: Self.now)
        #expect(result.accepted.map(\.license.id) == ["good-1", "good-2"])
        #expect(result.accepted.map(\.block) == [1, 5])
        #expect(result.rejected.map(\.block) == [2, 3, 4])
        #expect(result.rejected.map(\.rejection.reason) == ["bad signature", "unknown key", "unparseable"])
    }

    @Test("an unclosed block is unparseable and does not hide the blocks before it")
    func unclosedBlock() throws {
        let text = try self.armored(Self.license("ok")) + LicenseFile.beginMarker + "\nAAAA\n"
        let result = self.verifier.verify(fileText: text, file: "u.lic", at: Self.now)
        #expect(result.accepted.map(\.license.id) == ["ok"])
        #expect(result.rejected.map(\.rejection.reason) == ["unparseable"])
    }

    @Test("a later issued_at supersedes the same licence id")
    func supersession() throws {
        var old = Self.license("L", count: 5)
        old.issuedAtMs = Self.now - 10 * Self.day
        var new = Self.license("L", count: 8)
        new.issuedAtMs = Self.now - Self.day
        let result = self.verifier.verify(fileText: try self.armored(new) + self.armored(old), file: "s.lic", at: Self.now)
        #expect(result.effective.count == 1)
        #expect(result.effective.first?.license.features.first?.count == 8)
    }

    @Test("the issuer refuses to sign a licence without id or features")
    func signingValidation() throws {
        #expect(throws: LicenseError.self) { try LicenseIssuer.sign(Licensed_V1_License(), with: self.issuer, keyID: "k") }
        var noFeatures = Self.license("x")
        noFeatures.features = []
        let error = #expect(throws: LicenseError.self) { try LicenseIssuer.sign(noFeatures, with: self.issuer, keyID: "k") }
        #expect(error?.code == .invalidArgument)
    }

    @Test("the licence spec is read from protobuf JSON")
    func jsonSpec() throws {
        let json = """
            {"id": "acme-1", "licensee": "Example", "features": [{"name": "cad.solver", "count": 3, "version": "2026.2"}],
             "model": "LICENSE_MODEL_FLOATING", "overage": "OVERAGE_POLICY_TRUE_UP", "not_after_ms": "1800000000000",
             "lease": {"heartbeat_ttl_ms": 60000}}
            """
        let license = try Licensed_V1_License(jsonString: json)
        #expect(license.features.first?.count == 3)
        #expect(license.overage == .trueUp)
        #expect(license.lease.heartbeatTtlMs == 60000)
    }

    @Test("fingerprint component ids are stable hashes bound to their kind")
    func fingerprintComponents() {
        let a = FingerprintComponent(kind: "hostname", value: "build-01")
        #expect(a.id.count == 32)
        #expect(a == FingerprintComponent(kind: "hostname", value: "build-01"))
        #expect(a.id != FingerprintComponent(kind: "operator", value: "build-01").id)
    }
}

@Suite("Environments a licence allows")
struct EnvironmentRuleTests {
    static let vm = EnvironmentReport(kinds: ["virtual"], description: "virtual machine (kvm)")
    static let containerOnVM = EnvironmentReport(kinds: ["virtual", "container"], description: "virtual machine (kvm), container (docker)")
    static let bare = EnvironmentReport(kinds: ["physical"], description: "physical machine")

    @Test("empty allows anywhere; otherwise every kind detected must be listed; an unreported environment is refused by a list")
    func rule() {
        #expect(EnvironmentRule.refusal(Self.containerOnVM, allowed: [], role: "licence server") == nil)
        #expect(EnvironmentRule.refusal(Self.bare, allowed: ["physical"], role: "licence server") == nil)
        let refused = EnvironmentRule.refusal(Self.vm, allowed: ["physical"], role: "licence server")
        #expect(refused?.contains("only on physical") == true && refused?.contains("virtual machine (kvm)") == true, "\(refused ?? "")")
        #expect(EnvironmentRule.refusal(Self.containerOnVM, allowed: ["virtual"], role: "x")?.contains("container not allowed") == true)
        #expect(EnvironmentRule.refusal(Self.containerOnVM, allowed: ["virtual", "container"], role: "x") == nil)
        #expect(
            EnvironmentRule.refusal(EnvironmentReport(kinds: [], description: ""), allowed: ["physical"], role: "x")?.contains(
                "not reported"
            ) == true
        )
    }

    @Test("server_environments: the verifier rejects the block on a host outside it, naming what it detected; a typo is refused at signing")
    func verifier() throws {
        let issuer = try Ed25519PrivateKey.generate()
        var license = LicenseVerifierTests.license("phys-only")
        license.serverEnvironments = ["physical"]
        let text = try LicenseFile.armor(LicenseIssuer.sign(license, with: issuer, keyID: "k"))
        let onVM = LicenseVerifier(trustedKeys: ["k": try issuer.publicKey], serverHostIDs: nil, serverEnvironment: Self.vm)
        let result = onVM.verify(fileText: text, file: "p.lic", at: LicenseVerifierTests.now)
        #expect(result.accepted.isEmpty)
        #expect(result.rejected.first?.rejection.reason == "environment not allowed")
        #expect(result.rejected.first?.description.contains("virtual machine (kvm)") == true, "\(result.rejected.first?.description ?? "")")
        let onBareMetal = LicenseVerifier(trustedKeys: ["k": try issuer.publicKey], serverHostIDs: nil, serverEnvironment: Self.bare)
        #expect(onBareMetal.verify(fileText: text, file: "p.lic", at: LicenseVerifierTests.now).accepted.count == 1)
        license.clientEnvironments = ["vm"]
        #expect(LicenseIssuer.problem(with: license)?.contains("'vm' in client_environments") == true)
    }
}

@Suite("Licence files that survive e-mail")
struct LicenseFileMailTests {
    static func file() throws -> (text: String, verifier: LicenseVerifier) {
        let issuer = try Ed25519PrivateKey.generate()
        var license = LicenseVerifierTests.license("mailed", count: 10)
        license.product = "Acme CAD"
        license.notAfterMs = LicenseVerifierTests.now + 365 * LicenseVerifierTests.day
        let signed = try LicenseIssuer.sign(license, with: issuer, keyID: "acme")
        let text = "Hello, here is your licence:\n\n" + (try LicenseFile.armorWithHeader(signed, license: license)) + "\nRegards\n"
        return (text, LicenseVerifier(trustedKeys: ["acme": try issuer.publicKey], serverHostIDs: nil))
    }

    /// The block's base64 joined and cut again at `width` columns.
    static func rewrapped(_ text: String, width: Int) -> String {
        let lines = text.components(separatedBy: "\n")
        let begin = lines.firstIndex(of: LicenseFile.beginMarker)!
        let end = lines.firstIndex(of: LicenseFile.endMarker)!
        let body = Array(lines[(begin + 1)..<end].joined())
        let wrapped = stride(from: 0, to: body.count, by: width).map { String(body[$0..<min($0 + width, body.count)]) }
        return (lines[...begin] + wrapped + lines[end...]).joined(separator: "\n")
    }

    @Test(
        "one file mangled four ways — rewrapped at 76 columns, CRLF, '> ' quoted (twice), spaces around every line — loads",
        arguments: ["rewrapped", "crlf", "quoted", "spaces", "all four"]
    )
    func mangled(_ how: String) throws {
        let (text, verifier) = try Self.file()
        var mangled = text
        if how == "rewrapped" || how == "all four" { mangled = Self.rewrapped(mangled, width: 76) }
        if how == "crlf" || how == "all four" { mangled = mangled.replacingOccurrences(of: "\n", with: "\r\n") }
        if how == "quoted" || how == "all four" {
            mangled = mangled.split(separator: "\n", omittingEmptySubsequences: false).map { "> > " + $0 }.joined(separator: "\n")
        }
        if how == "spaces" || how == "all four" {
            mangled = mangled.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 + " \t" }.joined(separator: "\n")
        }
        #expect(mangled != text)
        let result = verifier.verify(fileText: mangled, file: "mail.lic", at: LicenseVerifierTests.now)
        #expect(result.rejected.isEmpty, "\(result.rejected)")
        #expect(result.accepted.map(\.license.id) == ["mailed"])
        // The header survives too: nothing to warn about.
        let block = try #require(LicenseFile.parse(mangled).first)
        #expect(LicenseFile.headerMismatches(block.header, license: result.accepted[0].license, keyID: "acme").isEmpty, "\(block.header)")
    }

    @Test("a stray character in the base64 is refused, naming the file's line")
    func strayCharacter() throws {
        let (text, verifier) = try Self.file()
        var lines = text.components(separatedBy: "\n")
        let begin = lines.firstIndex(of: LicenseFile.beginMarker)!
        lines[begin + 2].insert("!", at: lines[begin + 2].index(lines[begin + 2].startIndex, offsetBy: 10))
        let result = verifier.verify(fileText: lines.joined(separator: "\n"), file: "mail.lic", at: LicenseVerifierTests.now)
        #expect(result.accepted.isEmpty)
        let reason = result.rejected.first?.description ?? ""
        #expect(reason.contains("line \(begin + 3): '!' is not a base64 character"), "\(reason)")
    }

    @Test("the header says what the block grants; one edited to claim more seats is flagged, one that leaves a line out too")
    func header() throws {
        let (text, verifier) = try Self.file()
        let license = try #require(verifier.verify(fileText: text, file: "a.lic", at: LicenseVerifierTests.now).accepted.first).license
        let block = try #require(LicenseFile.parse(text).first)
        #expect(block.header.contains("features: cad.solver 10"))
        #expect(block.header.contains("product: Acme CAD"))
        #expect(block.header.contains { $0.hasPrefix("valid: from issue until ") })
        #expect(block.header.contains("model: FLOATING"))
        let edited = LicenseFile.parse(text.replacingOccurrences(of: "# features: cad.solver 10", with: "# features: cad.solver 100"))
        let warnings = LicenseFile.headerMismatches(edited[0].header, license: license, keyID: "acme")
        #expect(warnings == ["the header says 'features: cad.solver 100'; the signed licence says 'features: cad.solver 10'"])
        let cut = LicenseFile.parse(text.replacingOccurrences(of: "# model: FLOATING\n", with: ""))
        #expect(LicenseFile.headerMismatches(cut[0].header, license: license, keyID: "acme") == ["the header leaves out 'model: FLOATING'"])
        // A file with no header (signed before headers, or written by hand) is not flagged.
        #expect(LicenseFile.headerMismatches(["licence 'x' for Example Corp, key id acme"], license: license, keyID: "acme").isEmpty)
    }
}
