import ArgumentParser
import Foundation
import LicenseAudit
import LicenseClient
import LicenseCommandLine
import LicenseCrypto
import LicenseFiles
import LicenseProtocol
import LicenseReports

/// `licensectl audit verify|export`: the hash-chained audit trail, read from its files.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check and export the audit trail (read from its files on the server's machine).",
        subcommands: [Verify.self, Export.self]
    )

    /// Where the trail is: `--dir`, `$LICENSED_AUDIT_DIR`, or `<state dir>/audit`.
    struct Location: ParsableArguments {
        @Option(help: "Directory of the audit trail (default $LICENSED_AUDIT_DIR, else <state-dir>/audit).")
        var dir: String?

        @Option(help: "The server's state directory (default $LICENSED_STATE_DIR or /var/lib/licensed).")
        var stateDir: String?

        var directory: String {
            let environment = ProcessInfo.processInfo.environment
            if let dir = self.dir ?? environment["LICENSED_AUDIT_DIR"] { return dir }
            return (self.stateDir ?? environment["LICENSED_STATE_DIR"] ?? "/var/lib/licensed") + "/audit"
        }

        func files() throws -> [AuditTrail.File] {
            let directory = self.directory
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CLIError("no audit trail at \(directory) (use --dir or --state-dir)")
            }
            let files = try AuditTrail.files(in: directory)
            guard !files.isEmpty else { throw CLIError("\(directory) holds no audit-*.rec or audit-*.jsonl files") }
            return files
        }

        /// The checkpoint retention left, if any.
        func checkpoint() throws -> AuditCheckpoint? {
            do { return try AuditCheckpoint.read(directory: self.directory) } catch let error as StoreError {
                throw CLIError(error.message)
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the hash chain: prints OK, or names the first altered, missing or misplaced record and exits 1."
        )

        @OptionGroup var location: Location
        @Option(help: "Check an export instead (CSV or JSON lines written by `audit export` of the whole trail).")
        var input: String?
        @Flag(help: "Also ask the running server for its last audit record and check the files reach it unchanged (finds a cut-off end).")
        var againstServer = false
        @Option(
            help: """
                The server's key (public or private PEM) that must have signed the retention checkpoint \
                (default: <state-dir>/server-key.pem, or server-key.pem beside --dir, when readable).
                """
        )
        var serverKey: String?
        @OptionGroup var options: ServerOptions

        var json: Bool { self.options.json }

        func run() async throws {
            var result: AuditTrail.Verification
            let source: String
            if let input {
                result = try Self.verifyExport(input)
                source = input
            } else {
                let files = try self.location.files()
                let checkpoint = try self.location.checkpoint()
                let key = try checkpoint == nil ? nil : self.trustedKey()
                do {
                    result = try AuditTrail.verify(files, checkpoint: checkpoint, trustedKey: key?.key)
                } catch let error as StoreError {
                    throw CLIError(error.message)
                }
                if let checkpoint, result.failure == nil, !self.json {
                    let signer =
                        key.map { "the server key \($0.source)" } ?? "the key it names (give --server-key to check it is the server's)"
                    print("checkpoint: records up to \(checkpoint.sequence) removed by retention; signed by \(signer)")
                }
                source = self.location.directory
                if self.againstServer, result.failure == nil {
                    result.failure = try await self.compareWithServer(files, result)
                }
            }
            if self.json {
                var object: [String: Any] = [
                    "ok": result.failure == nil, "records": result.records, "first_sequence": result.firstSequence,
                    "last_sequence": result.lastSequence, "last_hash": result.lastHash, "source": source,
                    "starts_after_removed_files": result.startsAfterRemovedFiles,
                ]
                if let failure = result.failure {
                    object["failure"] = [
                        "file": failure.file, "line": failure.line, "sequence": failure.sequence.map { Int($0) } ?? -1,
                        "reason": failure.reason,
                    ]
                }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else if result.failure == nil {
                let start = result.startsAfterRemovedFiles ? " (older files removed: checked from record \(result.firstSequence))" : ""
                print("OK: \(result.records) records, \(result.firstSequence)…\(result.lastSequence), last hash \(result.lastHash)\(start)")
            }
            if let failure = result.failure {
                if !self.json {
                    FileHandle.standardError.write(Data("licensectl: audit trail broken at \(failure)\n".utf8))
                }
                throw ExitCode(1)
            }
        }

        /// The key the checkpoint must be signed by: --server-key, else the server's own key file
        /// where the daemon keeps it, when this user can read it.
        func trustedKey() throws -> (key: Ed25519PublicKey, source: String)? {
            let environment = ProcessInfo.processInfo.environment
            let explicit = self.serverKey
            var candidates: [String] = []
            if let explicit {
                candidates = [explicit]
            } else if let stateDir = self.location.stateDir ?? environment["LICENSED_STATE_DIR"] {
                candidates = [stateDir + "/server-key.pem"]
            } else {
                candidates = [
                    (self.location.directory as NSString).deletingLastPathComponent + "/server-key.pem", "/var/lib/licensed/server-key.pem",
                ]
            }
            for path in candidates {
                guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else {
                    if explicit != nil { throw CLIError("cannot read the server key \(path)") }
                    continue
                }
                if let key = try? Ed25519PublicKey(pem: pem) { return (key, path) }
                if let key = try? Ed25519PrivateKey(pem: pem).publicKey { return (key, path) }
                throw CLIError("\(path) is not an Ed25519 key PEM")
            }
            return nil
        }

        /// The server's last written record must be in the files with the same hash.
        func compareWithServer(_ files: [AuditTrail.File], _ result: AuditTrail.Verification) async throws -> AuditTrail.Failure? {
            let client = try self.options.client(admin: true)
            let status: Licensed_V1_StatusResponse
            do {
                status = try await client.status(includeHolders: true)
            } catch let error as LicenseClientError {
                await client.close()
                throw CLIError(error)
            }
            await client.close()
            guard status.auditSequence > 0 else { return nil }
            let last = files.last?.path ?? self.location.directory
            guard result.lastSequence >= status.auditSequence else {
                return AuditTrail.Failure(
                    file: last,
                    line: 0,
                    sequence: result.lastSequence,
                    reason:
                        "the trail ends at record \(result.lastSequence) but the server has written \(status.auditSequence): records were removed from the end"
                )
            }
            var found: AuditRecord?
            try AuditTrail.forEachRecord(in: files) { record in
                if record.sequence == status.auditSequence { found = record }
                return found == nil
            }
            guard let found, found.hash == status.auditHash else {
                return AuditTrail.Failure(
                    file: last,
                    line: 0,
                    sequence: status.auditSequence,
                    reason: "record \(status.auditSequence) is not the one the server wrote (its hash differs from the server's)"
                )
            }
            return nil
        }

        /// An export read back: CSV by its header, else JSON lines.
        static func verifyExport(_ path: String) throws -> AuditTrail.Verification {
            let text = try Files.readText(path)
            var chain = AuditTrail.ChainCheck(firstSequence: 1)
            if text.hasPrefix(AuditCSV.columns.joined(separator: ",")) {
                let records: [AuditRecord?]
                do { records = try AuditCSV.records(text) } catch let error as StoreError { throw CLIError("\(path): \(error.message)") }
                for (index, record) in records.enumerated() {
                    let parsed = record.map { AuditRecord.Parsed(record: $0, hashMatches: $0.hashMatches) }
                    guard chain.check(parsed, file: path, line: index + 2) else { break }
                }
            } else {
                AuditTrail.forEachLine(in: Array(text.utf8)) { number, line in
                    chain.check(AuditRecord.parse(line), file: path, line: number)
                }
            }
            return chain.result
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Write the records between two times as CSV or JSON lines (hashes included: a JSON lines trail's lines as written, compact records as JSON)."
        )

        @OptionGroup var location: Location
        @Option(help: "From this time on (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or milliseconds since 1970).")
        var from: String?
        @Option(help: "Before this time (same forms; YYYY-MM-DD means the start of that day).")
        var to: String?
        @Option(help: "csv or json (JSON lines).") var format = "csv"
        @Option(help: "Write to this file instead of standard output.") var output: String?

        func run() throws {
            guard self.format == "csv" || self.format == "json" else {
                throw CLIError("--format must be csv or json, not '\(self.format)'")
            }
            let fromMs = try self.from.map { try TimeArgument.milliseconds($0, option: "--from") } ?? Int64.min
            let toMs = try self.to.map { try TimeArgument.milliseconds($0, option: "--to") } ?? Int64.max
            let files = try self.location.files()
            var out = OutputSink(path: self.output)
            try out.open()
            if self.format == "csv" { out.write(AuditCSV.header) }
            do {
                try AuditTrail.forEachRecord(in: files) { record in
                    guard record.timeMs >= fromMs, record.timeMs < toMs else { return true }
                    out.write(self.format == "csv" ? AuditCSV.row(record) : record.line + "\n")
                    return true
                }
            } catch let error as StoreError {
                throw CLIError(error.message)
            }
            out.close()
        }
    }
}

/// Standard output or a file, written in large chunks.
struct OutputSink {
    let path: String?
    private var handle: FileHandle?
    private var buffer = ""

    init(path: String?) { self.path = path }

    mutating func open() throws {
        if let path {
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw CLIError("cannot write \(path)") }
            self.handle = FileHandle(forWritingAtPath: path)
        } else {
            self.handle = FileHandle.standardOutput
        }
    }

    mutating func write(_ text: String) {
        self.buffer += text
        if self.buffer.utf8.count > 1 << 16 { self.flush() }
    }

    mutating func flush() {
        self.handle?.write(Data(self.buffer.utf8))
        self.buffer = ""
    }

    mutating func close() {
        self.flush()
        if self.path != nil { try? self.handle?.close() }
    }
}

/// Times on the command line: a date, an ISO 8601 instant, or milliseconds since 1970.
enum TimeArgument {
    static func milliseconds(_ text: String, option: String) throws -> Int64 {
        guard let ms = ReportTime.milliseconds(text) else {
            throw CLIError("\(option) '\(text)' is not YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or milliseconds since 1970")
        }
        return ms
    }
}
