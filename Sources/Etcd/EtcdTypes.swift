package import Foundation
import GRPCCore

/// Where the etcd members are and how to reach them.
package struct EtcdConfiguration: Sendable {
    /// One member's client address.
    package struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        /// IPv4 address or host name.
        package var host: String
        /// Client port.
        package var port: Int

        /// An endpoint.
        package init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// Parses `host:port`, `http://host:port` or `https://host:port`.
        package init(parsing text: String) throws(EtcdError) {
            var rest = Substring(text)
            for scheme in ["http://", "https://"] where rest.hasPrefix(scheme) {
                rest = rest.dropFirst(scheme.count)
            }
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
                (1...65535).contains(port), colon > rest.startIndex
            else {
                throw EtcdError.invalid("etcd endpoint '\(text)' is not host:port")
            }
            self.init(host: String(rest[..<colon]), port: port)
        }

        package var description: String { "\(host):\(port)" }
    }

    /// Client TLS: the CA that signed the members' certificates, and this client's certificate
    /// and key when the members require client certificates.
    package struct TLS: Sendable, Equatable {
        /// PEM file of the CA (nil: the system's roots).
        package var caFile: String?
        /// PEM file of the client certificate.
        package var certificateFile: String?
        /// PEM file of its key.
        package var keyFile: String?

        /// TLS settings.
        package init(caFile: String?, certificateFile: String?, keyFile: String?) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }

    /// The members.
    package var endpoints: [Endpoint]
    /// TLS, or nil for plaintext.
    package var tls: TLS?
    /// Deadline of each unary call.
    package var callTimeout: Duration

    /// A configuration.
    package init(endpoints: [Endpoint], tls: TLS? = nil, callTimeout: Duration = .seconds(2)) {
        self.endpoints = endpoints
        self.tls = tls
        self.callTimeout = callTimeout
    }
}

/// What went wrong talking to etcd.
package enum EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No member answered in time, or the connection broke: the outcome of a write is unknown.
    case unavailable(String)
    /// The revision asked for was compacted; the oldest kept is given.
    case compacted(Int64)
    /// etcd refused the request (the message says why).
    case failed(String)
    /// The configuration is wrong.
    case invalid(String)
    /// The task was cancelled.
    case cancelled

    init(_ error: RPCError) {
        switch error.code {
        case .unavailable, .deadlineExceeded, .cancelled, .unknown, .aborted, .internalError:
            self = .unavailable("etcd: \(error.code): \(error.message)")
        case .outOfRange where error.message.contains("compacted"):
            self = .compacted(0)
        default:
            self = .failed("etcd: \(error.code): \(error.message)")
        }
    }

    /// True when the outcome of a write that failed so is unknown (it may have been applied).
    package var outcomeUnknown: Bool {
        if case .unavailable = self { return true }
        if case .cancelled = self { return true }
        return false
    }

    package var description: String {
        switch self {
        case .unavailable(let message): "etcd unavailable: \(message)"
        case .compacted(let revision): "etcd revision compacted (oldest kept: \(revision))"
        case .failed(let message): message
        case .invalid(let message): message
        case .cancelled: "cancelled"
        }
    }
}

/// A key, or the keys of [key, end).
package struct EtcdKeyRange: Sendable, Equatable {
    /// First key.
    package var key: Data
    /// End (exclusive); empty: only `key`.
    package var end: Data

    /// One key.
    package init(key: [UInt8]) {
        self.key = Data(key)
        self.end = Data()
    }

    /// The keys from `from` (inclusive) to `to` (exclusive).
    package init(from: [UInt8], to: [UInt8]) {
        self.key = Data(from)
        self.end = Data(to)
    }

    /// Every key that starts with `prefix`.
    package init(prefix: [UInt8]) {
        self.key = Data(prefix)
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                break
            }
            end.removeLast()
        }
        // A prefix of only 0xFF bytes: every key from it on ("\0" means "to the end").
        self.end = end.isEmpty ? Data([0]) : Data(end)
    }
}

extension Etcdserverpb_Compare {
    /// `key`'s create revision equals `revision` (0: the key does not exist).
    package static func created(_ key: [UInt8], at revision: Int64) -> Self {
        var compare = Self()
        compare.key = Data(key)
        compare.target = .create
        compare.result = .equal
        compare.createRevision = revision
        return compare
    }

    /// `key`'s value equals `value`.
    package static func value(_ key: [UInt8], equals value: [UInt8]) -> Self {
        var compare = Self()
        compare.key = Data(key)
        compare.target = .value
        compare.result = .equal
        compare.value = Data(value)
        return compare
    }

    /// `key`'s mod revision equals `revision`.
    package static func modified(_ key: [UInt8], at revision: Int64) -> Self {
        var compare = Self()
        compare.key = Data(key)
        compare.target = .mod
        compare.result = .equal
        compare.modRevision = revision
        return compare
    }
}

extension Etcdserverpb_RequestOp {
    /// A write of `value` at `key`, attached to `lease` (0: none).
    package static func put(_ key: [UInt8], _ value: [UInt8], lease: Int64 = 0) -> Self {
        var put = Etcdserverpb_PutRequest()
        put.key = Data(key)
        put.value = Data(value)
        put.lease = lease
        var op = Self()
        op.requestPut = put
        return op
    }

    /// A read of `range`.
    package static func range(_ range: EtcdKeyRange, limit: Int64 = 0) -> Self {
        var read = Etcdserverpb_RangeRequest()
        read.key = range.key
        read.rangeEnd = range.end
        read.limit = limit
        var op = Self()
        op.requestRange = read
        return op
    }

    /// A deletion of `range`.
    package static func delete(_ range: EtcdKeyRange) -> Self {
        var delete = Etcdserverpb_DeleteRangeRequest()
        delete.key = range.key
        delete.rangeEnd = range.end
        var op = Self()
        op.requestDeleteRange = delete
        return op
    }
}
