// The Swift int8 kernels, for `.portable` (and group sizes the C kernels do not handle): the arithmetic of the C
// kernels in CFlintKernels, on the row-major and on the packed layout. The inner loops use wrapping arithmetic and
// stepped pointers: the library is built without -Ounchecked, so checked index math would cost in every element.

import Foundation
internal import CFlintKernels

/// The Swift kernels: used where the AVX-512 VNNI ones are not available (or not asked for). The inner loops are
/// plain element loops that LLVM vectorizes for whatever the build targets (SSE2 `pmaddwd` by default).
enum Int8PortableKernels {
    static func weightOnly(weights: UnsafePointer<Int8>, scales: UnsafePointer<Float>, k: Int, groupSize: Int,
                           groups: Int, outputRows: Range<Int>, x: UnsafePointer<Float>, rows: Int,
                           y: UnsafeMutablePointer<Float>, ldy: Int) {
        var block = outputRows.lowerBound
        while block < outputRows.upperBound {
            let blockEnd = min(outputRows.upperBound, block + 32)
            for r in 0..<rows {
                let xr = x + r * k
                for n in block..<blockEnd {
                    let w = weights + n * k
                    var sum: Float = 0
                    for g in 0..<groups {
                        let start = g &* groupSize
                        let count = min(k, start &+ groupSize) &- start
                        sum += dotInt8Float(w + start, xr + start, count: count) * scales[n &* groups &+ g]
                    }
                    y[r * ldy + n] = sum
                }
            }
            block = blockEnd
        }
    }

    static func w8a8(weights: UnsafePointer<Int8>, scales: UnsafePointer<Float>, compensation: UnsafePointer<Float>,
                     k: Int, groupSize: Int, groups: Int, outputRows: Range<Int>,
                     xq: UnsafePointer<UInt8>, ldq: Int, xScales: UnsafePointer<Float>, rows: Int,
                     y: UnsafeMutablePointer<Float>, ldy: Int) {
        var block = outputRows.lowerBound
        while block < outputRows.upperBound {
            let blockEnd = min(outputRows.upperBound, block + 32)
            for r in 0..<rows {
                let qr = xq + r * ldq
                let sr = xScales + r * groups
                for n in block..<blockEnd {
                    let w = weights + n * k
                    var sum: Float = 0
                    var correction: Float = 0
                    for g in 0..<groups {
                        let start = g &* groupSize
                        let count = min(k, start &+ groupSize) &- start
                        let scale = scales[n &* groups &+ g] * sr[g]
                        sum += Float(dotUInt8Int8(qr + start, w + start, count: count)) * scale
                        correction += compensation[n &* groups &+ g] * sr[g]
                    }
                    y[r * ldy + n] = sum - correction
                }
            }
            block = blockEnd
        }
    }

    /// `Σ u[i]·w[i]` in Int32: an element loop the loop vectorizer turns into widening multiply-adds.
    @inline(__always)
    static func dotUInt8Int8(_ u: UnsafePointer<UInt8>, _ w: UnsafePointer<Int8>, count: Int) -> Int32 {
        var acc: Int32 = 0
        for i in 0..<count { acc &+= Int32(u[i]) &* Int32(w[i]) }
        return acc
    }

    /// `Σ Float(w[i])·x[i]` with eight-lane float accumulators (a plain float loop would not vectorize: float
    /// addition is not reassociated).
    @inline(__always)
    static func dotInt8Float(_ w: UnsafePointer<Int8>, _ x: UnsafePointer<Float>, count: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= count {
            var w0 = SIMD8<Float>(), w1 = SIMD8<Float>()
            for j in 0..<8 { w0[j] = Float(w[i &+ j]); w1[j] = Float(w[i &+ 8 &+ j]) }
            acc0 += w0 * UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            acc1 += w1 * UnsafeRawPointer(x + i + 8).loadUnaligned(as: SIMD8<Float>.self)
            i += 16
        }
        var sum = (acc0 + acc1).sum()
        while i < count { sum += Float(w[i]) * x[i]; i += 1 }
        return sum
    }
}

/// The Swift kernels on the packed layout (FLINT.md layout 1), for `.portable`: the same arithmetic as
/// `Int8PortableKernels` (W8A8 bit-identical: exact Int32 dots per group, the unfused epilogue in its order, the
/// compensation `(128 · scale) · Float(Σ q)` from the stored sums).
enum Int8PackedPortableKernels {
    static func w8a8(_ m: UnsafePointer<flint_packed_int8>, blocks: Range<Int>, xq: UnsafePointer<UInt8>, ldq: Int,
                     xScales: UnsafePointer<Float>, rows: Int, y: UnsafeMutablePointer<Float>, ldy: Int) {
        let (n, kp, groups) = (Int(m.pointee.n), Int(m.pointee.k_padded), Int(m.pointee.groups))
        let groupSize = groups == 1 ? kp : Int(m.pointee.group_size)
        let w = m.pointee.blocks!, sums = m.pointee.sums!, scales = m.pointee.scales!
        for b in blocks {
            let block = w + b * 16 * kp
            for lane in 0..<min(16, n - 16 * b) {
                let row = 16 * b + lane
                for r in 0..<rows {
                    let qr = xq + r * ldq
                    var sum: Float = 0
                    var correction: Float = 0
                    for g in 0..<groups {
                        let q0 = g &* groupSize / 4, q1 = min(kp, (g &+ 1) &* groupSize) / 4
                        var dot: Int32 = 0
                        // Pointers stepped, not indices multiplied: the index arithmetic would be overflow-checked.
                        var wq = block + (q0 &<< 6 &+ lane &<< 2), xr = qr + (q0 &<< 2)
                        for _ in q0..<q1 {
                            dot &+= Int32(xr[0]) &* Int32(wq[0]) &+ Int32(xr[1]) &* Int32(wq[1])
                                &+ Int32(xr[2]) &* Int32(wq[2]) &+ Int32(xr[3]) &* Int32(wq[3])
                            wq += 64
                            xr += 4
                        }
                        let sw = scales[row &* groups &+ g], sx = xScales[r &* groups &+ g]
                        let compensation = 128 * sw * Float(sums[(b &* groups &+ g) &* 16 &+ lane])
                        sum += Float(dot) * (sw * sx)
                        correction += compensation * sx
                    }
                    y[r * ldy + row] = sum - correction
                }
            }
        }
    }

    static func weightOnly(_ m: UnsafePointer<flint_packed_int8>, blocks: Range<Int>, x: UnsafePointer<Float>,
                           rows: Int, y: UnsafeMutablePointer<Float>, ldy: Int) {
        let (n, k, kp, groups) = (Int(m.pointee.n), Int(m.pointee.k), Int(m.pointee.k_padded), Int(m.pointee.groups))
        let groupSize = groups == 1 ? kp : Int(m.pointee.group_size)
        let w = m.pointee.blocks!, scales = m.pointee.scales!
        for b in blocks {
            let block = w + b * 16 * kp
            for lane in 0..<min(16, n - 16 * b) {
                let row = 16 * b + lane
                for r in 0..<rows {
                    let xr = x + r * k
                    var total: Float = 0
                    for g in 0..<groups {
                        var sum: Float = 0
                        for i in (g &* groupSize)..<min(k, (g &+ 1) &* groupSize) {
                            sum += Float(block[(i >> 2) &<< 6 &+ lane &<< 2 &+ (i & 3)]) * xr[i]
                        }
                        total += sum * scales[row &* groups &+ g]
                    }
                    y[r * ldy + row] = total
                }
            }
        }
    }
}
