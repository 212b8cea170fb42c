import HeapModule
import LicenseProtocol
import LicenseTestSupport
import Testing

@testable import LicenseCore

/// `apply(contentsOf:)` — a restart's replay, with runs of grants loaded in bulk — against
/// `apply` one change at a time: the same ledger, field by field, for random histories of grants
/// (plain, shared, lingering, add-ons, keyed, overage, token-priced, identities that differ from
/// their session's), check-ins, lingers, rebinds, trial starts and clock marks.
@Suite("Bulk replay")
struct BulkReplayTests {
    /// A random history. With `foundersKept`, leases that share seats all carry one identity per
    /// user, so that a group of them charges the same holder whichever member founded it: a
    /// snapshot re-founds a group from its oldest live member (the founder may be gone).
    /// With `plainFirst`, the history begins with that many grants that neither share nor linger
    /// (as a snapshot's leases do: the first run into an empty ledger).
    static func history(seed: UInt64, length: Int, foundersKept: Bool = false, plainFirst: Int = 0) -> [LedgerChange] {
        var random = SeededGenerator(seed: seed)
        let sessions = (1...6).map { ID128(high: 0x5e55, low: $0) }
        let groupChoices: [[String]] = [[], ["/emea/sales"], ["/emea/sales", "/emea"], ["/us/eng", "/emea/sales/north"]]
        func identity() -> ClientIdentity {
            ClientIdentity(
                user: ["ada", "bob", "cy"].randomElement(using: &random)!,
                host: ["ws-1", "ws-2"].randomElement(using: &random)!,
                clientName: "cad",
                clientVersion: "1.0",
                groups: groupChoices.randomElement(using: &random)!
            )
        }
        let sessionIdentity = Dictionary(uniqueKeysWithValues: sessions.map { ($0, identity()) })
        var live: [LeaseID] = []  // in grant order, for choices that repeat with the seed
        var newest: [SessionID: LeaseID] = [:]
        var changes: [LedgerChange] = []
        var next: UInt64 = 1
        var time: Int64 = 1_790_000_000_000
        while changes.count < length {
            time += Int64(random.next() % 5_000)
            let roll = random.next() % 20
            // Mostly grants, often in long runs (a snapshot is one run of them).
            let plain = changes.count < plainFirst
            let grants = plain ? plainFirst : (roll < 12 ? 1 : (roll < 14 ? Int(random.next() % 200) : 0))
            for _ in 0..<grants {
                let session = sessions.randomElement(using: &random)!
                var lease = Lease(
                    id: ID128(high: 0x1ea5e, low: next),
                    sessionID: session,
                    feature: ["cad", "sim"].randomElement(using: &random)!,
                    licenseID: ["L1", "L2"].randomElement(using: &random)!,
                    count: UInt32(random.next() % 3 + 1),
                    identity: random.next() % 5 == 0 ? identity() : sessionIdentity[session]!,
                    grantedAtMs: time,
                    expiresAtMs: time + Int64(random.next() % 120_000),
                    ttlMs: 60_000,
                    overage: random.next() % 6 == 0,
                    fencingToken: next,
                    checkoutKey: random.next() % 4 == 0 ? [UInt8(truncatingIfNeeded: next), UInt8(truncatingIfNeeded: next >> 8)] : []
                )
                next += 1
                if random.next() % 5 == 0 { lease.tokenCost = 2 }
                if !plain, random.next() % 8 == 0 {
                    lease.sharedSeats = 2
                    if foundersKept { lease.identity = ClientIdentity(user: lease.identity.user, host: "shared", groups: ["/emea"]) }
                    lease.dupIdentity = lease.identity.user
                }
                if !plain, random.next() % 10 == 0 { lease.lingering = true }
                if !plain, random.next() % 6 == 0, let base = newest[session] { lease.baseLeaseID = base }
                if plain, random.next() % 6 == 0 { lease.baseLeaseID = ID128(high: 0xba5e, low: next) }
                live.append(lease.id)
                newest[session] = lease.id
                changes.append(.granted(lease))
            }
            guard !live.isEmpty else { continue }
            let chosen = Int(random.next() % UInt64(live.count))
            let some = live[chosen]
            switch roll {
            case 14, 15:
                changes.append(.released(some, [.checkedIn, .expired, .revoked].randomElement(using: &random)!, atMs: time))
                live.swapAt(chosen, live.count - 1)
                live.removeLast()
            case 16: changes.append(.lingered(some, untilMs: time + 30_000))
            case 17: changes.append(.rebound(some, to: sessions.randomElement(using: &random)!))
            case 18: changes.append(.trialStarted(licenseID: "L1", atMs: time))
            case 19: changes.append(.clockMarked(atMs: time + 1))
            default: break
            }
        }
        return changes
    }

    /// The ledger's counters, sorted; a counter at 0 reads as an absent one.
    static func usage(_ ledger: SeatLedger) -> [String] {
        func sorted(_ counters: [String: UInt32]) -> [String] { counters.filter { $0.value > 0 }.map { "\($0)=\($1)" }.sorted() }
        return ledger.usage.compactMap { key, usage -> String? in
            let users = sorted(usage.byUser)
            let groups = sorted(usage.byGroup)
            if usage.seats == 0, usage.overage == 0, users.isEmpty, groups.isEmpty { return nil }
            return "\(key)=\(usage.seats),\(usage.overage),\(users),\(groups)"
        }.sorted()
    }

