// The storage of the decoder's attention caches (self-attention keys and values per sequence, cross-attention
// keys and values per encoder output), in float32 or binary16. A decoding step reads every cached key and value
// once per layer, from memory (the step's weights have evicted them): for flan-t5-base at a 512-token input the
// cross-attention caches are 38 MB a step in float32, more than half of what its int4 weights are. Binary16
// halves that; its rounding (relative 2⁻¹¹) is far below a quantized model's own error, so quantized models use
// it by default, while float models keep float32 and match transformers exactly.
internal import CFlintKernels

/// How the decoder stores its cached attention keys and values.
public enum AttentionCachePrecision: String, Sendable, CaseIterable, Codable {
    /// IEEE float32: exactly what the projections computed.
    case f32
    /// IEEE binary16, rounded to nearest (ties to even); values beyond ±65504 saturate to ±65504.
    case f16

    @inlinable var bytesPerElement: Int { self == .f32 ? 4 : 2 }
}

/// Owned, 64-byte aligned memory for `count` cached elements of one precision (left uninitialized: every
/// element is written before it is read).
public final class AttentionCacheStorage: @unchecked Sendable {
    public let precision: AttentionCachePrecision
    public let count: Int
    @usableFromInline let raw: UnsafeMutableRawPointer

    public init(count: Int, precision: AttentionCachePrecision) {
        self.precision = precision
        self.count = count
        raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * precision.bytesPerElement, alignment: 64)
    }

    deinit { raw.deallocate() }

    /// The elements from `offset` on.
    @inlinable public func rows(at offset: Int) -> AttentionCacheRows {
        AttentionCacheRows(base: raw + offset * precision.bytesPerElement, precision: precision)
    }
}

/// A run of cached rows (one head's keys or values, say) inside an `AttentionCacheStorage`.
public struct AttentionCacheRows {
    @usableFromInline let base: UnsafeMutableRawPointer
    public let precision: AttentionCachePrecision

    @inlinable init(base: UnsafeMutableRawPointer, precision: AttentionCachePrecision) {
        self.base = base
        self.precision = precision
    }

    /// The rows from element `offset` on.
    @inlinable public func advanced(by offset: Int) -> AttentionCacheRows {
        AttentionCacheRows(base: base + offset * precision.bytesPerElement, precision: precision)
    }

    /// Writes `count` floats here, converted to the cache's precision (the same bits on every kernel path).
    public func store(_ values: UnsafePointer<Float>, count: Int, isa: KernelISA) {
        switch precision {
        case .f32:
            base.assumingMemoryBound(to: Float.self).update(from: values, count: count)
        case .f16:
            let out = base.assumingMemoryBound(to: UInt16.self)
            switch isa.runnable {
            case .avx512, .avx2: flint_avx2_f32_to_f16(values, Int64(count), out)
            case .neon: flint_neon_f32_to_f16(values, Int64(count), out)
            case .portable: flint_f32_to_f16(values, Int64(count), out)
            }
        }
    }

    /// Copies `count` elements from `source` (the same precision).
    public func copy(from source: AttentionCacheRows, count: Int) {
        precondition(source.precision == precision, "AttentionCacheRows: copy between precisions")
        base.copyMemory(from: source.base, byteCount: count * precision.bytesPerElement)
    }

    /// The first `count` elements widened to float32 (tests, and the portable attention over a binary16 cache).
    public func floats(count: Int) -> [Float] {
        switch precision {
        case .f32:
            return Array(UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: count))
        case .f16:
            return [Float](unsafeUninitializedCapacity: count) { out, initialized in
                flint_f16_to_f32(base.assumingMemoryBound(to: UInt16.self), Int64(count), out.baseAddress!)
                initialized = count
            }
        }
    }
}

extension VectorMath {
    /// `attend` (one head: scores, softmax, weighted values) over cached keys and values of either precision;
    /// binary16 rows are widened in registers, the same sums as over their float32 widening.
    public static func attend(queries: UnsafePointer<Float>, queryCount: Int, keys: AttentionCacheRows,
                              values: AttentionCacheRows, keyCount: Int, stride: Int, dKV: Int,
                              bias: UnsafePointer<Float>?, biasRowStride: Int, scores: UnsafeMutablePointer<Float>,
                              context: UnsafeMutablePointer<Float>, isa: KernelISA = .preferred) {
        precondition(keys.precision == values.precision, "attend: keys and values in different precisions")
        if keys.precision == .f32 {
            return attend(queries: queries, queryCount: queryCount,
                          keys: keys.base.assumingMemoryBound(to: Float.self),
                          values: values.base.assumingMemoryBound(to: Float.self), keyCount: keyCount, stride: stride,
                          dKV: dKV, bias: bias, biasRowStride: biasRowStride, scores: scores, context: context, isa: isa)
        }
        let k = UnsafePointer(keys.base.assumingMemoryBound(to: UInt16.self))
        let v = UnsafePointer(values.base.assumingMemoryBound(to: UInt16.self))
        let (q, n, s, d, bs) = (Int64(queryCount), Int64(keyCount), Int64(stride), Int64(dKV), Int64(biasRowStride))
        switch isa.runnable {
        case .avx512: return flint_avx512_f16kv_attend(queries, q, k, v, n, s, d, bias, bs, scores, context)
        case .avx2: return flint_avx2_f16kv_attend(queries, q, k, v, n, s, d, bias, bs, scores, context)
        case .neon: return flint_neon_f16kv_attend(queries, q, k, v, n, s, d, bias, bs, scores, context)
        case .portable: break
        }
        // Portable: widen the rows the call reads, then the float32 loop.
        let elements = max(0, (keyCount - 1) * stride + dKV)
        let wideKeys = keys.floats(count: elements), wideValues = values.floats(count: elements)
        wideKeys.withUnsafeBufferPointer { wk in
            wideValues.withUnsafeBufferPointer { wv in
                attend(queries: queries, queryCount: queryCount, keys: wk.baseAddress!, values: wv.baseAddress!,
                       keyCount: keyCount, stride: stride, dKV: dKV, bias: bias, biasRowStride: biasRowStride,
                       scores: scores, context: context, isa: .portable)
            }
        }
    }
}
