#if canImport(Glibc)
import Glibc
#endif

/// A growable run of bytes written through a pointer, for rendering records: an Array's
/// `append(contentsOf:)` costs about 140 instructions a call under callgrind (capacity and
/// uniqueness checks, a copy through the sequence protocol), which was most of rendering a short
/// field. Not copyable: one owner frees the memory.
struct ByteWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    /// Bytes written so far.
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        self.base = .allocate(capacity: self.capacity)
    }

    deinit { self.base.deallocate() }

    /// Room for `more` bytes after the written ones.
    @inline(__always)
    mutating func reserve(_ more: Int) {
        if self.count + more > self.capacity { self.grow(to: self.count + more) }
    }

    private mutating func grow(to needed: Int) {
        let capacity = max(needed, self.capacity * 2)
        let base = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        base.update(from: self.base, count: self.count)
        self.base.deallocate()
        self.base = base
        self.capacity = capacity
    }

    @inline(__always)
    mutating func write(_ byte: UInt8) {
        self.reserve(1)
        self.base[self.count] = byte
        self.count += 1
    }

    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        self.reserve(bytes.count)
        memcpy(self.base + self.count, source, bytes.count)
        self.count += bytes.count
    }

    @inline(__always)
    mutating func write(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.write(UnsafeRawBufferPointer(bytes))
    }

    @inline(__always)
    mutating func write(_ text: StaticString) {
        self.write(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Writes `count` bytes that `fill` stores at the pointer it is given (all of them).
    @inline(__always)
    mutating func write(count: Int, _ fill: (UnsafeMutablePointer<UInt8>) -> Void) {
        self.reserve(count)
        fill(self.base + self.count)
        self.count += count
    }

    /// The written bytes, to change in place, for as long as `body` runs.
    mutating func withMutableBytes<Result>(_ body: (UnsafeMutablePointer<UInt8>) -> Result) -> Result {
        body(self.base)
    }

    /// The bytes at `range` of the written ones.
    func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= self.count)
        return UnsafeRawBufferPointer(start: self.base + range.lowerBound, count: range.count)
    }

    /// Everything written.
    var written: UnsafeRawBufferPointer { self.bytes(0..<self.count) }
}
