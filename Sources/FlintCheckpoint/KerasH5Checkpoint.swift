// Keras `tf_model.h5` checkpoints (transformers' TFPreTrainedModel.save_pretrained), read through libhdf5 and
// presented under Hugging Face's PyTorch names and shapes.
//
// Two layouts exist (transformers 4.x `modeling_tf_utils.py`):
// - a single file, written by Keras `save_weights`: the root attribute `layer_names` lists top-level layer
//   groups; each group's `weight_names` attribute lists its variables (`tft5_for_conditional_generation/encoder/
//   block_._0/layer_._0/SelfAttention/q/kernel:0`, `shared/shared/embeddings:0`), stored as datasets at those
//   paths inside the group. A variable used by several layers is stored once per layer (T5's shared embedding
//   three times); transformers assigns them in layer order, so the last copy is the one that counts.
// - shards (`tf_model.h5.index.json`): the root `layer_names` lists datasets directly, named without the leading
//   model scope (`encoder/block_._0/…/kernel:0`, `shared/embeddings:0`).
// Long attributes are split into `name0`, `name1`, … (Keras `save_attributes_to_hdf5_group`).
//
// Names follow `convert_tf_weight_name_to_pt_weight_name` (the mapping lives in FlintFormat's T5WeightLayout):
// drop `:0`, `_._` becomes a level, drop the model scope, `kernel` → `weight` transposed (`[in, out]` →
// `[out, in]`), `embeddings` / `gamma` → `weight`.
//
// libhdf5 reads the file's structure; untransposed datasets stored contiguously and uncompressed (what h5py
// writes) are then viewed in place through a memory map of the file, transposed ones are materialised from
// that map one tensor at a time, and anything else (chunked, compressed, big-endian) is read by H5Dread.
// libhdf5 is not thread-safe in every build, so every call goes through one process-wide lock.
import Foundation
import FlintFormat
import CHDF5

public enum KerasH5Checkpoint {
    public static let fileName = "tf_model.h5"
    public static let indexFileName = "tf_model.h5.index.json"

    /// The readers for a model folder's Keras weights: `tf_model.h5`, or else the shards that
    /// `tf_model.h5.index.json` lists (each checked against the index). A path to either file works too.
    public static func open(folder: String) throws -> [CheckpointReader] {
        try ConvertedTensors.openWeights(folder: folder, fileName: fileName, indexFileName: indexFileName,
                                         description: "Keras", openFile: { try KerasH5File(path: $0) },
                                         openIndex: openIndex)
    }

    private static func openIndex(_ index: String, in folder: String) throws -> [CheckpointReader] {
        // The index names variables in full (with the model scope), the shards without it.
        try ConvertedTensors.openShards(indexPath: index, folder: folder, format: "TF",
                                        ptName: { pytorchName(tfName: $0, dropsModelScope: true).name },
                                        open: { try KerasH5File(path: $0) })
    }

    /// The PyTorch name of a TF variable and whether its value is stored transposed
    /// (`T5WeightLayout.hfName(kerasVariable:dropsModelScope:)`, transformers' `convert_tf_weight_name_to_pt_weight_name`).
    public static func pytorchName(tfName: String, dropsModelScope: Bool) -> (name: String, transposed: Bool) {
        T5WeightLayout.hfName(kerasVariable: tfName, dropsModelScope: dropsModelScope)
    }
}

/// Serialises libhdf5 and turns its error stack into messages.
enum HDF5 {
    private static let lock = NSLock()
    static func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        // Failures become FlintErrors; libhdf5 must not print its error stack to stderr on its own. In
        // thread-safe builds the setting belongs to the calling thread, so it is made on every entry.
        _ = H5open()
        _ = H5Eset_auto2(flint_h5e_default(), nil, nil)
        return try body()
    }

    /// The descriptions on libhdf5's error stack, innermost last, then clears it. Call with the lock held.
    static func takeErrors() -> String {
        final class Collected { var messages: [String] = [] }
        let collected = Collected()
        _ = H5Ewalk2(flint_h5e_default(), H5E_WALK_DOWNWARD, { _, error, data in
            guard let error, let data, let desc = error.pointee.desc else { return 0 }
            let c = Unmanaged<Collected>.fromOpaque(data).takeUnretainedValue()
            let text = String(cString: desc)
            if !text.isEmpty && c.messages.last != text { c.messages.append(text) }
            return 0
        }, Unmanaged.passUnretained(collected).toOpaque())
        _ = H5Eclear2(flint_h5e_default())
        let m = collected.messages
        if m.isEmpty { return "libhdf5 gave no reason" }
        return "libhdf5: " + m.suffix(3).joined(separator: "; ")
    }
}

