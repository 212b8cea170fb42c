import Foundation
import LicenseCrypto
import LicenseTestSupport
import Testing

@Suite("Ed25519 through OpenSSL")
struct Ed25519Tests {
    @Test("sign then verify; a changed message or signature fails")
    func signVerify() throws {
        let key = try Ed25519PrivateKey.generate()
        let message = Array("seat for cad.solver".utf8)
        let signature = try key.signature(for: message)
        #expect(signature.count == 64)
        let pub = try key.publicKey
        #expect(pub.isValidSignature(signature, for: message))
        #expect(!pub.isValidSignature(signature, for: message + [0]))
        var flipped = signature
        flipped[10] ^= 0x01
        #expect(!pub.isValidSignature(flipped, for: message))
        #expect(!pub.isValidSignature(Array(signature.prefix(63)), for: message))
    }

    @Test("PEM round trip keeps the key")
    func pemRoundTrip() throws {
        let key = try Ed25519PrivateKey.generate()
        let pem = try key.pemRepresentation()
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        let again = try Ed25519PrivateKey(pem: pem)
        #expect(try again.publicKey == key.publicKey)
        let pubPEM = try key.publicKey.pemRepresentation()
        #expect(pubPEM.hasPrefix("-----BEGIN PUBLIC KEY-----"))
        #expect(try Ed25519PublicKey(pem: pubPEM) == key.publicKey)
        #expect(try Ed25519PublicKey(rawRepresentation: key.publicKey.rawRepresentation) == key.publicKey)
    }

    @Test("domains separate signatures: a licence signature is no activation signature")
    func domains() throws {
        let key = try Ed25519PrivateKey.generate()
        let payload = Array("claims".utf8)
        let signature = try key.signature(for: payload, in: .license)
        let pub = try key.publicKey
        #expect(pub.isValidSignature(signature, for: payload, in: .license))
        #expect(!pub.isValidSignature(signature, for: payload, in: .activation))
        #expect(!pub.isValidSignature(signature, for: payload, in: .borrow))
        #expect(!pub.isValidSignature(signature, for: payload))
    }

    @Test("garbage PEM and non-Ed25519 keys are refused with a reason")
    func badKeys() throws {
        #expect(throws: CryptoError.self) { try Ed25519PrivateKey(pem: "not a key") }
        #expect(throws: CryptoError.self) { try Ed25519PublicKey(pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n") }
        #expect(throws: CryptoError.self) { try Ed25519PublicKey(rawRepresentation: [1, 2, 3]) }
        let rsa = try OpenSSLCommand.run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
        let error = #expect(throws: CryptoError.self) { try Ed25519PrivateKey(pem: rsa) }
        #expect(error?.message.contains("not Ed25519") == true)
    }

    @Test("hex round trip; odd length and non-hex digits refused")
    func hex() {
        let bytes: [UInt8] = [0x00, 0x7f, 0xab, 0xff]
        #expect([UInt8](hexString: bytes.hexString) == bytes)
        #expect([UInt8](hexString: "00FFaB") == [0x00, 0xff, 0xab])
        #expect([UInt8](hexString: "abc") == nil)
        #expect([UInt8](hexString: "zz") == nil)
    }

    @Test("SHA-256 matches the known vector")
    func sha256() {
        #expect(SHA256.hash(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hash([UInt8]()).hexString == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test("keys from openssl genpkey sign, and openssl pkeyutl verifies our signatures")
    func interoperatesWithOpenSSLCommand() throws {
        let dir = try TemporaryDirectory()
        let keyPath = dir.path("k.pem")
        _ = try OpenSSLCommand.run(["genpkey", "-algorithm", "ED25519", "-out", keyPath])
        let key = try Ed25519PrivateKey(pem: String(contentsOfFile: keyPath, encoding: .utf8))
        let pubPEM = try OpenSSLCommand.run(["pkey", "-in", keyPath, "-pubout"])
        #expect(try Ed25519PublicKey(pem: pubPEM) == key.publicKey)
        let message = Array("payload to sign".utf8)
        try Data(message).write(to: URL(fileURLWithPath: dir.path("msg")))
        try Data(try key.signature(for: message)).write(to: URL(fileURLWithPath: dir.path("sig")))
        try pubPEM.write(toFile: dir.path("pub.pem"), atomically: true, encoding: .utf8)
        let output = try OpenSSLCommand.run([
            "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", dir.path("pub.pem"), "-in", dir.path("msg"), "-sigfile", dir.path("sig"),
        ])
        #expect(output.contains("Signature Verified Successfully"))
    }
}
