import Foundation
import HeapModule
import Synchronization

/// Replaying many changes at once: a restart applies a snapshot's leases (a million of them) and
/// the log after it before it serves.
extension SeatLedger {
    /// Performs `changes` in order, leaving the ledger as `apply` on each one would. A run of
    /// plain grants — not sharing seats, not lingering: every lease of a snapshot but the few
    /// that share — is loaded with its counters added up per holder and pool and charged once,
    /// and its expiries added to the index in one go (Floyd's heap construction when the run is
    /// long), instead of a dozen hash lookups and a heap insertion per lease. Counters and
    /// fencing high-water marks only grow during such a run, so adding them up first gives the
    /// same values; anything else ends the run and is applied as it comes.
    ///
    /// The changes are consumed: each is moved out of the array (a trivial placeholder takes its
    /// place), so that a lease goes into the table without being copied and the array is freed
    /// without destroying a million leases (at a start-up, a copy and a release per lease were
    /// about 0.15 s). A run of grants with `fillerThreshold` changes or more left goes into the
    /// lease table on a second thread (`TableFiller`) while this one does the rest, from its
    /// `fillerRun`th grant on.
    public mutating func apply(contentsOf changes: consuming [LedgerChange]) {
        self.apply(contentsOf: changes, fillingFrom: Self.fillerThreshold)
    }

    /// Runs at least this long are moved into the lease table by a `TableFiller`.
    static let fillerThreshold = 16_384

    /// A filler starts only once a run has this many grants in a row (or the threshold, when
    /// smaller): a log of check-outs and check-ins alternates grants and releases, and a thread
    /// started for each lone grant made replaying 180,000 such records take 6 s (`perf`: 16% in
    /// `clone3`, 19% in `sem_post`), against the snapshot's one long run it is meant for.
    static let fillerRun = 1_024

    /// `apply(contentsOf:)`, with a `TableFiller` for a run of grants when at least
    /// `fillerThreshold` changes remain at its start (tests make it small to start and stop many).
    mutating func apply(contentsOf changes: consuming [LedgerChange], fillingFrom fillerThreshold: Int) {
        var run = GrantRun()
        changes.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            var filler: TableFiller?
            var grantsInRow = 0
            let fillerRun = min(fillerThreshold, Self.fillerRun)
            for slot in buffer.indices {
                let change = (base + slot).move()
                if case .granted(var lease) = change, lease.sharedSeats == 0, !lease.lingering {
                    self.load(&lease, into: &run)
                    grantsInRow += 1
                    if filler == nil, grantsInRow >= fillerRun, buffer.count - slot >= fillerThreshold {
                        filler = TableFiller(table: self.takeLeases(), changes: base, from: slot)
                    }
                    if let filler {
                        // Back in its slot, for the filler to move into the table.
                        (base + slot).initialize(to: .granted(lease))
                        filler.published(slot + 1)
                    } else {
                        (base + slot).initialize(to: .clockMarked(atMs: 0))
                        self.leases.insert(lease)
                    }
                } else {
                    (base + slot).initialize(to: .clockMarked(atMs: 0))
                    grantsInRow = 0
                    if let running = filler {
                        self.leases = running.finish()
                        filler = nil
                    }
                    if !run.isEmpty { self.finish(&run) }
                    self.apply(change)
                }
            }
            if let filler { self.leases = filler.finish() }
        }
        if !run.isEmpty { self.finish(&run) }
    }

    /// The lease table, leaving an empty one in its place (moved, not copied).
    private mutating func takeLeases() -> LeaseTable {
        var taken = LeaseTable()
        swap(&taken, &self.leases)
        return taken
    }

    /// What a run of grants adds to the counters, per pool, holder and cost.
    struct ChargeKey: Hashable {
        var licenseID: String
        var feature: String
        var user: String
        var groups: [String]
        var overage: Bool
        var tokenCost: UInt32
    }

    /// A run of grants loaded but not yet charged or indexed by expiry.
    struct GrantRun {
        /// Seats to charge per key, with a lease of the key (for `charge`) and the highest fencing token.
        var charges: [ChargeKey: (lease: Lease, seats: UInt64, fencing: UInt64)] = [:]
        var expiries: [Expiry] = []
        var isEmpty: Bool { self.expiries.isEmpty }
    }

    /// `apply(.granted(lease))` for a lease that neither shares seats nor lingers, less its
    /// charge, fencing mark and expiry entry, which `finish` makes for the whole run, and its
    /// place in the table, which the caller makes.
    private mutating func load(_ lease: inout Lease, into run: inout GrantRun) {
        if let session = self.sessions.index(forKey: lease.sessionID) {
            Self.join(&self.sessions.values[session], &lease)
        } else {
            // Replay: the session is rebuilt from its leases, waiting for its client to resume.
            var record = SessionRecord(identity: lease.identity, attached: false)
            Self.join(&record, &lease)
            self.sessions[lease.sessionID] = record
        }
        if !lease.checkoutKey.isEmpty { self.leaseByKey[CheckoutKey(lease.checkoutKey)] = lease.id }
        self.clockHighWaterMs = max(self.clockHighWaterMs, lease.grantedAtMs)
        run.expiries.append(Expiry(atMs: lease.expiresAtMs, leaseID: lease.id))
        let key = ChargeKey(
            licenseID: lease.licenseID,
            feature: lease.feature,
            user: lease.identity.user,
            groups: lease.identity.groups,
            overage: lease.overage,
            tokenCost: lease.tokenCost
        )
        if let index = run.charges.index(forKey: key) {
            run.charges.values[index].seats += UInt64(lease.count)
            run.charges.values[index].fencing = max(run.charges.values[index].fencing, lease.fencingToken)
        } else {
            run.charges[key] = (lease, UInt64(lease.count), lease.fencingToken)
        }
    }

    /// Adds `lease` to its session's record (in place: a copy of the record would copy its sets).
    private static func join(_ record: inout SessionRecord, _ lease: inout Lease) {
        // Replayed leases each bring their own copy of the identity: share the session's.
        if !record.identity.isIdentical(to: lease.identity), record.identity == lease.identity { lease.identity = record.identity }
        record.leases.insert(lease.id)
        if lease.baseLeaseID != nil { record.addOns.insert(lease.id) }
    }

    /// Charges and indexes a run of loaded grants, and empties it.
    private mutating func finish(_ run: inout GrantRun) {
        for (key, total) in run.charges {
            var seats = total.seats
            repeat {
                let part = UInt32(min(seats, UInt64(UInt32.max)))
                self.charge(total.lease, seats: part, user: key.user, groups: key.groups, sign: 1)
                seats -= UInt64(part)
            } while seats > 0
            Self.raise(&self.fencing[key.feature, default: 0], to: total.fencing)
        }
        self.expiries.insert(contentsOf: run.expiries)
        run = GrantRun()
    }
}

