/// Slows down token guessing: refused Hellos are counted per address over the last minute, and
/// past `limit` of them each further refusal is answered only after `delayMs`.
struct TokenThrottle {
    /// Refusals per minute an address may have before its answers are delayed.
    let limit: Int
    /// The delay then, in milliseconds.
    let delayMs: Int64
    /// Addresses tracked at most before the idle ones are forgotten.
    let maxAddresses: Int
    /// Times of recent refusals, by address (the last minute's).
    private var recent: [String: [Int64]] = [:]

    init(limit: Int, delayMs: Int64, maxAddresses: Int = 10_000) {
        self.limit = limit
        self.delayMs = delayMs
        self.maxAddresses = maxAddresses
    }

    /// Records a refusal of `address` at `now` and returns how long to hold its answer.
    mutating func refused(from address: String, at now: Int64) -> Int64 {
        var times = self.recent[address, default: []].filter { now - $0 < 60_000 }
        times.append(now)
        self.recent[address] = times
        if self.recent.count > self.maxAddresses {
            self.recent = self.recent.filter { $0.value.last.map { now - $0 < 60_000 } ?? false }
        }
        return times.count > self.limit ? self.delayMs : 0
    }

    /// Addresses tracked now.
    var trackedAddresses: Int { self.recent.count }
}