    /// Every durable field of the ledger, in a form that compares.
    static func state(_ ledger: SeatLedger) -> [String] {
        func sorted<K, V>(_ dictionary: [K: V], _ describe: (K, V) -> String) -> String {
            dictionary.map(describe).sorted().joined(separator: "; ")
        }
        return [
            "leases \(ledger.leases.values.map { "\($0)" }.sorted())",
            "usage \(Self.usage(ledger))",
            "tokens \(sorted(ledger.tokensInUse) { "\($0)=\($1)" })",
            "dup groups \(sorted(ledger.dupGroups) { "\($0)=\($1.seats),\($1.members.sorted()),\($1.user),\($1.groups)" })",
            "sessions \(sorted(ledger.sessions) { "\($0)=\($1.identity),\($1.leases.sorted()),\($1.addOns.sorted()),\($1.attached)" })",
            "keys \(sorted(ledger.leaseByKey) { "\($0)=\($1)" })",
            "fencing \(sorted(ledger.fencing) { "\($0)=\($1)" })",
            "expiries \(ledger.expiries.unordered.sorted().map { "\($0.atMs):\($0.leaseID)" })",
            "lingering \(ledger.lingering.sorted())",
            "clock \(ledger.clockHighWaterMs)",
            "trials \(sorted(ledger.trialStarts) { "\($0)=\($1)" })",
        ]
    }

    @Test("the same ledger as applying each change, for random histories", arguments: 0..<40)
    func sameLedger(seed: UInt64) {
        let changes = Self.history(seed: seed &* 2_654_435_761 &+ 7, length: 600)
        var oneByOne = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        for change in changes { oneByOne.apply(change) }
        var bulk = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        bulk.apply(contentsOf: changes)
        #expect(oneByOne.leases.count > 0)
        let expected = Self.state(oneByOne)
        let actual = Self.state(bulk)
        for (line, (want, got)) in zip(expected, actual).enumerated() { #expect(got == want, "seed \(seed), field \(line)") }
    }

    @Test("runs of grants moved into the table on a thread of their own, started and stopped many times: the same ledger", arguments: 0..<8)
    func filledTable(seed: UInt64) {
        // A filler for every run with at least `threshold` changes left, from its `threshold`th
        // grant (`fillerRun` is larger): long runs have up to 200 grants, and every other change
        // stops the filler before it applies.
        let changes = Self.history(seed: seed &* 40_503 &+ 3, length: 3_000, plainFirst: 500)
        var oneByOne = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        for change in changes { oneByOne.apply(change) }
        for threshold in [1, 64] {
            var bulk = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
            bulk.apply(contentsOf: changes, fillingFrom: threshold)
            let expected = Self.state(oneByOne)
            let actual = Self.state(bulk)
            for (line, (want, got)) in zip(expected, actual).enumerated() {
                #expect(got == want, "seed \(seed), threshold \(threshold), field \(line)")
            }
        }
    }

    @Test("a long first run of grants into an empty ledger (a snapshot at start-up): the same ledger, identities shared", arguments: 0..<2)
    func parallelLoad(seed: UInt64) {
        let leading = 20_000
        let changes = Self.history(seed: seed &+ 1_000, length: leading + 2_000, plainFirst: leading)
        var oneByOne = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        for change in changes { oneByOne.apply(change) }
        var bulk = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        bulk.apply(contentsOf: changes)
        #expect(oneByOne.leases.count > leading / 2)
        let expected = Self.state(oneByOne)
        let actual = Self.state(bulk)
        for (line, (want, got)) in zip(expected, actual).enumerated() { #expect(got == want, "seed \(seed), field \(line)") }
        // Loaded leases share their session's identity (one object per identity, not one per lease).
        var loaded = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        loaded.apply(contentsOf: Array(changes.prefix(leading)))
        var shared = 0
        for (id, record) in loaded.sessions {
            for leaseID in record.leases where loaded.leases[leaseID]!.identity == record.identity {
                #expect(loaded.leases[leaseID]!.identity.box === record.identity.box, "session \(id)")
                shared += 1
            }
        }
        #expect(shared > leading / 2)
    }

    @Test("a snapshot's leases replayed in bulk rebuild the ledger they came from")
    func snapshotReplay() {
        var original = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        original.apply(contentsOf: Self.history(seed: 99, length: 3_000, foundersKept: true))
        // Plain leases in table order, shared ones last in grant order (as SnapshotFile writes them).
        let leases = original.leases.values
        let ordered =
            leases.filter { $0.sharedSeats == 0 } + leases.filter { $0.sharedSeats > 0 }.sorted { $0.fencingToken < $1.fencingToken }
        var restored = SeatLedger(configuration: .init(defaultLeaseTTLMs: 60_000), licenses: [])
        restored.apply(contentsOf: ordered.map { .granted($0) } + [.clockMarked(atMs: original.clockHighWaterMs)])
        var expected = Self.state(original)
        var actual = Self.state(restored)
        // Not carried by leases: expiry entries of leases since released, trial starts, and
        // the sessions the original still had open without leases.
        for index in [7, 10].reversed() {
            expected.remove(at: index)
            actual.remove(at: index)
        }
        expected[4] = "sessions \(original.sessions.filter { !$0.value.leases.isEmpty }.map { "\($0.key)" }.sorted())"
        actual[4] = "sessions \(restored.sessions.filter { !$0.value.leases.isEmpty }.map { "\($0.key)" }.sorted())"
        for (line, (want, got)) in zip(expected, actual).enumerated() { #expect(got == want, "field \(line)") }
    }
}
