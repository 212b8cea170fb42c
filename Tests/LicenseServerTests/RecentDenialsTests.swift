import Testing

@testable import LicenseServer

@Suite("Denials in the last hour (status and the console's dashboard)")
struct RecentDenialsTests {
    /// A minute boundary: 2026-12-02T10:00:00Z.
    static let t0: Int64 = 1_796_205_600_000

    @Test("counts per feature over the current minute and the 59 before it; older minutes drop out, a reused slot starts again")
    func window() {
        var denials = RecentDenials()
        denials.record("cad", at: Self.t0)
        denials.record("cad", at: Self.t0 + 59_999)
        denials.record("cad", count: 3, at: Self.t0 + 30 * 60_000)
        denials.record("sim", at: Self.t0 + 10 * 60_000)
        #expect(denials.lastHour("cad", at: Self.t0 + 30 * 60_000) == 5)
        #expect(denials.lastHour("sim", at: Self.t0 + 30 * 60_000) == 1)
        #expect(denials.lastHour("none", at: Self.t0) == 0)
        // 59 minutes after the first minute it still counts; at 60 it has left the hour.
        #expect(denials.lastHour("cad", at: Self.t0 + 59 * 60_000 + 59_999) == 5)
        #expect(denials.lastHour("cad", at: Self.t0 + 60 * 60_000) == 3)
        // The first minute's slot is reused an hour later: the old count is not added to it.
        denials.record("cad", at: Self.t0 + 60 * 60_000 + 1)
        #expect(denials.lastHour("cad", at: Self.t0 + 60 * 60_000 + 1) == 4)
        #expect(denials.lastHour("cad", at: Self.t0 + 3 * 3_600_000) == 0)
    }
}
