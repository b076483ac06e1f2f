// A safetensors file (huggingface/safetensors), memory-mapped. Layout: an 8-byte little-endian header length N,
// N bytes of UTF-8 JSON (`name → {dtype, shape, data_offsets: [begin, end)}` plus an optional `__metadata__`
// string map), then the data section, whose offsets are relative to its start.
//
// Validation follows the reference implementation (`src/tensor.rs`, `read_metadata` / `Metadata::validate`):
// header ≤ 100 000 000 bytes and inside the file; tensors sorted by offsets cover the data section exactly —
// contiguous, no holes, no overlaps — with `end - begin == numel × dtype size`, and the data section ends at the
// file's end. We also reject duplicate names (the reference's serde map would silently keep one).
import Foundation
import FlintFormat

public final class SafetensorsFile: CheckpointReader, @unchecked Sendable {
    /// The reference implementation's header size limit.
    public static let maxHeaderLength = 100_000_000

    public let path: String
    public var format: String { "safetensors" }
    public var fileSize: Int64 { Int64(file.bytes.count) }
    public let metadata: [String: String]
    /// Every tensor, in the order of its data in the file.
    public let tensorInfos: [CheckpointTensorInfo]
    /// Length of the JSON header (N); the data section starts at byte `8 + headerLength`.
    public let headerLength: Int

    private let file: MappedFile
    private let index: [String: Int]
    /// Aligned copies handed out for tensors whose data is not aligned to the element size in the file.

    /// Maps the file and validates its header. Touches only the header bytes.
    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let bytes = file.bytes
        let size = bytes.count

        guard size >= 8 else {
            throw FlintError(.corrupt, "\(path): truncated safetensors file: \(size) bytes, but the file must start with an "
                + "8-byte header length")
        }
        let declared = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard declared <= UInt64(SafetensorsFile.maxHeaderLength) else {
            throw FlintError(.corrupt, "\(path): safetensors header length \(declared) exceeds the limit of "
                + "\(SafetensorsFile.maxHeaderLength) bytes (the file is \(size) bytes; not a safetensors file?)")
        }
        let n = Int(declared)
        guard 8 + n <= size else {
            throw FlintError(.corrupt, "\(path): safetensors header length \(n) runs beyond the end of the file "
                + "(header would end at byte \(8 + n), the file is \(size) bytes)")
        }
        headerLength = n
        let dataStart = 8 + n
        let dataSize = size - dataStart

