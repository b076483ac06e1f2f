// Flax `flax_model.msgpack` checkpoints (transformers' FlaxPreTrainedModel.save_pretrained), read natively and
// presented under Hugging Face's PyTorch names and shapes.
//
// The file (flax `serialization.to_bytes`) is one msgpack map of nested string-keyed maps whose leaves are
// arrays: ext type 1 (3 for numpy scalars) whose payload is the msgpack array `(shape, dtype name, C-order
// bytes)`, the dtype named as numpy does (`float32`, `bfloat16`, …). Arrays over 2³⁰ bytes are split into
// `{"__msgpack_chunked_array__": true, "shape": {"0": d0, …}, "chunks": {"0": 1-D array, …}}`.
//
// Names follow transformers' `load_flax_weights_in_pytorch_model` (the mapping lives in FlintFormat's
// T5WeightLayout): the path joined with `.`; a `kernel` becomes
// `weight`, transposed (`[in, out]` → `[out, in]`); `embedding` and `scale` become `weight`. Untransposed,
// unchunked arrays are viewed in place (copied only when their bytes are not aligned to the element size);
// the others are materialised one tensor at a time, in memory the returned view owns.
import Foundation
import FlintFormat

public enum FlaxMsgpackCheckpoint {
    public static let fileName = "flax_model.msgpack"
    public static let indexFileName = "flax_model.msgpack.index.json"

    /// The readers for a model folder's Flax weights: `flax_model.msgpack`, or else the shards that
    /// `flax_model.msgpack.index.json` lists (each checked against the index). A path to either file works too.
    public static func open(folder: String) throws -> [CheckpointReader] {
        try ConvertedTensors.openWeights(folder: folder, fileName: fileName, indexFileName: indexFileName,
                                         description: "Flax", openFile: { try FlaxMsgpackFile(path: $0) },
                                         openIndex: openIndex)
    }

    private static func openIndex(_ index: String, in folder: String) throws -> [CheckpointReader] {
        try ConvertedTensors.openShards(indexPath: index, folder: folder, format: "Flax",
                                        ptName: { pytorchName(flaxPath: $0.split(separator: "/", omittingEmptySubsequences: false).map(String.init)).name },
                                        open: { try FlaxMsgpackFile(path: $0) })
    }

    /// The Hugging Face (PyTorch) name of a Flax parameter path, and whether its array is stored transposed
    /// (`T5WeightLayout.hfName(flaxPath:)`, transformers' `load_flax_weights_in_pytorch_model`).
    public static func pytorchName(flaxPath: [String]) -> (name: String, transposed: Bool) {
        T5WeightLayout.hfName(flaxPath: flaxPath)
    }

    /// numpy dtype names → element size and the Flint storage type (nil where Flint does not compute).
    static let dtypes: [String: (size: Int, storage: StorageType?)] = [
        "float32": (4, .f32), "float16": (2, .f16), "bfloat16": (2, .bf16), "float64": (8, nil),
        "int8": (1, nil), "uint8": (1, nil), "int16": (2, nil), "uint16": (2, nil), "int32": (4, nil),
        "uint32": (4, nil), "int64": (8, nil), "uint64": (8, nil), "bool": (1, nil),
        "complex64": (8, nil), "complex128": (16, nil),
    ]
}

/// One `flax_model.msgpack` file (or shard), memory-mapped.
public final class FlaxMsgpackFile: CheckpointReader, @unchecked Sendable {
    public let path: String
    public var format: String { "flax-msgpack" }
    public var fileSize: Int64 { Int64(file.count) }
    public var metadata: [String: String] { [:] }
    /// Every tensor under its PyTorch name and shape, in the order of its data in the file. For transposed
    /// tensors `fileOffset` is where the stored `[in, out]` bytes start; for chunked arrays, the first chunk's.
    public let tensorInfos: [CheckpointTensorInfo]

    struct Entry {
        /// The Flax parameter path, `/`-joined, for messages.
        let flaxPath: String
        /// Shape as stored (before any transpose).
        let storedShape: [Int]
        let elementSize: Int
        /// Byte ranges of the data, in order: one for a plain array, one per chunk for a chunked one.
        let pieces: [(offset: Int, count: Int)]
        let transposed: Bool
    }

    private let file: MappedFile
    private let entries: [Entry]
    private let index: [String: Int]
    private let lock = NSLock()
    /// PyTorch-layout copies made for `rawBytes` of tensors that cannot be viewed in place, kept while the
    /// reader lives (as `rawBytes` promises).
    private var rawCopies: [String: TensorBuffer] = [:]

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let bytes = file.bytes
        guard bytes.count > 0 else { throw FlintError(.corrupt, "\(path): empty file; expected a Flax msgpack checkpoint") }

