// .flint.zst distribution packing: a .flint file streamed through zstd and back.
//
// Memory stays bounded (one input and one output buffer of about 1 MB) whatever the file size. Output goes to
// a temporary file beside `<output>` (removed on SIGINT/SIGTERM, or as stale by a later run), is fsynced and
// then renamed over `<output>`, so a reader never sees a partial file and a
// failure never leaves one behind. The frame records the content size (used to validate the unpacked cache)
// and a checksum (zstd verifies it while decoding, so corruption is an error, not bad weights).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CZstd
import FlintFormat

public enum FlintPacker {
    /// Called as work proceeds with the input bytes consumed so far and the input's total size.
    public typealias Progress = (_ bytesDone: Int64, _ bytesTotal: Int64) -> Void

    /// The compression level used when none is given. Int8 weights are close to random bytes, so the entropy
    /// coder does nearly all the work: on 32 MB of quantized Gaussian weights levels 3, 9 and 19 all gave 87.9%
    /// of the input size, in 0.14 s, 0.23 s and 23.5 s. 9 is still cheap and helps the float parts more.
    public static let defaultLevel: Int32 = 9

    /// Compression levels libzstd accepts.
    public static var levelRange: ClosedRange<Int32> { ZSTD_minCLevel()...ZSTD_maxCLevel() }

