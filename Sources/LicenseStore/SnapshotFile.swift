import Dispatch
public import LicenseCore
import LicenseFiles
public import LicenseProtocol
import SwiftProtobuf
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Snapshot files: "LICSNAP1", a u32 CRC-32C and a u64 length (big-endian) of the serialized
/// `Snapshot` that follows.
///
/// At a million leases the one big `Snapshot` message cost seconds to build, encode and parse
/// (a million `StoredLease` objects held at once, encoded twice: once to size, once to write).
/// The file is the same message, but its leases are encoded and parsed one by one, in chunks
/// spread over the cores: protobuf allows a repeated field's elements anywhere in the message,
/// so the fields other than the leases are one `Snapshot` and each lease is its own field-3 entry.
/// Leases are written shard by shard as the table holds them; only those that share seats are
/// sorted (into grant order, and written last), since only their replay order matters. Each lease
/// is laid out and read by `StoredLeaseWire` (the same bytes as SwiftProtobuf's `StoredLease`).
public enum SnapshotFile {
    static let magic = Array("LICSNAP1".utf8)
    /// Leases per chunk parsed by one worker.
    static let chunkSize = 16_384
    /// Field 3 (`leases`), wire type 2 (length-delimited).
    static let leaseTag: UInt8 = 3 << 3 | 2

    /// A snapshot read back: everything but the leases as a message, the leases decoded.
    public struct Decoded: Sendable {
        /// Sequence, time, trial starts, activations and assignment runs (`leases` left empty).
        public var snapshot: Licensed_V1_Snapshot
        /// Every lease, in the file's order (grant order per feature).
        public var leases: [Lease]
    }

    /// The durable part of a ledger, frozen for a snapshot (the lease table is copy-on-write, so
    /// holding it costs the ledger one shard copy at its next change, not a copy of everything).
    public struct Content: Sendable {
        /// Every live lease.
        public var leases: LeaseTable
        /// First grant of each trial licence.
        public var trialStarts: [String: Int64] = [:]
        /// Every activation.
        public var activations: [Activation] = []
        /// Recorded bulk assignment runs.
        public var runs: [Licensed_V1_AssignmentRun] = []
        /// The latest wall-clock time marked in the log.
        public var clockHighWaterMs: Int64 = 0

        /// The durable part of `ledger`.
        public init(_ ledger: SeatLedger) {
            self.leases = ledger.leases
            self.trialStarts = ledger.trialStarts
            self.activations = ledger.allActivations
            self.runs = ledger.assignmentRuns
            self.clockHighWaterMs = ledger.clockHighWaterMs
        }

        /// Leases and the rest given one by one (tools, tests, benchmarks).
        public init(leases: LeaseTable, trialStarts: [String: Int64] = [:], activations: [Activation] = []) {
            self.leases = leases
            self.trialStarts = trialStarts
            self.activations = activations
        }
    }

    /// Encodes the durable part of a ledger (leases, trial starts, activations) as of `sequence`.
    public static func encode(
        leases: LeaseTable,
        trialStarts: [String: Int64] = [:],
        activations: [Activation] = [],
        sequence: UInt64,
        takenAtMs: Int64
    ) throws -> [UInt8] {
        try Self.encode(
            Content(leases: leases, trialStarts: trialStarts, activations: activations),
            sequence: sequence,
            takenAtMs: takenAtMs
        )
    }

