// The activation side of W8A8: float rows quantized on the fly to the unsigned bytes the int8 kernels read.

import Foundation

/// Dynamic symmetric int8 quantization of activations, the W8A8 input side.
///
/// Per block (a whole x row, or `groupSize` elements matching the weight groups):
///     scale = max|x| / 127,   q = roundHalfToEven(x · 127 / max|x|) ∈ [-127, 127],   stored as the byte q + 128
/// (the unsigned operand of `vpdpbusd`). An all-zero block gets scale 0. A block holding NaN or ±∞ gets scale NaN,
/// so the outputs it feeds become NaN as they would in float, instead of silently finite.
public enum Int8ActivationQuantizer {
    public static func quantize(_ x: UnsafePointer<Float>, rows: Int, k: Int, groupSize: Int, groups: Int,
                                into xq: UnsafeMutablePointer<UInt8>, stride: Int,
                                scales: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let xr = x + r * k
            let qr = xq + r * stride
            for g in 0..<groups {
                let start = g * groupSize
                let count = min(k, start + groupSize) - start
                scales[r * groups + g] = quantizeBlock(xr + start, count: count, into: qr + start)
            }
        }
    }

    /// Quantizes `count` values into `out` (as `q + 128`) and returns their scale.
    @inline(__always)
    static func quantizeBlock(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<UInt8>) -> Float {
        var maxVector = SIMD8<Float>()
        // x·0 is 0 for finite x and NaN for NaN or ±∞, so one sum tells whether the block is finite.
        var finiteCheck = SIMD8<Float>()
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            // Comparisons and selects, not pointwiseMax: that one is scalarized (it orders NaNs element by element).
            let magnitude = v.replacing(with: -v, where: v .< 0)
            maxVector.replace(with: magnitude, where: magnitude .> maxVector)
            finiteCheck += v * 0
            i += 8
        }
        var amax = maxVector.max()
        var check = finiteCheck.sum()
        while i < count {
            amax = Swift.max(amax, Swift.abs(x[i]))
            check += x[i] * 0
            i += 1
        }
        guard check == 0, amax.isFinite else {
            out.initialize(repeating: 128, count: count)
            return .nan
        }
        guard amax > 0 else {
            out.initialize(repeating: 128, count: count)
            return 0
        }
        let inverse = 127 / amax
        // Adding 1.5·2²³ rounds a float of magnitude < 2²² to an integer, half to even, in the low mantissa bits;
        // the low byte of that is q mod 256 and flipping its top bit gives q + 128.
        let magic: Float = 12_582_912
        for j in 0..<count {
            var v = x[j] * inverse
            v = v < -127 ? -127 : v
            v = v > 127 ? 127 : v
            out[j] = UInt8(truncatingIfNeeded: (v + magic).bitPattern) ^ 0x80
        }
        return amax / 127
    }
}
