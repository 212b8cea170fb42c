import GRPCCore
import GRPCNIOTransportHTTP2

#if canImport(Glibc)
import Glibc
#endif

/// The etcd members as one gRPC endpoint with one address per member, so that gRPC's pick-first
/// policy tries them in order and moves to the next when the connected one goes away. (The
/// transport's own IPv4 target makes one endpoint per address, and pick-first uses only the
/// first endpoint: a client of it would stay on a dead member.) Host names are resolved once,
/// when the client is made.
struct EtcdMembers: ResolvableTarget {
    var addresses: [GRPCNIOTransportCore.SocketAddress]

    init(_ endpoints: [EtcdConfiguration.Endpoint]) throws(EtcdError) {
        var addresses: [GRPCNIOTransportCore.SocketAddress] = []
        for endpoint in endpoints {
            addresses += try Self.resolve(endpoint)
        }
        guard !addresses.isEmpty else { throw EtcdError.invalid("no etcd endpoints") }
        self.addresses = addresses
    }

    static func resolve(_ endpoint: EtcdConfiguration.Endpoint) throws(EtcdError) -> [GRPCNIOTransportCore.SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard status == 0, let first = list else {
            throw EtcdError.invalid("cannot resolve etcd endpoint \(endpoint): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var found: [GRPCNIOTransportCore.SocketAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                let host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let address: GRPCNIOTransportCore.SocketAddress =
                    entry.pointee.ai_family == AF_INET6
                    ? .ipv6(host: host, port: endpoint.port) : .ipv4(host: host, port: endpoint.port)
                if !found.contains(address) { found.append(address) }
            }
            cursor = entry.pointee.ai_next
        }
        return found
    }
}

/// Resolves `EtcdMembers` to itself.
struct EtcdMembersResolver: NameResolverFactory {
    typealias Target = EtcdMembers

    func resolver(for target: EtcdMembers) -> NameResolver {
        let result = NameResolutionResult(endpoints: [Endpoint(addresses: target.addresses)], serviceConfig: nil)
        return NameResolver(names: RPCAsyncSequence(wrapping: Always(result: result)), updateMode: .pull)
    }

    /// The same resolution each time the channel asks (after a connection failure, say).
    struct Always: AsyncSequence, Sendable {
        typealias Element = NameResolutionResult
        typealias Failure = any Error
        let result: NameResolutionResult

        struct AsyncIterator: AsyncIteratorProtocol {
            let result: NameResolutionResult
            mutating func next() async throws -> NameResolutionResult? { result }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(result: result) }
    }
}
