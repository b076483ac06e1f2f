// Writes a .flint file by streaming tensors one at a time into a temporary file beside the destination, then
// the table, metadata and tokenizer, then the header; fsync, and rename over the destination. A reader never
// sees a partial file under the final name, and an abandoned writer removes its temporary file.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class FlintWriter {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32 = -1
    private var offset: Int
    private var records: [TensorRecord] = []
    /// The int8 scales of every tensor so far (record index, bytes), written together after the last tensor's
    /// elements by `finish`: a reader builds its int8 layers from the scales (and checks them) at load, and one
    /// contiguous region is a sequential read even from a cold disk, where scales after each tensor were one
    /// random read per tensor (hundreds at flan-t5-xl). A few MB even at flan-t5-xxl.
    private var pendingScales: [(record: Int, bytes: [UInt8])] = []
    private var names: Set<String> = []
    private var finished = false
    /// The layout int8 matrices are stored in: `.int8Packed16x4` (the default, what the kernels read fastest)
    /// packs every 2-D int8 tensor that can be packed; `.rowMajor` stores them as given.
    public let int8Layout: TensorLayout

    /// Creates the temporary file next to `path` (same directory, so the final rename is atomic).
    public init(path: String, int8Layout: TensorLayout = .int8Packed16x4) throws {
        self.path = path
        self.int8Layout = int8Layout
        // Registered for removal on SIGINT/SIGTERM; stale ones of dead processes are removed first.
        (temporaryPath, fd) = try TemporaryFiles.create(besides: path)
        offset = 0
        do {
            // The header is written last; reserve its bytes.
            try writeBytes([UInt8](repeating: 0, count: FlintLayout.headerSize))
        } catch {
            abandon()
            throw error
        }
    }

    deinit { if !finished { abandon() } }

    /// A unique temporary name beside `path` (`TemporaryFiles.name`); register it if you create it.
    public static func temporaryName(for path: String) -> String { TemporaryFiles.name(for: path) }

    /// Appends one tensor: its element bytes, aligned to 64; (int8 schemes) its float32 scales are kept until
    /// `finish`, which writes every tensor's scales together after the last tensor.
    /// `layout` says how `data` is ordered: row-major data is packed when the writer's `int8Layout` asks for it;
    /// data already packed (copied from another file) is stored as it is.
    public func addTensor(name: String, storage: StorageType, shape: [Int], scheme: QuantScheme,
                          data: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                          layout given: TensorLayout = .rowMajor) throws {
        precondition(!finished, "FlintWriter used after finish()")
        let nameBytes = name.utf8.count
        guard nameBytes >= 1, nameBytes <= FlintLayout.maxNameLength else {
            throw FlintError(.invalidArgument, "\(path): tensor name \"\(name.prefix(80))\" must be 1…\(FlintLayout.maxNameLength) UTF-8 bytes")
        }
        guard names.insert(name).inserted else { throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\" written twice") }
        guard shape.count <= FlintLayout.maxDims, shape.allSatisfy({ $0 >= 1 }) else {
            throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\": shape \(shape) is not storable (1…\(FlintLayout.maxDims) dims, each ≥ 1)")
        }
        let count = shape.reduce(1, *)
        if given == .int8Packed16x4 {
            guard storage == .i8, let geometry = PackedInt8Geometry(shape: shape, scheme: scheme) else {
                throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\": layout packed16x4 needs a 2-D i8 tensor with scheme int8 or int8-gG (G a multiple of 4), found \(storage) \(shape) \(scheme)")
            }
            guard data.count == geometry.byteCount else {
                throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\": \(data.count) bytes given, packed16x4 \(shape) \(scheme) needs \(geometry.byteCount)")
            }
        } else if given == .int4Packed16x8 || storage == .i4 {
            guard storage == .i4, given == .int4Packed16x8, let geometry = PackedInt4Geometry(shape: shape, scheme: scheme) else {
                throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\": int4 needs storage i4, scheme int4-g32/g64/g128 and layout int4-packed16x8 on a 2-D tensor, found \(storage) \(shape) \(scheme) layout \(given)")
            }
            guard data.count == geometry.byteCount, scales.count == 0 else {
                throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\": \(data.count) bytes and \(scales.count) scale bytes given, int4-packed16x8 \(shape) \(scheme) needs \(geometry.byteCount) and 0 (the scales are in the packed data)")
            }
        } else if data.count != count * storage.byteSize {
            throw FlintError(.shapeMismatch, "\(path): tensor \"\(name)\": \(data.count) bytes given, shape \(shape) of \(storage) needs \(count * storage.byteSize)")
        }
        switch scheme {
        case .none: guard storage.isFloat else { throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\": \(storage) storage needs a quantization scheme") }
        case .int8Row, .int8Group: guard storage == .i8 else { throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\": scheme \(scheme) needs i8 storage") }
        case .int4Group: break  // checked with the layout above
        }
        let scaleBytes = scheme.scaleCount(shape: shape) * 4
        guard scales.count == scaleBytes else {
            throw FlintError(.invalidArgument, "\(path): tensor \"\(name)\": \(scales.count) scale bytes given, scheme \(scheme) on \(shape) needs \(scaleBytes)")
        }
        // Packable int8 matrices are re-laid (the given bytes are row-major) with their weight sums appended.
        var layout = given
        var packed: UnsafeMutableRawBufferPointer? = nil
        defer { packed?.deallocate() }
        if given == .rowMajor, int8Layout == .int8Packed16x4, storage == .i8, let geometry = PackedInt8Geometry(shape: shape, scheme: scheme) {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: geometry.byteCount, alignment: 64)
            packed = buffer
            geometry.pack(data.bindMemory(to: Int8.self), into: buffer)
            layout = .int8Packed16x4
        }
        let stored = packed.map { UnsafeRawBufferPointer($0) } ?? data
        var checksum = XXH64()
        try pad()
        let dataOffset = offset
        try writeBytes(stored)
        checksum.update(stored)
        if scaleBytes > 0 {
            checksum.update(scales)
            pendingScales.append((records.count, Array(scales)))
        }
        // scale_offset is set when finish() writes the scales.
        records.append(TensorRecord(name: name, storage: storage, scheme: scheme, shape: shape, layout: layout,
                                    dataOffset: dataOffset, dataSize: stored.count,
                                    scaleOffset: 0, scaleSize: scaleBytes, checksum: checksum.finalize()))
    }

    public var tensorCount: Int { records.count }
    /// Data and scale bytes the last `addTensor` stored (an int8 matrix grows when packed).
    public var lastTensorBytes: Int { records.last.map { $0.dataSize + $0.scaleSize } ?? 0 }
    public var bytesWritten: Int { offset }

    /// Writes table, metadata and tokenizer, then the header; syncs and renames onto `path`.
    public func finish(metadata: FlintMetadata, tokenizer: [UInt8]?) throws {
        precondition(!finished, "FlintWriter.finish() called twice")
        do {
            for (alias, target) in metadata.aliases {
                guard !names.contains(alias) else { throw FlintError(.invalidArgument, "\(path): alias \"\(alias)\" is also a stored tensor") }
                guard names.contains(target) else { throw FlintError(.invalidArgument, "\(path): alias \"\(alias)\" points to \"\(target)\", which was not written") }
            }
            for (index, bytes) in pendingScales {
                try pad()
                records[index].scaleOffset = offset
                try writeBytes(bytes)
            }
            pendingScales = []
            let dataOffset = FlintLayout.headerSize
            let dataSize = offset - dataOffset
            var table: [UInt8] = []
            for r in records { table += r.serialized() }
            // Layouts and generation settings old readers would misread are announced in required_features
            // (they reject the file).
            var metadata = metadata
            for feature in Set(records.compactMap(\.layout.requiredFeature)).sorted() + (metadata.generation?.requiredFeatures ?? [])
            where !metadata.requiredFeatures.contains(feature) {
                metadata.requiredFeatures.append(feature)
            }
            let encoder = JSONEncoderForMetadata.make()
            let json = try encoder(metadata)
            let tok = tokenizer ?? []

            let tableOffset = offset
            try writeBytes(table)
            let metadataOffset = offset
            try writeBytes(json)
            let tokenizerOffset = offset
            try writeBytes(tok)
            let fileSize = offset

            var sum = XXH64()
            table.withUnsafeBytes { sum.update($0) }
            json.withUnsafeBytes { sum.update($0) }
            tok.withUnsafeBytes { sum.update($0) }

            var header: [UInt8] = FlintLayout.magic
            header.appendLE(FlintLayout.formatVersion)
            header.appendLE(FlintLayout.byteOrderMark)
            header.appendLE(UInt32(FlintLayout.headerSize))
            header.appendLE(UInt32(records.count))
            for v in [dataOffset, dataSize, tableOffset, table.count, metadataOffset, json.count,
                      tokenizerOffset, tok.count, fileSize] { header.appendLE(UInt64(v)) }
            header.appendLE(sum.finalize())
            header += [UInt8](repeating: 0, count: FlintLayout.headerSize - header.count)
            try header.withUnsafeBytes { h in
                guard pwrite(fd, h.baseAddress, h.count, 0) == h.count else {
                    throw FlintError(.io, "\(temporaryPath): cannot write the header (\(String(cString: strerror(errno))))")
                }
            }
            guard fsync(fd) == 0 else { throw FlintError(.io, "\(temporaryPath): fsync failed (\(String(cString: strerror(errno))))") }
            close(fd)
            fd = -1
            guard rename(temporaryPath, path) == 0 else {
                throw FlintError(.io, "\(path): cannot rename \(temporaryPath) into place (\(String(cString: strerror(errno))))")
            }
            TemporaryFiles.unregister(temporaryPath)
            finished = true
        } catch {
            abandon()
            throw error
        }
    }

    /// Closes and removes the temporary file. Safe to call more than once.
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        if !finished { TemporaryFiles.remove(temporaryPath) }
        finished = true
    }

    // MARK: Low-level writing

    private func pad() throws {
        let target = FlintLayout.aligned(offset)
        if target > offset { try writeBytes([UInt8](repeating: 0, count: target - offset)) }
    }

    private func writeBytes(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeBytes($0) }
    }

    private func writeBytes(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = write(fd, p, min(left, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw FlintError(.io, "\(temporaryPath): write failed at offset \(offset) (\(String(cString: strerror(errno))))")
            }
            p += n
            left -= n
            offset += n
        }
    }
}

import Foundation

enum JSONEncoderForMetadata {
    /// Sorted keys, so the same model gives the same bytes.
    static func make() -> (FlintMetadata) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return { Array(try encoder.encode($0)) }
    }
}
