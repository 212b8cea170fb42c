public import LicenseFiles
import LicenseProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Snapshots moved between the nodes of a cluster: a node that joins empty, or fell behind what
/// the cluster's log still holds, takes a peer's newest snapshot and replays from there.
extension LedgerStore {
    /// The newest snapshot in `directory`: its path and the last sequence number it covers.
    public static func newestSnapshot(in directory: String) throws(StoreError) -> (path: String, sequence: UInt64)? {
        do {
            return try Self.snapshots(in: directory).first
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError("cannot list \(directory): \(error)")
        }
    }

    /// Makes `bytes` (a snapshot file from a peer) the state of the log in `directory`, which
    /// must not be open: it is checked whole first, then written and synced, and only then are
    /// the older snapshots and log segments removed — this node's own copy of the log ends where
    /// the peer's snapshot begins. Returns the last sequence number the snapshot covers.
    @discardableResult
    public static func install(snapshot bytes: [UInt8], into directory: String) throws(StoreError) -> UInt64 {
        do {
            let sequence = try SnapshotFile.decodeLeases(bytes, file: "(received snapshot)").snapshot.sequence
            let path = Self.snapshotPath(directory, sequence: sequence)
            try FileIO.makeDirectory(directory)
            let older = try Self.snapshots(in: directory).filter { $0.path != path }
            let segments = try Self.segments(in: directory)
            try FileIO.writeAtomically(bytes, to: path, directory: directory)
            for snapshot in older { unlink(snapshot.path) }
            for segment in segments { unlink(segment.path) }
            try FileIO.syncDirectory(directory)
            return sequence
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError("cannot install the snapshot in \(directory): \(error)")
        }
    }
}
