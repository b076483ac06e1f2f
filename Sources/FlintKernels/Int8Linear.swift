// Int8 linear layers that read the quantized weights in place (straight from the memory-mapped .flint file).
//
// Two ways to multiply, chosen when the layer is built:
//  - weight-only: each int8 weight is widened to float in registers and multiplied into float activations, with
//    float accumulation. Same numbers as the dequantized float weight (up to summation order).
//  - W8A8: the activations are quantized on the fly, symmetric int8 with one scale per x row (int8Row weights) or
//    per block matching the weight groups (int8-gN weights); int8 × int8 products are accumulated in Int32 and
//    rescaled once per group (or row): `y ≈ Σ_groups scale_w · scale_x · Σ q_w · q_x`.
//
// Decoding at batch 1 is a matrix-vector product whose speed is the weight bytes streamed per token, so the
// kernels read each weight byte once per call; the encoder's matrix-matrix products reuse every loaded weight
// chunk for several x rows. Output rows (weight rows) are split over the ThreadPool like the float kernel.
//
// Each layer runs the kernels of the `KernelISA` it is built with. For `.avx512`, `.avx2` and `.neon` the inner
// loops run in C (target CFlintKernels: `vpdpbusd` on zmm, on ymm with AVX-VNNI, `sdot` on NEON): Swift on Linux
// compiles for baseline x86-64 (SSE2) and cannot ask for wider vectors per function. For `.portable` (and group
// sizes the AVX-512 kernels do not handle) the Swift kernels of Int8PortableKernels.swift do the same arithmetic.
// The AVX2 and NEON W8A8 kernels give results bit-identical to the Swift one (exact Int32 sums, the same unfused
// float epilogue). The activation quantizer is in Int8ActivationQuantizer.swift, int8 embeddings in
// Int8Embedding.swift.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import FlintFormat
internal import CFlintKernels

/// How an `Int8Linear` multiplies.
public enum Int8KernelMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// int8 weights, float activations, float accumulation.
    case weightOnly = "weight-only"
    /// int8 weights and on-the-fly int8 activations, Int32 accumulation.
    case w8a8 = "w8a8"

    /// Parses the command-line names `weight-only` and `w8a8`.
    public init?(cliName: String) {
        guard let mode = Int8KernelMode(rawValue: cliName.lowercased()) else { return nil }
        self = mode
    }

    /// The command-line name: `weight-only` or `w8a8`.
    public var cliName: String { rawValue }

    public var description: String { rawValue }
}

/// Scratch memory for the quantized activations of W8A8 layers. Layers that never run concurrently can share
/// one (the model's layers run one after another), which keeps a single buffer sized for the largest batch.
/// Access is serialized by a lock, so sharing is safe even when forward calls do overlap.
public final class Int8Scratch: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: UnsafeMutableRawPointer?
    private var byteCapacity = 0

    public init() {}

    deinit { bytes?.deallocate() }

    /// Runs `body` with at least `byteCount` bytes of 64-byte aligned scratch memory, growing it only when a
    /// call needs more than any before (no allocation per call in steady state).
    func withBytes<R>(_ byteCount: Int, _ body: (UnsafeMutableRawPointer) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        if byteCount > byteCapacity || bytes == nil {
            bytes?.deallocate()
            let capacity = max(byteCount, 64)
            bytes = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
            byteCapacity = capacity
        }
        return body(bytes!)
    }
}