        let json: JSONValue
        do {
            json = try JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart]))
        } catch let e as JSONParseError {
            if e.message.hasPrefix("duplicate key") {
                throw FlintError(.corrupt, "\(path): safetensors header has a duplicate tensor name: \(e.message) "
                    + "(at header byte \(e.offset)); every name must be unique")
            }
            throw FlintError(.corrupt, "\(path): safetensors header is not valid JSON: \(e.message) at header byte "
                + "\(e.offset) (file byte \(8 + e.offset))")
        }
        guard case .object(let members) = json else {
            throw FlintError(.corrupt, "\(path): safetensors header must be a JSON object, got \(json.kindDescription)")
        }

        var metadata: [String: String] = [:]
        struct Entry { let name: String; let dtype: String; let shape: [Int]; let begin: Int; let end: Int; let bits: Int }
        var entries: [Entry] = []
        entries.reserveCapacity(members.count)
        for (name, value) in members {
            if name == "__metadata__" {
                if value.isNull { continue }  // the reference reads `null` as "no metadata"
                guard case .object(let pairs) = value else {
                    throw FlintError(.corrupt, "\(path): safetensors __metadata__ must be an object of strings, got \(value.kindDescription)")
                }
                for (k, v) in pairs {
                    guard case .string(let s) = v else {
                        throw FlintError(.corrupt, "\(path): safetensors __metadata__ entry \"\(k)\" must be a string, got \(v.kindDescription)")
                    }
                    metadata[k] = s
                }
                continue
            }
            let at = "\(path): tensor '\(name)'"
            guard case .object = value else {
                throw FlintError(.corrupt, "\(at): header entry must be an object with dtype, shape and data_offsets, got \(value.kindDescription)")
            }
            guard case .string(let dtype)? = value["dtype"] else {
                throw FlintError(.corrupt, "\(at): header entry needs a string \"dtype\", got \(value["dtype"]?.kindDescription ?? "nothing")")
            }
            guard let bits = CheckpointDType.safetensorsBits[dtype] else {
                throw FlintError(.corrupt, "\(at): unknown dtype \"\(dtype)\"; safetensors dtypes are "
                    + CheckpointDType.safetensorsBits.keys.sorted().joined(separator: ", "))
            }
            guard case .array(let dims)? = value["shape"] else {
                throw FlintError(.corrupt, "\(at): header entry needs an array \"shape\", got \(value["shape"]?.kindDescription ?? "nothing")")
            }
            var shape: [Int] = []
            for (axis, d) in dims.enumerated() {
                guard let v = d.exactInteger else {
                    throw FlintError(.corrupt, "\(at): shape dimension \(axis) must be an integer, got \(d.kindDescription)")
                }
                guard v >= 0 else {
                    throw FlintError(.corrupt, "\(at): shape dimension \(axis) is \(v); dimensions must be non-negative")
                }
                shape.append(Int(v))
            }
            guard case .array(let offs)? = value["data_offsets"], offs.count == 2 else {
                throw FlintError(.corrupt, "\(at): header entry needs \"data_offsets\" as [begin, end], got "
                    + (value["data_offsets"]?.kindDescription ?? "nothing"))
            }
            guard let b = offs[0].exactInteger, let e = offs[1].exactInteger, b >= 0, e >= 0 else {
                throw FlintError(.corrupt, "\(at): data_offsets must be two non-negative integers, got [\(offs[0].kindDescription), \(offs[1].kindDescription)]")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: Int(b), end: Int(e), bits: bits))
        }

        // The data section must be covered in offset order, exactly. Sorting by (begin, end) mirrors the
        // reference, which accepts any key order in the JSON.
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var infos: [CheckpointTensorInfo] = []
        infos.reserveCapacity(entries.count)
        var expectedBegin = 0
        var previous: String? = nil
        for t in entries {
            let at = "\(path): tensor '\(t.name)'"
            if t.end < t.begin {
                throw FlintError(.corrupt, "\(at): data_offsets [\(t.begin), \(t.end)) end before they begin")
            }
            if t.begin > expectedBegin {
                throw FlintError(.corrupt, "\(at): data_offsets [\(t.begin), \(t.end)) leave a hole: data bytes "
                    + "[\(expectedBegin), \(t.begin)) belong to no tensor (expected this tensor to begin at \(expectedBegin)"
                    + (previous.map { ", where '\($0)' ends" } ?? ", the start of the data") + ")")
            }
            if t.begin < expectedBegin {
                throw FlintError(.corrupt, "\(at): data_offsets [\(t.begin), \(t.end)) overlap "
                    + (previous.map { "tensor '\($0)', which ends at \(expectedBegin)" } ?? "another tensor")
                    + " (expected this tensor to begin at \(expectedBegin))")
            }
            var count = 1
            for d in t.shape {
                let (m, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow else { throw FlintError(.corrupt, "\(at): shape \(t.shape) has more elements than can be counted (overflow)") }
                count = m
            }
            // Whole-byte dtypes multiply by bytes (bits could overflow first); sub-byte ones must fill whole bytes.
            let needed: Int
            if t.bits % 8 == 0 {
                let (bytes, overflow) = count.multipliedReportingOverflow(by: t.bits / 8)
                guard !overflow else { throw FlintError(.corrupt, "\(at): shape \(t.shape) × \(t.dtype) overflows the byte count") }
                needed = bytes
            } else {
                let (bitCount, overflow) = count.multipliedReportingOverflow(by: t.bits)
                guard !overflow else { throw FlintError(.corrupt, "\(at): shape \(t.shape) × \(t.dtype) overflows the byte count") }
                guard bitCount % 8 == 0 else {
                    throw FlintError(.corrupt, "\(at): \(t.dtype) shape \(t.shape) does not fill whole bytes (\(bitCount) bits)")
                }
                needed = bitCount / 8
            }
            guard t.end - t.begin == needed else {
                throw FlintError(.corrupt, "\(at): data_offsets [\(t.begin), \(t.end)) span \(t.end - t.begin) bytes, but "
                    + "\(t.dtype) shape \(t.shape) needs \(needed) bytes (\(count) elements of \(t.bits) bits)")
            }
            guard t.end <= dataSize else {
                // Offsets may be near Int.max here, so the message adds nothing to them.
                throw FlintError(.corrupt, "\(at): truncated file: data_offsets [\(t.begin), \(t.end)) run past the end of the "
                    + "data section, which holds only \(dataSize) bytes (data starts at file byte \(dataStart), the file "
                    + "is only \(size) bytes)")
            }
            infos.append(CheckpointTensorInfo(name: t.name, dtype: t.dtype,
                                              storage: CheckpointDType.storage(safetensors: t.dtype),
                                              shape: t.shape, byteCount: needed, file: path,
                                              fileOffset: dataStart + t.begin))
            expectedBegin = t.end
            previous = t.name
        }
        guard expectedBegin == dataSize else {
            throw FlintError(.corrupt, "\(path): the tensors' data ends at file byte \(dataStart + expectedBegin), but the file is "
                + "\(size) bytes: \(dataSize - expectedBegin) trailing bytes belong to no tensor "
                + "(the data section must end exactly at the end of the file)")
        }

        self.metadata = metadata
        self.tensorInfos = infos
        var index: [String: Int] = [:]
        for (i, info) in infos.enumerated() { index[info.name] = i }
        self.index = index
    }

    public func tensorInfo(_ name: String) -> CheckpointTensorInfo? {
        index[name].map { tensorInfos[$0] }
    }

    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let i = index[name] else {
            throw FlintError(.notFound, "\(path): no tensor '\(name)' in this safetensors file (\(tensorInfos.count) tensors)")
        }
        let info = tensorInfos[i]
        return UnsafeRawBufferPointer(rebasing: file.bytes[info.fileOffset..<(info.fileOffset + info.byteCount)])
    }

    /// A zero-copy view into the mapped file (`owner` is this file). Only when the data is not aligned to its
    /// element size in the file does the view point at an aligned copy made once and kept.
    public func tensor(_ name: String) throws -> TensorView {
        guard let i = index[name] else {
            throw FlintError(.notFound, "\(path): no tensor '\(name)' in this safetensors file (\(tensorInfos.count) tensors)")
        }
        let info = tensorInfos[i]
        guard let storage = info.storage else {
            throw FlintError(.unsupported, "\(path): tensor '\(name)' has dtype \(info.dtype), which Flint does not read "
                + "(supported: F32, F16, BF16)")
        }
        return try TensorBuffer.view(name: name, storage: storage, shape: info.shape, bytes: try rawBytes(name),
                                     owner: self)
    }
}