    /// Encodes `content` as of `sequence`.
    public static func encode(_ content: Content, sequence: UInt64, takenAtMs: Int64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 20)
        let (length, crc) = try Self.encode(content, sequence: sequence, takenAtMs: takenAtMs) { piece in
            bytes.append(contentsOf: piece)
        }
        let header = Self.header(length: length, crc: crc)
        bytes.replaceSubrange(0..<20, with: header)
        return bytes
    }

    /// Writes `content` as of `sequence` to `path` crash-safely (a temporary file, fsync, rename,
    /// fsync of `directory`) and returns the file's size. The file is written as its chunks are
    /// encoded, and handed to the disk a mebibyte at a time (`PacedOutput`), so that encoding,
    /// copying and the disk's work overlap and the final fsync waits for the last chunks only (encoding everything, then writing and syncing 100 MB, was two thirds of a snapshot's
    /// time at a million leases).
    public static func write(_ content: Content, sequence: UInt64, takenAtMs: Int64, to path: String, directory: String) throws -> Int {
        var length = 0
        try FileIO.writeAtomically(to: path, directory: directory) { output in
            // The header's length and checksum are known at the end: its place is kept.
            output.skip(to: 20)
            let crc: UInt32
            (length, crc) = try Self.encode(content, sequence: sequence, takenAtMs: takenAtMs) { piece in
                try piece.withUnsafeBytes { try output.write($0) }
            }
            let header = Self.header(length: length, crc: crc)
            guard header.withUnsafeBytes({ pwrite(output.fd, $0.baseAddress, $0.count, 0) }) == header.count else {
                throw StoreError.errno("cannot write the header of", output.path)
            }
        }
        return 20 + length
    }

    /// "LICSNAP1", the checksum and the length of what follows.
    static func header(length: Int, crc: UInt32) -> [UInt8] {
        var bytes = magic
        LogSegment.appendUInt32(crc, to: &bytes)
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: UInt64(length) >> (56 - 8 * UInt64(i)))) }
        return bytes
    }

    /// Encodes the body of the file (everything after the header) and hands it to `output` piece
    /// by piece, in order: the message's other fields, then one chunk per shard of the lease
    /// table, encoded in parallel — each chunk goes out as soon as it and every chunk before it
    /// are done, from whichever worker finished it. Returns the body's length and CRC-32C.
    static func encode(
        _ content: Content,
        sequence: UInt64,
        takenAtMs: Int64,
        output: ([UInt8]) throws -> Void
    ) throws -> (length: Int, crc: UInt32) {
        let leases = content.leases
        var head = Licensed_V1_Snapshot()
        head.sequence = sequence
        head.takenAtMs = takenAtMs
        head.trialStartedMs = content.trialStarts
        head.activations = content.activations.sorted { $0.id < $1.id }.map(\.stored)
        head.assignmentRuns = content.runs
        head.clockHighWaterMs = content.clockHighWaterMs
        let headBytes: [UInt8] = try head.serializedBytes()
        try output(headBytes)
        let headCRC = CRC32C.checksum(headBytes)
        // One chunk per shard of the table; leases that share a seat go last, in grant order (the
        // only leases whose replay order matters: the first of a group sets it up).
        let shared = Self.sharedSeatLeases(leases)
        let chunkCount = leases.shardCount + 1
        let order = Mutex(ChunkOrder(crc: headCRC))
        withoutActuallyEscaping(output) { output in
            let output = UnsafeSendable(output)
            DispatchQueue.concurrentPerform(iterations: chunkCount) { chunk in
                let shard = chunk < leases.shardCount ? leases.leases(inShard: chunk) : ContiguousArray(shared)
                var bytes: [UInt8] = []
                bytes.reserveCapacity(shard.count * 120)
                var body: [UInt8] = []
                body.reserveCapacity(512)
                for lease in shard where chunk == leases.shardCount || lease.sharedSeats == 0 {
                    body.removeAll(keepingCapacity: true)
                    StoredLeaseWire.append(lease, to: &body)
                    bytes.append(Self.leaseTag)
                    WalRecordWire.rawVarint(UInt64(body.count), &bytes)
                    bytes.append(contentsOf: body)
                }
                // Hand over every chunk that is now next in order; one worker at a time does.
                var next = order.withLock { $0.finished(chunk, bytes) }
                while let (piece, crc, failed) = next {
                    var failure: StoreError?
                    if !failed {
                        do { try output.value(piece) } catch { failure = (error as? StoreError) ?? StoreError("\(error)") }
                    }
                    let continued = CRC32C.checksum(piece, continuing: crc)
                    next = order.withLock { $0.written(piece.count, crc: continued, failure: failure) }
                }
            }
        }
        let (length, crc, failure) = order.withLock { ($0.length, $0.crc, $0.failure) }
        if let failure { throw failure }
        return (headBytes.count + length, crc)
    }

    /// The order in which encoded chunks go out: chunk i after every chunk before it, by one
    /// worker at a time (the one holding `writing`), with the running length and checksum.
    struct ChunkOrder {
        var pending: [Int: [UInt8]] = [:]
        var next = 0
        var writing = false
        var length = 0
        var crc: UInt32
        var failure: StoreError?

        init(crc: UInt32) { self.crc = crc }

        /// Chunk `chunk` is encoded: the next piece for this worker to write, if it is the writer now.
        mutating func finished(_ chunk: Int, _ bytes: [UInt8]) -> (piece: [UInt8], crc: UInt32, failed: Bool)? {
            self.pending[chunk] = bytes
            return self.writing ? nil : self.takeNext()
        }

        /// The writer wrote a piece: the next one for it, or nil (and it is no longer the writer).
        mutating func written(_ count: Int, crc: UInt32, failure: StoreError?) -> (piece: [UInt8], crc: UInt32, failed: Bool)? {
            self.length += count
            self.crc = crc
            if self.failure == nil { self.failure = failure }
            return self.takeNext()
        }

        private mutating func takeNext() -> (piece: [UInt8], crc: UInt32, failed: Bool)? {
            guard let piece = self.pending.removeValue(forKey: self.next) else {
                self.writing = false
                return nil
            }
            self.writing = true
            self.next += 1
            return (piece, self.crc, self.failure != nil)
        }
    }

    /// The leases that share seats, in grant order per feature (fencing tokens increase with
    /// each grant): replaying them in this order rebuilds their groups exactly as they were.
    static func sharedSeatLeases(_ leases: LeaseTable) -> [Lease] {
        var shared: [Lease] = []
        for shard in 0..<leases.shardCount { shared.append(contentsOf: leases.leases(inShard: shard).lazy.filter { $0.sharedSeats > 0 }) }
        return shared.sorted { ($0.feature, $0.fencingToken, $0.id) < ($1.feature, $1.fencingToken, $1.id) }
    }

    /// Decodes a snapshot file into one message, leases included (for tools and tests).
    public static func decode(_ bytes: [UInt8], file: String) throws -> Licensed_V1_Snapshot {
        let decoded = try Self.decodeLeases(bytes, file: file)
        var snapshot = decoded.snapshot
        snapshot.leases = decoded.leases.map(\.stored)
        return snapshot
    }

    /// What is wrong with the file's header, length or checksum (nil: whole and unaltered), naming
    /// the file and the byte range that fails.
    public static func checkIntegrity(_ bytes: [UInt8], file: String) -> String? {
        bytes.withUnsafeBytes { Self.checkIntegrity($0, file: file) }
    }

    static func checkIntegrity(_ bytes: UnsafeRawBufferPointer, file: String) -> String? {
        let checksum = bytes.count < 20 ? 0 : CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[20...]))
        return Self.integrityProblem(header: ArraySlice(bytes.prefix(20)), size: bytes.count, checksum: checksum, file: file)
    }

    /// As `checkIntegrity(_:file:)`, for the file at `path` read piece by piece: cheaper than
    /// decoding, and it never holds the whole file (recovery checks the older snapshots it does
    /// not need with it).
    public static func checkIntegrity(path: String) throws -> String? {
        var header: [UInt8] = []
        var size = 0
        var checksum: UInt32 = 0
        try FileIO.forEachChunk(of: path) { chunk in
            size += chunk.count
            let headerPart = min(20 - header.count, chunk.count)
            header.append(contentsOf: chunk.prefix(headerPart))
            checksum = chunk.dropFirst(headerPart).withUnsafeBytes { CRC32C.checksum($0, continuing: checksum) }
            return true
        }
        return Self.integrityProblem(header: header[...], size: size, checksum: checksum, file: path)
    }

    private static func integrityProblem(header: ArraySlice<UInt8>, size: Int, checksum: UInt32, file: String) -> String? {
        let header = Array(header)
        guard size >= 20, Array(header[0..<8]) == magic else { return "snapshot \(file) has no LICSNAP1 header at offset 0" }
        let crc = LogSegment.uint32(header, 8)
        var length: UInt64 = 0
        for i in 0..<8 { length = length << 8 | UInt64(header[12 + i]) }
        guard length == UInt64(size - 20) else {
            return "snapshot \(file) is \(size) bytes but its header at offset 12 promises \(length + 20)"
        }
        guard checksum == crc else { return "snapshot \(file) fails its checksum (CRC-32C of bytes 20–\(size - 1))" }
        return nil
    }

    /// Decodes a snapshot file; throws when it is truncated, its checksum fails, it does not
    /// parse or holds a malformed lease.
    public static func decodeLeases(_ bytes: [UInt8], file: String) throws -> Decoded {
        let (snapshot, leases) = try bytes.withUnsafeBytes { bytes in
            try Self.decode(bytes, file: file, extraCapacity: { _ in 0 }, leaseAs: { (lease: consuming Lease) in lease })
        }
        return Decoded(snapshot: snapshot, leases: leases)
    }

    /// Decodes a snapshot file for recovery: everything but the leases as a message, and the
    /// leases as `.granted` changes, in an array with room for the changes of the message's
    /// other fields and `moreChanges` more (the log after the snapshot). Throws as `decodeLeases`.
    public static func decodeChanges(_ bytes: UnsafeRawBufferPointer, file: String, moreChanges: Int) throws -> (
        snapshot: Licensed_V1_Snapshot, changes: [LedgerChange]
    ) {
        let (snapshot, changes) = try Self.decode(
            bytes,
            file: file,
            extraCapacity: { $0.trialStartedMs.count + $0.activations.count + $0.assignmentRuns.count + 1 + moreChanges },
            leaseAs: { (lease: consuming Lease) in LedgerChange.granted(lease) }
        )
        return (snapshot, changes)
    }

    /// The file's message without its leases, and its leases made into `Element`s, each written
    /// in parallel straight to its place in one array (at a million leases, gathering them from
    /// per-worker arrays into one and then into another of changes copied 300 MB and faulted in
    /// the pages for it: half a second of a restart).
    static func decode<Element>(
        _ bytes: UnsafeRawBufferPointer,
        file: String,
        extraCapacity: (Licensed_V1_Snapshot) -> Int,
        leaseAs makeElement: @Sendable (consuming Lease) -> Element
    ) throws -> (snapshot: Licensed_V1_Snapshot, elements: [Element]) {
        if let problem = Self.checkIntegrity(bytes, file: file) { throw StoreError(problem) }
        // Split the body: lease entries (their ranges) and every other field (copied, parsed as one message).
        var leaseRanges: [Range<Int>] = []
        var rest: [UInt8] = []
        var offset = 20
        let malformed = StoreError("snapshot \(file) does not parse: malformed protobuf at the top level")
        while offset < bytes.count {
            let start = offset
            guard let tag = Self.readVarint(bytes, &offset) else { throw malformed }
            switch tag & 7 {
            case 0: guard Self.readVarint(bytes, &offset) != nil else { throw malformed }
            case 1: offset += 8
            case 5: offset += 4
            case 2:
                guard let size = Self.readVarint(bytes, &offset), size <= UInt64(bytes.count - offset) else { throw malformed }
                if tag == UInt64(Self.leaseTag) {
                    leaseRanges.append(offset..<(offset + Int(size)))
                    offset += Int(size)
                    continue
                }
                offset += Int(size)
            default: throw malformed
            }
            guard offset <= bytes.count else { throw malformed }
            rest.append(contentsOf: bytes[start..<offset])
        }
        let snapshot: Licensed_V1_Snapshot
        do { snapshot = try Licensed_V1_Snapshot(serializedBytes: rest) } catch {
            throw StoreError("snapshot \(file) does not parse: \(error)")
        }
        let ranges = leaseRanges
        let source = UnsafeSendable(bytes)
        let chunkCount = (ranges.count + Self.chunkSize - 1) / Self.chunkSize
        // Each chunk's worker initialises its own slots; a chunk that meets a malformed lease
        // leaves its slots uninitialised (and deinitialises what it wrote), and then every
        // chunk's slots are deinitialised before throwing, so the array is never half-made.
        var parsed = [Bool](repeating: false, count: chunkCount)
        let capacity = ranges.count + extraCapacity(snapshot)
        let elements = try [Element](unsafeUninitializedCapacity: capacity) { output, count in
            if capacity > 0 { FileIO.adviseHugePages(output.baseAddress!, count: capacity * MemoryLayout<Element>.stride) }
            parsed.withUnsafeMutableBufferPointer { parsed in
                let output = UnsafeSendable(output)
                let parsedOutput = UnsafeSendable(parsed)
                DispatchQueue.concurrentPerform(iterations: chunkCount) { chunk in
                    let first = chunk * Self.chunkSize
                    let slots = output.value.baseAddress! + first
                    var written = 0
                    var whole = true
                    var identities: [SessionID: ClientIdentity]? = [:]
                    for range in ranges[first..<min(first + Self.chunkSize, ranges.count)] {
                        let body = UnsafeRawBufferPointer(rebasing: source.value[range])
                        guard let lease = StoredLeaseWire.lease(from: body, sharing: &identities) else {
                            whole = false
                            break
                        }
                        (slots + written).initialize(to: makeElement(consume lease))
                        written += 1
                    }
                    if whole { parsedOutput.value[chunk] = true } else { slots.deinitialize(count: written) }
                }
            }
            guard parsed.allSatisfy({ $0 }) else {
                for chunk in 0..<chunkCount where parsed[chunk] {
                    let first = chunk * Self.chunkSize
                    (output.baseAddress! + first).deinitialize(count: min(first + Self.chunkSize, ranges.count) - first)
                }
                throw StoreError("snapshot \(file) holds a malformed lease")
            }
            count = ranges.count
        }
        return (snapshot, elements)
    }

    static func readVarint(_ bytes: UnsafeRawBufferPointer, _ offset: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count, shift < 64 {
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        return nil
    }
}

/// A buffer written by concurrent workers, each to its own index only: the compiler cannot see
/// that the indices are disjoint, and a lock around the writes would serialise the workers that
/// this exists to run in parallel.
private struct UnsafeSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
