// Linear layers behind one protocol, so the model never needs to know how a weight is stored: float32 in place,
// half precision widened once at load, or int8 (dequantized at load for now; int8 kernels plug in here later).
import FlintFormat
import FlintQuant

/// A linear map `y = x · Wᵀ` with W of shape `[outFeatures, inFeatures]` (no bias: T5 has none).
public protocol LinearWeight: AnyObject, Sendable {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// `y[r, :] = W · x[r, :]` for `r < rows`; x is `rows × inFeatures`, y is `rows × outFeatures`, both contiguous.
    func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool?)
}

/// Float32 memory the kernels can read: either owned (64-byte aligned) or borrowed from a memory-mapped file
/// whose owner is kept alive.
public final class FloatStorage: @unchecked Sendable {
    public let pointer: UnsafePointer<Float>
    public let count: Int
    private let owned: UnsafeMutableRawPointer?
    private let owner: AnyObject?

    /// Allocates `count` floats (zeroed) that this object owns.
    public init(count: Int) {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * 4, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(1, count))
        owned = raw
        pointer = UnsafePointer(raw.assumingMemoryBound(to: Float.self))
        self.count = count
        owner = nil
    }

    /// Allocates `count` floats that this object owns, left uninitialized: for buffers a kernel fills completely
    /// before anything reads them (activations of a forward pass, attention caches). Zeroing them first cost a
    /// serial pass over fresh pages on every call (flan-t5-base prefill at 2 threads: 7 % of the time).
    public init(uninitializedCount count: Int) {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * 4, alignment: 64)
        owned = raw
        pointer = UnsafePointer(raw.bindMemory(to: Float.self, capacity: max(1, count)))
        self.count = count
        owner = nil
    }

    /// Borrows `count` floats at `pointer`, keeping `owner` (the mapped file) alive.
    public init(borrowing pointer: UnsafePointer<Float>, count: Int, owner: AnyObject?) {
        self.pointer = pointer
        self.count = count
        self.owner = owner
        owned = nil
    }

    /// Writable access, only for storage this object owns (used while filling it at load).
    public var mutablePointer: UnsafeMutablePointer<Float> {
        precondition(owned != nil, "FloatStorage: borrowed memory is read-only")
        return UnsafeMutablePointer(mutating: pointer)
    }

    public var buffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: pointer, count: count) }

    deinit { owned?.deallocate() }
}

/// A float32 weight, used in place when the stored tensor is aligned float32, otherwise widened once.
public final class FloatLinear: LinearWeight, @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: FloatStorage
    /// The kernels `forward` runs: the ISA asked for, or `.portable` when this machine cannot run it.
    public let isa: KernelISA

    public init(weight: FloatStorage, outFeatures: Int, inFeatures: Int, isa: KernelISA = .preferred) {
        precondition(weight.count == outFeatures * inFeatures, "FloatLinear: weight size does not match its shape")
        self.weight = weight
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.isa = isa.runnable
    }

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        MatrixMultiply.multiplyTransposed(x: x, rows: rows, w: weight.pointer, outFeatures: outFeatures,
                                          inFeatures: inFeatures, y: y, pool: pool, isa: isa)
    }
}

/// An int8 weight (per-row or per-group scales) expanded to float32 at load. Same numbers as the int8 weight
/// (`q × scale`), computed with the float kernel; a real int8 kernel will replace it behind `LinearWeight`.
public final class DequantizedInt8Linear: LinearWeight, @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let scheme: QuantScheme
    private let dequantized: FloatLinear

    public init(_ view: TensorView, isa: KernelISA = .preferred) throws {
        guard view.storage == .i8 else {
            throw FlintError("tensor \(view.name): DequantizedInt8Linear needs i8 storage, found \(view.storage)")
        }
        let values = try TensorConversion.floatStorage(view)
        scheme = view.scheme
        outFeatures = view.rows
        inFeatures = view.cols
        dequantized = FloatLinear(weight: values, outFeatures: view.rows, inFeatures: view.cols, isa: isa)
    }

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        dequantized.forward(x, rows: rows, into: y, pool: pool)
    }
}

