import LicenseCore
import LicenseProtocol
import Testing

@Suite("Clock steps: detection and deadlines that keep their remaining time")
struct ClockStepTests {
    @Test("slewing is not a step; a jump either way is, once")
    func detector() {
        var detector = ClockStepDetector(thresholdMs: 2_000)
        #expect(detector.observe(wallMs: 1_000_000, monotonicMs: 10) == nil)
        // 0.5 ms a second of slew for an hour, read every second: never a step.
        var wall: Int64 = 1_000_000
        var monotonic: Int64 = 10
        for second in 1...3_600 {
            monotonic += 1_000
            wall += 1_000 + Int64(second % 2)
            #expect(detector.observe(wallMs: wall, monotonicMs: monotonic) == nil)
        }
        #expect(detector.observe(wallMs: wall + 7_200_000, monotonicMs: monotonic) == 7_200_000)
        #expect(detector.observe(wallMs: wall + 7_200_000, monotonicMs: monotonic) == nil)
        #expect(detector.observe(wallMs: wall - 172_800_000, monotonicMs: monotonic + 5) == -172_800_000 - 7_200_000 - 5)
    }

    static func ledger(count: UInt32 = 1) -> SeatLedger {
        var license = Licensed_V1_License()
        license.id = "L"
        license.overage = .hard
        var feature = Licensed_V1_Feature()
        feature.name = "cad"
        feature.count = count
        license.features = [feature]
        var configuration = SeatLedger.Configuration(defaultLeaseTTLMs: 30_000)
        configuration.maximumQueueLength = 10
        return SeatLedger(configuration: configuration, licenses: [VerifiedLicense(license: license, keyID: "k", file: "t", block: 1)])
    }

    @Test(
        "shifted deadlines: a lease and a queued check-out keep their remaining time, a borrow keeps its date",
        arguments: [7_200_000, -172_800_000]
    )
    func shift(step: Int64) throws {
        let t0: Int64 = 1_790_000_000_000
        var ledger = Self.ledger()
        let holder = ID128(high: 1, low: 1)
        let waiter = ID128(high: 1, low: 2)
        ledger.openSession(holder, identity: ClientIdentity(user: "a", host: "h"))
        ledger.openSession(waiter, identity: ClientIdentity(user: "b", host: "h"))
        let grant = try ledger.checkOut(.init(sessionID: holder, feature: "cad", newLeaseID: ID128(high: 2, low: 1)), at: t0).get()
        let queued = SeatLedger.CheckOut(sessionID: waiter, feature: "cad", newLeaseID: ID128(high: 3, low: 2))
        #expect(ledger.enqueue(queued, waiterID: 7, waitMs: 60_000, at: t0) == nil)
        ledger.shiftDeadlines(byMs: step)
        let now = t0 + step + 29_999
        #expect(ledger.reap(at: now).isEmpty)
        #expect(ledger.expireWaiters(at: now).isEmpty)
        #expect(ledger.reap(at: now + 1).map(\.lease.id) == [grant.lease.id])
        #expect(ledger.expireWaiters(at: t0 + step + 60_000).map(\.id) == [7])
    }
}
