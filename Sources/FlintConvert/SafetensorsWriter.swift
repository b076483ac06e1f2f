// Writes a safetensors file (huggingface/safetensors format) by streaming: the header is computed from the
// tensors' shapes up front, then each tensor's bytes are appended. Published atomically like .flint files.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import FlintFormat

public final class SafetensorsWriter {
    public struct Entry {
        public var name: String
        public var dtype: String  // "F32", "F16", "BF16"
        public var shape: [Int]
        public var byteCount: Int
        public init(name: String, dtype: String, shape: [Int], byteCount: Int) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.byteCount = byteCount
        }
    }

    public let path: String
    private var temporaryPath = ""
    private var fd: Int32 = -1
    private let entries: [Entry]
    private var next = 0
    private var finished = false

    /// Declares every tensor in file order; the tensors' bytes must then be written in that order.
    public init(path: String, entries: [Entry], metadata: [String: String] = ["format": "pt"]) throws {
        self.path = path
        self.entries = entries
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, offset + e.byteCount]]
            offset += e.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes])
        // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        (temporaryPath, fd) = try TemporaryFiles.create(besides: path)
        var prefix: [UInt8] = []
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { prefix += $0 }
        prefix += json
        do { try prefix.withUnsafeBytes { try writeAll($0) } } catch { abandon(); throw error }
    }

    deinit { if !finished { abandon() } }

    /// Appends the next declared tensor's bytes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard next < entries.count else { throw FlintError("\(path): more tensors written than declared") }
        let e = entries[next]
        guard bytes.count == e.byteCount else {
            throw FlintError("\(path): tensor \"\(e.name)\": \(bytes.count) bytes written, \(e.byteCount) declared")
        }
        do { try writeAll(bytes) } catch { abandon(); throw error }
        next += 1
    }

    public func finish() throws {
        guard next == entries.count else {
            abandon()
            throw FlintError("\(path): \(entries.count - next) declared tensors were not written")
        }
        guard fsync(fd) == 0 else { abandon(); throw FlintError("\(temporaryPath): fsync failed") }
        close(fd)
        fd = -1
        guard rename(temporaryPath, path) == 0 else {
            abandon()
            throw FlintError("\(path): cannot rename \(temporaryPath) into place (\(String(cString: strerror(errno))))")
        }
        TemporaryFiles.unregister(temporaryPath)
        finished = true
    }

    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        if !finished && !temporaryPath.isEmpty { TemporaryFiles.remove(temporaryPath) }
        finished = true
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, min(left, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw FlintError("\(temporaryPath): write failed (\(String(cString: strerror(errno))))")
            }
            p += n
            left -= n
        }
    }
}
