import ArgumentParser
import Foundation
import Histogram
import LicenseClient
import LicenseCommandLine
import LicenseCrypto
import LicenseProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Latencies and counts from every connection, merged.
final class BenchResults: Sendable {
    struct Summary {
        var operations: UInt64
        var requests: UInt64
        var errors: [String: UInt64]
        var elapsed: Double
        var histogram: Histogram<UInt64>
        /// The generator's own CPU time over the run (user + system, every thread), in seconds:
        /// near the cores it may use, the row measures the generator, not the server.
        var generatorCPUSeconds: Double = 0

        func percentileMicros(_ p: Double) -> Double { Double(self.histogram.valueAtPercentile(p)) / 1000 }

        func json(operation: String, connections: Int, depth: Int) -> [String: Any] {
            [
                "operation": operation, "connections": connections, "depth": depth, "seconds": self.elapsed,
                "operations": self.operations, "operations_per_second": Double(self.operations) / self.elapsed,
                "requests_per_second": Double(self.requests) / self.elapsed, "errors": self.errors,
                "generator_cpu_s_per_s": self.generatorCPUSeconds / self.elapsed,
                "latency_us": [
                    "p50": self.percentileMicros(50), "p90": self.percentileMicros(90), "p99": self.percentileMicros(99),
                    "p99.9": self.percentileMicros(99.9), "max": Double(self.histogram.max) / 1000,
                ],
            ]
        }

        func print(operation: String, connections: Int, depth: Int) {
            Swift.print(String(format: "%@: %d connections x depth %d, %.1f s", operation, connections, depth, self.elapsed))
            Swift.print(
                String(
                    format: "  %.0f %@/s (%.0f requests/s), %llu errors",
                    Double(self.operations) / self.elapsed,
                    operation == "pairs" ? "pairs" : "ops",
                    Double(self.requests) / self.elapsed,
                    self.errors.values.reduce(0, +)
                )
            )
            Swift.print(
                String(
                    format: "  latency per request: p50 %.0f µs, p90 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, max %.0f µs",
                    self.percentileMicros(50),
                    self.percentileMicros(90),
                    self.percentileMicros(99),
                    self.percentileMicros(99.9),
                    Double(self.histogram.max) / 1000
                )
            )
            Swift.print(String(format: "  generator CPU %.2f s/s", self.generatorCPUSeconds / self.elapsed))
            for (code, count) in self.errors.sorted(by: { $0.key < $1.key }) { Swift.print("  error \(code): \(count)") }
        }
    }

    private let state = NIOLockedValueBox(
        (
            operations: UInt64(0), requests: UInt64(0), errors: [String: UInt64](),
            histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
        )
    )

    func add(operations: UInt64, requests: UInt64, errors: [String: UInt64], histogram: Histogram<UInt64>) {
        self.state.withLockedValue { state in
            state.operations += operations
            state.requests += requests
            state.errors.merge(errors, uniquingKeysWith: +)
            state.histogram.add(histogram)
        }
    }

    func summary(elapsed: Double) -> Summary {
        self.state.withLockedValue {
            Summary(operations: $0.operations, requests: $0.requests, errors: $0.errors, elapsed: elapsed, histogram: $0.histogram)
        }
    }
}

/// Latencies and counts of every connection on one event loop, shared by its handlers (one
/// thread, so no lock): a connection costs no histogram of its own (two 60-second histograms per
/// connection were 440 KiB each, 8 GiB of generator at 19,000 sessions). Touched only on its
/// loop until the run is over, hence `@unchecked Sendable`.
final class BenchRecorder: @unchecked Sendable {
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    /// Open loop: per operation, from when it was due to its last reply.
    var operationLatency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000)
    var operations: UInt64 = 0
    var requests: UInt64 = 0
    var errors: [String: UInt64] = [:]
}

/// This process's CPU time so far (user + system, every thread), in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
