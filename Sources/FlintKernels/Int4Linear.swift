// Int4 linear layers that read the packed int4 weights in place (FLINT.md layout 2), straight from the mapped file.
//
// W4A8: each activation row is quantized on the fly per weight group (symmetric int8, scale max|x| / 127 per
// group of 32/64/128 inputs: far finer than the 4-bit weights, so it adds little error), the int32 products of
// the 4-bit codes and the int8 activations are accumulated exactly, and each group is rescaled once:
//     y[n] = Σ_groups float(Σ u·xq − 8·Σ xq) · (scale_w[n][g] · scale_x[g])          (u = q + 8, the stored code)
// Decoding at batch 1 streams the codes once per token — half the bytes of int8 — with the dot products of
// `vpdpbusd` (AVX-512 VNNI), `vpmaddubsw` (AVX2) or `sdot` / `smull` (NEON) in CFlintKernels/Int4Kernels.c;
// `.portable` runs the Swift kernel below, which every C path matches bit for bit. Prefill goes through
// the same kernels: the nibbles are unpacked to bytes in registers and each block's codes are reused for every
// activation row while they are in cache.
import FlintFormat
import FlintQuant
internal import CFlintKernels

public final class Int4Linear: LinearWeight, @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let groupSize: Int
    /// The kernels this layer runs.
    public let isa: KernelISA

    private let view: TensorView
    private let geometry: PackedInt4Geometry
    private let codes: UnsafePointer<UInt8>
    private let scales: UnsafePointer<UInt16>
    private let scratch: Int8Scratch

    /// - Throws: FlintError naming the tensor when it is not a packed int4 matrix of the right size, a scale is
    ///   not finite, or this machine cannot run `isa`.
    public init(_ view: TensorView, isa: KernelISA = .preferred, scratch: Int8Scratch? = nil) throws {
        try isa.validate()
        guard view.storage == .i4, view.layout == .int4Packed16x8,
              let geometry = PackedInt4Geometry(shape: view.shape, scheme: view.scheme) else {
            throw FlintError(.invalidArgument, "tensor \(view.name): Int4Linear needs a 2-D i4 tensor in layout int4-packed16x8 with scheme int4-g32/g64/g128, found \(view.storage) \(view.shape) \(view.scheme) \(view.layout)")
        }
        guard view.data.count == geometry.byteCount, let base = view.data.baseAddress else {
            throw FlintError(.corrupt, "tensor \(view.name): int4-packed16x8 \(view.shape) \(view.scheme) needs \(geometry.byteCount) bytes, found \(view.data.count)")
        }
        guard Int(bitPattern: base) % 2 == 0 else {
            throw FlintError(.corrupt, "tensor \(view.name): int4 data at an odd address; the f16 scales need 2-byte alignment")
        }
        self.view = view
        self.geometry = geometry
        codes = base.assumingMemoryBound(to: UInt8.self)
        scales = (base + geometry.codeBytes).assumingMemoryBound(to: UInt16.self)
        // A hostile file could hold inf / NaN scales: refuse them at load rather than emit NaN logits.
        for i in 0..<geometry.scaleCount where scales[i] & 0x7C00 == 0x7C00 {
            throw FlintError(.corrupt, "tensor \(view.name): f16 scale \(i) is not finite (bits 0x\(String(scales[i], radix: 16)))")
        }
        outFeatures = geometry.rows
        inFeatures = geometry.cols
        groupSize = geometry.groupSize
        self.isa = isa
        self.scratch = scratch ?? Int8Scratch()
    }

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        guard rows > 0 else { return }
        let g = geometry
        let stride = g.paddedCols
        let groups = g.groups
        // Scratch: xq (rows × paddedCols bytes), then xsum (Int32) and xs (Float), rows × groups each.
        let xqBytes = (rows * stride + 63) / 64 * 64
        let total = xqBytes + 8 * rows * groups
        scratch.withBytes(total) { raw in
            let xq = raw.assumingMemoryBound(to: Int8.self)
            let xsum = (raw + xqBytes).assumingMemoryBound(to: Int32.self)
            let xs = (raw + xqBytes + 4 * rows * groups).assumingMemoryBound(to: Float.self)
            // The C quantizers are bit-identical to the Swift one (`.portable` keeps it: the reference).
            switch self.isa {
            case .avx512:
                flint_avx512_int4_quantize_activations(x, Int64(rows), Int64(g.cols), Int64(g.groupSize), Int64(groups),
                                                       xq, Int64(stride), xsum, xs)
            case .avx2, .neon:
                flint_int4_quantize_activations(x, Int64(rows), Int64(g.cols), Int64(g.groupSize), Int64(groups),
                                                xq, Int64(stride), xsum, xs)
            case .portable:
                Int4Linear.quantizeActivations(x, rows: rows, cols: g.cols, groupSize: g.groupSize, groups: groups,
                                               stride: stride, xq: xq, xsum: xsum, xs: xs)
            }
            var m = flint_packed_int4(codes: codes, scales: scales, n: Int64(g.rows), k: Int64(g.cols),
                                      k_padded: Int64(stride), group_size: Int64(g.groupSize), groups: Int64(groups))
            let isa = self.isa
            let run: (Int, Int) -> Void = { begin, end in
                switch isa {
                case .avx512:
                    flint_avx512_int4_w4a8(&m, Int64(begin), Int64(end), xq, Int64(stride), xsum, xs, Int64(rows), y, Int64(g.rows))
                case .avx2:
                    flint_avx2_int4_w4a8(&m, Int64(begin), Int64(end), xq, Int64(stride), xsum, xs, Int64(rows), y, Int64(g.rows))
                case .neon:
                    flint_neon_int4_w4a8(&m, Int64(begin), Int64(end), xq, Int64(stride), xsum, xs, Int64(rows), y, Int64(g.rows))
                case .portable:
                    Int4Linear.portable(g, codes: self.codes, scales: self.scales, blocks: begin..<end, xq: xq,
                                        xsum: xsum, xs: xs, rows: rows, y: y)
                }
            }
            guard let pool else { return run(0, g.blocks) }
            let minimumBlocks = max(1, 131_072 / max(1, rows * inFeatures * 16))
            pool.parallelFor(g.blocks, granularity: 1, minimumPerThread: minimumBlocks) { range in
                run(range.lowerBound, range.upperBound)
            }
        }
    }

    /// Per row and group of `groupSize` inputs: `xs = max|x| / 127` (0 for a zero group), `xq = round(x / xs)`
    /// (ties to even, in -127…127), `xsum = Σ xq`; a group holding a NaN or ±∞ gets xq 0, xsum 0 and xs NaN, so
    /// its outputs are NaN rather than quietly finite; `xq` is zero past `cols` up to `stride`.
    static func quantizeActivations(_ x: UnsafePointer<Float>, rows: Int, cols: Int, groupSize: Int, groups: Int,
                                    stride: Int, xq: UnsafeMutablePointer<Int8>, xsum: UnsafeMutablePointer<Int32>,
                                    xs: UnsafeMutablePointer<Float>) {
        // 1.5 × 2²³: adding and subtracting it rounds |v| < 2²² to an integer, ties to even, without a libm call.
        let magic: Float = 12_582_912
        for r in 0..<rows {
            let row = x + r * cols
            let out = xq + r * stride
            for g in 0..<groups {
                let start = g * groupSize
                let end = min(cols, start + groupSize)
                var amax: Float = 0
                var finite = true
                if start < end {
                    for c in start..<end {
                        finite = finite && row[c].isFinite
                        amax = max(amax, abs(row[c]))
                    }
                }
                var sum: Int32 = 0
                if amax > 0 && finite {
                    let inverse = 127 / amax
                    for c in start..<end {
                        let q = max(-127, min(127, (row[c] * inverse + magic) - magic))
                        out[c] = Int8(q)
                        sum += Int32(q)
                    }
                    xs[r * groups + g] = amax / 127
                } else {
                    for c in start..<max(start, end) { out[c] = 0 }
                    xs[r * groups + g] = finite ? 0 : .nan
                }
                xsum[r * groups + g] = sum
            }
            for c in cols..<stride { out[c] = 0 }
        }
    }

    /// The portable kernel: the C kernels' arithmetic, lane by lane.
    static func portable(_ g: PackedInt4Geometry, codes: UnsafePointer<UInt8>, scales: UnsafePointer<UInt16>,
                         blocks: Range<Int>, xq: UnsafePointer<Int8>, xsum: UnsafePointer<Int32>,
                         xs: UnsafePointer<Float>, rows: Int, y: UnsafeMutablePointer<Float>) {
        let stride = g.paddedCols, groups = g.groups, chunksPerGroup = g.groupSize / 8
        for b in blocks {
            let block = codes + b * g.blockBytes
            let lanes = min(16, g.rows - 16 * b)
            for r in 0..<rows {
                let x = xq + r * stride
                for l in 0..<lanes {
                    var total: Float = 0
                    for group in 0..<groups {
                        var dot: Int32 = 0
                        for c in (group * chunksPerGroup)..<((group + 1) * chunksPerGroup) {
                            let bytes = block + 64 * c + 4 * l
                            for j in 0..<4 {
                                let byte = bytes[j]
                                dot += Int32(byte & 0x0F) * Int32(x[8 * c + j]) + Int32(byte >> 4) * Int32(x[8 * c + 4 + j])
                            }
                        }
                        dot -= 8 * xsum[r * groups + group]
                        let sw = HalfConversion.floatFromF16(scales[(b * groups + group) * 16 + l])
                        total = total + Float(dot) * (sw * xs[r * groups + group])
                    }
                    y[r * g.rows + 16 * b + l] = total
                }
            }
        }
    }
}