        let root: MsgpackValue
        do {
            root = try MsgpackDecoder(bytes).decodeSingle()
        } catch let e as MsgpackError {
            throw FlintError(.corrupt, "\(path): not a valid msgpack file: \(e.message) (at byte \(e.offset) of \(bytes.count))")
        }
        guard let top = root.stringKeyedEntries else {
            throw FlintError(.corrupt, "\(path): a Flax checkpoint must be a msgpack map of parameter names, got \(root.kindDescription)")
        }
        // transformers drops the "params"/"batch_stats" level of models with batch norm.
        let dropFirst = top.contains { $0.key == "batch_stats" }

        var infos: [CheckpointTensorInfo] = []
        var entries: [Entry] = []
        var index: [String: Int] = [:]

        func add(_ flaxPath: [String], _ array: ParsedArray) throws {
            let joined = flaxPath.joined(separator: "/")
            let at = "\(path): array '\(joined)'"
            let (name, kernel) = FlaxMsgpackCheckpoint.pytorchName(flaxPath: dropFirst ? Array(flaxPath.dropFirst()) : flaxPath)
            guard !name.isEmpty else { throw FlintError(.corrupt, "\(at): empty parameter name") }
            let transposed = kernel && array.shape.count == 2
            if kernel && array.shape.count > 2 {
                throw FlintError(.unsupported, "\(at): a \(array.shape.count)-D kernel \(array.shape); Flint reads linear kernels "
                    + "(2-D) only (T5 has no convolutions)")
            }
            let ptShape = transposed ? [array.shape[1], array.shape[0]] : array.shape
            guard index[name] == nil else {
                throw FlintError(.corrupt, "\(at): maps to tensor '\(name)', which another array of this file also maps to")
            }
            index[name] = infos.count
            infos.append(CheckpointTensorInfo(name: name, dtype: array.dtype, storage: array.storage, shape: ptShape,
                                              byteCount: array.byteCount, file: path,
                                              fileOffset: array.pieces.first?.offset ?? 0))
            entries.append(Entry(flaxPath: joined, storedShape: array.shape, elementSize: array.elementSize,
                                 pieces: array.pieces, transposed: transposed))
        }

