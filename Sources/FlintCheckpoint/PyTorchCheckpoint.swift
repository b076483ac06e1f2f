// A PyTorch `pytorch_model.bin` (torch.save of a state dict), memory-mapped, read without Python.
//
// Zip format (torch ≥ 1.6, torch/serialization.py `_save`): a zip archive, every record stored uncompressed,
// with `<archive>/data.pkl` (the state dict pickle), `<archive>/data/<key>` (each storage's raw bytes, aligned to
// 64 bytes by the writer) and `<archive>/byteorder` (`little`; absent in files from before it existed, which
// were little-endian). Large files use ZIP64.
//
// Legacy format (torch < 1.6, or `_use_new_zipfile_serialization=False`; `_legacy_save`): pickles one after
// another — the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a sys-info dict, the state dict,
// the list of storage keys — then for each listed key an int64 element count and the storage's raw bytes.
//
// In both, a tensor is `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, …)` and a storage
// is a persistent id `("storage", torch.<Type>Storage, key, location, numel[, view_metadata])`. Several tensors
// may view one storage (tied weights are saved once). A tensor whose strides are C-order contiguous is a
// zero-copy view into the mapping when its data is aligned to its element size; otherwise (unaligned, as in the
// legacy format where records follow an 8-byte count, or non-contiguous strides) `tensor(_:)` materialises a
// contiguous copy for that one tensor, owned by the returned view and freed with it.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import FlintFormat

/// Where one stored tensor's elements are: which storage, from which element, with which shape and strides.
/// Two names with equal layouts in the same file are the same tensor (torch saves tied weights this way).
public struct PyTorchTensorLayout: Sendable, Equatable {
    /// The storage's record key.
    public let storageKey: String
    /// In elements, from the storage's start (including a legacy storage view's offset).
    public let storageOffset: Int
    public let shape: [Int]
    public let stride: [Int]
    /// True when `stride` is the C-order (row-major) stride of `shape` (ignoring dimensions of size 1, as torch does).
    public let isContiguous: Bool
}