/// `y = x · Wᵀ` with W an int8 tensor (`.int8Row` or `.int8Group(g)`) used in place.
public final class Int8Linear: LinearWeight, @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let scheme: QuantScheme
    public let mode: Int8KernelMode
    /// The kernels this layer runs: the ISA it was built with, or `.portable` when that ISA has no kernel for
    /// this layer's group size.
    public let isa: KernelISA

    /// The view whose bytes are read in place; kept so its owner (the mapped file) stays alive.
    private let view: TensorView
    private let weights: UnsafePointer<Int8>
    private let scales: UnsafePointer<Float>
    /// Elements per group along the input dimension (`inFeatures` for per-row scales) and groups per row.
    private let groupSize: Int
    private let groups: Int
    /// W8A8 only: `128 × scale × Σ q` per (row, group), see CFlintKernels.h; nil for weight-only.
    private let compensation: UnsafeMutablePointer<Float>?
    /// W8A8 on AVX2/NEON only: `Σ q` per (row, group) in Int32 (their kernels multiply signed activations and add
    /// `128 · Σ q` back, see CFlintKernels.h); nil otherwise.
    private let weightSums: UnsafeMutablePointer<Int32>?
    private let scratch: Int8Scratch
    /// Row stride of the quantized activations, a multiple of 64 bytes.
    private let quantizedStride: Int
    /// Set for a weight stored in the packed layout (FLINT.md layout 1): its blocks and stored weight sums are
    /// read in place and nothing is computed at load.
    private let packed: PackedInt8Geometry?
    private let packedSums: UnsafePointer<Int32>?

    /// The layout this layer reads its weights in.
    public var layout: TensorLayout { packed == nil ? .rowMajor : .int8Packed16x4 }

    /// - Parameters:
    ///   - view: an `i8` tensor `[out, in]` with `.int8Row` or `.int8Group(g)` scales; its bytes are used in place.
    ///   - isa: the kernels to run (`KernelISA.preferred` by default).
    ///   - scratch: activation scratch for W8A8, shareable between layers; a private one by default.
    /// - Throws: FlintError naming the tensor when the storage, shape, byte count or scales do not match, or the
    ///   ISA when this machine cannot run it.
    public init(_ view: TensorView, mode: Int8KernelMode, isa: KernelISA = .preferred,
                scratch: Int8Scratch? = nil) throws {
        try isa.validate()
        try validateInt8Matrix(view, user: "Int8Linear")
        let (rows, cols) = (view.shape[0], view.shape[1])
        if let bad = view.scales.firstIndex(where: { !$0.isFinite }) {
            throw FlintError("tensor \(view.name): scale \(bad) is \(view.scales[bad]); int8 scales must be finite")
        }

        self.view = view
        self.mode = mode
        scheme = view.scheme
        outFeatures = rows
        inFeatures = cols
        if case .int8Group(let g) = view.scheme, g < cols {
            groupSize = g
            groups = (cols + g - 1) / g
        } else {
            // Per-row scales, or one group covering the whole row: one scale per row either way.
            groupSize = max(cols, 1)
            groups = view.scheme.groupSize > 0 ? (cols + view.scheme.groupSize - 1) / view.scheme.groupSize : 1
        }
        weights = view.data.baseAddress.map { $0.assumingMemoryBound(to: Int8.self) }
            ?? UnsafePointer(bitPattern: 64)!
        scales = view.scales.baseAddress ?? UnsafePointer(bitPattern: 64)!
        self.scratch = scratch ?? Int8Scratch()
        quantizedStride = (cols + 63) / 64 * 64

        if let geometry = view.packedGeometry {
            // validateInt8Matrix checked the geometry; the packed kernels of every path take every group size it
            // allows, and the weight sums come from the file: nothing to compute here.
            packed = geometry
            packedSums = UnsafeRawPointer(weights + geometry.weightBytes).assumingMemoryBound(to: Int32.self)
            self.isa = isa
            compensation = nil
            weightSums = nil
            return
        }
        // What the AVX-512 kernels handle (see CFlintKernels.h); the AVX2 and NEON ones take any group size.
        let avx512Fits: Bool
        switch mode {
        case .w8a8: avx512Fits = groups <= 1 || groupSize == 32 || groupSize % 64 == 0
        case .weightOnly: avx512Fits = groups <= 1 || groupSize % 16 == 0
        }
        switch isa {
        case .avx512: self.isa = avx512Fits ? .avx512 : .portable
        case .avx2, .neon, .portable: self.isa = isa
        }
        packed = nil
        packedSums = nil
        if mode == .w8a8 && rows * groups > 0 {
            let comp = UnsafeMutablePointer<Float>.allocate(capacity: rows * groups)
            let needsSums = self.isa == .avx2 || self.isa == .neon
            let sums = needsSums ? UnsafeMutablePointer<Int32>.allocate(capacity: rows * groups) : nil
            for row in 0..<rows {
                for group in 0..<groups {
                    let start = group * groupSize
                    let end = min(cols, start + groupSize)
                    var sum: Int32 = 0
                    let w = weights + row * cols
                    for i in start..<end { sum &+= Int32(w[i]) }
                    comp[row * groups + group] = 128 * scales[row * groups + group] * Float(sum)
                    sums?[row * groups + group] = sum
                }
            }
            compensation = comp
            weightSums = sums
        } else {
            compensation = nil
            weightSums = nil
        }
    }

    deinit {
        compensation?.deallocate()
        weightSums?.deallocate()
    }

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        guard rows > 0, outFeatures > 0 else { return }
        guard inFeatures > 0, groups > 0 else {
            y.initialize(repeating: 0, count: rows * outFeatures)
            return
        }
        switch mode {
        case .weightOnly: forwardWeightOnly(x, rows: rows, y: y, pool: pool)
        case .w8a8: forwardW8A8(x, rows: rows, y: y, pool: pool)
        }
    }

    /// The C view of a packed weight.
    private func packedMatrix(_ g: PackedInt8Geometry) -> flint_packed_int8 {
        flint_packed_int8(blocks: weights, sums: packedSums, scales: scales, n: Int64(g.rows), k: Int64(g.cols),
                          k_padded: Int64(g.paddedCols), group_size: Int64(g.groupSize), groups: Int64(g.groups))
    }

    /// Splits the 16-row blocks of a packed weight over the pool, skipping the wake-up for jobs under about 32k
    /// multiply-adds per thread. At 128k flan-t5-small's attention projections (384 × 512) stayed on one thread in
    /// decode; at 32k a 2-thread batch-1 step ran 585 → 697 tok/s (medians of 5 alternating rounds, KVM Emerald
    /// Rapids; each of 8 rounds faster), flan-t5-base (whose matrices split either way) unchanged within the noise.
    private func splitBlocks(_ g: PackedInt8Geometry, rows: Int, pool: ThreadPool?, _ body: (Int64, Int64) -> Void) {
        guard let pool else { return body(0, Int64(g.blocks)) }
        let minimumBlocks = max(1, 32_768 / max(1, rows * inFeatures * 16))
        pool.parallelFor(g.blocks, granularity: 1, minimumPerThread: minimumBlocks) { range in
            body(Int64(range.lowerBound), Int64(range.upperBound))
        }
    }

    /// The C view of this weight.
    private func matrix() -> flint_int8_matrix {
        flint_int8_matrix(weights: weights, scales: scales, compensation: compensation.map { UnsafePointer($0) },
                          weight_sums: weightSums.map { UnsafePointer($0) },
                          k: Int64(inFeatures), group_size: Int64(groupSize), groups: Int64(groups))
    }

    /// Splits the output rows over the pool in multiples of 8 (the matrix-vector tile), skipping the wake-up
    /// for jobs under about 128k multiply-adds per thread.
    private func splitRows(rows: Int, pool: ThreadPool?, _ body: (Range<Int>) -> Void) {
        guard let pool else { return body(0..<outFeatures) }
        let minimumRows = max(8, 131_072 / max(1, rows * inFeatures))
        pool.parallelFor(outFeatures, granularity: 8, minimumPerThread: minimumRows, body)
    }

    private func forwardWeightOnly(_ x: UnsafePointer<Float>, rows: Int, y: UnsafeMutablePointer<Float>,
                                   pool: ThreadPool?) {
        if let g = packed {
            let isa = self.isa
            withUnsafePointer(to: packedMatrix(g)) { m in
                splitBlocks(g, rows: rows, pool: pool) { begin, end in
                    let (ldx, r, ldy) = (Int64(inFeatures), Int64(rows), Int64(outFeatures))
                    switch isa {
                    case .avx512: flint_avx512_packed_weight_only(m, begin, end, x, ldx, r, y, ldy)
                    case .avx2: flint_avx2_packed_weight_only(m, begin, end, x, ldx, r, y, ldy)
                    case .neon: flint_neon_packed_weight_only(m, begin, end, x, ldx, r, y, ldy)
                    case .portable:
                        Int8PackedPortableKernels.weightOnly(m, blocks: Int(begin)..<Int(end), x: x, rows: rows, y: y,
                                                             ldy: outFeatures)
                    }
                }
            }
            return
        }
        if isa != .portable {
            let isa = self.isa
            // One pointer shared read-only by every thread (no inout access from concurrent closures).
            withUnsafePointer(to: matrix()) { m in
                splitRows(rows: rows, pool: pool) { range in
                    let (begin, end) = (Int64(range.lowerBound), Int64(range.upperBound))
                    let (ldx, r, ldy) = (Int64(inFeatures), Int64(rows), Int64(outFeatures))
                    switch isa {
                    case .avx512: flint_int8_weight_only(m, begin, end, x, ldx, r, y, ldy)
                    case .avx2: flint_avx2_int8_weight_only(m, begin, end, x, ldx, r, y, ldy)
                    case .neon: flint_neon_int8_weight_only(m, begin, end, x, ldx, r, y, ldy)
                    case .portable: break
                    }
                }
            }
        } else {
            splitRows(rows: rows, pool: pool) { range in
                Int8PortableKernels.weightOnly(weights: weights, scales: scales, k: inFeatures, groupSize: groupSize,
                                               groups: groups, outputRows: range, x: x, rows: rows, y: y,
                                               ldy: outFeatures)
            }
        }
    }

    private func forwardW8A8(_ x: UnsafePointer<Float>, rows: Int, y: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        withQuantizedInput(x, rows: rows, pool: pool) { xq, xs in
            multiplyQuantized(xq, xs, rows: rows, y: y, pool: pool)
        }
    }

    /// Whether `other` quantizes its input exactly as this layer does (W8A8 both, same input width, activation
    /// groups and quantizer), so that one quantized copy of a shared input serves both.
    func quantizesInput(like other: Int8Linear) -> Bool {
        mode == .w8a8 && other.mode == .w8a8 && inFeatures == other.inFeatures && groupSize == other.groupSize
            && groups == other.groups && isa == other.isa
    }

    /// Quantizes `rows` rows of `x` into this layer's scratch and runs `body(xq, xs)` with the codes (row stride
    /// `quantizedStride`) and their scales, holding the scratch for the duration.
    private func withQuantizedInput(_ x: UnsafePointer<Float>, rows: Int, pool: ThreadPool?,
                                    _ body: (UnsafePointer<UInt8>, UnsafePointer<Float>) -> Void) {
        let ldq = quantizedStride
        let quantizedBytes = rows * ldq
        let scaleOffset = (quantizedBytes + 63) / 64 * 64
        scratch.withBytes(scaleOffset + rows * groups * MemoryLayout<Float>.stride) { raw in
            let xq = raw.assumingMemoryBound(to: UInt8.self)
            let xs = (raw + scaleOffset).assumingMemoryBound(to: Float.self)
            // Rows are independent: a prefill's 512 rows are split over the pool (about 32k values per thread at
            // least), where they were a serial stretch of every layer at 2 threads.
            let minimumRows = max(1, 32768 / max(1, inFeatures))
            let quantizeRows: (Range<Int>) -> Void = { range in
                self.quantize(x + range.lowerBound * self.inFeatures, rows: range.count,
                              into: xq + range.lowerBound * ldq, scales: xs + range.lowerBound * self.groups)
            }
            if let pool { pool.parallelFor(rows, minimumPerThread: minimumRows, quantizeRows) } else { quantizeRows(0..<rows) }
            body(UnsafePointer(xq), UnsafePointer(xs))
        }
    }

    /// The activation quantizer of this layer's path (every path gives the same codes, bit for bit; the C ones
    /// are about 3× faster than the Swift one).
    private func quantize(_ x: UnsafePointer<Float>, rows: Int, into xq: UnsafeMutablePointer<UInt8>,
                          scales xs: UnsafeMutablePointer<Float>) {
        let (r, k, gs, g, ld) = (Int64(rows), Int64(inFeatures), Int64(groupSize), Int64(groups), Int64(quantizedStride))
        switch isa {
        case .avx512: flint_int8_quantize_activations(x, r, k, gs, g, xq, ld, xs)
        case .avx2: flint_avx2_int8_quantize_activations(x, r, k, gs, g, xq, ld, xs)
        case .neon: flint_neon_int8_quantize_activations(x, r, k, gs, g, xq, ld, xs)
        case .portable:
            Int8ActivationQuantizer.quantize(x, rows: rows, k: inFeatures, groupSize: groupSize, groups: groups,
                                             into: xq, stride: quantizedStride, scales: xs)
        }
    }

    /// `y = x · Wᵀ` from quantized activations (`xq` with row stride `quantizedStride`, scales `xs`).
    private func multiplyQuantized(_ xq: UnsafePointer<UInt8>, _ xs: UnsafePointer<Float>, rows: Int,
                                   y: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        let ldq = quantizedStride
        let (r, ld) = (Int64(rows), Int64(ldq))
        if let geometry = packed {
            let isa = self.isa
            withUnsafePointer(to: packedMatrix(geometry)) { m in
                splitBlocks(geometry, rows: rows, pool: pool) { begin, end in
                    let ldy = Int64(outFeatures)
                    switch isa {
                    case .avx512: flint_avx512_packed_w8a8(m, begin, end, xq, ld, xs, r, y, ldy)
                    case .avx2: flint_avx2_packed_w8a8(m, begin, end, xq, ld, xs, r, y, ldy)
                    case .neon: flint_neon_packed_w8a8(m, begin, end, xq, ld, xs, r, y, ldy)
                    case .portable:
                        Int8PackedPortableKernels.w8a8(m, blocks: Int(begin)..<Int(end), xq: xq, ldq: ldq,
                                                       xScales: xs, rows: rows, y: y, ldy: outFeatures)
                    }
                }
            }
        } else if isa != .portable {
            let isa = self.isa
            withUnsafePointer(to: matrix()) { m in
                splitRows(rows: rows, pool: pool) { range in
                    let (begin, end, ldy) = (Int64(range.lowerBound), Int64(range.upperBound), Int64(outFeatures))
                    switch isa {
                    case .avx512: flint_int8_w8a8(m, begin, end, xq, ld, xs, r, y, ldy)
                    case .avx2: flint_avx2_int8_w8a8(m, begin, end, xq, ld, xs, r, y, ldy)
                    case .neon: flint_neon_int8_w8a8(m, begin, end, xq, ld, xs, r, y, ldy)
                    case .portable: break
                    }
                }
            }
        } else {
            let comp = UnsafePointer(compensation!)
            splitRows(rows: rows, pool: pool) { range in
                Int8PortableKernels.w8a8(weights: weights, scales: scales, compensation: comp, k: inFeatures,
                                         groupSize: groupSize, groups: groups, outputRows: range,
                                         xq: xq, ldq: ldq, xScales: xs, rows: rows, y: y, ldy: outFeatures)
            }
        }
    }

    /// `outputs[i] = x · layers[i].Wᵀ` for layers that read the same input (attention's q, k and v; the two input
    /// projections of a gated feed-forward; the cross-attention keys and values of every decoder block). The
    /// W8A8 layers that quantize like the first of them (`quantizesInput(like:)`) share one quantized copy of x —
    /// the same codes each would make, so the results equal separate `forward` calls bit for bit; every other
    /// layer runs its own `forward`.
    public static func forward(_ layers: [any LinearWeight], sharingInput x: UnsafePointer<Float>, rows: Int,
                               into outputs: [UnsafeMutablePointer<Float>], pool: ThreadPool?) {
        precondition(layers.count == outputs.count, "Int8Linear.forward(sharingInput:): one output per layer")
        var shared: [Int] = []
        var leader: Int8Linear?
        for (i, layer) in layers.enumerated() {
            guard let int8 = layer as? Int8Linear, int8.mode == .w8a8, int8.outFeatures > 0, int8.inFeatures > 0,
                  int8.groups > 0 else { continue }
            if let leader {
                if int8.quantizesInput(like: leader) { shared.append(i) }
            } else {
                leader = int8
                shared.append(i)
            }
        }
        let sharedSet = Set(shared)
        for (i, layer) in layers.enumerated() where !sharedSet.contains(i) {
            layer.forward(x, rows: rows, into: outputs[i], pool: pool)
        }
        guard let leader, rows > 0 else { return }
        leader.withQuantizedInput(x, rows: rows, pool: pool) { xq, xs in
            for i in shared {
                (layers[i] as! Int8Linear).multiplyQuantized(xq, xs, rows: rows, y: outputs[i], pool: pool)
            }
        }
    }
}

