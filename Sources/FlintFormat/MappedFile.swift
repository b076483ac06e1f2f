// Memory-mapped files, shared by every reader: the .flint reader (FlintFile), and the checkpoint readers of
// FlintCheckpoint (safetensors, PyTorch zip, Keras h5, Flax msgpack), which view tensors in place through a
// MappedFile and drop pages they are done with (`releaseMappedPages`), so a streaming conversion stays near one
// tensor of resident memory.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A read-only memory mapping of a whole file, unmapped when the last reference goes.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK + fstat: a FIFO or device under a model's name is refused instead of hanging the open.
        let (fd, st) = try openRegularFile(path)
        defer { close(fd) }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FlintError(.io, "\(path): cannot map \(size) bytes (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
        MappedFile.register(bytes)
        MappedRegions.register(bytes, path: path)
    }

    deinit {
        if let base = bytes.baseAddress {
            MappedRegions.unregister(bytes)
            MappedFile.unregister(bytes)
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }

    // Live read-only mappings (address ranges, page-rounded), so `releaseMappedPages` can tell file-backed memory
    // from any other.
    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var live: [Range<Int>] = []

    private static func pageRounded(_ b: UnsafeRawBufferPointer) -> Range<Int> {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: b.baseAddress!)
        return start..<(start + (b.count + page - 1) / page * page)
    }

    private static func register(_ b: UnsafeRawBufferPointer) {
        registryLock.lock(); defer { registryLock.unlock() }
        live.append(pageRounded(b))
    }

    private static func unregister(_ b: UnsafeRawBufferPointer) {
        let r = pageRounded(b)
        registryLock.lock(); defer { registryLock.unlock() }
        if let i = live.firstIndex(of: r) { live.remove(at: i) }
    }

    /// The live mapping that holds all of `[start, end)`, if any.
    static func liveMapping(containing start: Int, _ end: Int) -> Range<Int>? {
        registryLock.lock(); defer { registryLock.unlock() }
        return live.first { $0.lowerBound <= start && end <= $0.upperBound }
    }

    public var count: Int { bytes.count }

    /// Little-endian integer at `offset` (caller has checked bounds).
    @inline(__always) func load<T: FixedWidthInteger>(_ offset: Int, as: T.Type) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    public func slice(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }
}

/// Tells the kernel the pages under `buffer` are not needed any more, so they stop counting as resident; they are
/// read again from the file if touched. Streaming conversion calls this after each tensor, which keeps its
/// resident memory near one tensor instead of the whole checkpoint. Only memory inside a live read-only file
/// mapping (a `MappedFile`) is released; for any other memory (a heap copy, a decoded buffer) this does nothing,
/// since dropping such pages would destroy their contents.
public func releaseMappedPages(_ buffer: UnsafeRawBufferPointer) {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return }
    let start = Int(bitPattern: base), end = start + buffer.count
    guard let mapping = MappedFile.liveMapping(containing: start, end) else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let lower = max(mapping.lowerBound, start / page * page)
    let upper = min(mapping.upperBound, (end + page - 1) / page * page)
    guard upper > lower else { return }
    _ = madvise(UnsafeMutableRawPointer(bitPattern: lower), upper - lower, Int32(MADV_DONTNEED))
}
