import LicenseCore
import LicenseFiles

#if canImport(Glibc)
import Glibc
#endif

/// The files of the log's directory: their names, and which of them a snapshot makes redundant.
extension LedgerStore {
    struct Segment {
        var path: String
        var firstSequence: UInt64
    }

    static func segmentPath(_ directory: String, firstSequence: UInt64) -> String {
        "\(directory)/wal-\(FileIO.padded(firstSequence)).log"
    }

    static func snapshotPath(_ directory: String, sequence: UInt64) -> String {
        "\(directory)/snapshot-\(FileIO.padded(sequence)).snap"
    }

    /// Deletes all but the `retaining` newest snapshots, and every log segment whose records all
    /// precede the oldest snapshot kept (segments start just after a snapshot's cut, so a segment
    /// is wholly covered when the next one starts at or before that snapshot's sequence + 1).
    static func prune(_ directory: String, retaining: Int) throws {
        let snapshots = try Self.snapshots(in: directory)
        guard snapshots.count >= retaining, let oldestKept = snapshots.prefix(retaining).last else { return }
        var removing = snapshots.dropFirst(retaining).map(\.path)
        let segments = try Self.segments(in: directory)
        for (index, segment) in segments.enumerated() where index + 1 < segments.count {
            if segments[index + 1].firstSequence <= oldestKept.sequence + 1 { removing.append(segment.path) }
        }
        // The snapshot is durable whatever happens here (its file and the directory were synced
        // when it was written): a file that could not be removed is tried again after the next
        // snapshot, and one left half removed (renamed, synced) at the next start.
        try? FileIO.removeGradually(removing, directory: directory)
    }

    static func segments(in directory: String) throws -> [Segment] {
        try FileIO.list(directory).compactMap { name -> Segment? in
            guard name.hasPrefix("wal-"), name.hasSuffix(".log"), let first = UInt64(name.dropFirst(4).dropLast(4)) else { return nil }
            return Segment(path: "\(directory)/\(name)", firstSequence: first)
        }.sorted { $0.firstSequence < $1.firstSequence }
    }

    static func snapshots(in directory: String) throws -> [(path: String, sequence: UInt64)] {
        try FileIO.list(directory).compactMap { name -> (String, UInt64)? in
            guard name.hasPrefix("snapshot-"), name.hasSuffix(".snap"), let seq = UInt64(name.dropFirst(9).dropLast(5)) else { return nil }
            return ("\(directory)/\(name)", seq)
        }.sorted { $0.1 > $1.1 }
    }
}