/// Checks that `view` is a 2-D i8 tensor whose bytes, scheme and scales agree with its shape; every int8 consumer
/// calls this before touching the bytes.
public func validateInt8Matrix(_ view: TensorView, user: String) throws {
    guard view.storage == .i8, view.shape.count == 2, view.shape.allSatisfy({ $0 >= 0 }) else {
        throw FlintError("tensor \(view.name): \(user) needs a 2-D i8 tensor [out, in], found \(view.storage) \(view.shape)")
    }
    switch view.layout {
    case .rowMajor:
        guard view.data.count == view.shape[0] * view.shape[1] else {
            throw FlintError("tensor \(view.name): i8 shape \(view.shape) needs \(view.shape[0] * view.shape[1]) bytes, found \(view.data.count)")
        }
    case .int8Packed16x4:
        guard let geometry = PackedInt8Geometry(shape: view.shape, scheme: view.scheme) else {
            throw FlintError("tensor \(view.name): layout packed16x4 cannot hold an i8 \(view.shape) tensor with scheme \(view.scheme)")
        }
        guard view.data.count == geometry.byteCount else {
            throw FlintError("tensor \(view.name): packed16x4 i8 shape \(view.shape) \(view.scheme) needs \(geometry.byteCount) bytes, found \(view.data.count)")
        }
    case .int4Packed16x8:
        throw FlintError("tensor \(view.name): \(user) needs int8 codes, found layout int4-packed16x8")
    }
    switch view.scheme {
    case .none:
        throw FlintError("tensor \(view.name): i8 storage needs a quantization scheme (int8 or int8-gN), found none")
    case .int8Group(let g) where g <= 0:
        throw FlintError("tensor \(view.name): int8 group size must be positive, found \(g)")
    default:
        break
    }
    let expectedScales = view.scheme.scaleCount(shape: view.shape)
    guard view.scales.count == expectedScales else {
        throw FlintError("tensor \(view.name): scheme \(view.scheme) with shape \(view.shape) needs \(expectedScales) scales, found \(view.scales.count)")
    }
}