    /// Compresses `input` into a single zstd frame at `output` (content size and checksum recorded).
    /// Progress counts input bytes read; the last call, `(total, total)`, comes once `output` is in place.
    public static func pack(input: String, output: String, level: Int32 = defaultLevel,
                            progress: Progress? = nil) throws {
        guard levelRange.contains(level) else {
            throw FlintError("pack: compression level \(level) is outside zstd's range \(levelRange.lowerBound)...\(levelRange.upperBound)")
        }
        let source = try InputFile(path: input)
        defer { source.close() }
        try refuseSameFile(source, output: output)
        let total = source.size

        guard let cctx = ZSTD_createCCtx() else { throw FlintError("\(input): zstd could not allocate a compression context") }
        defer { ZSTD_freeCCtx(cctx) }
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "\(input): setting the compression level")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1), "\(input): enabling the frame checksum")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1), "\(input): enabling the content size")
        try check(ZSTD_CCtx_setPledgedSrcSize(cctx, UInt64(total)), "\(input): recording the content size")

        try AtomicOutput.write(to: output) { sink in
            let inCapacity = max(ZSTD_CStreamInSize(), 1 << 20)
            let outCapacity = max(ZSTD_CStreamOutSize(), 1 << 20)
            let inBuffer = UnsafeMutableRawPointer.allocate(byteCount: inCapacity, alignment: 64)
            let outBuffer = UnsafeMutableRawPointer.allocate(byteCount: outCapacity, alignment: 64)
            defer { inBuffer.deallocate(); outBuffer.deallocate() }
            var done: Int64 = 0
            progress?(0, total)
            while true {
                let read = try source.read(into: inBuffer, capacity: inCapacity)
                done += Int64(read)
                if done > total {
                    throw FlintError("\(input): the file grew while it was being packed (more than \(total) bytes)")
                }
                let last = read == 0
                if last && done < total {
                    throw FlintError("\(input): the file shrank while it was being packed (\(done) of \(total) bytes)")
                }
                var inb = ZSTD_inBuffer(src: inBuffer, size: read, pos: 0)
                var finished = false
                while !finished {
                    var outb = ZSTD_outBuffer(dst: outBuffer, size: outCapacity, pos: 0)
                    let remaining = ZSTD_compressStream2(cctx, &outb, &inb, last ? ZSTD_e_end : ZSTD_e_continue)
                    try check(remaining, "\(input): compressing at byte \(done)")
                    try sink.write(outBuffer, count: outb.pos)
                    // With e_end the frame is complete when nothing remains to flush; with e_continue the input
                    // chunk is consumed when pos reaches size.
                    finished = last ? remaining == 0 : inb.pos == inb.size
                }
                if read > 0 && done < total { progress?(done, total) }
                if last { break }
            }
        }
        progress?(total, total)
    }

    /// Decompresses the zstd data in `input` (one frame, or several concatenated ones as the zstd tool allows)
    /// to `output`. Errors name `input` and say what is wrong: not zstd, truncated, or corrupt (zstd's message).
    /// Progress counts compressed bytes read (the total is known up front whatever the frame records).
    ///
    /// Bounded output: when the data is a .flint file (its first 128 bytes are a .flint header) the header's
    /// `file_size` is checked against the frame's recorded content size as soon as those bytes are out, and
    /// decompression stops with an error at the first byte beyond it; the output folder must have room for the
    /// recorded size before anything is written. With `requireFlint` data that is not a .flint file is refused
    /// after its first 128 bytes, so a decompression bomb never fills the disk.
    public static func unpack(input: String, output: String, requireFlint: Bool = false,
                              progress: Progress? = nil) throws {
        let source = try InputFile(path: input)
        defer { source.close() }
        try refuseSameFile(source, output: output)
        // Fails early, before any output, for non-zstd input.
        let contentSize = try frameContentSize(of: source, path: input)
        let total = source.size
        if let contentSize { try checkRoom(for: contentSize, output: output, input: input) }
        var limit: Int64? = requireFlint ? Int64(FlintLayout.headerSize) : nil
        var head: [UInt8] = []
        var headChecked = false
        /// Called with each piece of output before it is written: the header check, then the size limit.
        func admit(_ buffer: UnsafeRawPointer, _ count: Int, written: Int64) throws {
            if !headChecked {
                let take = min(count, FlintLayout.headerSize - head.count)
                head += UnsafeRawBufferPointer(start: buffer, count: take)
                if head.count == FlintLayout.headerSize {
                    headChecked = true
                    if Array(head.prefix(8)) == FlintLayout.magic {
                        let fileSize = head.withUnsafeBytes { Int64(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 88, as: UInt64.self)) & 0x7fff_ffff_ffff_ffff) }
                        if let contentSize, contentSize != fileSize {
                            throw FlintError("\(input): the zstd frame records \(contentSize) bytes but the packed .flint header says file_size \(fileSize); the file is corrupt")
                        }
                        if contentSize == nil { try checkRoom(for: fileSize, output: output, input: input) }
                        limit = fileSize
                    } else if requireFlint {
                        throw FlintError("\(input): does not unpack to a .flint file (its first bytes are not a .flint header)")
                    }
                }
            }
            if let limit, written + Int64(count) > limit {
                throw FlintError("\(input): unpacks to more than the \(limit) bytes its .flint header records; stopped there (a corrupt file or a decompression bomb)")
            }
        }

        guard let dctx = ZSTD_createDCtx() else { throw FlintError("\(input): zstd could not allocate a decompression context") }
        defer { ZSTD_freeDCtx(dctx) }

        try AtomicOutput.write(to: output) { sink in
            let inCapacity = max(ZSTD_DStreamInSize(), 1 << 20)
            let outCapacity = max(ZSTD_DStreamOutSize(), 1 << 20)
            let inBuffer = UnsafeMutableRawPointer.allocate(byteCount: inCapacity, alignment: 64)
            let outBuffer = UnsafeMutableRawPointer.allocate(byteCount: outCapacity, alignment: 64)
            defer { inBuffer.deallocate(); outBuffer.deallocate() }
            var consumed: Int64 = 0
            var written: Int64 = 0
            // 0 once a frame is complete; otherwise zstd's hint of bytes still expected.
            var lastResult = 1
            progress?(0, total)
            while true {
                let read = try source.read(into: inBuffer, capacity: inCapacity)
                if read == 0 { break }
                var inb = ZSTD_inBuffer(src: inBuffer, size: read, pos: 0)
                var outputFull = false
                // Keep calling while input remains or the last call filled the output (data may be pending).
                while inb.pos < inb.size || outputFull {
                    var outb = ZSTD_outBuffer(dst: outBuffer, size: outCapacity, pos: 0)
                    let offset = consumed + Int64(inb.pos)
                    let result = ZSTD_decompressStream(dctx, &outb, &inb)
                    if ZSTD_isError(result) != 0 {
                        if lastResult == 0 {
                            // zstd stops at the end of each frame, so this call began right after a complete one.
                            throw FlintError("\(input): unexpected data after the end of the zstd frame, at compressed byte \(offset) of \(total) (after \(written) bytes were unpacked): \(zstdErrorName(result))")
                        }
                        throw FlintError("\(input): corrupt zstd data in compressed bytes \(offset)..<\(consumed + Int64(read)) (after \(written + Int64(outb.pos)) bytes were unpacked): \(zstdErrorName(result))")
                    }
                    try admit(outBuffer, outb.pos, written: written)
                    try sink.write(outBuffer, count: outb.pos)
                    written += Int64(outb.pos)
                    lastResult = result
                    outputFull = outb.pos == outb.size
                }
                consumed += Int64(read)
                if consumed < total { progress?(consumed, total) }
            }
            if lastResult != 0 {
                throw FlintError("\(input): truncated zstd data: the file ends (\(total) bytes) inside a frame, after \(written) bytes were unpacked")
            }
            if requireFlint, !headChecked {
                throw FlintError("\(input): unpacks to \(written) bytes, too short for a .flint file")
            }
            if let limit, headChecked, written != limit, Array(head.prefix(8)) == FlintLayout.magic {
                throw FlintError("\(input): unpacked \(written) bytes but the .flint header records \(limit); the file is truncated or corrupt")
            }
        }
        progress?(total, total)
    }

    /// The decompressed size recorded in the first frame of the zstd file at `path`, or nil when the frame does
    /// not record it. Throws when the file is not zstd data.
    public static func contentSize(ofPacked path: String) throws -> Int64? {
        let source = try InputFile(path: path)
        defer { source.close() }
        return try frameContentSize(of: source, path: path)
    }

    /// The cache file a packed model unpacks to: `<path>.unpacked.flint`, beside it.
    public static func unpackedCachePath(for path: String) -> String { path + ".unpacked.flint" }

    /// For a path ending in `.zst`: the path of its unpacked copy, `<path>.unpacked.flint`, unpacking it first
    /// unless a cache exists that is at least as new as the `.zst` and has the frame's content size. A newly
    /// unpacked file is handed to `verify` (for example a full checksum check) before it is published under the
    /// cache name; if `verify` throws, nothing is published. Other paths are returned unchanged.
    /// `requireFlint`: see `unpack` (bounds the unpacked size by the .flint header).
    public static func resolveModelPath(_ path: String, requireFlint: Bool = false, progress: Progress? = nil,
                                        verify: (String) throws -> Void) throws -> String {
        guard path.hasSuffix(".zst") else { return path }
        let cache = unpackedCachePath(for: path)
        let packedInfo = try fileStatus(path, what: "packed model")
        let expectedSize = try contentSize(ofPacked: path)
        if let cacheInfo = try? fileStatus(cache, what: "cache"), cacheInfo.isRegular,
           cacheInfo.modified >= packedInfo.modified, expectedSize == nil || cacheInfo.size == expectedSize {
            return cache
        }
        // Unpack to a temp name of our own, verify, then publish by renaming; a concurrent process doing the
        // same publishes an identical file.
        let staging = TemporaryFiles.name(for: cache)
        TemporaryFiles.register(staging)
        defer { TemporaryFiles.unregister(staging) }
        do {
            try unpack(input: path, output: staging, requireFlint: requireFlint, progress: progress)
            if let expectedSize {
                let unpacked = try fileStatus(staging, what: "unpacked file")
                guard unpacked.size == expectedSize else {
                    throw FlintError("\(path): unpacked \(unpacked.size) bytes but the frame records \(expectedSize)")
                }
            }
            try verify(staging)
            guard rename(staging, cache) == 0 else {
                throw FlintError("\(cache): cannot publish the unpacked model: \(errnoText())")
            }
        } catch {
            TemporaryFiles.remove(staging)
            throw error
        }
        return cache
    }

    // MARK: Helpers

    /// Reads the first frame header: the content size it records, or nil when it records none (or the file
    /// starts with a skippable frame). Throws naming the file when it is empty, not zstd, or cut short.
    private static func frameContentSize(of source: InputFile, path: String) throws -> Int64? {
        var header = [UInt8](repeating: 0, count: 18) // ZSTD_FRAMEHEADERSIZE_MAX
        let count = try header.withUnsafeMutableBytes { try source.pread(into: $0.baseAddress!, capacity: $0.count, offset: 0) }
        let bytes = Array(header.prefix(count))
        guard count > 0 else { throw FlintError("\(path): empty file, not a zstd frame") }
        let zstdMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]
        let isSkippable = count >= 4 && bytes[0] & 0xF0 == 0x50 && Array(bytes[1..<4]) == [0x2A, 0x4D, 0x18]
        if isSkippable { return nil }
        guard Array(bytes.prefix(4)) == Array(zstdMagic.prefix(count)) else {
            let start = bytes.prefix(4).map { String($0, radix: 16).leftPadded(2) }.joined(separator: " ")
            throw FlintError("\(path): not a zstd frame (the file starts with bytes \(start); zstd frames start with 28 b5 2f fd)")
        }
        // The header's length follows from its descriptor byte (RFC 8878 §3.1.1.1.1).
        var headerLength = 6
        if count >= 5 {
            let descriptor = bytes[4]
            let singleSegment = descriptor & 0x20 != 0
            let dictionaryIDLength = [0, 1, 2, 4][Int(descriptor & 3)]
            let contentSizeLength = [singleSegment ? 1 : 0, 2, 4, 8][Int(descriptor >> 6)]
            headerLength = 5 + (singleSegment ? 0 : 1) + dictionaryIDLength + contentSizeLength
        }
        guard count >= headerLength else {
            throw FlintError("\(path): truncated zstd data: the file (\(count) bytes) ends inside the frame header (\(headerLength) bytes)")
        }
        let size = bytes.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress!, count) }
        if size == ZSTD_CONTENTSIZE_ERROR {
            throw FlintError("\(path): corrupt zstd frame header (descriptor byte \(String(bytes[4], radix: 16)))")
        }
        if size == ZSTD_CONTENTSIZE_UNKNOWN { return nil }
        return Int64(size)
    }

    /// Refuses before writing when the output's file system cannot hold `bytes` more.
    static func checkRoom(for bytes: Int64, output: String, input: String) throws {
        let slash = output.lastIndex(of: "/")
        let folder = slash.map { $0 == output.startIndex ? "/" : String(output[..<$0]) } ?? "."
        var fs = statvfs()
        guard statvfs(folder, &fs) == 0 else { return }  // cannot tell: the write itself will fail if full
        let (free, overflow) = Int64(fs.f_bavail).multipliedReportingOverflow(by: Int64(fs.f_frsize))
        if !overflow, free < bytes {
            throw FlintError("\(input): unpacks to \(bytes) bytes but \(folder) has only \(free) bytes free")
        }
    }

    private static func refuseSameFile(_ source: InputFile, output: String) throws {
        var st = stat()
        if stat(output, &st) == 0, st.st_dev == source.device, st.st_ino == source.inode {
            throw FlintError("\(output): the output is the input file; choose another output path")
        }
    }

    private static func check(_ code: Int, _ what: String) throws {
        if ZSTD_isError(code) != 0 { throw FlintError("\(what): zstd error: \(zstdErrorName(code))") }
    }

    static func zstdErrorName(_ code: Int) -> String { String(cString: ZSTD_getErrorName(code)) }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