/// Moves a run of loaded grants from the array of changes into a lease table on a thread of its
/// own, while the replaying thread goes on with the rest of each grant (sessions, counters,
/// expiries): at a million leases, the table's share of a restart's replay — copying each lease
/// into its shard and indexing it — runs on the second core instead of after the rest.
///
/// The replaying thread loads the grant in slot `i`, puts it back and publishes `i + 1`; the
/// filler moves the grants of the slots published (leaving a trivial change in each) and never
/// touches a slot beyond. `finish` waits for the last published slot and hands the table back.
private final class TableFiller: @unchecked Sendable {
    /// Published slots are handed over this many at a time (one wake-up each).
    private static let step = 4_096
    private let changes: UnsafeMutablePointer<LedgerChange>
    /// The filler thread's until `finish` returns it.
    private var table: LeaseTable
    /// The end of the slots published, and whether the replay is done with the filler.
    private let state: Mutex<(published: Int, finishing: Bool)>
    private let work = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    /// The replaying thread's: the end of the slots loaded, and of those published.
    private var loaded: Int
    private var publishedEnd: Int

    init(table: consuming LeaseTable, changes: UnsafeMutablePointer<LedgerChange>, from first: Int) {
        self.table = table
        self.changes = changes
        self.loaded = first
        self.publishedEnd = first
        self.state = Mutex((first, false))
        Thread.detachNewThread { [self] in self.fill(from: first) }
    }

    /// The grants before `end` are loaded and back in their slots; published every `step`.
    func published(_ end: Int) {
        self.loaded = end
        guard end - self.publishedEnd >= Self.step else { return }
        self.publishedEnd = end
        self.state.withLock { $0.published = end }
        self.work.signal()
    }

    /// Publishes the rest, waits until every published grant is in the table, returns the table.
    func finish() -> LeaseTable {
        let end = self.loaded
        self.state.withLock { $0 = (end, true) }
        self.work.signal()
        self.finished.wait()
        var table = LeaseTable()
        swap(&table, &self.table)
        return table
    }

    private func fill(from first: Int) {
        var moved = first
        while true {
            self.work.wait()
            let (end, finishing) = self.state.withLock { ($0.published, $0.finishing) }
            while moved < end {
                let change = (self.changes + moved).move()
                (self.changes + moved).initialize(to: .clockMarked(atMs: 0))
                guard case .granted(let lease) = consume change else { preconditionFailure("a published slot holds a grant") }
                self.table.insert(lease)
                moved += 1
            }
            if finishing {
                self.finished.signal()
                return
            }
        }
    }
}
