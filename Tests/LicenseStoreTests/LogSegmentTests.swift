import LicenseStore
import Testing

@Suite("Write-ahead log framing")
struct LogSegmentTests {
    static func log(_ count: Int) -> (bytes: [UInt8], offsets: [Int]) {
        var bytes: [UInt8] = []
        var offsets: [Int] = []
        for i in 1...count {
            offsets.append(bytes.count)
            LogSegment.encode(
                sequence: UInt64(i),
                body: Array("record \(i) ".utf8) + [UInt8](repeating: UInt8(i), count: i % 7),
                into: &bytes
            )
        }
        return (bytes, offsets)
    }

    @Test("records round-trip with their sequence numbers and offsets")
    func roundTrip() throws {
        let (bytes, offsets) = Self.log(20)
        let result = try LogSegment.read(bytes, file: "t.log")
        #expect(result.records.map(\.sequence) == Array(1...20))
        #expect(result.records.map(\.offset) == offsets)
        #expect(Array(result.records[4].body) == Array("record 5 ".utf8) + [5, 5, 5, 5, 5])
        #expect(!result.tornTail)
        #expect(result.validLength == bytes.count)
    }

    @Test("a log cut at every byte offset of its last record recovers all earlier records")
    func tornTailAtEveryOffset() throws {
        let (bytes, offsets) = Self.log(10)
        let lastStart = offsets.last!
        for cut in lastStart..<bytes.count {
            let result = try LogSegment.read(Array(bytes[..<cut]), file: "t.log")
            #expect(result.records.map(\.sequence) == Array(1...9), "cut at \(cut)")
            #expect(result.validLength == lastStart, "cut at \(cut)")
            // A cut inside the length's leading zero bytes leaves zeros only: read as the end.
            #expect(result.tornTail == bytes[lastStart..<cut].contains { $0 != 0 }, "cut at \(cut)")
        }
    }

    @Test("a garbled last record is a torn tail too")
    func garbledLast() throws {
        var (bytes, offsets) = Self.log(5)
        bytes[offsets.last! + 17] ^= 0xff
        let result = try LogSegment.read(bytes, file: "t.log")
        #expect(result.records.count == 4)
        #expect(result.tornTail)
    }

    @Test("a flipped byte in a middle record stops the read with the file and offset", arguments: [0, 3, 5, 9, 16, 20])
    func corruptionInTheMiddle(byteInRecord: Int) throws {
        var (bytes, offsets) = Self.log(10)
        let damaged = offsets[4]
        bytes[damaged + byteInRecord] ^= 0x40
        let error = #expect(throws: LogSegment.CorruptionError.self) { try LogSegment.read(bytes, file: "wal-1.log") }
        #expect(error?.offset == damaged)
        #expect(error?.file == "wal-1.log")
        #expect(error?.description.contains("offset \(damaged)") == true)
    }
}

@Suite("Write-ahead log framing: space allocated ahead")
struct LogSegmentAllocatedTests {
    static let zeros = [UInt8](repeating: 0, count: 1 << 20)

    @Test("zeros after the last record end the segment: no torn tail, every record read")
    func zeroTail() throws {
        let (bytes, _) = LogSegmentTests.log(10)
        let result = try LogSegment.read(bytes + Self.zeros, file: "t.log")
        #expect(result.records.map(\.sequence) == Array(1...10))
        #expect(result.validLength == bytes.count)
        #expect(!result.tornTail)
    }

    @Test("a record torn inside allocated space is a torn tail, at every cut")
    func tornInAllocatedSpace() throws {
        let (bytes, offsets) = LogSegmentTests.log(6)
        let lastStart = offsets.last!
        for cut in (lastStart + 1)..<bytes.count {
            // What reached the disk of the last write, then zeros where the rest did not.
            let result = try LogSegment.read(Array(bytes[..<cut]) + Self.zeros[..<4096], file: "t.log")
            #expect(result.records.map(\.sequence) == Array(1...5), "cut at \(cut)")
            #expect(result.validLength == lastStart, "cut at \(cut)")
            #expect(result.tornTail == bytes[lastStart..<cut].contains { $0 != 0 }, "cut at \(cut)")
        }
    }

    @Test("a whole record after a run of zeros is corruption, found past the zeros", arguments: [16, 17, 4096, 1 << 20])
    func recordAfterZeros(gap: Int) throws {
        let (bytes, offsets) = LogSegmentTests.log(6)
        let head = Array(bytes[..<offsets[3]])
        let later = head.count + gap
        let error = #expect(throws: LogSegment.CorruptionError.self) {
            try LogSegment.read(head + Self.zeros[..<gap] + Array(bytes[offsets[4]...]), file: "wal-1.log")
        }
        #expect(error?.offset == head.count)
        #expect(error?.description.contains("a valid record follows at offset \(later)") == true)
    }
}
