import CWriteback

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin POSIX file operations with errors that name the file.
package enum FileIO {
    /// Asks the kernel to back the 2 MiB-aligned part of a large, not yet touched buffer with
    /// huge pages (where transparent huge pages are enabled, even only "madvise"): filling it then
    /// takes one page fault per 2 MiB instead of one per 4 KiB. Recovery fills a few hundred
    /// megabytes this way. Only advice: where it is refused, nothing changes.
    package static func adviseHugePages(_ start: UnsafeMutableRawPointer, count: Int) {
        let huge = 2 << 20
        let first = (Int(bitPattern: start) + huge - 1) & ~(huge - 1)
        let end = (Int(bitPattern: start) + count) & ~(huge - 1)
        guard end > first, let pointer = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(pointer, end - first, MADV_HUGEPAGE)
    }

    /// The whole file, read into one buffer of its size (a snapshot of a million leases is
    /// 100 MB: grown chunk by chunk, it was copied again at each doubling).
    package static func readAll(_ path: String) throws -> [UInt8] {
        try Self.withOpenFile(path) { fd, size in
            var result = try Self.readBytes(fd, count: size, at: 0, path: path, adviseHugePages: true)
            // A file that grew since: the rest, as it comes.
            guard result.count == size else { return result }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(result.count)) }
                if n < 0 {
                    if Glibc.errno == EINTR { continue }
                    throw StoreError.errno("cannot read", path)
                }
                if n == 0 { return result }
                result.append(contentsOf: chunk[0..<n])
            }
        }
    }

    /// Calls `body` with the whole file mapped read-only (unmapped after; `body` must not keep
    /// the bytes). Reading a 100 MB snapshot this way maps the page cache's own pages instead of
    /// faulting in and copying to a fresh buffer of that size (0.1 s of a restart with a million
    /// leases). Only for files no other process writes: one cut short under the mapping would
    /// fault (SIGBUS) on the pages past its new end, and so would a medium error under a page
    /// (where `read` returns EIO): read such a file through first where an error must stay an
    /// error (recovery reads a snapshot through with `forEachChunk` before mapping it).
    package static func withMappedFile<T>(_ path: String, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        try Self.withOpenFile(path) { fd, size in
            guard size > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
            // MAP_POPULATE maps every page now, in one pass, rather than one fault per 64 KiB.
            guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0), mapped != MAP_FAILED else {
                throw StoreError.errno("cannot map", path)
            }
            defer { munmap(mapped, size) }
            return try body(UnsafeRawBufferPointer(start: mapped, count: size))
        }
    }

    /// The end of a file: its last bytes from `offset` on, read further back (doubling from
    /// 64 KiB) until `enough` accepts them or they reach the file's start. Finding a log's last
    /// record this way reads kilobytes, not the whole file.
    package static func readTail(_ path: String, enough: ([UInt8]) -> Bool) throws -> (bytes: [UInt8], offset: Int) {
        try Self.withOpenFile(path) { fd, size in
            var want = 1 << 16
            while true {
                let offset = max(0, size - want)
                let bytes = try Self.readBytes(fd, count: size - offset, at: offset, path: path)
                if offset == 0 || enough(bytes) { return (bytes, offset) }
                want *= 2
            }
        }
    }

    /// Calls `body` with a descriptor of `path` open for reading and the file's size now.
    private static func withOpenFile<T>(_ path: String, _ body: (Int32, Int) throws -> T) throws -> T {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.errno("cannot open", path) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw StoreError.errno("cannot stat", path) }
        return try body(fd, max(0, Int(status.st_size)))
    }

    /// `count` bytes from `offset` into an array of that size, or fewer when the file is shorter
    /// than it was a moment ago.
    private static func readBytes(_ fd: Int32, count: Int, at offset: Int, path: String, adviseHugePages: Bool = false) throws -> [UInt8] {
        var failed = false
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, filled in
            if adviseHugePages, count > 0 { Self.adviseHugePages(buffer.baseAddress!, count: count) }
            while filled < count {
                let n = pread(fd, buffer.baseAddress! + filled, count - filled, off_t(offset + filled))
                if n < 0 {
                    if Glibc.errno == EINTR { continue }
                    failed = true
                    return
                }
                if n == 0 { return }
                filled += n
            }
        }
        guard !failed else { throw StoreError.errno("cannot read", path) }
        return bytes
    }

    /// The size of the chunks `forEachChunk` reads.
    package static let chunkSize = 1 << 18

    /// Calls `body` with the file's bytes, `chunkSize` at a time, until it returns false.
    package static func forEachChunk(of path: String, _ body: (ArraySlice<UInt8>) throws -> Bool) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.errno("cannot open", path) }
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0, count: Self.chunkSize)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw StoreError.errno("cannot read", path)
            }
            if n == 0 { return }
            guard try body(chunk[0..<n]) else { return }
        }
    }

    package static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw StoreError.errno("cannot write", path)
            }
            offset += n
        }
    }

    /// Writes all of `bytes` at `offset` of `fd` (pwrite, the file position untouched).
    package static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws {
        var written = 0
        while written < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(offset + written))
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw StoreError.errno("cannot write", path)
            }
            written += n
        }
    }

    /// Allocates `count` bytes of `fd` from `offset`, extending its size over them (they read as
    /// zeros) without writing them. False where the file system cannot (or the disk is full: the
    /// writes that follow then fail, or not, as they would have anyway).
    package static func preallocate(_ fd: Int32, offset: Int, count: Int) -> Bool {
        while true {
            if licensed_preallocate(fd, Int64(offset), Int64(count)) == 0 { return true }
            if Glibc.errno != EINTR { return false }
        }
    }

    /// Asks the kernel to start writing `count` bytes of `fd` from `offset` to disk, without
    /// waiting (a hint: only fsync makes them durable; an error is ignored).
    package static func startWriteback(_ fd: Int32, offset: Int, count: Int) {
        _ = licensed_writeback(fd, Int64(offset), Int64(count), 0)
    }

    /// Writes `count` bytes of `fd` from `offset` to disk and waits until they are written (not
    /// synced: the disk's cache and the file's metadata are fsync's).
    package static func finishWriteback(_ fd: Int32, offset: Int, count: Int) {
        _ = licensed_writeback(fd, Int64(offset), Int64(count), 1)
    }

    package static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.errno("cannot open directory", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError.errno("fsync failed on directory", path) }
    }

    /// Writes `bytes` to `path` crash-safely: temp file, fsync, rename, fsync of the directory.
    package static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws {
        try Self.writeAtomically(to: path, directory: directory) { output in
            try bytes.withUnsafeBytes { try output.write($0) }
        }
    }

    /// Writes a file crash-safely: `write` fills a temporary file next to `path` through a
    /// `PacedOutput`, which is then fsynced and renamed to `path`, and `directory` fsynced. On an
    /// error the temporary file is removed and `path` is untouched.
    package static func writeAtomically(to path: String, directory: String, _ write: (inout PacedOutput) throws -> Void) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.errno("cannot create", temporary) }
        do {
            var output = PacedOutput(fd: fd, path: temporary)
            try write(&output)
            guard fsync(fd) == 0 else { throw StoreError.errno("fsync failed on", temporary) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw StoreError.errno("cannot rename into", path) }
        try Self.syncDirectory(directory)
    }

    package static func list(_ directory: String) throws -> [String] {
        guard let dir = opendir(directory) else { throw StoreError.errno("cannot list", directory) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    package static func makeDirectory(_ path: String) throws {
        var components: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: false) {
            components.append(String(part))
            let prefix = components.joined(separator: "/")
            if prefix.isEmpty { continue }
            if mkdir(prefix, 0o700) != 0 && Glibc.errno != EEXIST { throw StoreError.errno("cannot create directory", prefix) }
        }
    }

    /// Opens `path` for appending records, creating it (mode 0600) when missing; `what` names
    /// the file in the error.
    package static func openForAppending(_ path: String, _ what: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.errno("cannot open \(what)", path) }
        return fd
    }

    /// Ends an append-only file before the next one starts: fsync when `syncs`, then close.
    package static func closeAppended(_ fd: Int32, path: String, syncs: Bool) throws {
        if syncs { guard fsync(fd) == 0 else { throw StoreError.errno("fsync failed on", path) } }
        close(fd)
    }

    /// A sequence number as 20 digits, so that file names sort in sequence order.
    package static func padded(_ n: UInt64) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// The suffix of a file being removed by `removeGradually`: the store's and the trail's
    /// listings pass it by, and what a stop left of one is removed at the next start or pass.
    package static let removingSuffix = ".removing"

    /// Removes the files at `paths`, in `directory`, a mebibyte at a time: each is renamed out of
    /// the way (`removingSuffix`; the directory is synced once for all), then cut from its end
    /// in steps a millisecond apart, then unlinked. Freed at once, a large file (a log segment
    /// of tens of MB, a compressed audit file's 64 MiB original: their cached pages, and their
    /// blocks, which this disk is told to discard) held the serving loop's fdatasync at that
    /// moment for 5 to 18 ms; in steps, for no more than one step. The rename comes first so that
    /// no file is ever left cut short under its own name, where it would read as damaged. For
    /// background threads only. Every file is tried; the first failure is thrown after.
    package static func removeGradually(_ paths: [String], directory: String, step: Int = 1 << 20) throws {
        var failure: StoreError?
        var renamed: [String] = []
        for path in paths {
            if rename(path, path + Self.removingSuffix) == 0 {
                renamed.append(path + Self.removingSuffix)
            } else if failure == nil {
                failure = StoreError.errno("cannot remove", path)
            }
        }
        if !renamed.isEmpty { try Self.syncDirectory(directory) }
        for path in renamed {
            Self.cutDown(path, step: step)
            if unlink(path) != 0, failure == nil { failure = StoreError.errno("cannot remove", path) }
        }
        if let failure { throw failure }
    }

    /// Cuts the file at `path` from its end, `step` bytes at a time a millisecond apart, down to
    /// its first step (what is left goes with the unlink); stops quietly where it cannot.
    private static func cutDown(_ path: String, step: Int) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return }
        var size = Int(info.st_size)
        while size > step {
            size -= step
            guard ftruncate(fd, off_t(size)) == 0 else { return }
            usleep(1_000)
        }
    }

    /// Puts the calling thread below every other of its CPU: SCHED_IDLE, so that it runs when no
    /// other thread there wants to, and the serving loop preempts it as soon as it wakes. At nice
    /// +10, as compression ran before, a waking loop could wait out the rest of the background
    /// thread's slice, and the loop's fdatasync then seemed to take milliseconds: at 58,000
    /// pairs/s, server and generator pinned, 32 to 35 passes a run spent more than 3 ms in it,
    /// against 10 to 11 with SCHED_IDLE. Where SCHED_IDLE is refused, nice +10. Only for a thread
    /// of its own that ends with its work (snapshots, audit maintenance): without CAP_SYS_NICE a
    /// thread cannot leave SCHED_IDLE again.
    package static func lowerToBackground() {
        guard licensed_idle_priority() != 0 else { return }
        errno = 0
        let current = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        if errno == 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, min(19, current + 10)) }
    }
}

