import ArgumentParser
import Foundation
import LicenseClient
import LicenseCommandLine
import LicenseCrypto
import LicenseProtocol
import UnixSignals

struct Checkout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a seat out and hold it, heartbeating, until Ctrl-C or SIGTERM; then check it in."
    )

    @OptionGroup var options: ServerOptions
    @Argument(help: "Feature name.") var feature: String
    @Option(help: "Client version to check against the feature's version ceiling.") var version = ""
    @Option(help: "Seats to take.") var count: UInt32 = 1
    @Option(help: "With no seat free, wait this long in the queue (30s, 5m, 1500ms).") var wait: String?
    @Option(help: "Borrow the seat for offline use for this long (2h, 3d); no heartbeats needed.") var borrow: String?

    func run() async throws {
        let client = try self.options.client()
        let lease: LicenseClient.Lease
        do {
            let waitMs = try self.wait.map { try parseDurationMs($0, option: "--wait") } ?? 0
            let borrowMs = try self.borrow.map { try parseDurationMs($0, option: "--borrow") } ?? 0
            guard waitMs <= UInt64(UInt32.max) else { throw CLIError("--wait is too long") }
            lease = try await client.checkOut(
                feature: self.feature,
                version: self.version,
                count: self.count,
                waitMs: UInt32(waitMs),
                borrowMs: borrowMs
            )
        } catch let error as LicenseClientError {
            await client.close()
            throw CLIError(error)
        } catch {
            await client.close()
            throw error
        }
        let session = await client.session
        if self.options.json {
            try printJSON([
                "lease_id": lease.idHex, "feature": lease.feature, "count": lease.count, "license_id": lease.licenseID,
                "overage": lease.overage, "warnings": lease.warnings, "fencing_token": lease.fencingToken,
                "expires_at_ms": lease.expiresAtMs, "session_id": session.map { [UInt8]($0.sessionID).hexString } ?? "",
            ])
        } else {
            say("checked out \(lease.count) seat(s) of \(lease.feature) from licence \(lease.licenseID): lease \(lease.idHex)")
            for warning in lease.warnings { say("warning: \(warning)") }
            if lease.borrowed {
                let key = [UInt8](session?.serverPublicKey ?? Data())
                if let claims = try? BorrowTokenVerifier.verify(
                    lease.borrowToken,
                    serverPublicKey: key,
                    at: Int64(Date().timeIntervalSince1970 * 1000)
                ) {
                    say(
                        "borrowed until \(Date(timeIntervalSince1970: Double(claims.expiresAtMs) / 1000)); the signed borrow token verifies offline"
                    )
                }
            }
            say("holding it, heartbeating; Ctrl-C to check it in")
        }
        // Hold until a signal, reporting what happens to the session meanwhile.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let events = Task {
            for await event in client.events {
                switch event {
                case .disconnected(let reason): Self.note("disconnected (\(reason)); reconnecting")
                case .reconnected(let server, let resumed):
                    Self.note(
                        resumed ? "reconnected to \(server); session resumed, the seat kept" : "reconnected to \(server); new session"
                    )
                case .noServer(let reason, let left):
                    let time = left.map {
                        String(format: "%.1f s", Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18)
                    }
                    Self.note(
                        "no licence server serves now (\(reason)); still trying" + (time.map { ", the seat is held for \($0) more" } ?? "")
                    )
                case .leaseLost(let lost, let reason): Self.note("lease \(lost.idHex) lost: \(reason)")
                case .leaseReplaced(let old, let new): Self.note("lease \(old.idHex) replaced by \(new.idHex)")
                case .thresholdCrossed(_, let message): Self.note(message)
                }
            }
        }
        for await _ in signals { break }
        events.cancel()
        do {
            try await client.checkIn(lease)
            if !self.options.json { say("checked in lease \(lease.idHex)") }
        } catch let error as LicenseClientError {
            await client.close()
            throw CLIError(error)
        }
        await client.close()
    }

    static func note(_ line: String) {
        FileHandle.standardError.write(Data("licensectl: \(line)\n".utf8))
    }
}

struct Checkin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check in a lease by id (another session's needs an operator or admin token)."
    )

    @OptionGroup var options: ServerOptions
    @Argument(help: "Lease id (32 hex digits, as checkout and status print it).") var lease: String

    func run() async throws {
        guard let id = [UInt8](hexString: self.lease), id.count == 16 else {
            throw CLIError("'\(self.lease)' is not a lease id (32 hex digits)")
        }
        let client = try self.options.client()
        do {
            try await client.checkIn(leaseID: id)
        } catch let error as LicenseClientError {
            await client.close()
            throw CLIError(error)
        }
        await client.close()
        if self.options.json { try printJSON(["checked_in": self.lease]) } else { print("checked in lease \(self.lease)") }
    }
}

/// "30s", "5m", "2h", "3d", "1500ms" or a bare number of seconds, in milliseconds.
func parseDurationMs(_ text: String, option: String) throws -> UInt64 {
    let units: [(String, UInt64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        if let value = UInt64(text.dropLast(suffix.count)) { return value * factor }
    }
    if let seconds = UInt64(text) { return seconds * 1000 }
    throw CLIError("\(option) '\(text)' is not a duration such as 30s, 5m, 2h or 3d")
}
