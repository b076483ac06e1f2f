// Element-wise math on float rows — the GELU of the feed-forward blocks and the softmax of attention — with an
// AVX-512, AVX2 and NEON path each (C) and the portable Swift loop, chosen by the `isa` each call passes.

internal import CFlintKernels
import Foundation

public enum VectorMath {
    /// In place, HF's `gelu_new`: `0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))`.
    public static func geluNew(_ x: UnsafeMutablePointer<Float>, count: Int, isa: KernelISA = .preferred) {
        switch isa.runnable {
        case .avx512: return flint_f32_gelu_new(x, Int64(count))
        case .avx2: return flint_avx2_f32_gelu_new(x, Int64(count))
        case .neon: return flint_neon_f32_gelu_new(x, Int64(count))
        case .portable: break
        }
        let c = Float((2.0 / Double.pi).squareRoot())
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + tanhf(c * (v + 0.044715 * (v * v * v))))
        }
    }

    /// In place, a softmax of `count` floats: `x[i] ← exp(x[i] − max) / Σ exp(x[j] − max)`.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int, isa: KernelISA = .preferred) {
        guard count > 0 else { return }
        var maxValue = x[0]
        for i in 1..<count { maxValue = max(maxValue, x[i]) }
        var total: Float = 0
        switch isa.runnable {
        case .avx512: flint_f32_exp_shifted(x, Int64(count), maxValue, &total)
        case .avx2: flint_avx2_f32_exp_shifted(x, Int64(count), maxValue, &total)
        case .neon: flint_neon_f32_exp_shifted(x, Int64(count), maxValue, &total)
        case .portable:
            for i in 0..<count {
                let e = expf(x[i] - maxValue)
                x[i] = e
                total += e
            }
        }
        let inverse = 1 / total
        for i in 0..<count { x[i] *= inverse }
    }
}

extension VectorMath {
    /// One attention head: for each query i, scores over every key (`q_i · k_j`, plus `bias[i · biasRowStride + j]`
    /// when a bias is given), softmax, and `context_i = Σ_j p_j · v_j`. Rows are `dKV` floats with row stride
    /// `stride`; `scores` holds `keyCount` floats.
    public static func attend(queries: UnsafePointer<Float>, queryCount: Int, keys: UnsafePointer<Float>,
                              values: UnsafePointer<Float>, keyCount: Int, stride: Int, dKV: Int,
                              bias: UnsafePointer<Float>?, biasRowStride: Int, scores: UnsafeMutablePointer<Float>,
                              context: UnsafeMutablePointer<Float>, isa: KernelISA = .preferred) {
        let (q, n, s, d, bs) = (Int64(queryCount), Int64(keyCount), Int64(stride), Int64(dKV), Int64(biasRowStride))
        switch isa.runnable {
        case .avx512: return flint_f32_attend(queries, q, keys, values, n, s, d, bias, bs, scores, context)
        case .avx2: return flint_avx2_f32_attend(queries, q, keys, values, n, s, d, bias, bs, scores, context)
        case .neon: return flint_neon_f32_attend(queries, q, keys, values, n, s, d, bias, bs, scores, context)
        case .portable: break
        }
        for i in 0..<queryCount {
            let query = queries + i * stride
            let biasRow = bias.map { $0 + i * biasRowStride }
            for j in 0..<keyCount {
                var s = dot(query, keys + j * stride, count: dKV)
                if let biasRow { s += biasRow[j] }
                scores[j] = s
            }
            softmax(scores, count: keyCount, isa: .portable)
            let out = context + i * stride
            for c in 0..<dKV { out[c] = 0 }
            for j in 0..<keyCount {
                addScaled(values + j * stride, scale: scores[j], into: out, count: dKV)
            }
        }
    }
}

extension VectorMath {
    /// Whether `attendSequence` has a kernel for `isa` on this machine (every path but `.portable`).
    public static func hasAttendSequence(_ isa: KernelISA) -> Bool { isa.runnable != .portable }

    /// Floats of scratch `attendSequence` needs for a sequence of `length`: the transposed keys, a contiguous copy of
    /// the values, and 8 score rows.
    public static func attendSequenceScratch(length: Int, dKV: Int) -> (keys: Int, scores: Int) {
        let padded = (length + 31) / 32 * 32
        return (dKV * (2 * padded + 16), 8 * padded)
    }

    /// Self-attention of one head over a whole sequence (prefill): query i attends to keys j < length (j ≤ i when
    /// `causal`) with scores `q_i · k_j + bias[j − i]` (`bias` points at relative position 0 and covers
    /// −(length − 1) … length − 1), softmax, `context_i = Σ_j p_j · v_j`; rows of `dKV` floats with row stride
    /// `stride`. Tiles of ≤ 8 queries stay in cache, no `length × length` scores. Returns false, doing nothing, on
    /// `.portable`, whose caller keeps its matrix-product form. Scratch sizes: `attendSequenceScratch`.
    public static func attendSequence(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                                      values: UnsafePointer<Float>, length: Int, stride: Int, dKV: Int,
                                      bias: UnsafePointer<Float>, causal: Bool, keyScratch: UnsafeMutablePointer<Float>,
                                      scores: UnsafeMutablePointer<Float>, context: UnsafeMutablePointer<Float>,
                                      isa: KernelISA = .preferred) -> Bool {
        let (n, s, d, c) = (Int64(length), Int64(stride), Int64(dKV), Int32(causal ? 1 : 0))
        switch isa.runnable {
        case .avx512: flint_avx512_f32_attend_sequence(queries, keys, values, n, s, d, bias, c, keyScratch, scores, context)
        case .avx2: flint_avx2_f32_attend_sequence(queries, keys, values, n, s, d, bias, c, keyScratch, scores, context)
        case .neon: flint_neon_f32_attend_sequence(queries, keys, values, n, s, d, bias, c, keyScratch, scores, context)
        case .portable: return false
        }
        return true
    }
}