struct FileStatus {
    var size: Int64
    var modified: timespec
    var isRegular: Bool
}

extension timespec {
    static func >= (a: timespec, b: timespec) -> Bool {
        a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec >= b.tv_nsec
    }
}

func fileStatus(_ path: String, what: String) throws -> FileStatus {
    var st = stat()
    guard stat(path, &st) == 0 else { throw FlintError("\(path): cannot read the \(what)'s status: \(errnoText())") }
    #if canImport(Darwin)
    let modified = st.st_mtimespec
    #else
    let modified = st.st_mtim
    #endif
    return FileStatus(size: Int64(st.st_size), modified: modified, isRegular: (st.st_mode & S_IFMT) == S_IFREG)
}

/// An open input file read sequentially, with its size and identity.
final class InputFile {
    let path: String
    private var fd: Int32
    let size: Int64
    let device: UInt64
    let inode: UInt64

    init(path: String) throws {
        self.path = path
        let (fd, st) = try openRegularFile(path)
        self.fd = fd
        size = Int64(st.st_size)
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
    }

    /// Reads up to `capacity` bytes (fewer only at the end of the file); 0 at the end.
    func read(into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int {
        var total = 0
        while total < capacity {
            let n = sysRead(fd, buffer + total, capacity - total)
            if n < 0 {
                if errno == EINTR { continue }
                throw FlintError("\(path): read failed: \(errnoText())")
            }
            if n == 0 { break }
            total += n
        }
        return total
    }

    /// Reads up to `capacity` bytes at `offset` without moving the read position.
    func pread(into buffer: UnsafeMutableRawPointer, capacity: Int, offset: Int64) throws -> Int {
        var total = 0
        while total < capacity {
            let n = sysPread(fd, buffer + total, capacity - total, off_t(offset) + off_t(total))
            if n < 0 {
                if errno == EINTR { continue }
                throw FlintError("\(path): read failed: \(errnoText())")
            }
            if n == 0 { break }
            total += n
        }
        return total
    }

    func close() {
        if fd >= 0 { sysClose(fd); fd = -1 }
    }

    deinit { close() }
}

/// Writing a file so it appears complete or not at all: a registered temporary beside it
/// (`TemporaryFiles`), fsync, rename, fsync the directory.
enum AtomicOutput {
    final class Sink {
        let path: String
        let fd: Int32
        init(path: String, fd: Int32) { self.path = path; self.fd = fd }

