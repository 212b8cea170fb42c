import ArgumentParser
import Foundation
import LicenseAudit
import LicenseClient
import LicenseCommandLine
import LicenseProtocol
import UnixSignals

/// `licensectl watch`: subscribes to utilisation threshold events and prints each as it comes.
struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print utilisation threshold crossings as they happen (auditor token or above), until interrupted."
    )

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let client = try self.options.client(admin: true)
        let subscription: Licensed_V1_SubscribeResponse
        do {
            subscription = try await client.subscribe()
        } catch let error as LicenseClientError {
            await client.close()
            throw CLIError(error)
        }
        let levels = subscription.levelsPercent.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)%" }.joined(separator: " ")
        Self.line(
            self.options.json
                ? "{\"thresholds_percent\":[\(subscription.thresholdsPercent.map(String.init).joined(separator: ","))],\"levels\":\"\(levels)\"}"
                : "watching thresholds \(subscription.thresholdsPercent.map { "\($0)%" }.joined(separator: ", "))"
                    + (levels.isEmpty ? "" : "; now \(levels)")
        )
        let json = self.options.json
        let printer = Task {
            for await event in client.events {
                guard case .thresholdCrossed(let feature, let message) = event else { continue }
                let now = JSONText.iso8601(ms: Int64(Date().timeIntervalSince1970 * 1000))
                Self.line(
                    json
                        ? "{\"time\":\(JSONText.string(now)),\"feature\":\(JSONText.string(feature)),\"message\":\(JSONText.string(message))}"
                        : "\(now)  \(message)"
                )
            }
        }
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        for await _ in signals { break }
        printer.cancel()
        await client.close()
    }

    /// Straight to the descriptor, so a pipe sees each line at once.
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
