// Symmetric int4 quantization of a matrix in groups of 32, 64 or 128 consecutive elements of a row, with one
// f16 scale per group, written straight into the packed int4 layout (Formats/FLINT.md layout 2).
//
// For each group (the last one of a row may be shorter; the layout pads it with zeros):
//     candidates  s = f16(max|x| / d) for d in 7, 7.5, 8 (8 reaches -8 exactly), and f16(c · max|x| / 7) for the
//                 clipping ratios c in 0.95, 0.9, 0.85, 0.8
//     q           = clamp(roundHalfToEven(x / s), -8, 7)
//     chosen      the candidate with the least Σ w_c (x_c − q_c·s)² — w_c = 1, or the caller's per-column weights
//                 (activation-aware: mean x_c² of the layer's inputs), ties to the earlier candidate
// An all-zero group has scale 0 and codes q = 0. Four bits cannot represent most groups exactly, so the search
// over a few scales (what llama.cpp's and AWQ's quantizers do too) buys about 1 dB of SNR over max/7 alone.
// Non-finite inputs, and groups whose scale does not fit f16, are refused naming the tensor and element.

import FlintFormat

/// One int4 matrix in the packed layout: `bytes` is the tensor's whole data region.
public struct PackedInt4Matrix: Sendable {
    public let geometry: PackedInt4Geometry
    public var bytes: [UInt8]
}

public struct Int4Quantizer: Sendable {
    public let groupSize: Int

    /// - Throws: FlintError when the group size is not 32, 64 or 128.
    public init(groupSize: Int) throws {
        guard PackedInt4Geometry.groupSizes.contains(groupSize) else {
            throw FlintError("int4 group size \(groupSize) is not supported; use one of \(PackedInt4Geometry.groupSizes.map(String.init).joined(separator: ", "))")
        }
        self.groupSize = groupSize
    }

    public var scheme: QuantScheme { .int4Group(groupSize) }

    static let divisors: [Float] = [7, 7.5, 8, 7 / 0.95, 7 / 0.9, 7 / 0.85, 7 / 0.8]

    /// Quantizes `values` (`rows × cols`, row-major, 2-D) into the packed layout. `columnWeights` (`cols`
    /// non-negative values, optional) weight each column's squared error when choosing a group's scale.
    public func quantize(_ values: UnsafeBufferPointer<Float>, rows: Int, cols: Int, tensorName: String,
                         columnWeights: UnsafeBufferPointer<Float>? = nil) throws -> PackedInt4Matrix {
        guard let geometry = PackedInt4Geometry(shape: [rows, cols], scheme: scheme) else {
            throw FlintError("tensor \(tensorName): \(scheme) needs a 2-D matrix, got \(rows)×\(cols)")
        }
        guard values.count == rows * cols else {
            throw FlintError("tensor \(tensorName): quantizing a \(rows)×\(cols) matrix needs \(rows * cols) values, got \(values.count)")
        }
        if let w = columnWeights, w.count != cols {
            throw FlintError("tensor \(tensorName): \(w.count) column weights for \(cols) columns")
        }
        let groups = geometry.groups
        var codes = [Int8](repeating: 0, count: rows * cols)
        var scaleBits = [UInt16](repeating: 0, count: rows * groups)
        var trial = [Int8](repeating: 0, count: groupSize)
        for r in 0..<rows {
            for g in 0..<groups {
                let start = g * groupSize
                let length = min(groupSize, cols - start)
                let x = values.baseAddress! + r * cols + start
                var amax: Float = 0
                for i in 0..<length {
                    guard x[i].isFinite else {
                        throw FlintError("tensor \(tensorName): element \(r * cols + start + i) (row \(r), column \(start + i)) is \(x[i]); a tensor with non-finite values cannot be quantized")
                    }
                    amax = max(amax, abs(x[i]))
                }
                if amax == 0 { continue }
                var bestError = Float.infinity
                var bestBits: UInt16 = 0
                for d in Int4Quantizer.divisors {
                    let bits = HalfConversion.f16Bits(amax / d)
                    let s = HalfConversion.floatFromF16(bits)
                    guard s.isFinite else {
                        throw FlintError("tensor \(tensorName): row \(r), group \(g) has max |x| = \(amax); its int4 scale \(amax / d) does not fit f16 (≤ 65504)")
                    }
                    guard s > 0 else { continue }
                    var error: Float = 0
                    for i in 0..<length {
                        // |x / s| ≤ 10: the magic-number rounding is exact (ties to even) and avoids a libm call.
                        let q = max(-8, min(7, (x[i] / s + Int8Quantization.roundingMagic) - Int8Quantization.roundingMagic))
                        trial[i] = Int8(q)
                        let e = x[i] - q * s
                        error += (columnWeights.map { $0[start + i] } ?? 1) * e * e
                    }
                    if error < bestError {
                        bestError = error
                        bestBits = bits
                        for i in 0..<length { codes[r * cols + start + i] = trial[i] }
                    }
                }
                scaleBits[r * groups + g] = bestBits
            }
        }
        var bytes = [UInt8](repeating: 0, count: geometry.byteCount)
        codes.withUnsafeBufferPointer { q in
            scaleBits.withUnsafeBufferPointer { s in
                bytes.withUnsafeMutableBytes { geometry.pack(q, scaleBits: s, into: $0) }
            }
        }
        return PackedInt4Matrix(geometry: geometry, bytes: bytes)
    }

    /// `q × scale` of packed int4 bytes (`geometry.byteCount` of them) into `out` (`rows × cols`, row-major).
    public static func dequantize(_ packed: UnsafeRawBufferPointer, geometry: PackedInt4Geometry,
                                  into out: UnsafeMutableBufferPointer<Float>, tensorName: String) throws {
        guard packed.count == geometry.byteCount, out.count == geometry.rows * geometry.cols else {
            throw FlintError("tensor \(tensorName): int4-g\(geometry.groupSize) \(geometry.rows)×\(geometry.cols) needs \(geometry.byteCount) bytes and \(geometry.rows * geometry.cols) outputs, got \(packed.count) and \(out.count)")
        }
        let cols = geometry.cols
        for r in 0..<geometry.rows {
            for g in 0..<geometry.groups {
                let s = HalfConversion.floatFromF16(geometry.scaleBits(packed, row: r, group: g))
                for c in (g * geometry.groupSize)..<min(cols, (g + 1) * geometry.groupSize) {
                    out[r * cols + c] = Float(geometry.value(packed, row: r, col: c)) * s
                }
            }
        }
    }

    /// A packed int4 view's values as float32 (`rows × cols`); throws naming the tensor on a size mismatch.
    public static func dequantize(_ view: TensorView, into out: UnsafeMutableBufferPointer<Float>) throws {
        guard view.storage == .i4, let geometry = PackedInt4Geometry(shape: view.shape, scheme: view.scheme) else {
            throw FlintError("tensor \(view.name): \(view.storage) \(view.shape) \(view.scheme) is not a packed int4 matrix")
        }
        try dequantize(view.data, geometry: geometry, into: out, tensorName: view.name)
    }
}
