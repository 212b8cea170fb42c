import DequeModule
import LicenseProtocol
import NIOCore

/// A reply on its way to a session: a message, or a granted check-out or a check-in written
/// straight from the lease (the hot path's replies, which then never become messages).
enum OutgoingReply {
    case message(Licensed_V1_ServerMessage)
    case grant(ServerMessageWire.Grant)
    case `return`(ServerMessageWire.Return)

    /// The request it answers.
    var requestID: UInt64 {
        switch self {
        case .message(let message): message.requestID
        case .grant(let grant): grant.requestID
        case .return(let reply): reply.requestID
        }
    }
}

/// Replies that acknowledge changes, held until the commit log reports those changes durable.
/// A reply waits for everything appended before it was held, so replies are released in the
/// order they were held.
struct HeldReplies<Target: AnyObject, Reply> {
    /// Highest sequence number the log reported durable.
    private(set) var durable: UInt64
    /// Sequence number of the last change appended (read without asking the log).
    var lastAppended: UInt64
    /// The sequence number each held reply waits for, apart from the replies themselves: reading
    /// the head's number from a queue of whole entries copied the entry (the reply, with a
    /// retain of each message it holds) for every reply released (`licensed-micro serve`).
    private var sequences = Deque<UInt64>()
    private var waiting = Deque<(target: Target, reply: Reply)>()

    init(durable: UInt64) {
        self.durable = durable
        self.lastAppended = durable
    }

    /// Replies held now.
    var count: Int { self.waiting.count }

    /// Holds `reply` for `target` until everything appended so far is durable; false (nothing
    /// held) when it already is.
    mutating func hold(_ reply: Reply, for target: Target) -> Bool {
        guard self.lastAppended > self.durable else { return false }
        self.sequences.append(self.lastAppended)
        self.waiting.append((target, reply))
        return true
    }

    /// The log reports `sequence` durable: hands each reply it releases to `deliver`, in order,
    /// moved out of the queue (a copy of a reply retains every message it holds).
    mutating func release(upTo sequence: UInt64, _ deliver: (Target, consuming Reply) -> Void) {
        self.durable = max(self.durable, sequence)
        while let next = self.sequences.first, next <= self.durable {
            self.sequences.removeFirst()
            let held = self.waiting.removeFirst()
            deliver(held.target, held.reply)
        }
    }

    /// Every reply still held (the log failed: none of them will be released).
    mutating func abandonAll() -> [(target: Target, reply: Reply)] {
        defer {
            self.sequences.removeAll()
            self.waiting.removeAll()
        }
        return self.waiting.map { ($0.target, $0.reply) }
    }
}

/// Check-outs waiting in a feature's queue: who to answer, by waiter id, and the timer armed for
/// the earliest deadline.
struct QueuedCheckOuts {
    /// Who to answer for each waiter.
    var waiters: [UInt64: (handler: SessionHandler, requestID: UInt64)] = [:]
    private var lastWaiterID: UInt64 = 0
    var timer: Scheduled<Void>?
    var timerDeadline: Int64?

    /// A fresh waiter id.
    mutating func nextWaiterID() -> UInt64 {
        self.lastWaiterID += 1
        return self.lastWaiterID
    }
}