/// A file written front to back off the serving loop (a snapshot, a compressed audit file). Each
/// `pace` bytes are handed to the disk as soon as they are written, and the writer then waits
/// until the part before them is written: no more than two parts are ever in flight or dirty, so
/// the file's fsync finds little left to write, and the disk never gets the whole file at once.
/// The serving loop's fdatasync of the log queues behind whatever the disk was handed: with the
/// compressed audit file (tens of MB) handed over whole at its fsync, that fdatasync took 4 to 30
/// ms instead of 0.3 (each of the loop's fdatasyncs timed, 58,000 pairs/s open loop, pinned).
package struct PacedOutput {
    /// The part handed to the disk at a time (RocksDB's `bytes_per_sync` default, 1 MiB, is the
    /// precedent).
    package static let pace = 1 << 20

    package let fd: Int32
    /// The file's path, for errors.
    package let path: String
    /// Where the next `write` goes.
    package private(set) var offset = 0
    /// Where the part not yet handed to the disk starts.
    private var handedOver = 0

    package init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Leaves the bytes up to `offset` for a later `pwrite` (a header whose content is known at
    /// the end): writes go on from there.
    package mutating func skip(to offset: Int) {
        self.offset = offset
        self.handedOver = offset
    }

    /// Writes `bytes` at `offset`, handing each complete part to the disk.
    package mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        try FileIO.writeAll(self.fd, bytes, at: self.offset, path: self.path)
        self.offset += bytes.count
        while self.offset - self.handedOver >= Self.pace {
            FileIO.startWriteback(self.fd, offset: self.handedOver, count: Self.pace)
            if self.handedOver >= Self.pace {
                FileIO.finishWriteback(self.fd, offset: self.handedOver - Self.pace, count: Self.pace)
            }
            self.handedOver += Self.pace
        }
    }
}
