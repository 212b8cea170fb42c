import Testing

@testable import LicenseAudit

@Suite("Audit renderer: the escape scan and the record buffer")
struct AuditRendererTests {
    @Test("the word-at-a-time scan finds every byte that needs escaping, at every position, and nothing else")
    func escapeScan() {
        for filler: UInt8 in [UInt8(ascii: "a"), 0x7F, 0x80, 0xC3, 0xFF, 0x21, 0x23, 0x5B, 0x5D, 0x20] {
            for length in 0...19 {
                let plain = [UInt8](repeating: filler, count: length)
                #expect(!plain.withUnsafeBufferPointer(AuditRenderer.needsEscaping), "filler \(filler) length \(length)")
                for position in 0..<length {
                    for byte in UInt8.min...UInt8.max {
                        var bytes = plain
                        bytes[position] = byte
                        let expected = byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
                        let found = bytes.withUnsafeBufferPointer(AuditRenderer.needsEscaping)
                        if found != expected {
                            Issue.record("byte \(byte) at \(position) of \(length) (filler \(filler)): \(found)")
                        }
                    }
                }
            }
        }
    }

    @Test("the record buffer grows keeping its bytes, and drops a prefix")
    func byteWriter() {
        var writer = ByteWriter(capacity: 1)
        var expected: [UInt8] = []
        for round in 0..<200 {
            let chunk = (0..<round % 37).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ round) }
            chunk.withUnsafeBytes { writer.write($0) }
            writer.write(UInt8(truncatingIfNeeded: round))
            writer.write("--")
            expected += chunk + [UInt8(truncatingIfNeeded: round)] + Array("--".utf8)
        }
        #expect(Array(writer.written) == expected)
        #expect(Array(writer.bytes(10..<20)) == Array(expected[10..<20]))
        writer.removeFirst(1_000)
        #expect(Array(writer.written) == Array(expected[1_000...]))
        writer.removeFirst(writer.count)
        #expect(writer.count == 0)
    }
}