public final class PyTorchBinFile: CheckpointReader, @unchecked Sendable {
    public static let legacyMagic: [UInt8] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]  // LE bytes
    public static let legacyProtocolVersion: Int64 = 1001

    public let path: String
    /// `pytorch` (zip) or `pytorch-legacy`.
    public let format: String
    public var fileSize: Int64 { Int64(file.bytes.count) }
    /// Zip format: `archive` (the record folder name) and `version` (the `version` record) when present.
    public let metadata: [String: String]
    /// Every tensor, in the order of its data in the file.
    public let tensorInfos: [CheckpointTensorInfo]

    private struct Storage {
        let dtype: String
        let elementSize: Int
        let elementCount: Int
        /// Absolute file offset of element 0.
        let fileOffset: Int
    }
    private let file: MappedFile
    private let layouts: [String: PyTorchTensorLayout]
    private let index: [String: Int]
    private let storages: [String: Storage]
    private let lock = NSLock()
    /// Contiguous copies of non-contiguous tensors handed out by `rawBytes` (kept while the file is open).
    private var rawCopies: [String: TensorBuffer] = [:]

    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        self.file = file
        let bytes = file.bytes

        struct Parsed {
            var tensors: [(String, PickleTensorRef)]
            var storages: [String: Storage]
            var format: String
            var metadata: [String: String]
        }
        let parsed: Parsed
        if ZipArchive.looksLikeZip(bytes) {
            let zip = try ZipArchive(path: path, bytes: bytes)
            let pickles = zip.entries.filter { $0.name.hasSuffix("/data.pkl") && !$0.name.dropLast(9).contains("/") }
            guard pickles.count == 1 else {
                throw FlintError(.corrupt, "\(path): a PyTorch zip checkpoint has exactly one <archive>/data.pkl record; found "
                    + (pickles.isEmpty ? "none among \(zip.entries.count) entries (a zip archive, but not torch.save output?)"
                       : pickles.map(\.name).joined(separator: ", ")))
            }
            let prefix = String(pickles[0].name.dropLast(8))  // "<archive>/"
            var metadata = ["archive": String(prefix.dropLast())]
            if let e = zip.entry(prefix + "byteorder") {
                let order = String(decoding: try zip.storedData(e), as: UTF8.self)
                guard order == "little" else {
                    throw FlintError(.corrupt, "\(path): byteorder record says \"\(order.prefix(20))\"; only little-endian "
                        + "checkpoints are supported")
                }
            }
            if let e = zip.entry(prefix + "version"), e.compressedSize <= 64, let v = try? zip.storedData(e) {
                metadata["version"] = String(decoding: v, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let pickleBytes = try zip.storedData(pickles[0])
            var refs: [String: PickleStorageRef] = [:]
            let result = try RestrictedUnpickler(bytes: pickleBytes, place: "\(path): \(pickles[0].name)") { pid, b in
                let ref = try PyTorchBinFile.storageRef(pid, b, legacy: false, place: "\(path): \(pickles[0].name)")
                if let seen = refs[ref.key], seen.typeName != ref.typeName {
                    throw FlintError(.corrupt, "\(path): storage \(ref.key) is referenced as both \(seen.typeName) and \(ref.typeName)")
                }
                refs[ref.key] = ref
                return .storage(ref)
            }.load()
            let tensors = try PyTorchBinFile.stateDict(result, place: "\(path): \(pickles[0].name)")
            var storages: [String: Storage] = [:]
            for (key, ref) in refs.sorted(by: { $0.key < $1.key }) {
                let recordName = prefix + "data/" + key
                guard let entry = zip.entry(recordName) else {
                    throw FlintError(.corrupt, "\(path): the pickle references storage \(key), but the archive has no record "
                        + "\"\(recordName)\"")
                }
                let data = try zip.storedData(entry)
                let type = RestrictedUnpickler.allowedStorageTypes[ref.typeName]!
                let (needed, overflow) = ref.elementCount.multipliedReportingOverflow(by: type.bytes)
                guard !overflow, data.count == needed else {
                    throw FlintError(.corrupt, "\(path): record \"\(recordName)\" holds \(data.count) bytes, but storage \(key) "
                        + "is \(ref.elementCount) × \(ref.typeName) = \(overflow ? "too many" : "\(needed)") bytes")
                }
                storages[key] = Storage(dtype: type.dtype, elementSize: type.bytes, elementCount: ref.elementCount,
                                        fileOffset: entry.dataOffset)
            }
            parsed = Parsed(tensors: tensors, storages: storages, format: "pytorch", metadata: metadata)
        } else if bytes.count >= 2, bytes[0] == 0x80 {
            let legacy = try PyTorchBinFile.parseLegacy(path: path, bytes: bytes)
            parsed = Parsed(tensors: legacy.tensors, storages: legacy.storages, format: legacy.format,
                            metadata: legacy.metadata)
        } else {
            throw FlintError(.corrupt, "\(path): not a PyTorch checkpoint: it starts neither like a zip archive (PK\\x03\\x04, "
                + "torch ≥ 1.6) nor like a pickle (0x80, the legacy format)")
        }

        // Resolve every tensor against its storage and check it stays inside.
        var infos: [CheckpointTensorInfo] = []
        var layouts: [String: PyTorchTensorLayout] = [:]
        for (tensorName, t) in parsed.tensors {
            let at = "\(path): tensor '\(tensorName)'"
            let rootKey = t.storage.view?.key ?? t.storage.key
            guard let s = parsed.storages[rootKey] else {
                throw FlintError(.corrupt, "\(at): its storage \(rootKey) has no data in the file")
            }
            var offset = t.storageOffset
            var limit = s.elementCount
            if let view = t.storage.view {
                guard view.offset <= s.elementCount, view.size <= s.elementCount - view.offset else {
                    throw FlintError(.corrupt, "\(at): storage view [\(view.offset), +\(view.size)) lies outside storage \(rootKey) "
                        + "of \(s.elementCount) elements")
                }
                offset += view.offset
                limit = view.offset + view.size
            }
            var count = 1
            var last = offset  // index of the last element
            for (d, st) in zip(t.shape, t.stride) {
                let (c, o1) = count.multipliedReportingOverflow(by: d)
                guard !o1 else { throw FlintError(.corrupt, "\(at): shape \(t.shape) has too many elements (overflow)") }
                count = c
                if d > 0 {
                    let (span, o2) = (d - 1).multipliedReportingOverflow(by: st)
                    let (l, o3) = last.addingReportingOverflow(span)
                    guard !o2, !o3 else { throw FlintError(.corrupt, "\(at): stride \(t.stride) overflows") }
                    last = l
                }
            }
            if count > 0 && last >= limit {
                throw FlintError(.corrupt, "\(at): shape \(t.shape) with stride \(t.stride) from element \(t.storageOffset) reaches "
                    + "element \(last), beyond the \(limit - (t.storage.view?.offset ?? 0)) elements of storage \(rootKey)")
            }
            guard count <= Int.max / s.elementSize else { throw FlintError(.corrupt, "\(at): shape \(t.shape) has too many bytes") }
            var contiguous = true
            var expected = 1
            for (d, st) in zip(t.shape, t.stride).reversed() where d != 1 {
                if st != expected { contiguous = false }
                expected *= d
            }
            if count == 0 { contiguous = true }
            layouts[tensorName] = PyTorchTensorLayout(storageKey: rootKey, storageOffset: offset, shape: t.shape,
                                                      stride: t.stride, isContiguous: contiguous)
            // An empty tensor's storage offset is not checked against its storage (it reads nothing): its bytes
            // are placed at the storage's start, inside the file, so no slice of the mapping goes past its end.
            infos.append(CheckpointTensorInfo(name: tensorName, dtype: s.dtype,
                                              storage: CheckpointDType.storage(safetensors: s.dtype), shape: t.shape,
                                              byteCount: count * s.elementSize, file: path,
                                              fileOffset: s.fileOffset + (count > 0 ? offset : 0) * s.elementSize))
        }
        // The order of the data in the file, so a converter walks the mapping forwards.
        infos = infos.enumerated().sorted { ($0.element.fileOffset, $0.offset) < ($1.element.fileOffset, $1.offset) }
            .map(\.element)
        var index: [String: Int] = [:]
        for (i, info) in infos.enumerated() { index[info.name] = i }
        self.format = parsed.format
        self.metadata = parsed.metadata
        self.tensorInfos = infos
        self.index = index
        self.layouts = layouts
        self.storages = parsed.storages
    }

    /// Where a tensor's elements are (storage, offset, shape, strides); nil when there is no such tensor.
    public func layout(_ name: String) -> PyTorchTensorLayout? { layouts[name] }

    public func tensorInfo(_ name: String) -> CheckpointTensorInfo? { index[name].map { tensorInfos[$0] } }

    private func lookup(_ name: String) throws -> (CheckpointTensorInfo, PyTorchTensorLayout, Storage) {
        guard let i = index[name] else {
            throw FlintError(.notFound, "\(path): no tensor '\(name)' in this PyTorch checkpoint (\(tensorInfos.count) tensors)")
        }
        let layout = layouts[name]!
        return (tensorInfos[i], layout, storages[layout.storageKey]!)
    }

    /// The tensor's elements in C order. For a contiguous tensor these are the bytes in the mapping; for a
    /// non-contiguous one, a contiguous copy made on first request and kept while the file is open.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let (info, layout, storage) = try lookup(name)
        if layout.isContiguous { return file.slice(info.fileOffset, info.byteCount) }
        lock.lock()
        defer { lock.unlock() }
        if let copy = rawCopies[name] { return copy.readOnly }
        let copy = try gather(info, layout, storage)
        rawCopies[name] = copy
        return copy.readOnly
    }

    /// A zero-copy view into the mapping when the tensor is contiguous and aligned to its element size; otherwise
    /// a contiguous, aligned copy of this one tensor, owned by the view.
    public func tensor(_ name: String) throws -> TensorView {
        let (info, layout, storage) = try lookup(name)
        guard let type = info.storage else {
            throw FlintError(.unsupported, "\(path): tensor '\(name)' has dtype \(info.dtype), which Flint does not read "
                + "(supported: float32, float16, bfloat16)")
        }
        if layout.isContiguous {
            // Legacy checkpoints' storages are unaligned: those views are copies.
            return try TensorBuffer.view(name: name, storage: type, shape: info.shape,
                                         bytes: file.slice(info.fileOffset, info.byteCount), owner: self)
        }
        let copy = try gather(info, layout, storage)
        releaseMappedPages(span(info, layout, storage))
        return TensorView(name: name, storage: type, shape: info.shape, data: copy.readOnly, owner: copy)
    }

    /// The bytes of the mapping from a tensor's first element to its last, whatever its strides.
    private func span(_ info: CheckpointTensorInfo, _ layout: PyTorchTensorLayout, _ storage: Storage) -> UnsafeRawBufferPointer {
        guard info.byteCount > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        var last = layout.storageOffset
        for (d, st) in zip(layout.shape, layout.stride) { last += (d - 1) * st }
        let begin = storage.fileOffset + layout.storageOffset * storage.elementSize
        return file.slice(begin, (last - layout.storageOffset + 1) * storage.elementSize)
    }

    /// Copies a strided tensor's elements into C order (bounds were checked when the file was opened).
    private func gather(_ info: CheckpointTensorInfo, _ layout: PyTorchTensorLayout, _ storage: Storage) throws -> TensorBuffer {
        let size = storage.elementSize
        let out = try TensorBuffer(byteCount: info.byteCount)
        let count = info.byteCount / max(size, 1)
        guard count > 0, let dst = out.bytes.baseAddress, let base = file.bytes.baseAddress else { return out }
        let src = base + storage.fileOffset
        let rank = layout.shape.count
        var indexes = [Int](repeating: 0, count: rank)
        var element = layout.storageOffset
        for n in 0..<count {
            memcpy(dst + n * size, src + element * size, size)
            // Advance the multi-index like an odometer, last dimension fastest.
            var d = rank - 1
            while d >= 0 {
                indexes[d] += 1
                element += layout.stride[d]
                if indexes[d] < layout.shape[d] { break }
                element -= layout.stride[d] * layout.shape[d]
                indexes[d] = 0
                d -= 1
            }
        }
        return out
    }

    // MARK: Parsing

    /// The storage reference a persistent id names.
    static func storageRef(_ pid: PickleValue, _ b: PickleResultBuilder, legacy: Bool, place: String) throws -> PickleStorageRef {
        guard let t = b.tuple(pid), t.count >= 5 else {
            throw FlintError(.corrupt, "\(place): persistent id is a \(b.kind(of: pid)), expected torch's (\"storage\", "
                + "type, key, location, numel) tuple")
        }
        guard case .string("storage") = t[0] else {
            throw FlintError(.unsupported, "\(place): persistent id of kind \(b.describe(t[0])) is not supported (only \"storage\")")
        }
        guard case .global("torch", let typeName) = t[1], RestrictedUnpickler.allowedStorageTypes[typeName] != nil else {
            throw FlintError(.corrupt, "\(place): persistent id names storage type \(b.describe(t[1])), expected a torch.*Storage class")
        }
        let key: String
        switch t[2] {
        case .string(let s): key = s
        case .int(let i): key = String(i)
        default: throw FlintError(.corrupt, "\(place): storage key is a \(b.kind(of: t[2])), expected a string")
        }
        guard case .string(let location) = t[3] else {
            throw FlintError(.corrupt, "\(place): storage \(key) location is a \(b.kind(of: t[3])), expected a string like \"cpu\"")
        }
        let numel = try b.count(t[4], "storage \(key) element count", -1)
        var view: (key: String, offset: Int, size: Int)? = nil
        if t.count >= 6, legacy, let v = b.tuple(t[5]) {
            guard v.count == 3, case .string(let viewKey) = v[0] else {
                throw FlintError(.corrupt, "\(place): storage \(key) view metadata must be (view_key, offset, size)")
            }
            view = (key, try b.count(v[1], "view offset", -1), try b.count(v[2], "view size", -1))
            // The tensor refers to the view key; its bytes are the root storage's.
            return PickleStorageRef(typeName: typeName, key: viewKey, location: location, elementCount: numel, view: view)
        }
        return PickleStorageRef(typeName: typeName, key: key, location: location, elementCount: numel, view: nil)
    }

    /// The state dict: a dict (OrderedDict) of tensor name → tensor.
    static func stateDict(_ r: PickleResult, place: String) throws -> [(String, PickleTensorRef)] {
        guard let items = r.dict(r.value) else {
            throw FlintError(.corrupt, "\(place): the pickled object is a \(r.kind(of: r.value)), expected a state dict "
                + "(an OrderedDict of tensor name → tensor)")
        }
        var out: [(String, PickleTensorRef)] = []
        var seen = Set<String>()
        for (k, v) in items {
            guard case .string(let name) = k else {
                throw FlintError(.corrupt, "\(place): state dict key is a \(r.kind(of: k)), expected a tensor name")
            }
            guard case .tensor(let t) = v else {
                throw FlintError(.corrupt, "\(place): state dict entry '\(name)' is a \(r.kind(of: v)), expected a tensor "
                    + "(is this a training checkpoint rather than a model's state dict?)")
            }
            guard seen.insert(name).inserted else { throw FlintError(.corrupt, "\(place): tensor '\(name)' appears twice") }
            out.append((name, t))
        }
        return out
    }

    private static func parseLegacy(path: String, bytes: UnsafeRawBufferPointer) throws
        -> (tensors: [(String, PickleTensorRef)], storages: [String: Storage], format: String, metadata: [String: String])
    {
        func noPersistent(_ what: String) -> (PickleValue, PickleResultBuilder) throws -> PickleValue {
            { _, _ in throw FlintError(.corrupt, "\(path): legacy \(what) pickle has a persistent id; expected plain values") }
        }
        let magic = try RestrictedUnpickler(bytes: bytes, place: "\(path): magic number pickle",
                                            persistentLoad: noPersistent("magic number")).load()
        guard case .bigInt(let o, let n) = magic.value, n == legacyMagic.count,
              Array(UnsafeRawBufferPointer(rebasing: bytes[o..<(o + n)])) == legacyMagic else {
            throw FlintError(.corrupt, "\(path): starts with a pickle, but not torch's legacy magic number 0x1950a86a20f9469cfc6c "
                + "(a plain pickle is not a PyTorch checkpoint)")
        }
        let proto = try RestrictedUnpickler(bytes: bytes, place: "\(path): protocol version pickle",
                                            persistentLoad: noPersistent("protocol version")).load(from: magic.endOffset)
        guard case .int(legacyProtocolVersion) = proto.value else {
            throw FlintError(.corrupt, "\(path) offset \(magic.endOffset): legacy protocol version is \(proto.kind(of: proto.value)) "
                + "\(proto.value), expected \(legacyProtocolVersion)")
        }
        let sysInfo = try RestrictedUnpickler(bytes: bytes, place: "\(path): sys info pickle",
                                              persistentLoad: noPersistent("sys info")).load(from: proto.endOffset)
        if let items = sysInfo.dict(sysInfo.value) {
            for (k, v) in items {
                if case .string("little_endian") = k, case .bool(false) = v {
                    throw FlintError(.corrupt, "\(path): saved on a big-endian machine (sys info little_endian = False); only "
                        + "little-endian checkpoints are supported")
                }
            }
        } else {
            throw FlintError(.corrupt, "\(path) offset \(proto.endOffset): legacy sys info is a \(sysInfo.kind(of: sysInfo.value)), expected a dict")
        }
        let place = "\(path): state dict pickle"
        var refs: [String: PickleStorageRef] = [:]
        let object = try RestrictedUnpickler(bytes: bytes, place: place) { pid, b in
            let ref = try storageRef(pid, b, legacy: true, place: place)
            let root = ref.view?.key ?? ref.key
            if let seen = refs[root], seen.typeName != ref.typeName {
                throw FlintError(.corrupt, "\(path): storage \(root) is referenced as both \(seen.typeName) and \(ref.typeName)")
            }
            if refs[root] == nil || ref.view == nil {
                refs[root] = PickleStorageRef(typeName: ref.typeName, key: root, location: ref.location,
                                              elementCount: ref.elementCount, view: nil)
            }
            return .storage(ref)
        }.load(from: sysInfo.endOffset)
        let tensors = try stateDict(object, place: place)
        let keysPickle = try RestrictedUnpickler(bytes: bytes, place: "\(path): storage key list pickle",
                                                 persistentLoad: noPersistent("storage key list")).load(from: object.endOffset)
        guard let keyValues = keysPickle.list(keysPickle.value) else {
            throw FlintError(.corrupt, "\(path) offset \(object.endOffset): expected the list of storage keys, got a "
                + keysPickle.kind(of: keysPickle.value))
        }
        var storages: [String: Storage] = [:]
        var pos = keysPickle.endOffset
        for kv in keyValues {
            guard case .string(let key) = kv else {
                throw FlintError(.corrupt, "\(path) offset \(object.endOffset): storage key is a \(keysPickle.kind(of: kv)), expected a string")
            }
            guard let ref = refs[key] else {
                throw FlintError(.corrupt, "\(path): storage key list names \(key), which no tensor references")
            }
            guard storages[key] == nil else { throw FlintError(.corrupt, "\(path): storage key list names \(key) twice") }
            let type = RestrictedUnpickler.allowedStorageTypes[ref.typeName]!
            guard bytes.count - pos >= 8 else {
                throw FlintError(.corrupt, "\(path) offset \(pos): storage \(key) needs an 8-byte element count, but the file "
                    + "ends (truncated)")
            }
            let count = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: Int64.self))
            let (needed, overflow) = Int(clamping: count).multipliedReportingOverflow(by: type.bytes)
            guard count >= 0, !overflow, needed <= bytes.count - pos - 8 else {
                throw FlintError(.corrupt, "\(path) offset \(pos): storage \(key) declares \(count) × \(ref.typeName) elements, "
                    + "more than the \(bytes.count - pos - 8) bytes left in the file (truncated or corrupt)")
            }
            guard Int(count) == ref.elementCount else {
                throw FlintError(.corrupt, "\(path) offset \(pos): storage \(key) declares \(count) elements, but the pickle "
                    + "says \(ref.elementCount)")
            }
            storages[key] = Storage(dtype: type.dtype, elementSize: type.bytes, elementCount: Int(count),
                                    fileOffset: pos + 8)
            pos += 8 + needed
        }
        for key in refs.keys.sorted() where storages[key] == nil {
            throw FlintError(.corrupt, "\(path): storage \(key) is referenced by a tensor but missing from the storage key list")
        }
        if pos != bytes.count {
            throw FlintError(.corrupt, "\(path): \(bytes.count - pos) bytes after the last storage (byte \(pos)); the legacy "
                + "format ends with the last storage's data")
        }
        return (tensors, storages, "pytorch-legacy", [:])
    }
}

