import LicenseCore
import LicenseProtocol
import Testing

@Suite("Clock setback: the high-water mark stops time-limited licences, not perpetual ones")
struct ClockSetbackTests {
    typealias F = LedgerFixture
    static let t0 = F.t0
    static let hour: Int64 = 3_600_000

    /// A perpetual licence, one with an end date, a trial and one with a maintenance date.
    static func ledger() -> SeatLedger {
        var trial = F.license("trial", feature: "trial.tool", count: 5)
        trial.license.trialDays = 30
        var maintained = F.license("maint", feature: "maint.tool", count: 5)
        maintained.license.maintenanceUntilMs = t0 + 100 * F.day
        return F.ledger([
            F.license("perpetual", feature: "cad", count: 5),
            F.license("dated", feature: "dated.tool", count: 5, notAfter: t0 + 365 * F.day),
            trial, maintained,
        ])
    }

    static func checkOut(_ ledger: inout SeatLedger, _ feature: String, lease: UInt64, at nowMs: Int64) -> Result<
        SeatLedger.Grant, LicenseError
    > {
        let session = F.session(&ledger, lease)
        return ledger.checkOut(.init(sessionID: session, feature: feature, newLeaseID: F.id(lease)), at: nowMs)
    }

    @Test("3 days back: time-limited licences refuse with CLOCK_SETBACK naming 3 days; the perpetual one grants")
    func threeDaysBack() throws {
        var ledger = Self.ledger()
        ledger.apply(.clockMarked(atMs: Self.t0))
        let back = Self.t0 - 3 * F.day
        #expect(ledger.clockSetbackMs(at: back) == 3 * F.day)
        for (n, feature) in ["dated.tool", "trial.tool", "maint.tool"].enumerated() {
            let result = Self.checkOut(&ledger, feature, lease: UInt64(n + 1), at: back)
            guard case .failure(let error) = result else {
                Issue.record("\(feature) was granted during a setback")
                continue
            }
            #expect(error.code == .clockSetback)
            #expect(error.message.contains("3 days behind"), "\(error.message)")
            #expect(error.message.contains("set right"))
        }
        _ = try Self.checkOut(&ledger, "cad", lease: 10, at: back).get()
        let status = ledger.status(includeHolders: false, at: back)
        #expect(status.licenses.first { $0.licenseID == "dated" }?.state == .clockSetback)
        #expect(status.licenses.first { $0.licenseID == "perpetual" }?.state == .compliant)
        #expect(ledger.capacity(of: "dated.tool", at: back) == 0)
        // The clock set right: it grants again, with nothing to clear.
        #expect(ledger.clockSetbackMs(at: Self.t0) == 0)
        _ = try Self.checkOut(&ledger, "dated.tool", lease: 11, at: Self.t0).get()
    }

    @Test("an hour back, inside the 24-hour tolerance, changes nothing; the tolerance is configurable")
    func insideTolerance() throws {
        var ledger = Self.ledger()
        ledger.apply(.clockMarked(atMs: Self.t0))
        #expect(ledger.clockSetbackMs(at: Self.t0 - Self.hour) == 0)
        _ = try Self.checkOut(&ledger, "dated.tool", lease: 1, at: Self.t0 - Self.hour).get()
        #expect(ledger.clockSetbackMs(at: Self.t0 - 24 * Self.hour) == 0)
        #expect(ledger.clockSetbackMs(at: Self.t0 - 24 * Self.hour - 1) == 24 * Self.hour + 1)
        ledger.configuration.clockSetbackToleranceMs = Self.hour / 2
        #expect(ledger.clockSetbackMs(at: Self.t0 - Self.hour) == Self.hour)
    }

    @Test("the reference is the newest of the mark, a durable change's time, a licence's issued_at and the audit trail")
    func reference() throws {
        var ledger = Self.ledger()
        #expect(ledger.clockReferenceMs == 0)
        ledger.apply(.clockMarked(atMs: Self.t0))
        ledger.apply(.clockMarked(atMs: Self.t0 - F.day))  // a mark never goes back
        #expect(ledger.clockReferenceMs == Self.t0)
        let grant = try Self.checkOut(&ledger, "cad", lease: 1, at: Self.t0 + 5 * F.day).get()
        #expect(ledger.clockHighWaterMs == Self.t0 + 5 * F.day, "a grant carries its time into the mark")
        // Replay of the same grant into a fresh ledger (recovery) raises the mark the same way.
        var replayed = Self.ledger()
        for change in grant.changes { replayed.apply(change) }
        #expect(replayed.clockHighWaterMs == Self.t0 + 5 * F.day)
        ledger.observedTimeMs = Self.t0 + 6 * F.day
        #expect(ledger.clockReferenceMs == Self.t0 + 6 * F.day)
        var issued = F.license("issued", feature: "new.tool", count: 1)
        issued.license.issuedAtMs = Self.t0 + 7 * F.day
        ledger.replaceLicenses([issued])
        #expect(ledger.clockReferenceMs == Self.t0 + 7 * F.day)
        #expect(ledger.clockSetbackMs(at: Self.t0) == 7 * F.day)
    }

    @Test("an expired licence is not made valid by a clock 60 days back when the state holds later times")
    func expiredStaysExpired() throws {
        // Expired 30 days before t0; the clock now reads t0 − 60 days, before that end date.
        var ledger = F.ledger([F.license("old", feature: "old.tool", count: 5, notAfter: Self.t0 - 30 * F.day)])
        ledger.apply(.clockMarked(atMs: Self.t0))
        let result = Self.checkOut(&ledger, "old.tool", lease: 1, at: Self.t0 - 60 * F.day)
        guard case .failure(let error) = result else {
            Issue.record("an expired licence was granted with the clock set back")
            return
        }
        #expect(error.code == .clockSetback)
        #expect(error.message.contains("60 days behind"))
    }

    @Test("activations and their validation refuse during a setback, naming it")
    func activations() throws {
        var ledger = F.ledger([ActivationTests.nodeLocked { $0.notAfterMs = Self.t0 + 365 * F.day }])
        let activated = try ledger.activate(ActivationTests.request(ActivationTests.machineA, id: "A1"), at: Self.t0).get()
        let back = Self.t0 - 10 * F.day
        #expect(
            ActivationTests.code(ledger.activate(ActivationTests.request(ActivationTests.machineB, id: "B1"), at: back)) == .clockSetback
        )
        #expect(
            ActivationTests.code(ledger.validateActivation(activated.activation.id, fingerprint: ActivationTests.machineA, at: back))
                == .clockSetback
        )
        _ = try ledger.validateActivation(activated.activation.id, fingerprint: ActivationTests.machineA, at: Self.t0).get()
    }

    @Test("durations for a person")
    func durations() {
        #expect(SeatLedger.duration(3 * F.day) == "3 days")
        #expect(SeatLedger.duration(3 * F.day + 2 * Self.hour + 5) == "3 days 2 hours")
        #expect(SeatLedger.duration(Self.hour + 60_000) == "1 hour 1 minute")
        #expect(SeatLedger.duration(40 * 60_000) == "40 minutes")
    }
}