        func write(_ buffer: UnsafeRawPointer, count: Int) throws {
            var done = 0
            while done < count {
                let n = sysWrite(fd, buffer + done, count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FlintError("\(path): write failed: \(errnoText())")
                }
                done += n
            }
        }
    }

    static func write(to path: String, _ body: (Sink) throws -> Void) throws {
        // Registered for removal on SIGINT/SIGTERM; stale ones of dead processes are removed first.
        let (temp, fd) = try TemporaryFiles.create(besides: path)
        var isOpen = true
        do {
            try body(Sink(path: temp, fd: fd))
            guard fsync(fd) == 0 else { throw FlintError("\(temp): fsync failed: \(errnoText())") }
            isOpen = false
            guard sysClose(fd) == 0 else { throw FlintError("\(temp): close failed: \(errnoText())") }
            guard rename(temp, path) == 0 else {
                throw FlintError("\(path): cannot rename \(temp) into place: \(errnoText())")
            }
            TemporaryFiles.unregister(temp)
        } catch {
            if isOpen { sysClose(fd) }
            TemporaryFiles.remove(temp)
            throw error
        }
        syncDirectory(of: path)
    }

    /// Makes the rename durable. Best effort: some file systems refuse fsync on directories.
    private static func syncDirectory(of path: String) {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let fd = open(directory, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            sysClose(fd)
        }
    }
}

// The libc calls whose Swift names clash with methods above.
@discardableResult @inline(__always) private func sysClose(_ fd: Int32) -> Int32 { close(fd) }
@inline(__always) private func sysRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }
@inline(__always) private func sysPread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: off_t) -> Int {
    pread(fd, buffer, count, offset)
}
@inline(__always) private func sysWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }
