import Testing

@testable import LicenseStore

@Suite("CRC-32C")
struct CRC32CTests {
    @Test("known vectors (RFC 3720 B.4)")
    func vectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xff, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum(Array(0...31)) == 0x46DD_794E)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test("continuing over pieces equals the whole, at every split")
    func continuation() {
        let data = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let whole = CRC32C.checksum(data)
        for split in 0...data.count {
            #expect(CRC32C.checksum(Array(data[split...]), continuing: CRC32C.checksum(Array(data[..<split]))) == whole)
        }
    }
}

@Suite("CRC-32C by instruction and by table")
struct CRC32CHardwareTests {
    @Test("the processor's instruction and the tables agree on every length, alignment and continuation")
    func agree() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<4_096).map { _ in UInt8.random(in: 0...255, using: &generator) }
        data.withUnsafeBytes { all in
            for start in 0..<16 {
                for length in [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100, 1_000, 4_000] where start + length <= all.count {
                    let piece = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                    let seed = UInt32.random(in: 0...UInt32.max, using: &generator)
                    #expect(CRC32C.checksum(piece, continuing: seed) == CRC32C.tableChecksum(piece, continuing: seed))
                }
            }
        }
        // The vectors through the table path too (the other suite exercises whichever this processor uses).
        #expect("123456789".utf8.withContiguousStorageIfAvailable { CRC32C.tableChecksum(UnsafeRawBufferPointer($0)) } == 0xE306_9283)
    }
}
