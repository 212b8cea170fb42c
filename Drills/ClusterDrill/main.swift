// The failover drill: a real cluster on loopback (3 etcd members, 3 licensed nodes), clients
// holding and cycling seats of a HARD licence through LicenseClient, and the faults a cluster
// must survive — kill -9 of the active node at random moments (restarted as a standby each
// time), the active node frozen with SIGSTOP past its etcd lease and resumed, an etcd member
// killed — with a history checker over what the clients were told.
//
//   licensed-cluster-drill [--kills N] [--clients N] [--no-stop] [--no-etcd-kill] [--no-quorum-loss] [--no-join]
//                          [--seed N] [--json FILE]
//
// Prints each fault and check, the failover times (kill -9 to the first acknowledged check-out
// on the new active), and exits 1 on any violation. DRILL_VERBOSE=1 prints every client event;
// DRILL_KEEP=1 keeps the work directory (node logs, etcd data) of a passed run too.
import Foundation
import LicenseClient
import LicenseProtocol
import LicenseTestSupport

#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var kills = 5
    var clients = 6
    var stop = true
    var etcdKill = true
    var quorum = true
    var join = true
    var seed = UInt64(Date().timeIntervalSince1970)
    var json: String?

    init(_ arguments: [String]) throws {
        var rest = arguments.dropFirst()
        while let flag = rest.popFirst() {
            func value() throws -> String {
                guard let value = rest.popFirst() else { throw DrillError("\(flag) needs a value") }
                return value
            }
            switch flag {
            case "--kills": kills = Int(try value()) ?? kills
            case "--clients": clients = Int(try value()) ?? clients
            case "--no-stop": stop = false
            case "--no-etcd-kill": etcdKill = false
            case "--no-quorum-loss": quorum = false
            case "--no-join": join = false
            case "--seed": seed = UInt64(try value()) ?? seed
            case "--json": json = try value()
            default: throw DrillError("unknown option \(flag)")
            }
        }
    }
}

/// Pauses the clients between operations, so that the held leases can be compared with the
/// server's at a moment when none is changing hands.
final class Gate: @unchecked Sendable {
    private let lock = NSLock()
    private var paused = false
    private var waiting = 0

    func pause() { lock.withLock { paused = true } }
    func resume() { lock.withLock { paused = false } }
    var waitingCount: Int { lock.withLock { waiting } }

    func pass() async {
        guard lock.withLock({ paused }) else { return }
        lock.withLock { waiting += 1 }
        while lock.withLock({ paused }) { try? await Task.sleep(for: .milliseconds(10)) }
        lock.withLock { waiting -= 1 }
    }
}

let feature = "drill.seat"
/// A feature only the probes use, so that its seats are free whenever the server serves.
let probeFeature = "drill.probe"
/// Its seats: more than the probe check-outs the run can leave behind. A probe check-out made
/// durable by a node killed before it answered is held by no one the prober knows of, and the
/// prober's session (resumed on the next active, heartbeating) keeps it for the rest of the run:
/// one per fault at most, and the run makes about ten faults.
let probeCapacity = 16
let capacity = 10
let ttlSeconds = 3

