import LicenseCrypto
import Testing

@Suite("Random ids drawn in batches")
struct RandomIDsTests {
    @Test("values across several batches are all different, and each uses both words")
    func distinct() {
        var source = RandomIDs()
        var seen = Set<[UInt64]>()
        var highs = Set<UInt64>()
        var lows = Set<UInt64>()
        for _ in 0..<1_000 {
            let value = source.next()
            seen.insert([value.high, value.low])
            highs.insert(value.high)
            lows.insert(value.low)
        }
        // 1,000 values cross three refills of 256; a repeat of 128 random bits would be a broken source.
        #expect(seen.count == 1_000)
        #expect(highs.count == 1_000)
        #expect(lows.count == 1_000)
    }
}