/// One `tf_model.h5` file (or shard).
public final class KerasH5File: CheckpointReader, @unchecked Sendable {
    public let path: String
    public var format: String { "keras-h5" }
    public var fileSize: Int64 { Int64(file.count) }
    /// The root attributes `backend` and `keras_version` when present.
    public let metadata: [String: String]
    /// Every tensor under its PyTorch name and shape, in the order of its data in the file. `fileOffset` is
    /// where the stored bytes start (`[in, out]` order for transposed tensors), -1 for datasets not stored
    /// contiguously (chunked, compressed or compact).
    public let tensorInfos: [CheckpointTensorInfo]

    struct Entry {
        /// Dataset path from the file's root, for reads and messages.
        let dataset: String
        /// Shape as stored (before any transpose).
        let storedShape: [Int]
        let elementSize: Int
        /// Offset of the raw little-endian bytes in the file, nil when they must be read through libhdf5.
        let inPlaceOffset: Int?
        let bigEndian: Bool
        let transposed: Bool
    }

    private let file: MappedFile
    private let fileID: hid_t
    private let entries: [Entry]
    private let index: [String: Int]
    private let lock = NSLock()
    private var rawCopies: [String: TensorBuffer] = [:]

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let fileSize = file.count
        let opened: (hid_t, [String: String], [CheckpointTensorInfo], [Entry]) = try HDF5.locked {
            let fid = H5Fopen(path, flint_h5f_acc_rdonly(), flint_h5p_default())
            guard fid >= 0 else {
                throw FlintError(.corrupt, "\(path): not a readable HDF5 file (\(HDF5.takeErrors())); expected a Keras tf_model.h5")
            }
            do {
                let (meta, infos, entries) = try KerasH5File.describe(fid, path: path, fileSize: fileSize)
                return (fid, meta, infos, entries)
            } catch {
                _ = H5Fclose(fid)
                _ = H5Eclear2(flint_h5e_default())
                throw error
            }
        }
        fileID = opened.0
        metadata = opened.1
        tensorInfos = opened.2
        entries = opened.3
        var index: [String: Int] = [:]
        for (i, info) in tensorInfos.enumerated() { index[info.name] = i }
        self.index = index
    }

    deinit {
        let fid = fileID
        HDF5.locked { _ = H5Fclose(fid) }
    }

    // MARK: Reading the structure (lock held)

    private static func describe(_ fid: hid_t, path: String, fileSize: Int)
        throws -> ([String: String], [CheckpointTensorInfo], [Entry]) {
        guard let layerNames = try stringList(fid, "layer_names", object: "the root group", path: path) else {
            throw FlintError(.corrupt, "\(path): the root group has no \"layer_names\" attribute; not a Keras weights file "
                + "(tf_model.h5 from save_pretrained or save_weights)")
        }
        var metadata: [String: String] = [:]
        for key in ["backend", "keras_version"] {
            if let v = try? stringList(fid, key, object: "the root group", path: path), v.count == 1 { metadata[key] = v[0] }
        }
        _ = H5Eclear2(flint_h5e_default())

        // (PyTorch name, dataset path) in load order; a name seen again replaces the earlier dataset.
        var found: [(name: String, dataset: String, transposed: Bool)] = []
        var position: [String: Int] = [:]
        func note(_ name: String, _ dataset: String, _ transposed: Bool) {
            if let i = position[name] { found[i] = (name, dataset, transposed) }
            else { position[name] = found.count; found.append((name, dataset, transposed)) }
        }
        for layer in layerNames {
            guard !layer.isEmpty else { throw FlintError(.corrupt, "\(path): \"layer_names\" has an empty name") }
            // H5Oopen + H5Iget_type rather than H5Oget_info, whose signature differs between libhdf5 1.10 and 1.12+.
            let object = H5Oopen(fid, layer, flint_h5p_default())
            guard object >= 0 else {
                throw FlintError(.notFound, "\(path): \"layer_names\" lists '\(layer)', which is not in the file (\(HDF5.takeErrors()))")
            }
            let kind = H5Iget_type(object)
            _ = H5Oclose(object)
            switch kind {
            case H5I_DATASET:
                // Shard layout: the dataset is the variable, named without the model scope.
                let (name, transposed) = KerasH5Checkpoint.pytorchName(tfName: layer, dropsModelScope: false)
                note(name, layer, transposed)
            case H5I_GROUP:
                let group = H5Gopen2(fid, layer, flint_h5p_default())
                guard group >= 0 else {
                    throw FlintError(.io, "\(path): cannot open layer group '\(layer)' (\(HDF5.takeErrors()))")
                }
                defer { _ = H5Gclose(group) }
                let weights = try stringList(group, "weight_names", object: "layer group '\(layer)'", path: path) ?? []
                for w in weights {
                    let (name, transposed) = KerasH5Checkpoint.pytorchName(tfName: w, dropsModelScope: true)
                    note(name, layer + "/" + w, transposed)
                }
            default:
                throw FlintError(.corrupt, "\(path): \"layer_names\" lists '\(layer)', which is neither a group nor a dataset")
            }
        }
        guard !found.isEmpty else { throw FlintError(.corrupt, "\(path): the Keras weights file lists no weights") }

        var described: [(info: CheckpointTensorInfo, entry: Entry, order: Int)] = []
        for (order, f) in found.enumerated() {
            let (info, entry) = try describeDataset(fid, f.dataset, name: f.name, transposed: f.transposed,
                                                    path: path, fileSize: fileSize)
            described.append((info, entry, order))
        }
        described.sort { a, b in
            let x = a.entry.inPlaceOffset ?? Int.max, y = b.entry.inPlaceOffset ?? Int.max
            return x != y ? x < y : a.order < b.order
        }
        return (metadata, described.map(\.info), described.map(\.entry))
    }

    private static func describeDataset(_ fid: hid_t, _ dataset: String, name: String, transposed: Bool,
                                        path: String, fileSize: Int) throws -> (CheckpointTensorInfo, Entry) {
        let at = "\(path): dataset '\(dataset)' (tensor '\(name)')"
        let d = H5Dopen2(fid, dataset, flint_h5p_default())
        guard d >= 0 else { throw FlintError(.io, "\(at): cannot open (\(HDF5.takeErrors()))") }
        defer { _ = H5Dclose(d) }

        let space = H5Dget_space(d)
        guard space >= 0 else { throw FlintError(.io, "\(at): cannot read its dataspace (\(HDF5.takeErrors()))") }
        defer { _ = H5Sclose(space) }
        var shape: [Int] = []
        switch H5Sget_simple_extent_type(space) {
        case H5S_SCALAR: break
        case H5S_SIMPLE:
            let rank = H5Sget_simple_extent_ndims(space)
            guard rank >= 0, rank <= 32 else { throw FlintError(.unsupported, "\(at): dataspace of rank \(rank); expected at most 32") }
            var dims = [hsize_t](repeating: 0, count: Int(rank))
            guard H5Sget_simple_extent_dims(space, &dims, nil) == rank else {
                throw FlintError(.io, "\(at): cannot read its dimensions (\(HDF5.takeErrors()))")
            }
            for v in dims {
                guard v <= hsize_t(Int.max) else { throw FlintError(.corrupt, "\(at): dimension \(v) is too large") }
                shape.append(Int(v))
            }
        default:
            throw FlintError(.corrupt, "\(at): has an empty (null) dataspace; expected an array")
        }

        let type = H5Dget_type(d)
        guard type >= 0 else { throw FlintError(.io, "\(at): cannot read its datatype (\(HDF5.takeErrors()))") }
        defer { _ = H5Tclose(type) }
        let (dtype, elementSize, storage, bigEndian) = try describeType(type, at: at)
        guard let byteCount = ConvertedTensors.byteCount(shape, elementSize: elementSize) else {
            throw FlintError(.corrupt, "\(at): shape \(shape) × \(dtype) overflows the byte count")
        }
        if transposed && shape.count > 2 {
            throw FlintError(.unsupported, "\(at): a \(shape.count)-D kernel \(shape); Flint reads linear kernels (2-D) only "
                + "(T5 has no convolutions)")
        }

        let dcpl = H5Dget_create_plist(d)
        guard dcpl >= 0 else { throw FlintError(.io, "\(at): cannot read its storage properties (\(HDF5.takeErrors()))") }
        defer { _ = H5Pclose(dcpl) }
        let layout = H5Pget_layout(dcpl)
        let filters = H5Pget_nfilters(dcpl)
        let external = H5Pget_external_count(dcpl)
        let stored = Int(clamping: H5Dget_storage_size(d))
        var inPlace: Int? = nil
        if layout == H5D_CONTIGUOUS && filters == 0 && external == 0 {
            let address = H5Dget_offset(d)
            guard address != flint_haddr_undef() else {
                throw FlintError(.corrupt, "\(at): has no data stored (the dataset was created but never written)")
            }
            guard address <= haddr_t(Int.max), Int(address) <= fileSize, byteCount <= fileSize - Int(address) else {
                throw FlintError(.corrupt, "\(at): truncated file: its \(byteCount) bytes at offset \(address) run past the end "
                    + "of the file (\(fileSize) bytes)")
            }
            if !bigEndian { inPlace = Int(address) }
        } else if byteCount > 0 {
            // Chunked or compressed data is read whole by H5Dread: refuse sizes the stored bytes cannot
            // plausibly expand to, so a damaged header cannot ask for a huge allocation.
            guard stored > 0 else { throw FlintError(.corrupt, "\(at): has no data stored") }
            let (limit, overflow) = stored.multipliedReportingOverflow(by: 1024)
            guard overflow || byteCount <= limit else {
                throw FlintError(.corrupt, "\(at): claims \(byteCount) bytes of \(dtype) \(shape) but stores only \(stored) bytes")
            }
        }
        let ptShape = transposed && shape.count == 2 ? [shape[1], shape[0]] : shape
        let info = CheckpointTensorInfo(name: name, dtype: dtype, storage: storage, shape: ptShape,
                                        byteCount: byteCount, file: path, fileOffset: inPlace ?? -1)
        let entry = Entry(dataset: dataset, storedShape: shape, elementSize: elementSize, inPlaceOffset: inPlace,
                          bigEndian: bigEndian, transposed: transposed && shape.count == 2)
        return (info, entry)
    }

    /// numpy-style name, element size, Flint storage type and byte order of an HDF5 datatype.
    private static func describeType(_ type: hid_t, at: String)
        throws -> (String, Int, StorageType?, Bool) {
        let size = H5Tget_size(type)
        let order = H5Tget_order(type)
        let bigEndian = order == H5T_ORDER_BE
        let suffix = bigEndian ? " (big-endian)" : ""
        switch H5Tget_class(type) {
        case H5T_FLOAT:
            var spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0
            guard H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) >= 0 else {
                throw FlintError(.io, "\(at): cannot read its float layout (\(HDF5.takeErrors()))")
            }
            let layout = [size, spos, epos, esize, mpos, msize]
            switch layout {
            case [4, 31, 23, 8, 0, 23]: return ("float32" + suffix, 4, .f32, bigEndian)
            case [2, 15, 10, 5, 0, 10]: return ("float16" + suffix, 2, .f16, bigEndian)
            case [2, 15, 7, 8, 0, 7]: return ("bfloat16" + suffix, 2, .bf16, bigEndian)
            case [8, 63, 52, 11, 0, 52]: return ("float64" + suffix, 8, nil, bigEndian)
            default:
                throw FlintError(.corrupt, "\(at): a \(size)-byte float with an unusual layout (sign bit \(spos), exponent "
                    + "\(esize) bits at \(epos), mantissa \(msize) bits); expected IEEE float16/32/64 or bfloat16")
            }
        case H5T_INTEGER:
            guard [1, 2, 4, 8].contains(size) else { throw FlintError(.corrupt, "\(at): a \(size)-byte integer type") }
            let signed = H5Tget_sign(type) == H5T_SGN_2
            return ((signed ? "int" : "uint") + "\(size * 8)" + suffix, size, nil, bigEndian)
        default:
            throw FlintError(.corrupt, "\(at): its datatype is not numeric (HDF5 class \(H5Tget_class(type).rawValue)); "
                + "expected a float or integer array")
        }
    }

    /// A string-list attribute, also when Keras split it into `name0`, `name1`, …; nil when absent.
    private static func stringList(_ object: hid_t, _ name: String, object what: String, path: String) throws -> [String]? {
        if H5Aexists(object, name) > 0 { return try readStrings(object, name, what: what, path: path) }
        var all: [String] = []
        var chunk = 0
        while H5Aexists(object, "\(name)\(chunk)") > 0 {
            all += try readStrings(object, "\(name)\(chunk)", what: what, path: path)
            chunk += 1
        }
        _ = H5Eclear2(flint_h5e_default())
        return chunk == 0 ? nil : all
    }

    private static func readStrings(_ object: hid_t, _ name: String, what: String, path: String) throws -> [String] {
        let at = "\(path): attribute \"\(name)\" of \(what)"
        let attr = H5Aopen(object, name, flint_h5p_default())
        guard attr >= 0 else { throw FlintError(.io, "\(at): cannot open (\(HDF5.takeErrors()))") }
        defer { _ = H5Aclose(attr) }
        let space = H5Aget_space(attr)
        guard space >= 0 else { throw FlintError(.io, "\(at): cannot read its dataspace (\(HDF5.takeErrors()))") }
        defer { _ = H5Sclose(space) }
        let points = H5Sget_simple_extent_npoints(space)
        guard points >= 0, points <= 10_000_000 else {
            throw FlintError(.corrupt, "\(at): holds \(points) values; expected a list of names")
        }
        let count = Int(points)
        if count == 0 { return [] }  // Keras writes an empty list as an empty float array
        let type = H5Aget_type(attr)
        guard type >= 0 else { throw FlintError(.io, "\(at): cannot read its datatype (\(HDF5.takeErrors()))") }
        defer { _ = H5Tclose(type) }
        guard H5Tget_class(type) == H5T_STRING else {
            throw FlintError(.corrupt, "\(at): expected strings, got HDF5 class \(H5Tget_class(type).rawValue)")
        }
        if H5Tis_variable_str(type) > 0 {
            let memType = H5Tcopy(flint_h5t_c_s1())
            defer { _ = H5Tclose(memType) }
            _ = H5Tset_size(memType, flint_h5t_variable())
            _ = H5Tset_cset(memType, H5Tget_cset(type))
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            guard H5Aread(attr, memType, &pointers) >= 0 else {
                throw FlintError(.io, "\(at): cannot read (\(HDF5.takeErrors()))")
            }
            let strings = pointers.map { $0.map { String(cString: $0) } ?? "" }
            _ = flint_h5_reclaim(memType, space, &pointers)
            return strings
        }
        let size = H5Tget_size(type)
        guard size > 0, size <= 1 << 20, count <= (64 << 20) / size else {
            throw FlintError(.corrupt, "\(at): \(count) strings of \(size) bytes each; too large for a list of names")
        }
        var buffer = [UInt8](repeating: 0, count: count * size)
        guard H5Aread(attr, type, &buffer) >= 0 else { throw FlintError(.io, "\(at): cannot read (\(HDF5.takeErrors()))") }
        return (0..<count).map { i in
            let slice = buffer[(i * size)..<((i + 1) * size)]
            let end = slice.firstIndex(of: 0) ?? slice.endIndex
            return String(decoding: slice[slice.startIndex..<end], as: UTF8.self)
        }
    }

    // MARK: CheckpointReader

    public func tensorInfo(_ name: String) -> CheckpointTensorInfo? {
        index[name].map { tensorInfos[$0] }
    }

    private func lookup(_ name: String) throws -> Int {
        guard let i = index[name] else {
            throw FlintError(.notFound, "\(path): no tensor '\(name)' in this Keras weights file (\(tensorInfos.count) tensors)")
        }
        return i
    }

    /// The bytes of the tensor in PyTorch layout (the shape `tensorInfo` gives). In place when the dataset is
    /// stored contiguously, little-endian and untransposed; otherwise a copy made once and kept while the
    /// reader lives (`tensor` never hands that copy out, since callers may release a view's pages when done).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let i = try lookup(name)
        let e = entries[i]
        if !e.transposed, let offset = e.inPlaceOffset { return file.slice(offset, tensorInfos[i].byteCount) }
        lock.lock()
        defer { lock.unlock() }
        if let kept = rawCopies[name] { return kept.readOnly }
        let buffer = try materialize(e, info: tensorInfos[i])
        if let offset = e.inPlaceOffset { releaseMappedPages(file.slice(offset, tensorInfos[i].byteCount)) }
        rawCopies[name] = buffer
        return buffer.readOnly
    }

    /// A view in the mapped file (`owner` is this reader) for an untransposed, contiguous, little-endian,
    /// aligned dataset; otherwise a fresh copy in PyTorch layout that the view owns (file pages read for it are
    /// released again, so reading a whole checkpoint keeps about one tensor resident).
    public func tensor(_ name: String) throws -> TensorView {
        let i = try lookup(name)
        let info = tensorInfos[i]
        let e = entries[i]
        guard let storage = info.storage else {
            throw FlintError(.corrupt, "\(path): tensor '\(name)' (dataset '\(e.dataset)') has dtype \(info.dtype), which Flint "
                + "does not read (supported: float32, float16, bfloat16)")
        }
        if !e.transposed, let offset = e.inPlaceOffset {
            return try TensorBuffer.view(name: name, storage: storage, shape: info.shape,
                                         bytes: file.slice(offset, info.byteCount), owner: self)
        }
        let buffer = try materialize(e, info: info)
        if let offset = e.inPlaceOffset { releaseMappedPages(file.slice(offset, info.byteCount)) }
        return TensorView(name: name, storage: storage, shape: info.shape, data: buffer.readOnly, owner: buffer)
    }

    /// The tensor in PyTorch layout in a new buffer: from the mapped file when the data is in place, otherwise
    /// read (and converted to little-endian) by libhdf5; then transposed if it is a kernel.
    private func materialize(_ e: Entry, info: CheckpointTensorInfo) throws -> TensorBuffer {
        let byteCount = info.byteCount
        var source: UnsafeRawBufferPointer
        var readBuffer: TensorBuffer? = nil
        if let offset = e.inPlaceOffset {
            source = file.slice(offset, byteCount)
        } else {
            let buffer = try TensorBuffer(byteCount: byteCount)
            if byteCount > 0 { try read(e, into: buffer) }
            readBuffer = buffer
            source = buffer.readOnly
        }
        guard e.transposed else {
            if let readBuffer { return readBuffer }
            let copy = try TensorBuffer(byteCount: byteCount)
            if byteCount > 0 { copy.bytes.copyMemory(from: source) }
            return copy
        }
        let out = try TensorBuffer(byteCount: byteCount)
        ConvertedTensors.transpose(source, rows: e.storedShape[0], cols: e.storedShape[1],
                                   elementSize: e.elementSize, into: out.bytes)
        source = UnsafeRawBufferPointer(start: nil, count: 0)
        readBuffer = nil  // the untransposed copy goes before the caller gets `out`
        return out
    }

    private func read(_ e: Entry, into buffer: TensorBuffer) throws {
        let fid = fileID
        let at = "\(path): dataset '\(e.dataset)'"
        try HDF5.locked {
            let d = H5Dopen2(fid, e.dataset, flint_h5p_default())
            guard d >= 0 else { throw FlintError(.io, "\(at): cannot open (\(HDF5.takeErrors()))") }
            defer { _ = H5Dclose(d) }
            let fileType = H5Dget_type(d)
            guard fileType >= 0 else { throw FlintError(.io, "\(at): cannot read its datatype (\(HDF5.takeErrors()))") }
            defer { _ = H5Tclose(fileType) }
            // The same type in little-endian order: libhdf5 swaps bytes if the file is big-endian, nothing else.
            let memType = H5Tcopy(fileType)
            defer { _ = H5Tclose(memType) }
            if e.bigEndian { _ = H5Tset_order(memType, H5T_ORDER_LE) }
            guard H5Dread(d, memType, flint_h5s_all(), flint_h5s_all(), flint_h5p_default(), buffer.bytes.baseAddress) >= 0 else {
                throw FlintError(.io, "\(at): cannot read its data (\(HDF5.takeErrors()))")
            }
        }
    }
}