func main() async throws -> Int32 {
    let options = try Options(CommandLine.arguments)
    Diagnostics.stopOnSignals()
    var random = SeededGenerator(seed: options.seed)
    let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let licensectl = binaries.appendingPathComponent("licensectl").path
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("licensed-drill-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    defer {
        Diagnostics.save()
        // A failed run keeps its directory (node logs, etcd data) for a look; DRILL_KEEP keeps
        // a passed one's too.
        let environment = ProcessInfo.processInfo.environment
        if (Diagnostics.passed && environment["DRILL_KEEP"] == nil) || environment["DRILL_CLEAN"] != nil {
            try? FileManager.default.removeItem(at: work)
        } else {
            say("drill: kept \(work.path)")
        }
    }
    say("drill: seed \(options.seed), \(options.kills) kill(s), \(options.clients) client(s), in \(work.path)")

    // The licence: 10 seats, HARD.
    _ = try run(licensectl, ["keys", "generate", "--out", "issuer"], in: work)
    let spec = """
        {"id": "drill", "licensee": "Drill", "features": [{"name": "\(feature)", "count": \(capacity)}, {"name": "\(probeFeature)", "count": \(probeCapacity)}],
         "model": "LICENSE_MODEL_FLOATING", "overage": "OVERAGE_POLICY_HARD", "lease": {"heartbeat_ttl_ms": 10000}}
        """
    try spec.write(to: work.appendingPathComponent("spec.json"), atomically: true, encoding: .utf8)
    let license = try run(licensectl, ["license", "sign", "--key", "issuer.pem", "--key-id", "drill", "spec.json"], in: work)
    try license.write(to: work.appendingPathComponent("drill.lic"), atomically: true, encoding: .utf8)
    let adminToken = "drill-admin-token"
    let adminHash = try run(licensectl, ["token", "hash", adminToken], in: work).trimmingCharacters(in: .whitespacesAndNewlines)

    let etcd = try EtcdTestCluster(members: 3)
    Diagnostics.etcd = etcd
    // The static reference above keeps the cluster alive past `main`: stop its members here.
    defer { etcd.stopAll() }
    let ports = try FreePorts.take(6)
    let nodes = (0..<3).map { index in
        Node(
            name: "node\(index + 1)",
            port: ports[2 * index],
            metricsPort: ports[2 * index + 1],
            directory: work.appendingPathComponent("node\(index + 1)"),
            binary: binaries.appendingPathComponent("licensed").path
        )
    }
    defer { for node in nodes { node.kill9() } }
    Diagnostics.nodes = nodes
    for node in nodes {
        try node.configure(
            license: work.appendingPathComponent("drill.lic").path,
            issuerKey: work.appendingPathComponent("issuer.pub.pem").path,
            etcd: etcd.endpoints,
            adminHash: adminHash,
            ttlSeconds: ttlSeconds
        )
        try node.start()
    }
    func active(within seconds: Double = 60) async -> Node? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let node = nodes.first(where: { $0.isRunning && $0.readiness().ready }) { return node }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }
    guard let first = await active() else { throw DrillError("no node became active:\n\(nodes.map(\.log).joined())") }
    say("drill: \(first.name) is active")

    // The clients: each holds one seat for the whole run and cycles another.
    let history = History()
    let gate = Gate()
    let servers = nodes.map { LicenseEndpoint.tcp(host: "127.0.0.1", port: $0.port) }
    let running = ManagedFlag()
    let verbose = ProcessInfo.processInfo.environment["DRILL_VERBOSE"] != nil
    var clientTasks: [Task<Void, Never>] = []
    for index in 0..<options.clients {
        var configuration = LicenseClient.Configuration(user: "user\(index)", clientHost: "drill", clientName: "drill")
        configuration.servers = servers
        configuration.requestTimeout = .seconds(2)
        configuration.connectTimeout = .seconds(1)
        configuration.maximumReconnectDelay = .milliseconds(500)
        let client = LicenseClient(configuration: configuration)
        Task {
            for await event in client.events {
                // DRILL_VERBOSE: every event of every client (disconnects, reconnects, losses).
                if case .leaseLost(let lease, let reason) = event {
                    say("client \(index): lease \(lease.idHex.prefix(8)) lost: \(reason)")
                } else if verbose {
                    say("client \(index): \(event)")
                } else if case .disconnected(let reason) = event, reason.contains("refused") {
                    say("client \(index): \(reason)")
                }
            }
        }
        clientTasks.append(
            Task {
                await cycle(client: client, index: index, history: history, gate: gate, running: running)
                await client.close()
            }
        )
    }

    // The prober: checks the probe feature out and in, all the time, so that the failover time
    // (the kill to the first check-out the new active acknowledges) does not wait for a seat of
    // the contended feature to come free.
    let probes = History()
    clientTasks.append(
        Task {
            let prober = probeClient(servers: servers)
            while running.isRunning {
                do {
                    let lease = try await prober.checkOut(feature: probeFeature)
                    let server = await prober.server?.description ?? "?"
                    probes.granted(.init(client: -1, leaseID: lease.id, token: lease.fencingToken, ackedAt: .now, server: server))
                    try await checkIn(lease, with: prober)
                } catch {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
            await prober.close()
        }
    )

    var failoverTimes: [Duration] = []
    var failoverInstants: [ContinuousClock.Instant] = []
    var checks = 0

    /// Pauses the clients and compares what they hold with what the active server lists.
    func verify(after event: String) async throws {
        gate.pause()
        defer { gate.resume() }
        let deadline = ContinuousClock.now + .seconds(15)
        while gate.waitingCount < options.clients && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        guard let node = await active() else {
            let states = nodes.map { "\($0.name): \($0.isRunning ? $0.readiness().body : "not running")" }
            throw DrillError("no active node after \(event) (\(states.joined(separator: "; ")))")
        }
        var configuration = LicenseClient.Configuration(host: "127.0.0.1", port: node.port, user: "drill", clientName: "drill-checker")
        configuration.token = adminToken
        let checker = LicenseClient(configuration: configuration)
        defer { Task { await checker.close() } }
        var request = Licensed_V1_LeasesRequest()
        request.feature = feature
        guard case .leases(let listed) = try await checker.administer(.leases(request)) else {
            throw DrillError("the active server answered Leases with another message")
        }
        let ids = Set(listed.leases.map { [UInt8]($0.holder.leaseID) })
        let status = try await checker.status(features: [feature])
        let inUse = Int(status.features.first?.inUse ?? 0)
        let held = history.checkHeld(listed: ids, inUse: inUse, capacity: capacity, after: event)
        checks += 1
        say(
            "check: after \(event): \(held) lease(s) held by the clients, all among the \(ids.count) the active \(node.name) lists; \(inUse)/\(capacity) seats in use"
        )
    }

    try await Task.sleep(for: .seconds(3))
    try await verify(after: "the start")

    // kill -9 of the active node at random moments; restarted as a standby each time.
    for round in stride(from: 1, through: options.kills, by: 1) {
        try await Task.sleep(for: .milliseconds(Int64.random(in: 1000...3000, using: &random)))
        guard let victim = await active() else { throw DrillError("no active node before kill \(round)") }
        let killed = ContinuousClock.now
        victim.kill9()
        failoverInstants.append(killed)
        // The failover time: the kill to the first check-out acknowledged by the new active.
        var firstGrant: History.Grant?
        while firstGrant == nil && ContinuousClock.now - killed < .seconds(30) {
            firstGrant = probes.firstGrant(after: killed, excluding: victim.address)
            if firstGrant == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        guard let grant = firstGrant else { throw DrillError("no check-out was acknowledged within 30 s of kill \(round)") }
        let elapsed = grant.ackedAt - killed
        failoverTimes.append(elapsed)
        say("kill \(round): kill -9 \(victim.name); first check-out acknowledged by \(grant.server) \(format(elapsed)) later")
        try await verify(after: "kill \(round)")
        try victim.start()
        let restarted = ContinuousClock.now
        while !victim.isStandby && ContinuousClock.now - restarted < .seconds(20) { try await Task.sleep(for: .milliseconds(50)) }
        say("kill \(round): \(victim.name) restarted as a standby")
    }

    // The active node frozen past its etcd lease, then resumed: it must acknowledge nothing
    // once its successor took over, and leave (systemd restarts it as a standby).
    if options.stop {
        guard let frozen = await active() else { throw DrillError("no active node before SIGSTOP") }
        frozen.signal(SIGSTOP)
        let stopped = ContinuousClock.now
        failoverInstants.append(stopped)
        var successor: Node?
        while successor == nil && ContinuousClock.now - stopped < .seconds(30) {
            successor = nodes.first { $0 !== frozen && $0.isRunning && $0.readiness().ready }
            if successor == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        guard let successor else { throw DrillError("no successor took over from the frozen \(frozen.name)") }
        let tookOver = ContinuousClock.now
        say("stop: SIGSTOP \(frozen.name); \(successor.name) took over \(format(tookOver - stopped)) later")
        try await Task.sleep(for: .seconds(1))
        frozen.signal(SIGCONT)
        let exit = frozen.waitForExit(seconds: Double(ttlSeconds) + 5)
        let late = history.grantsAcknowledged(by: frozen.address, after: tookOver)
        if late > 0 { history.violation("the resumed \(frozen.name) acknowledged \(late) check-out(s) after its successor took over") }
        if let exit {
            say("stop: SIGCONT \(frozen.name): it acknowledged nothing after the takeover and exited (status \(exit))")
        } else {
            history.violation("the resumed \(frozen.name) did not leave within \(ttlSeconds + 5) s")
            frozen.kill9()
        }
        try await verify(after: "the SIGSTOP")
        try frozen.start()
    }

    // An etcd member killed under load (and restarted).
    if options.etcdKill {
        etcd.kill9("m2")
        say("etcd: member m2 killed")
        try await Task.sleep(for: .seconds(3))
        try await verify(after: "an etcd member was killed")
        try etcd.start("m2")
        say("etcd: member m2 restarted")
        try await Task.sleep(for: .seconds(2))
        try await verify(after: "the etcd member came back")
    }

    // A node that joins empty after the log was compacted: it takes a peer's snapshot, replays
    // the rest, and serves every lease once the others are gone.
    if options.join {
        func oldestBatch() -> UInt64? {
            let (status, output) = EtcdTestCluster.etcdctl([
                "--endpoints", etcd.endpoints.joined(separator: ","), "get", "--prefix", "/licensed/drill/log/", "--keys-only", "--limit",
                "1",
            ])
            guard status == 0, let key = output.split(separator: "\n").first, let dash = key.lastIndex(of: "-") else { return nil }
            return UInt64(key[key.index(key.startIndex, offsetBy: "/licensed/drill/log/".count)..<dash])
        }
        let waited = ContinuousClock.now
        while (oldestBatch() ?? 1) <= 1 && ContinuousClock.now - waited < .seconds(60) { try await Task.sleep(for: .seconds(1)) }
        guard let oldest = oldestBatch(), oldest > 1 else { throw DrillError("the log in etcd was not compacted within 60 s") }
        guard let current = await active(), let joiner = nodes.first(where: { $0 !== current }) else { throw DrillError("no active node") }
        joiner.kill9()
        try FileManager.default.removeItem(at: joiner.directory.appendingPathComponent("state"))
        try joiner.start()
        let joined = ContinuousClock.now
        while !joiner.isStandby && ContinuousClock.now - joined < .seconds(30) { try await Task.sleep(for: .milliseconds(100)) }
        guard joiner.isStandby, joiner.log.contains("taking a peer's snapshot") else {
            throw DrillError("\(joiner.name) did not join from a peer's snapshot:\n\(joiner.log.suffix(2000))")
        }
        say("join: the log in etcd starts at change \(oldest); \(joiner.name) started empty, took a peer's snapshot and is a standby")
        try await Task.sleep(for: .seconds(2))
        // Every other node goes: the one that joined must take over and hold every lease.
        let others = nodes.filter { $0 !== joiner }
        let killed = ContinuousClock.now
        for node in others { node.kill9() }
        failoverInstants.append(killed)
        var served = false
        while !served && ContinuousClock.now - killed < .seconds(20) {
            served = joiner.readiness().ready
            if !served { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard served else { throw DrillError("\(joiner.name) did not take over:\n\(joiner.log.suffix(2000))") }
        try await verify(after: "the node that joined from a snapshot took over")
        for node in others { try node.start() }
        for node in others {
            let restarted = ContinuousClock.now
            while !node.isStandby && ContinuousClock.now - restarted < .seconds(20) { try await Task.sleep(for: .milliseconds(50)) }
        }
    }

    // Quorum lost: 2 of the 3 etcd members stopped. Nothing new is acknowledged (a check-out is
    // refused UNAVAILABLE, saying why, within a bounded time), held leases stay held, and
    // service resumes by itself when the members return.
    if options.quorum {
        try await verify(after: "the faults above")
        gate.pause()
        let lost = ContinuousClock.now
        etcd.kill9("m1")
        etcd.kill9("m3")
        say("quorum: etcd members m1 and m3 killed (1 of 3 left)")
        let probe = probeClient(servers: servers)
        var refusal: (Duration, String)?
        while refusal == nil && ContinuousClock.now - lost < .seconds(20) {
            do {
                let lease = try await probe.checkOut(feature: probeFeature)
                try? await checkIn(lease, with: probe)
                try await Task.sleep(for: .milliseconds(100))
            } catch let error as LicenseClientError where error.code == .unavailable {
                refusal = (ContinuousClock.now - lost, error.message)
            } catch let error as LicenseClientError where error.code == .noSeats {
                // Still served (a refusal decided, not UNAVAILABLE): probe again.
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        await probe.close()
        if let (after, message) = refusal {
            say("quorum: a check-out is refused UNAVAILABLE \(format(after)) after the loss: \(message)")
            if after > .seconds(ttlSeconds + 3) { history.violation("the refusal took \(format(after)), more than the TTL + 3 s") }
        } else {
            history.violation("check-outs were still acknowledged 20 s after etcd lost its quorum")
        }
        try await Task.sleep(for: .seconds(12))  // longer than the leases' 10 s TTL
        try etcd.start("m1")
        try etcd.start("m3")
        let restored = ContinuousClock.now
        let resumed = probeClient(servers: servers)
        var served: Duration?
        while served == nil && ContinuousClock.now - restored < .seconds(30) {
            if let lease = try? await resumed.checkOut(feature: probeFeature) {
                served = ContinuousClock.now - restored
                try? await checkIn(lease, with: resumed)
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        await resumed.close()
        if let served {
            say("quorum: members back; a check-out is served \(format(served)) later")
        } else {
            history.violation("service did not resume within 30 s of etcd's quorum returning")
        }
        gate.resume()
        try await verify(after: "etcd lost and regained its quorum (held leases stay held)")
    }

    running.stop()
    gate.resume()
    for task in clientTasks { await task.value }
    history.checkWholeRun(failovers: failoverInstants)
    probes.checkWholeRun(failovers: failoverInstants)
    for violation in probes.violations { history.violation("probe: \(violation)") }

    let sorted = failoverTimes.sorted()
    let median = sorted.isEmpty ? Duration.zero : sorted[sorted.count / 2]
    let maximum = sorted.last ?? .zero
    say(
        "drill: \(history.grantCount) check-outs acknowledged, \(checks) checks, \(failoverTimes.count) kill(s): failover median \(format(median)), max \(format(maximum)) (election TTL \(ttlSeconds) s)"
    )
    if let path = options.json {
        let summary: [String: Any] = [
            "kills": failoverTimes.count, "median_ms": milliseconds(median), "max_ms": milliseconds(maximum),
            "failover_ms": failoverTimes.map(milliseconds), "grants": history.grantCount, "violations": history.violations,
            "election_ttl_s": ttlSeconds,
        ]
        try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
    }
    say("drill: \(history.violations.isEmpty ? "passed" : "FAILED with \(history.violations.count) violation(s)")")
    Diagnostics.passed = history.violations.isEmpty
    return history.violations.isEmpty ? 0 : 1
}

/// Checks `lease` in as an application would: a check-in that could not be delivered (a failover
/// in progress) is sent again, for up to 60 s (longer than any outage the drill makes), or the
/// seat stays held by the library's heartbeats — and a probe seat left behind would hold up the
/// next failover's measurement.
func checkIn(_ lease: LicenseClient.Lease, with client: LicenseClient) async throws {
    for attempt in 1...600 {
        do {
            try await client.checkIn(lease)
            return
        } catch let error as LicenseClientError where error.tryAnotherServer && attempt < 600 {
            try? await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// A client of its own for probing the cluster (short timeouts, no retries to speak of).
func probeClient(servers: [LicenseEndpoint]) -> LicenseClient {
    var configuration = LicenseClient.Configuration(user: "probe", clientHost: "drill", clientName: "drill-probe")
    configuration.servers = servers
    configuration.requestTimeout = .seconds(2)
    configuration.connectTimeout = .seconds(1)
    configuration.maximumReconnectDelay = .milliseconds(500)
    return LicenseClient(configuration: configuration)
}

/// One client: holds a seat for the whole run and cycles a second one until the drill ends.
func cycle(client: LicenseClient, index: Int, history: History, gate: Gate, running: ManagedFlag) async {
    var base: LicenseClient.Lease?
    while running.isRunning {
        await gate.pass()
        guard running.isRunning else { return }
        do {
            let lease = try await client.checkOut(feature: feature)
            let server = await client.server?.description ?? "?"
            history.granted(.init(client: index, leaseID: lease.id, token: lease.fencingToken, ackedAt: .now, server: server))
            if base == nil {
                base = lease
                continue
            }
            try await Task.sleep(for: .milliseconds(Int64.random(in: 20...200)))
            await gate.pass()
            history.checkInSent(lease.id)
            try await checkIn(lease, with: client)
        } catch let error as LicenseClientError where error.code == .noSeats {
            try? await Task.sleep(for: .milliseconds(50))
        } catch {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// What to show when the drill fails: the end of each node's log (read before the work
/// directory is removed).
enum Diagnostics {
    nonisolated(unsafe) static var nodes: [Node] = []
    nonisolated(unsafe) static var saved: [(String, String)] = []
    nonisolated(unsafe) static var etcd: EtcdTestCluster?
    nonisolated(unsafe) static var passed = false

    /// On SIGTERM or SIGINT (a timeout, Ctrl-C): stop every process the drill started, then exit.
    static func stopOnSignals() {
        for signal in [SIGTERM, SIGINT] {
            Glibc.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler {
                for node in nodes { node.kill9() }
                etcd?.stopAll()
                say("drill: stopped by signal \(signal)")
                exit(3)
            }
            source.resume()
            sources.append(source)
        }
    }

    nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []

    static func save() {
        // The lines that say what the node did (not every grant and denial).
        let noise = [
            "check-out granted", "check-out denied", "checked in", "threshold", "session opened", "session resumed", "session closed",
        ]
        saved = nodes.map { node in
            let lines = node.log.split(separator: "\n").filter { line in !noise.contains { line.contains($0) } }
            return (node.name, lines.suffix(40).joined(separator: "\n"))
        }
    }

    static func logs() -> [(String, String)] { saved }
}

final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = true
    var isRunning: Bool { lock.withLock { value } }
    func stop() { lock.withLock { value = false } }
}

/// Prints a line at once (the drill's output is read as it runs).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func format(_ duration: Duration) -> String { String(format: "%.2f s", Double(milliseconds(duration)) / 1000) }

func milliseconds(_ duration: Duration) -> Int {
    Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
}

extension History {
    func grantsAcknowledged(by server: String, after instant: ContinuousClock.Instant) -> Int {
        grants.filter { $0.server == server && $0.ackedAt > instant }.count
    }
}

do {
    exit(try await main())
} catch {
    say("drill: error: \(error)")
    for (name, tail) in Diagnostics.logs() { say("--- last lines of \(name)'s log:\n\(tail)") }
    exit(2)
}
