import LicenseCore
import LicenseTestSupport
import Testing

/// The hash sets and dictionaries use for ids (`ID128._rawHashValue(seed:)`): every bit of both
/// words reaches the bucket index, and the seed changes it.
@Suite("Identifier hashing")
struct IdentifierHashTests {
    @Test("flipping any one bit of an id flips about half of the hash's low 20 bits (the bucket index of a million-entry table)")
    func avalanche() {
        var random = SeededGenerator(seed: 23)
        var flipped = 0
        var total = 0
        var worstBit = 1.0
        for bit in 0..<128 {
            var flippedForBit = 0
            for _ in 0..<200 {
                let id = ID128(high: random.next(), low: random.next())
                var other = id
                if bit < 64 { other.low ^= 1 << UInt64(bit) } else { other.high ^= 1 << UInt64(bit - 64) }
                let mask = (1 << 20) - 1
                let changed = (id._rawHashValue(seed: 7) ^ other._rawHashValue(seed: 7)) & mask
                flippedForBit += changed.nonzeroBitCount
            }
            flipped += flippedForBit
            total += 200 * 20
            worstBit = min(worstBit, Double(flippedForBit) / Double(200 * 20))
        }
        let ratio = Double(flipped) / Double(total)
        #expect(ratio > 0.48 && ratio < 0.52, "\(ratio)")
        #expect(worstBit > 0.4, "a bit of the id that barely reaches the bucket index: \(worstBit)")
    }

    @Test("the seed changes every id's hash; sequential ids spread over the buckets; sets and dictionaries of ids behave")
    func seedAndSpread() {
        let ids = (0..<100_000).map { ID128(high: 0, low: UInt64($0)) }
        #expect(ids.allSatisfy { $0._rawHashValue(seed: 1) != $0._rawHashValue(seed: 2) })
        // 100,000 sequential ids into 2^17 buckets: about as many distinct buckets as random placement gives (~69%).
        let buckets = Set(ids.map { $0._rawHashValue(seed: 99) & ((1 << 17) - 1) })
        #expect(buckets.count > 65_000)
        var positions: [ID128: Int] = [:]
        for (position, id) in ids.enumerated() { positions[id] = position }
        #expect(positions.count == ids.count)
        #expect(ids.enumerated().allSatisfy { positions[$1] == $0 })
        #expect(positions[ID128(high: 1, low: 0)] == nil)
        let swapped = Set(ids.map { ID128(high: $0.low, low: $0.high) })
        #expect(swapped.count == ids.count && swapped.isDisjoint(with: Set(ids.dropFirst())))
    }
}