        func walk(_ entriesOfMap: [(key: String, value: MsgpackValue)], _ prefix: [String]) throws {
            for (key, value) in entriesOfMap {
                let here = prefix + [key]
                switch value {
                case .ext:
                    try add(here, try FlaxMsgpackFile.parseArray(value, at: here, bytes: bytes, path: path))
                case .map:
                    guard let sub = value.stringKeyedEntries else {
                        throw FlintError(.corrupt, "\(path): '\(here.joined(separator: "/"))' is a map with a non-string key; "
                            + "Flax parameter trees have string keys")
                    }
                    if sub.contains(where: { $0.key == "__msgpack_chunked_array__" }) {
                        try add(here, try FlaxMsgpackFile.parseChunked(sub, at: here, bytes: bytes, path: path))
                    } else {
                        try walk(sub, here)  // empty maps hold no parameters (flatten_dict drops them)
                    }
                default:
                    throw FlintError(.corrupt, "\(path): '\(here.joined(separator: "/"))' is \(value.kindDescription); expected an "
                        + "array (msgpack ext type 1) or a map of parameters")
                }
            }
        }
        if top.contains(where: { $0.key == "__msgpack_chunked_array__" }) {
            throw FlintError(.corrupt, "\(path): the whole file is one chunked array, not a tree of named parameters")
        }
        try walk(top, [])
        guard !infos.isEmpty else { throw FlintError(.corrupt, "\(path): the Flax checkpoint holds no arrays") }
        self.tensorInfos = infos
        self.entries = entries
        self.index = index
        // Reading each array's header maps the file pages around it (whole large folios on recent kernels:
        // half of a 3 GB checkpoint); none of them is needed now.
        releaseMappedPages(bytes)
    }

    struct ParsedArray {
        let shape: [Int]
        let dtype: String
        let elementSize: Int
        let storage: StorageType?
        let byteCount: Int
        let pieces: [(offset: Int, count: Int)]
    }

    /// An ext-type-1 (or 3, numpy scalar) array: payload `(shape, dtype name, bytes)`.
    private static func parseArray(_ value: MsgpackValue, at flaxPath: [String], bytes: UnsafeRawBufferPointer,
                                   path: String) throws -> ParsedArray {
        let at = "\(path): array '\(flaxPath.joined(separator: "/"))'"
        guard case .ext(let type, let offset, let count) = value else {
            throw FlintError(.corrupt, "\(at): expected an array (msgpack ext type 1), got \(value.kindDescription)")
        }
        guard type == 1 || type == 3 else {
            throw FlintError(.corrupt, "\(at): msgpack ext type \(type) at byte \(offset); Flax arrays are ext type 1 "
                + "(3 for numpy scalars)")
        }
        let payload: MsgpackValue
        do {
            payload = try MsgpackDecoder(bytes).decodeSingle(in: offset..<(offset + count))
        } catch let e as MsgpackError {
            throw FlintError(.corrupt, "\(at): bad array payload: \(e.message) (at byte \(e.offset))")
        }
        guard case .array(let parts) = payload, parts.count == 3 else {
            throw FlintError(.corrupt, "\(at): array payload at byte \(offset) must be (shape, dtype, data), got \(payload.kindDescription)")
        }
        guard case .array(let dims) = parts[0] else {
            throw FlintError(.corrupt, "\(at): shape must be an array of integers, got \(parts[0].kindDescription)")
        }
        var shape: [Int] = []
        for (axis, d) in dims.enumerated() {
            guard let v = d.nonNegativeInt else {
                throw FlintError(.corrupt, "\(at): shape dimension \(axis) must be a non-negative integer, got \(d.kindDescription)")
            }
            shape.append(v)
        }
        let dtype: String
        switch parts[1] {
        case .string(let s): dtype = s
        case .binary(let o, let n):
            dtype = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[o..<(o + n)]), as: UTF8.self)
        default:
            throw FlintError(.corrupt, "\(at): dtype must be a string, got \(parts[1].kindDescription)")
        }
        guard let known = FlaxMsgpackCheckpoint.dtypes[dtype] else {
            throw FlintError(.corrupt, "\(at): unknown dtype \"\(dtype)\"; expected a numpy dtype name such as float32, "
                + "float16 or bfloat16")
        }
        guard case .binary(let dataOffset, let dataCount) = parts[2] else {
            throw FlintError(.corrupt, "\(at): data must be msgpack binary, got \(parts[2].kindDescription)")
        }
        guard let needed = ConvertedTensors.byteCount(shape, elementSize: known.size) else {
            throw FlintError(.corrupt, "\(at): shape \(shape) × \(dtype) overflows the byte count")
        }
        guard needed == dataCount else {
            throw FlintError(.corrupt, "\(at): \(dtype) shape \(shape) needs \(needed) bytes, but the data at byte \(dataOffset) "
                + "holds \(dataCount)")
        }
        return ParsedArray(shape: shape, dtype: dtype, elementSize: known.size, storage: known.storage,
                           byteCount: needed, pieces: [(dataOffset, dataCount)])
    }

    /// flax `_unchunk`: `shape` and `chunks` are maps keyed "0"…"n-1"; the chunks are 1-D arrays of one dtype
    /// whose concatenation is the array in C order.
    private static func parseChunked(_ map: [(key: String, value: MsgpackValue)], at flaxPath: [String],
                                     bytes: UnsafeRawBufferPointer, path: String) throws -> ParsedArray {
        let at = "\(path): chunked array '\(flaxPath.joined(separator: "/"))'"
        func member(_ key: String) -> MsgpackValue? { map.first { $0.key == key }?.value }
        func tuple(_ key: String) throws -> [MsgpackValue] {
            guard let value = member(key), let entries = value.stringKeyedEntries else {
                throw FlintError(.corrupt, "\(at): needs \"\(key)\" as a map {\"0\": …, \"1\": …}, got "
                    + (member(key)?.kindDescription ?? "nothing"))
            }
            var byIndex: [String: MsgpackValue] = [:]
            for e in entries { byIndex[e.key] = e.value }
            return try (0..<entries.count).map { i in
                guard let v = byIndex[String(i)] else {
                    throw FlintError(.corrupt, "\(at): \"\(key)\" has \(entries.count) entries but no key \"\(i)\"")
                }
                return v
            }
        }
        let shape = try tuple("shape").enumerated().map { axis, d -> Int in
            guard let v = d.nonNegativeInt else {
                throw FlintError(.corrupt, "\(at): shape dimension \(axis) must be a non-negative integer, got \(d.kindDescription)")
            }
            return v
        }
        let chunks = try tuple("chunks").enumerated().map { i, v in
            try parseArray(v, at: flaxPath + ["chunks", String(i)], bytes: bytes, path: path)
        }
        guard let first = chunks.first else { throw FlintError(.corrupt, "\(at): has no chunks") }
        var total = 0
        for (i, c) in chunks.enumerated() {
            guard c.dtype == first.dtype else {
                throw FlintError(.corrupt, "\(at): chunk \(i) is \(c.dtype) but chunk 0 is \(first.dtype)")
            }
            guard c.shape.count == 1 else {
                throw FlintError(.corrupt, "\(at): chunk \(i) has shape \(c.shape); chunks are 1-D")
            }
            total += c.shape[0]  // each chunk's bytes were checked against the file, so this cannot overflow
        }
        guard let count = ConvertedTensors.elementCount(shape), count == total,
              let byteCount = ConvertedTensors.byteCount(shape, elementSize: first.elementSize) else {
            throw FlintError(.corrupt, "\(at): shape \(shape) does not hold the \(total) elements of its \(chunks.count) chunks")
        }
        return ParsedArray(shape: shape, dtype: first.dtype, elementSize: first.elementSize, storage: first.storage,
                           byteCount: byteCount, pieces: chunks.flatMap(\.pieces))
    }

    public func tensorInfo(_ name: String) -> CheckpointTensorInfo? {
        index[name].map { tensorInfos[$0] }
    }

    private func lookup(_ name: String) throws -> Int {
        guard let i = index[name] else {
            throw FlintError(.notFound, "\(path): no tensor '\(name)' in this Flax checkpoint (\(tensorInfos.count) tensors)")
        }
        return i
    }

    /// The bytes of the tensor in PyTorch layout (the shape `tensorInfo` gives). In place when the array is
    /// one untransposed piece; otherwise a copy made once and kept while the reader lives (`tensor` never hands
    /// that copy out, since callers may release a view's pages when done with it).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let i = try lookup(name)
        let e = entries[i]
        if !e.transposed && e.pieces.count == 1 { return file.slice(e.pieces[0].offset, e.pieces[0].count) }
        lock.lock()
        defer { lock.unlock() }
        if let kept = rawCopies[name] { return kept.readOnly }
        let buffer = try materialize(e, byteCount: tensorInfos[i].byteCount)
        rawCopies[name] = buffer
        return buffer.readOnly
    }

    /// A view in the mapped file (`owner` is this reader) for an untransposed, unchunked, aligned array;
    /// otherwise a fresh copy in PyTorch layout that the view owns, made from file pages that are released
    /// again afterwards so that reading a whole checkpoint keeps about one tensor resident.
    public func tensor(_ name: String) throws -> TensorView {
        let i = try lookup(name)
        let info = tensorInfos[i]
        guard let storage = info.storage else {
            throw FlintError(.unsupported, "\(path): tensor '\(name)' (Flax '\(entries[i].flaxPath)') has dtype \(info.dtype), which "
                + "Flint does not read (supported: float32, float16, bfloat16)")
        }
        let e = entries[i]
        if !e.transposed && e.pieces.count == 1 {
            return try TensorBuffer.view(name: name, storage: storage, shape: info.shape,
                                         bytes: file.slice(e.pieces[0].offset, e.pieces[0].count), owner: self)
        }
        let buffer = try materialize(e, byteCount: info.byteCount)
        return TensorView(name: name, storage: storage, shape: info.shape, data: buffer.readOnly, owner: buffer)
    }

    /// Joins the chunks (if any) and transposes (if a kernel) into a new buffer.
    private func materialize(_ e: Entry, byteCount: Int) throws -> TensorBuffer {
        // The copy is all the caller sees; the file pages it was made from are not needed afterwards.
        defer { for p in e.pieces { releaseMappedPages(file.slice(p.offset, p.count)) } }
        var gathered: UnsafeRawBufferPointer
        var gatherBuffer: TensorBuffer? = nil
        if e.pieces.count == 1 {
            gathered = file.slice(e.pieces[0].offset, e.pieces[0].count)
        } else {
            let g = try TensorBuffer(byteCount: byteCount)
            var at = 0
            for p in e.pieces where p.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: g.bytes[at..<(at + p.count)])
                    .copyMemory(from: file.slice(p.offset, p.count))
                at += p.count
            }
            gatherBuffer = g
            gathered = g.readOnly
        }
        guard e.transposed else {
            if let g = gatherBuffer { return g }
            let copy = try TensorBuffer(byteCount: byteCount)
            if byteCount > 0 { copy.bytes.copyMemory(from: gathered) }
            return copy
        }
        let out = try TensorBuffer(byteCount: byteCount)
        ConvertedTensors.transpose(gathered, rows: e.storedShape[0], cols: e.storedShape[1],
                                   elementSize: e.elementSize, into: out.bytes)
        gathered = UnsafeRawBufferPointer(start: nil, count: 0)
        gatherBuffer = nil  // the joined chunks go before the caller holds `out`
        return out
    }
}
