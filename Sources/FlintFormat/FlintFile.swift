// Reads a .flint file through mmap. The whole header, table and metadata are validated against the file size
// (Formats/FLINT.md, "What a reader must reject") before any tensor is handed out; tensors are zero-copy views.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Section positions from the header.
public struct FlintHeader: Sendable, Equatable {
    public var formatVersion: UInt32
    public var tensorCount: Int
    public var dataOffset: Int, dataSize: Int
    public var tableOffset: Int, tableSize: Int
    public var metadataOffset: Int, metadataSize: Int
    public var tokenizerOffset: Int, tokenizerSize: Int
    public var fileSize: Int
    public var sectionsChecksum: UInt64
}

public final class FlintFile: WeightSource, @unchecked Sendable {
    public let path: String
    public let header: FlintHeader
    /// The metadata, validated at open — except `calibration`, which is left nil here: its per-channel smoothing
    /// scales are most of the metadata of a big model (643 072 numbers, 6.3 MB, at flan-t5-xl) and
    /// decoding them took most of the open. Read it with `calibration()`; `isSmoothed` tells without decoding.
    public let metadata: FlintMetadata
    /// Tensor records in table order.
    public let records: [TensorRecord]
    private let index: [String: Int]
    private let file: MappedFile
    /// Where the `calibration` value lies in the file (absolute offsets), when the metadata has one.
    private let calibrationRange: Range<Int>?
    /// Whether the calibration object has a non-null `smoothing` (found at open without decoding it).
    public let isSmoothed: Bool
    private let calibrationLock = NSLock()
    private var decodedCalibration: CalibrationSummary?? = nil

    public var config: T5Config { metadata.config }
    public var sourceDescription: String { path }
    public var tensorNames: [String] { records.map(\.name) }
    public var holdsQuantizedWeights: Bool { records.contains { !$0.storage.isFloat } }
    /// The metadata's `generation` (validated at open).
    public func generationDefaults() throws -> GenerationDefaults? { metadata.generation }
    public var fileSize: Int { file.count }

    public var tokenizerInfo: TokenizerInfo? { header.tokenizerSize == 0 ? nil : metadata.tokenizer ?? TokenizerInfo() }
    public var tokenizerModel: [UInt8]? {
        header.tokenizerSize == 0 ? nil : Array(file.slice(header.tokenizerOffset, header.tokenizerSize))
    }

