internal import CFlintKernels
// Float32 matrix products in the layout Hugging Face stores linear weights: `y = x · Wᵀ` with W row-major
// `[out, in]`. Every output element is a dot product of two contiguous rows, so the kernels stream W once per
// tile of x rows, keep a few SIMD accumulators in registers and split the output columns (W rows) over threads.

public typealias FloatVector = SIMD8<Float>

@inline(__always)
func loadVector(_ p: UnsafePointer<Float>) -> FloatVector {
    UnsafeRawPointer(p).loadUnaligned(as: FloatVector.self)
}

@inline(__always)
func storeVector(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: FloatVector.self)
}

public enum MatrixMultiply {
    /// Output columns (W rows) handled together in the cache blocks each thread walks through.
    static let columnBlock = 64

    /// `y[r, j] = Σ_k x[r, k] · w[j, k]` for `r < rows`, `j < outFeatures` (overwrites y).
    /// - Parameters:
    ///   - x: `rows × inFeatures`, row stride `xStride` (default `inFeatures`).
    ///   - w: `outFeatures × inFeatures`, row-major, contiguous.
    ///   - y: `rows × outFeatures`, row stride `yStride` (default `outFeatures`).
    ///   - isa: the kernels to use: `.avx512`, `.avx2` and `.neon` run their C kernels, `.portable` the Swift one
    ///     (an ISA this CPU cannot run falls back to portable).
    public static func multiplyTransposed(
        x: UnsafePointer<Float>, rows: Int, xStride: Int? = nil,
        w: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int,
        y: UnsafeMutablePointer<Float>, yStride: Int? = nil, pool: ThreadPool?, isa: KernelISA = .preferred
    ) {
        let ldx = xStride ?? inFeatures
        let ldy = yStride ?? outFeatures
        guard rows > 0, outFeatures > 0 else { return }
        // About 64k multiply-adds per thread pays for a wake-up.
        let perColumn = max(1, rows * inFeatures)
        let minimumColumns = max(4, 65_536 / perColumn)
        let path = isa.runnable
        let work: (Range<Int>) -> Void = { columns in
            let (k, begin, end) = (Int64(inFeatures), Int64(columns.lowerBound), Int64(columns.upperBound))
            switch path {
            case .avx512: return flint_f32_xwt(x, Int64(rows), Int64(ldx), w, k, begin, end, y, Int64(ldy))
            case .avx2: return flint_avx2_f32_xwt(x, Int64(rows), Int64(ldx), w, k, begin, end, y, Int64(ldy))
            case .neon: return flint_neon_f32_xwt(x, Int64(rows), Int64(ldx), w, k, begin, end, y, Int64(ldy))
            case .portable: break
            }
            var start = columns.lowerBound
            while start < columns.upperBound {
                let end = min(columns.upperBound, start + columnBlock)
                multiplyBlock(x: x, rows: rows, ldx: ldx, w: w, k: inFeatures, columns: start..<end, y: y, ldy: ldy)
                start = end
            }
        }
        if let pool {
            pool.parallelFor(outFeatures, granularity: 4, minimumPerThread: minimumColumns, work)
        } else {
            work(0..<outFeatures)
        }
    }

    /// One cache block: the W rows of `columns` stay in cache while all x rows pass over them.
    @inline(__always)
    static func multiplyBlock(x: UnsafePointer<Float>, rows: Int, ldx: Int, w: UnsafePointer<Float>, k: Int,
                              columns: Range<Int>, y: UnsafeMutablePointer<Float>, ldy: Int) {
        var r = 0
        while r + 4 <= rows {
            for j in columns {
                fourRowsOneColumn(x: x + r * ldx, ldx: ldx, w: w + j * k, k: k, y: y + r * ldy + j, ldy: ldy)
            }
            r += 4
        }
        // Remaining rows (all of them for a matrix-vector product): one W row at a time, read as a single
        // sequential stream, which measured faster than interleaving four W rows against one x row.
        while r < rows {
            for j in columns {
                y[r * ldy + j] = dot(x + r * ldx, w + j * k, count: k)
            }
            r += 1
        }
    }

    /// Four x rows against one W row: each W chunk is loaded once and used four times.
    @inline(__always)
    static func fourRowsOneColumn(x: UnsafePointer<Float>, ldx: Int, w: UnsafePointer<Float>, k: Int,
                                  y: UnsafeMutablePointer<Float>, ldy: Int) {
        let x0 = x, x1 = x + ldx, x2 = x + 2 * ldx, x3 = x + 3 * ldx
        var a0 = FloatVector(), a1 = FloatVector(), a2 = FloatVector(), a3 = FloatVector()
        var i = 0
        let width = FloatVector.scalarCount
        while i + width <= k {
            let wv = loadVector(w + i)
            a0 += loadVector(x0 + i) * wv
            a1 += loadVector(x1 + i) * wv
            a2 += loadVector(x2 + i) * wv
            a3 += loadVector(x3 + i) * wv
            i += width
        }
        var s0 = a0.sum(), s1 = a1.sum(), s2 = a2.sum(), s3 = a3.sum()
        while i < k {
            let wv = w[i]
            s0 += x0[i] * wv; s1 += x1[i] * wv; s2 += x2[i] * wv; s3 += x3[i] * wv
            i += 1
        }
        y[0] = s0; y[ldy] = s1; y[2 * ldy] = s2; y[3 * ldy] = s3
    }
}

/// `Σ a[i]·b[i]` over `count` floats.
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    // Four independent accumulators hide the add latency.
    var acc0 = FloatVector(), acc1 = FloatVector(), acc2 = FloatVector(), acc3 = FloatVector()
    let width = FloatVector.scalarCount
    var i = 0
    while i + 4 * width <= count {
        acc0 += loadVector(a + i) * loadVector(b + i)
        acc1 += loadVector(a + i + width) * loadVector(b + i + width)
        acc2 += loadVector(a + i + 2 * width) * loadVector(b + i + 2 * width)
        acc3 += loadVector(a + i + 3 * width) * loadVector(b + i + 3 * width)
        i += 4 * width
    }
    while i + width <= count {
        acc0 += loadVector(a + i) * loadVector(b + i)
        i += width
    }
    var s = ((acc0 + acc1) + (acc2 + acc3)).sum()
    while i < count { s += a[i] * b[i]; i += 1 }
    return s
}

/// `y[i] += alpha · x[i]` over `count` floats.
@inline(__always)
public func addScaled(_ x: UnsafePointer<Float>, scale alpha: Float, into y: UnsafeMutablePointer<Float>, count: Int) {
    let width = FloatVector.scalarCount
    let av = FloatVector(repeating: alpha)
    var i = 0
    while i + width <= count {
        storeVector(loadVector(y + i) + av * loadVector(x + i), y + i)
        i += width
    }
    while i < count { y[i] += alpha * x[i]; i += 1 }
}
