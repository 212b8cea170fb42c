// Micro-benchmarks of the request path with ordo-one/benchmark: mallocs, time and throughput
// per operation (each sample is 1,000 operations, so the harness's own allocations are spread
// over them). Run by scripts/bench-micro, which also counts instructions under callgrind (this
// machine kind has no hardware counters for the benchmark's `instructions` metric).
import Benchmark
import HotPathOperations
import LicenseCore

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .wallClock, .cpuTotal, .throughput],
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 2_000
    )

    Benchmark("check-out (ledger)") { benchmark in
        var ledger = LedgerOperations()
        var granted: [LeaseID] = []
        granted.reserveCapacity(benchmark.scaledIterations.count)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { granted.append(ledger.checkOut().lease.id) }
        benchmark.stopMeasurement()
        for id in granted { blackHole(ledger.checkIn(id)) }
    }

    Benchmark("check-in (ledger)") { benchmark in
        var ledger = LedgerOperations()
        let granted = benchmark.scaledIterations.map { _ in ledger.checkOut().lease.id }
        benchmark.startMeasurement()
        for id in granted { blackHole(ledger.checkIn(id)) }
    }

    Benchmark("heartbeat of one lease (ledger)") { benchmark in
        var ledger = LedgerOperations()
        let held = [ledger.checkOut().lease.id]
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(ledger.heartbeat(held)) }
    }

    Benchmark("WAL record: grant, serialized and framed") { benchmark in
        var ledger = LedgerOperations()
        let change = ledger.checkOut().changes[0]
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 20)
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations { WalRecordOperation.append(change, sequence: UInt64(index), into: &buffer) }
        blackHole(buffer)
    }

    Benchmark("WAL record: release, serialized and framed") { benchmark in
        var ledger = LedgerOperations()
        let change = ledger.checkIn(ledger.checkOut().lease.id).changes[0]
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 20)
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations { WalRecordOperation.append(change, sequence: UInt64(index), into: &buffer) }
        blackHole(buffer)
    }

    Benchmark("audit record: grant, rendered, chained, written in batches of 16") { benchmark in
        var ledger = LedgerOperations()
        let grant = ledger.checkOut()
        let audit = try AuditOperations()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try audit.record(grant.changes[0], by: grant.lease.identity, leases: [], atMs: ledger.nowMs)
        }
        try audit.flush()
    }

    Benchmark("check-out request decoded, reply encoded (protocol)") { benchmark in
        var ledger = LedgerOperations()
        let lease = ledger.checkOut().lease
        let requests = RequestOperations()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(requests.answer(with: lease)) }
    }

    Benchmark("check-out and check-in through the session handler and ledger host (serving loop)") { benchmark in
        let serve = try ServeOperations()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try serve.pair()) }
    }

    Benchmark("the same with the default utilisation thresholds watched") { benchmark in
        let serve = try ServeOperations(thresholds: true)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try serve.pair()) }
    }
}
