import DequeModule
import Foundation
import LicenseCore
import LicenseCrypto
import LicenseProtocol
import LicenseStore
import Logging
import Metrics
import NIOCore
import SwiftProtobuf

/// The wait queues: a check-out that asked to wait for a seat is answered when one comes free or
/// when its wait runs out.
extension LedgerHost {
    /// Grants what waiting check-outs can now have (after any seat came free) and answers them.
    func serveQueues() {
        // After every check-in: without waiters, nothing to do (and no clock to read).
        guard self.inPlace({ $0.hasWaiters }) else { return }
        let now = self.nowMs
        for (waiter, result) in self.ledger.serveQueues(at: now) {
            guard let (handler, requestID) = self.queued.waiters.removeValue(forKey: waiter.id) else { continue }
            var reply = Licensed_V1_ServerMessage()
            reply.requestID = requestID
            switch result {
            case .success(let grant):
                reply.checkOut = self.granted(grant, at: now, waitedMs: now - waiter.sinceMs)
                if handler.isConnected, self.replyWhenDurable(reply, to: handler) { continue }
            case .failure(let error):
                reply.error = self.denied(error, waiter.request).protocolError
            }
            handler.writeDeferred(reply)
            handler.flushDeferred()
        }
    }

    /// Answers DEADLINE_EXCEEDED to waiters whose wait ran out, and arms the next deadline.
    func expireWaiters() {
        self.queued.timer = nil
        for waiter in self.ledger.expireWaiters(at: self.nowMs) {
            guard let (handler, requestID) = self.queued.waiters.removeValue(forKey: waiter.id) else { continue }
            var reply = Licensed_V1_ServerMessage()
            reply.requestID = requestID
            reply.error =
                self.denied(
                    LicenseError(
                        .deadlineExceeded,
                        "no seat of '\(waiter.request.feature)' came free within \(waiter.deadlineMs - waiter.sinceMs) ms"
                    ),
                    waiter.request
                ).protocolError
            handler.writeDeferred(reply)
            handler.flushDeferred()
        }
        self.scheduleQueueDeadline()
    }

    func scheduleQueueDeadline() {
        guard let next = self.ledger.nextQueueDeadline else {
            self.queued.timer?.cancel()
            self.queued.timer = nil
            return
        }
        if let armed = self.queued.timerDeadline, armed <= next, self.queued.timer != nil { return }
        self.queued.timer?.cancel()
        let host = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.queued.timerDeadline = next
        self.queued.timer = self.eventLoop.scheduleTask(in: .milliseconds(max(0, next - self.nowMs) + 1)) { host.value.expireWaiters() }
    }

    /// Waiting check-outs, for the admin queue listing.
    func queue(_ request: Licensed_V1_QueueRequest) -> Result<Licensed_V1_QueueResponse, LicenseError> {
        var response = Licensed_V1_QueueResponse()
        for waiter in self.ledger.waiters(feature: request.feature) {
            var queued = Licensed_V1_QueuedRequest()
            queued.feature = waiter.request.feature
            let identity = self.ledger.identity(of: waiter)
            queued.user = identity?.user ?? ""
            queued.host = identity?.host ?? ""
            queued.count = max(waiter.request.count, 1)
            queued.sinceMs = waiter.sinceMs
            queued.deadlineMs = waiter.deadlineMs
            response.queued.append(queued)
        }
        return .success(response)
    }
}
