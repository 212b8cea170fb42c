import DequeModule
import Foundation
import HeapModule
import LicenseProtocol

extension SeatLedger {
    /// Queues a check-out that found no seat, to be granted in arrival order when one frees up.
    /// Returns RESOURCE_EXHAUSTED when the feature's queue is full.
    public mutating func enqueue(_ request: CheckOut, waiterID: UInt64, waitMs: Int64, at nowMs: Int64) -> LicenseError? {
        let waiting = self.queues[request.feature]?.count ?? 0
        guard waiting < self.configuration.maximumQueueLength else {
            return LicenseError(.resourceExhausted, "\(waiting) check-outs already wait for '\(request.feature)'; try again later")
        }
        self.queues[request.feature, default: []].append(Waiter(id: waiterID, request: request, sinceMs: nowMs, deadlineMs: nowMs + waitMs))
        return nil
    }

    /// True when some check-out waits for a seat.
    public var hasWaiters: Bool { !self.queues.isEmpty }

    /// Grants what the queues' heads can now have, in arrival order per feature. A head that still
    /// finds no seat keeps everyone behind it waiting (first in, first out); a head refused for
    /// another reason leaves the queue with that error.
    public mutating func serveQueues(at nowMs: Int64) -> [(waiter: Waiter, result: Result<Grant, LicenseError>)] {
        guard !self.queues.isEmpty else { return [] }
        var served: [(Waiter, Result<Grant, LicenseError>)] = []
        for feature in self.queues.keys.sorted() {
            while let head = self.queues[feature]?.first {
                let result = self.grant(head.request, at: nowMs, fromQueue: true)
                if case .failure(let error) = result, error.code == .noSeats { break }
                self.queues[feature]!.removeFirst()
                served.append((head, result))
            }
            if self.queues[feature]?.isEmpty == true { self.queues[feature] = nil }
        }
        return served
    }

    /// Removes and returns the waiters whose wait ran out by `nowMs` (DEADLINE_EXCEEDED for them).
    public mutating func expireWaiters(at nowMs: Int64) -> [Waiter] {
        var expired: [Waiter] = []
        for feature in Array(self.queues.keys) {
            let queue = self.queues[feature]!
            guard queue.contains(where: { $0.deadlineMs <= nowMs }) else { continue }
            expired += queue.filter { $0.deadlineMs <= nowMs }
            let kept = queue.filter { $0.deadlineMs > nowMs }
            self.queues[feature] = kept.isEmpty ? nil : kept
        }
        return expired
    }

    /// Removes a session's waiters (its connection closed); returns their ids.
    mutating func removeWaiters(ofSession id: SessionID) -> [UInt64] {
        var removed: [UInt64] = []
        for feature in Array(self.queues.keys) {
            let queue = self.queues[feature]!
            guard queue.contains(where: { $0.request.sessionID == id }) else { continue }
            removed += queue.filter { $0.request.sessionID == id }.map(\.id)
            let kept = queue.filter { $0.request.sessionID != id }
            self.queues[feature] = kept.isEmpty ? nil : kept
        }
        return removed
    }

    /// The earliest deadline of any waiter.
    public var nextQueueDeadline: Int64? {
        self.queues.values.compactMap { $0.map(\.deadlineMs).min() }.min()
    }

    /// Waiters of `feature` (or every feature), in queue order.
    public func waiters(feature: String = "") -> [Waiter] {
        let features = feature.isEmpty ? self.queues.keys.sorted() : [feature]
        return features.flatMap { Array(self.queues[$0] ?? []) }
    }

    /// The identity of a waiter's session.
    public func identity(of waiter: Waiter) -> ClientIdentity? { self.sessions[waiter.request.sessionID]?.identity }
}
