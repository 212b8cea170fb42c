import LicenseFiles

#if canImport(Glibc)
import Glibc
#endif

/// The write-ahead log segment the writer appends to, grown ahead of its writes.
///
/// An fdatasync after an append that grows a file writes the data, the new size and the blocks
/// allocated for it, then flushes the disk's cache; inside space allocated before (fallocate,
/// which sets the size), there is no new size or allocation to write. On this machine kind's ext4 an append of 600 bytes and its
/// fdatasync took 160 µs and about 65 µs of CPU growing the file, 110 µs and about 45 µs inside
/// allocated space (`scripts/fsync-probe`). The file is allocated `chunk` bytes at a time, past its
/// last record; those bytes read as zeros, which `LogSegment.read` takes as the segment's end,
/// and closing the segment cuts them off. Where the file system cannot allocate ahead, the file
/// grows with each write as before.
struct SegmentFile {
    /// How far ahead of its records the file is allocated: one allocation every few thousand
    /// pairs (a grant's and a release's record, and at light load their audit lines).
    static let chunk = 4 << 20

    let fd: Int32
    let path: String
    /// Where the next record goes: the end of the records.
    private(set) var end: Int
    /// The file's size: `end` and the space allocated past it.
    private var allocated: Int
    private var preallocates = true

    /// Opens `path` (created if missing) for appending after its last byte; recovery has cut any
    /// tail that follows its records.
    static func open(_ path: String) throws -> SegmentFile {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.errno("cannot open the write-ahead log segment", path) }
        let size = lseek(fd, 0, SEEK_END)
        guard size >= 0 else {
            Glibc.close(fd)
            throw StoreError.errno("cannot find the end of", path)
        }
        return SegmentFile(fd: fd, path: path, end: Int(size), allocated: Int(size))
    }

    /// Writes `bytes` after the records (not synced).
    mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        if self.preallocates, self.end + bytes.count > self.allocated {
            let size = (self.end + bytes.count + Self.chunk - 1) / Self.chunk * Self.chunk
            if FileIO.preallocate(self.fd, offset: self.allocated, count: size - self.allocated) {
                self.allocated = size
            } else {
                self.preallocates = false
            }
        }
        try FileIO.writeAll(self.fd, bytes, at: self.end, path: self.path)
        self.end += bytes.count
        self.allocated = max(self.allocated, self.end)
    }

    /// Cuts the space allocated past the records, syncs when `syncs` and closes (also when that
    /// fails).
    func close(syncs: Bool) throws {
        defer { Glibc.close(self.fd) }
        if self.allocated > self.end {
            guard ftruncate(self.fd, off_t(self.end)) == 0 else { throw StoreError.errno("cannot cut the allocated tail of", self.path) }
        }
        if syncs { guard fsync(self.fd) == 0 else { throw StoreError.errno("fsync failed on", self.path) } }
    }

    /// Closes without syncing (a writer that stopped on an error, a store never started): the
    /// allocated tail stays, read as the segment's end.
    func abandon() {
        Glibc.close(self.fd)
    }
}