    /// Opens and validates `path`. Throws a FlintError naming the file and the offset or tensor at fault.
    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        self.file = file
        let header = try FlintFile.readHeader(file)
        self.header = header
        let records = try FlintFile.readTable(file, header)
        var index: [String: Int] = [:]
        for (i, r) in records.enumerated() {
            guard index.updateValue(i, forKey: r.name) == nil else {
                throw FlintError(.corrupt, "\(path): tensor table: duplicate tensor name \"\(r.name)\"")
            }
        }
        try FlintFile.checkRegions(path, records, header)
        self.records = records
        self.index = index
        let (metadata, calibration) = try FlintFile.readMetadata(file, header, index, records)
        self.metadata = metadata
        calibrationRange = calibration.map { ($0.value.lowerBound + header.metadataOffset)..<($0.value.upperBound + header.metadataOffset) }
        isSmoothed = calibration?.smoothed ?? false
    }

    /// The `calibration` metadata (activation statistics and smoothing folds; nil for a data-free conversion),
    /// decoded on first use and kept. Throws a FlintError naming the file and offset when it does not decode.
    public func calibration() throws -> CalibrationSummary? {
        calibrationLock.lock()
        defer { calibrationLock.unlock() }
        if let decodedCalibration { return decodedCalibration }
        guard let range = calibrationRange else {
            decodedCalibration = .some(nil)
            return nil
        }
        let json = Data(file.slice(range.lowerBound, range.count))
        let value: CalibrationSummary?
        do {
            value = try JSONDecoder().decode(CalibrationSummary?.self, from: json)
        } catch let e as DecodingError {
            throw FlintError("\(path): metadata calibration at offset \(range.lowerBound): \(describe(e))")
        } catch {
            throw FlintError("\(path): metadata calibration at offset \(range.lowerBound) is not valid JSON")
        }
        decodedCalibration = .some(value)
        return value
    }

    // MARK: WeightSource

    public func record(_ name: String) -> TensorRecord? {
        if let i = index[name] { return records[i] }
        if let target = metadata.aliases[name], let i = index[target] { return records[i] }
        return nil
    }

    public func tensor(_ name: String) throws -> TensorView {
        var resolved = record(name)
        // Tied names the file does not store (embed_tokens, a tied model's lm_head) are the embedding table.
        if resolved == nil, let stored = config.weightLayout.storedName(for: name, isStored: { index[$0] != nil }) {
            resolved = record(stored)
        }
        guard let r = resolved else { throw FlintError(.notFound, "\(path): no tensor named \"\(name)\"") }
        let scales = r.scaleSize == 0
            ? UnsafeBufferPointer<Float>(start: nil, count: 0)
            : file.slice(r.scaleOffset, r.scaleSize).bindMemory(to: Float.self)
        return TensorView(name: r.name, storage: r.storage, shape: r.shape, scheme: r.scheme,
                          data: file.slice(r.dataOffset, r.dataSize), scales: scales, layout: r.layout, owner: file)
    }

    /// Reads every tensor's bytes and compares them with its stored checksum.
    /// `progress` is called with (bytes checked, bytes total).
    public func verifyChecksums(progress: ((Int, Int) -> Void)? = nil) throws {
        let total = records.reduce(0) { $0 + $1.dataSize + $1.scaleSize }
        var done = 0
        for r in records {
            var h = XXH64()
            h.update(file.slice(r.dataOffset, r.dataSize))
            h.update(file.slice(r.scaleOffset, r.scaleSize))
            let sum = h.finalize()
            guard sum == r.checksum else {
                throw FlintError(.corrupt, "\(path): tensor \"\(r.name)\" at offset \(r.dataOffset): checksum mismatch "
                                 + "(stored \(hex(r.checksum)), computed \(hex(sum))) — the file is corrupt")
            }
            done += r.dataSize + r.scaleSize
            progress?(done, total)
        }
    }

    // MARK: Validation

    private static func readHeader(_ file: MappedFile) throws -> FlintHeader {
        let path = file.path
        guard file.count >= FlintLayout.headerSize else {
            throw FlintError(.corrupt, "\(path): \(file.count) bytes is too short for a .flint file (the header alone is \(FlintLayout.headerSize) bytes)")
        }
        guard Array(file.slice(0, 8)) == FlintLayout.magic else {
            throw FlintError(.corrupt, "\(path): not a .flint file (offset 0: expected magic 89 46 4C 49 4E 54 0D 0A, found \(Array(file.slice(0, 8)).map { String(format: "%02X", $0) }.joined(separator: " ")))")
        }
        let version = file.load(8, as: UInt32.self)
        guard version >= 1, version <= FlintLayout.formatVersion else {
            throw FlintError(.unsupported, "\(path): format version \(version) at offset 8; this flint reads versions 1 to \(FlintLayout.formatVersion) (a newer flint wrote this file?)")
        }
        let bom = file.load(12, as: UInt32.self)
        guard bom == FlintLayout.byteOrderMark else {
            throw FlintError(.corrupt, "\(path): byte order mark at offset 12 is \(hex(UInt64(bom))), expected 0x0A0B0C0D (little-endian)")
        }
        let headerSize = file.load(16, as: UInt32.self)
        guard headerSize == FlintLayout.headerSize else {
            throw FlintError(.corrupt, "\(path): header_size at offset 16 is \(headerSize), expected \(FlintLayout.headerSize)")
        }
        func u64(_ off: Int, _ field: String) throws -> Int {
            let v = file.load(off, as: UInt64.self)
            guard v <= UInt64(Int.max / 2) else { throw FlintError(.corrupt, "\(path): header field \(field) at offset \(off) is out of range (\(v))") }
            return Int(v)
        }
        let h = FlintHeader(
            formatVersion: version,
            tensorCount: Int(file.load(20, as: UInt32.self)),
            dataOffset: try u64(24, "data_offset"), dataSize: try u64(32, "data_size"),
            tableOffset: try u64(40, "table_offset"), tableSize: try u64(48, "table_size"),
            metadataOffset: try u64(56, "metadata_offset"), metadataSize: try u64(64, "metadata_size"),
            tokenizerOffset: try u64(72, "tokenizer_offset"), tokenizerSize: try u64(80, "tokenizer_size"),
            fileSize: try u64(88, "file_size"),
            sectionsChecksum: file.load(96, as: UInt64.self))
        guard h.fileSize == file.count else {
            if file.count < h.fileSize {
                throw FlintError(.corrupt, "\(path): truncated: the header says \(h.fileSize) bytes, the file has \(file.count)")
            }
            throw FlintError(.corrupt, "\(path): the header says \(h.fileSize) bytes, the file has \(file.count) (trailing bytes after the model)")
        }
        let sections = [("data", h.dataOffset, h.dataSize), ("tensor table", h.tableOffset, h.tableSize),
                        ("metadata", h.metadataOffset, h.metadataSize), ("tokenizer", h.tokenizerOffset, h.tokenizerSize)]
        for (name, off, size) in sections {
            guard off >= FlintLayout.headerSize, off <= file.count, size <= file.count - off else {
                throw FlintError(.corrupt, "\(path): \(name) section [\(off), \(off + size)) lies outside the file body [\(FlintLayout.headerSize), \(file.count))")
            }
        }
        guard h.dataOffset % FlintLayout.alignment == 0 else {
            throw FlintError(.corrupt, "\(path): data section offset \(h.dataOffset) is not aligned to \(FlintLayout.alignment)")
        }
        let nonEmpty = sections.filter { $0.2 > 0 }.sorted { $0.1 < $1.1 }
        for (a, b) in zip(nonEmpty, nonEmpty.dropFirst()) where a.1 + a.2 > b.1 {
            throw FlintError(.corrupt, "\(path): \(a.0) section [\(a.1), \(a.1 + a.2)) overlaps \(b.0) section starting at \(b.1)")
        }
        var sum = XXH64()
        sum.update(file.slice(h.tableOffset, h.tableSize))
        sum.update(file.slice(h.metadataOffset, h.metadataSize))
        sum.update(file.slice(h.tokenizerOffset, h.tokenizerSize))
        let computed = sum.finalize()
        guard computed == h.sectionsChecksum else {
            throw FlintError(.corrupt, "\(path): sections checksum mismatch (header offset 96 says \(hex(h.sectionsChecksum)), table+metadata+tokenizer hash to \(hex(computed))) — the file is corrupt")
        }
        return h
    }

    private static func readTable(_ file: MappedFile, _ h: FlintHeader) throws -> [TensorRecord] {
        let path = file.path
        var records: [TensorRecord] = []
        records.reserveCapacity(min(h.tensorCount, 100_000))
        var p = h.tableOffset
        let end = h.tableOffset + h.tableSize
        while p < end {
            let recordStart = p
            let i = records.count
            func fail(_ what: String) -> FlintError {
                FlintError(.corrupt, "\(path): tensor table record \(i) at offset \(recordStart): \(what)")
            }
            func need(_ n: Int, _ field: String) throws {
                guard n <= end - p else { throw fail("\(field) runs past the end of the table (offset \(end))") }
            }
            try need(6, "record header")
            let recordSize = Int(file.load(p, as: UInt32.self))
            let nameLength = Int(file.load(p + 4, as: UInt16.self))
            guard recordSize <= end - recordStart else {
                throw fail("record_size \(recordSize) runs past the end of the table (offset \(end))")
            }
            let recordEnd = recordStart + recordSize
            let fixed = 4 + 2 + nameLength + 1 + 1 + 2 + 4 + 4
            guard recordSize >= fixed + 40 else { throw fail("record_size \(recordSize) is smaller than its fields") }
            guard nameLength >= 1, nameLength <= FlintLayout.maxNameLength else {
                throw fail("name length \(nameLength) is outside 1…\(FlintLayout.maxNameLength)")
            }
            p += 6
            guard let name = String(validating: file.slice(p, nameLength), as: UTF8.self) else {
                throw fail("tensor name is not valid UTF-8")
            }
            p += nameLength
            func failT(_ what: String) -> FlintError {
                FlintError(.corrupt, "\(path): tensor \"\(name)\" (record \(i) at offset \(recordStart)): \(what)")
            }
            let storageCode = file.load(p, as: UInt8.self)
            let schemeCode = file.load(p + 1, as: UInt8.self)
            let layoutCode = file.load(p + 2, as: UInt8.self)
            let groupSize = Int(file.load(p + 4, as: UInt32.self))
            let nDims = Int(file.load(p + 8, as: UInt32.self))
            p += 12
            guard let storage = StorageType(rawValue: storageCode) else {
                throw failT("unknown storage type code \(storageCode) (this flint knows 0…4)")
            }
            guard nDims <= FlintLayout.maxDims else { throw failT("\(nDims) dimensions, at most \(FlintLayout.maxDims) allowed") }
            guard recordSize >= fixed + 8 * nDims + 40 else { throw fail("record_size \(recordSize) is smaller than its fields") }
            var shape: [Int] = []
            var count = 1
            for d in 0..<nDims {
                let v = file.load(p + 8 * d, as: UInt64.self)
                guard v >= 1, v <= UInt64(Int32.max) else { throw failT("dimension \(d) is \(v); expected 1…\(Int32.max)") }
                let (product, overflow) = count.multipliedReportingOverflow(by: Int(v))
                guard !overflow, product <= Int.max / 8 else { throw failT("element count overflows") }
                count = product
                shape.append(Int(v))
            }
            p += 8 * nDims
            let scheme: QuantScheme
            switch schemeCode {
            case 0:
                guard storage.isFloat else { throw failT("storage \(storage) needs a quantization scheme, found scheme 0 (float)") }
                scheme = .none
            case 3:
                guard storage == .i4 else { throw failT("scheme 3 (int4 groups) needs storage i4, found \(storage)") }
                guard PackedInt4Geometry.groupSizes.contains(groupSize) else {
                    throw failT("scheme 3 (int4 groups) with group_size \(groupSize); expected one of \(PackedInt4Geometry.groupSizes.map(String.init).joined(separator: ", "))")
                }
                scheme = .int4Group(groupSize)
            case 1:
                guard storage == .i8 else { throw failT("scheme 1 (int8) needs storage i8, found \(storage)") }
                scheme = .int8Row
            case 2:
                guard storage == .i8 else { throw failT("scheme 2 (int8 groups) needs storage i8, found \(storage)") }
                guard groupSize >= 1 else { throw failT("scheme 2 with group_size 0") }
                scheme = .int8Group(groupSize)
            default:
                throw failT("unknown quantization scheme code \(schemeCode) (this flint knows 0…3)")
            }
            func field(_ k: Int, _ fieldName: String) throws -> Int {
                let v = file.load(p + 8 * k, as: UInt64.self)
                guard v <= UInt64(Int.max / 2) else { throw failT("\(fieldName) out of range (\(v))") }
                return Int(v)
            }
            guard let layout = TensorLayout(rawValue: layoutCode) else {
                throw failT("unknown layout code \(layoutCode) (this flint knows 0…2)")
            }
            var expectedData = count * storage.byteSize
            if layout == .int8Packed16x4 {
                guard storage == .i8, let geometry = PackedInt8Geometry(shape: shape, scheme: scheme) else {
                    throw failT("layout packed16x4 needs a 2-D i8 tensor with scheme int8 or int8-gG (G a multiple of 4), found \(storage) \(shape) \(scheme)")
                }
                expectedData = geometry.byteCount
            }
            if storage == .i4 || layout == .int4Packed16x8 {
                // Int4 exists only packed: codes and f16 scales in one data region, no scale region.
                guard storage == .i4, layout == .int4Packed16x8, let geometry = PackedInt4Geometry(shape: shape, scheme: scheme) else {
                    throw failT("int4 needs storage i4, scheme int4-gG and layout int4-packed16x8 on a 2-D tensor, found \(storage) \(scheme) layout \(layout) \(shape)")
                }
                expectedData = geometry.byteCount
            }
            let r = TensorRecord(name: name, storage: storage, scheme: scheme, shape: shape, layout: layout,
                                 dataOffset: try field(0, "data_offset"), dataSize: try field(1, "data_size"),
                                 scaleOffset: try field(2, "scale_offset"), scaleSize: try field(3, "scale_size"),
                                 checksum: file.load(p + 32, as: UInt64.self))
            guard r.dataSize == expectedData else {
                throw failT("data_size \(r.dataSize) but shape \(shape) of \(storage)\(layout == .rowMajor ? "" : " in layout \(layout)") needs \(expectedData) bytes")
            }
            let expectedScales = scheme.scaleCount(shape: shape) * 4
            guard r.scaleSize == expectedScales else {
                throw failT("scale_size \(r.scaleSize) but scheme \(scheme) on shape \(shape) needs \(expectedScales) bytes")
            }
            records.append(r)
            p = recordEnd
        }
        guard records.count == h.tensorCount else {
            throw FlintError(.corrupt, "\(path): the header says \(h.tensorCount) tensors, the table holds \(records.count)")
        }
        return records
    }

    private static func checkRegions(_ path: String, _ records: [TensorRecord], _ h: FlintHeader) throws {
        var regions: [(start: Int, end: Int, what: String)] = []
        regions.reserveCapacity(records.count * 2)
        let dataEnd = h.dataOffset + h.dataSize
        for r in records {
            for (off, size, kind) in [(r.dataOffset, r.dataSize, "data"), (r.scaleOffset, r.scaleSize, "scales")] where size > 0 {
                guard off % FlintLayout.alignment == 0 else {
                    throw FlintError(.corrupt, "\(path): tensor \"\(r.name)\": \(kind) offset \(off) is not aligned to \(FlintLayout.alignment)")
                }
                guard off >= h.dataOffset, size <= dataEnd - off else {
                    throw FlintError(.corrupt, "\(path): tensor \"\(r.name)\": \(kind) [\(off), \(off + size)) lies outside the data section [\(h.dataOffset), \(dataEnd))")
                }
                regions.append((off, off + size, "tensor \"\(r.name)\" \(kind)"))
            }
        }
        regions.sort { $0.start < $1.start }
        for (a, b) in zip(regions, regions.dropFirst()) where a.end > b.start {
            throw FlintError(.corrupt, "\(path): \(a.what) [\(a.start), \(a.end)) overlaps \(b.what) starting at \(b.start)")
        }
    }

    /// The metadata with `calibration` left out (its value's byte range within the metadata is returned, for
    /// `calibration()`), and whether that value has a `smoothing`.
    private static func readMetadata(_ file: MappedFile, _ h: FlintHeader, _ index: [String: Int],
                                     _ records: [TensorRecord]) throws
        -> (FlintMetadata, (value: Range<Int>, smoothed: Bool)?) {
        let path = file.path
        let bytes = file.slice(h.metadataOffset, h.metadataSize)
        // The calibration value is cut out (replaced by null) before decoding, so its bulk is not parsed here.
        // The sections checksum already covers its bytes; its JSON is checked when calibration() decodes it.
        let calibration = MetadataScan.topLevelValue("calibration", in: bytes)
        var json = Data()
        var smoothed = false
        if let range = calibration {
            let value = UnsafeRawBufferPointer(rebasing: bytes[range])
            if let smoothing = MetadataScan.topLevelValueStart("smoothing", in: value) {
                smoothed = !MetadataScan.isNull(value[smoothing])
            }
            // Only the bytes around the value are copied (at flan-t5-xl the value is 6.3 MB, the rest 40 kB).
            json.reserveCapacity(bytes.count - range.count + 4)
            json.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[..<range.lowerBound]))
            json.append(contentsOf: Array("null".utf8))
            json.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[range.upperBound...]))
        } else {
            json = Data(bytes)
        }
        var metadata: FlintMetadata
        do {
            metadata = try JSONDecoder().decode(FlintMetadata.self, from: json)
        } catch let e as DecodingError {
            throw FlintError(.corrupt, "\(path): metadata at offset \(h.metadataOffset): \(describe(e))")
        } catch {
            throw FlintError(.corrupt, "\(path): metadata at offset \(h.metadataOffset) is not valid JSON")
        }
        let unknown = metadata.requiredFeatures.filter { !FlintLayout.knownFeatures.contains($0) }
        guard unknown.isEmpty else {
            throw FlintError(.unsupported, "\(path): the file requires features this flint does not implement: \(unknown.joined(separator: ", "))")
        }
        do { try metadata.config.validate() } catch let e as FlintError {
            throw e.with(message: "\(path): \(e.message)")
        }
        do { try metadata.generation?.validate(vocabSize: metadata.config.vocabSize) } catch let e as FlintError {
            throw e.with(message: "\(path): metadata \(e.message)")
        }
        // A config needing a feature the file does not declare would be misread by readers that predate it.
        for feature in metadata.config.requiredFeatures where !metadata.requiredFeatures.contains(feature) {
            throw FlintError(.corrupt, "\(path): the config needs required_features to list \"\(feature)\", the file lists \(metadata.requiredFeatures)")
        }
        for feature in metadata.generation?.requiredFeatures ?? [] where !metadata.requiredFeatures.contains(feature) {
            throw FlintError(.corrupt, "\(path): the generation settings need required_features to list \"\(feature)\", the file lists \(metadata.requiredFeatures)")
        }
        for feature in metadata.tokenizer?.requiredFeatures ?? [] where !metadata.requiredFeatures.contains(feature) {
            throw FlintError(.corrupt, "\(path): the tokenizer needs required_features to list \"\(feature)\", the file lists \(metadata.requiredFeatures)")
        }
        for (alias, target) in metadata.aliases.sorted(by: { $0.key < $1.key }) {
            guard index[alias] == nil else { throw FlintError(.corrupt, "\(path): alias \"\(alias)\" is also a stored tensor") }
            guard index[target] != nil else { throw FlintError(.corrupt, "\(path): alias \"\(alias)\" points to \"\(target)\", which is not stored") }
        }
        for (name, i) in index.sorted(by: { $0.value < $1.value }) {
            guard let feature = records[i].layout.requiredFeature else { continue }
            guard metadata.requiredFeatures.contains(feature) else {
                throw FlintError(.corrupt, "\(path): tensor \"\(name)\" is stored in layout \(records[i].layout), but required_features does not list \"\(feature)\"")
            }
        }
        if metadata.tokenizer != nil, h.tokenizerSize == 0 {
            throw FlintError(.corrupt, "\(path): metadata describes a tokenizer but the tokenizer section is empty")
        }
        metadata.calibration = nil
        return (metadata, calibration.map { ($0, smoothed) })
    }
}

/// A readable description of a JSON decoding error: which key, what was wrong.
func describe(_ e: DecodingError) -> String {
    func pathString(_ ctx: DecodingError.Context) -> String {
        let p = ctx.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        return p.isEmpty ? "top level" : p
    }
    switch e {
    case .keyNotFound(let key, let ctx):
        let parent = pathString(ctx)
        return "missing key \"\(key.stringValue)\"" + (ctx.codingPath.isEmpty ? "" : " in \(parent)")
    case .typeMismatch(let type, let ctx): return "\(pathString(ctx)): expected \(type)"
    case .valueNotFound(let type, let ctx): return "\(pathString(ctx)): expected \(type), found null"
    case .dataCorrupted(let ctx): return "\(pathString(ctx)): \(ctx.debugDescription)"
    @unknown default: return "\(e)"
    }
}

public func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16, uppercase: true) }