/// Chooses the linear implementation for a stored weight. The model builds every projection through this, so a
/// new storage kind only changes this function.
public enum LinearFactory {
    /// - Parameters:
    ///   - expectedShape: the expected `[outFeatures, inFeatures]`; a mismatch is a FlintError naming the tensor.
    ///   - int8Kernels: how int8 weights multiply: `Int8Linear` in place with that mode, or (nil) expanded to
    ///     float32 once at load (`DequantizedInt8Linear`).
    ///   - int8Scratch: activation scratch shared by the int8 layers of one model (W8A8).
    ///   - isa: the kernels the layer runs; a FlintError when this machine cannot run them.
    ///   - streamHalfPrecision: f16 / bf16 weights are multiplied from their stored bytes (`StreamedHalfLinear`)
    ///     and their pages handed back after each multiply, for models streamed block by block. Without it they are
    ///     used in place (pages kept) where `isa` multiplies them in registers (AVX-512, AVX2, NEON), else widened
    ///     to float32 once at load (`FloatLinear`: portable Swift would widen every tile again at each step).
    public static func make(_ view: TensorView, expectedShape: [Int], int8Kernels: Int8KernelMode? = nil,
                            int8Scratch: Int8Scratch? = nil, isa: KernelISA = .preferred,
                            streamHalfPrecision: Bool = false) throws -> LinearWeight {
        try isa.validate()
        guard view.shape == expectedShape else {
            throw FlintError("tensor \(view.name): expected shape \(expectedShape), found \(view.shape)")
        }
        // A `where` covers only its own pattern: both half formats need it.
        let plainHalf = view.scheme == .none && view.layout == .rowMajor
        let halfFromStorage = plainHalf && (streamHalfPrecision || StreamedHalfLinear.multipliesInRegisters(on: isa))
        switch view.storage {
        case .i8:
            if let int8Kernels {
                return try Int8Linear(view, mode: int8Kernels, isa: isa, scratch: int8Scratch)
            }
            return try DequantizedInt8Linear(view, isa: isa)
        case .i4:
            // Int4 (packed, f16 group scales): W4A8 in place (`Int4Linear`, activations quantized per weight
            // group) whenever quantized weights stay quantized (either int8 mode); widened to float32 once at load
            // only for the dequantized reference (nil).
            if int8Kernels != nil { return try Int4Linear(view, isa: isa, scratch: int8Scratch) }
            return FloatLinear(weight: try TensorConversion.floatStorage(view),
                               outFeatures: expectedShape[0], inFeatures: expectedShape[1], isa: isa)
        case .f16 where halfFromStorage, .bf16 where halfFromStorage:
            return try StreamedHalfLinear(view, outFeatures: expectedShape[0], inFeatures: expectedShape[1], isa: isa,
                                          releasesPages: streamHalfPrecision)
        case .f32, .f16, .bf16:
            return FloatLinear(weight: try TensorConversion.floatStorage(view),
                               outFeatures: expectedShape[0], inFeatures: expectedShape[1], isa: isa)
        }
    }
}

/// Conversions of stored tensors to float32.
public enum TensorConversion {
    /// The tensor's real values as float32: aligned f32 data is borrowed in place, everything else is converted
    /// once (f16 / bf16 widened, int8 multiplied by its scales). Checks byte and scale counts first.
    public static func floatStorage(_ view: TensorView) throws -> FloatStorage {
        guard view.shape.allSatisfy({ $0 >= 0 }) else {
            throw FlintError("tensor \(view.name): negative dimension in shape \(view.shape)")
        }
        // Checked arithmetic: this module is built with -Ounchecked, where a wrapped product would go unnoticed.
        var count = 1
        for dimension in view.shape + [view.storage.byteSize] {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw FlintError("tensor \(view.name): shape \(view.shape) is too large") }
            count = product
        }
        count /= view.storage.byteSize
        // Packed int8 has its own size rule, checked by validateInt8Matrix in dequantizeInt8.
        guard view.data.count == count * view.storage.byteSize || (view.storage == .i8 && view.layout != .rowMajor)
                || view.storage == .i4 else {
            throw FlintError("tensor \(view.name): \(view.storage) shape \(view.shape) needs \(count * view.storage.byteSize) bytes, found \(view.data.count)")
        }
        if count == 0 { return FloatStorage(count: 0) }
        let source = view.data.baseAddress!
        switch view.storage {
        case .f32:
            guard view.scheme == .none else {
                throw FlintError("tensor \(view.name): f32 storage with quantization scheme \(view.scheme)")
            }
            if Int(bitPattern: source) % MemoryLayout<Float>.alignment == 0 {
                return FloatStorage(borrowing: source.assumingMemoryBound(to: Float.self), count: count, owner: view.owner)
            }
            let storage = FloatStorage(count: count)
            UnsafeMutableRawPointer(storage.mutablePointer).copyMemory(from: source, byteCount: count * 4)
            return storage
        case .f16, .bf16:
            guard view.scheme == .none else {
                throw FlintError("tensor \(view.name): \(view.storage) storage with quantization scheme \(view.scheme)")
            }
            let storage = FloatStorage(count: count)
            try HalfConversion.decode(view.data, storage: view.storage,
                                      into: UnsafeMutableBufferPointer(start: storage.mutablePointer, count: count))
            // The widened copy is all the caller uses: hand the source's mapped pages back now, not when the
            // caller is done with its block (a bf16 xxl decoder block is 0.5 GB of them beside its 1 GB copy).
            releaseMappedPages(view.data)
            return storage
        case .i8:
            return try dequantizeInt8(view)
        case .i4:
            // Packed int4 has its own size rule, checked by Int4Quantizer.dequantize.
            let storage = FloatStorage(count: count)
            try Int4Quantizer.dequantize(view, into: UnsafeMutableBufferPointer(start: storage.mutablePointer, count: count))
            return storage
        }
    }

    /// The tensor as a Swift array of float32 (small tensors: norms, the position-bias table).
    public static func floatArray(_ view: TensorView) throws -> [Float] {
        let storage = try floatStorage(view)
        return Array(storage.buffer)
    }

    static func dequantizeInt8(_ view: TensorView) throws -> FloatStorage {
        let (rows, cols) = (view.rows, view.cols)
        try validateInt8Matrix(view, user: "dequantizing")
        let storage = FloatStorage(count: rows * cols)
        let out = storage.mutablePointer
        let scales = view.scales
        let group = view.scheme.groupSize
        let groupsPerRow = group > 0 ? (cols + group - 1) / group : 1
        // A packed view is unpacked to row-major codes first (validateInt8Matrix checked its size).
        try view.withRowMajorInt8 { q in
            for r in 0..<rows {
                for c in 0..<cols {
                    let scale = group > 0 ? scales[r * groupsPerRow + c / group] : scales[r]
                    out[r * cols + c] = Float(q[r * cols + c]) * scale
                }
            }
        }
        return storage
    }
}
