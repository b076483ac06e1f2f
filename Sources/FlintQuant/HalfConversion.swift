// Float32 ↔ IEEE binary16 (f16) and ↔ bfloat16 (bf16), as bit patterns.
//
// Done bitwise rather than through Swift's `Float16`: the package targets baseline x86-64 (no F16C), where
// `Float16(x)` lowers to a compiler-rt call per element, while the branch-free integer/float formulation below
// auto-vectorizes with SSE2. Both round to nearest, ties to even (they rely on the default FP rounding mode,
// which Swift never changes), and the tests check them against every f16 and bf16 bit pattern.
//
// NaNs stay NaN: the sign and the top payload bits are kept and the quiet bit is set, so a signalling NaN comes
// back quiet. Infinities stay infinities; f16 overflow (|x| ≥ 65520) becomes ±Inf; f16 subnormals are produced
// and read exactly.

import FlintFormat

public enum HalfConversion {
    // MARK: f16

    /// The f16 bit pattern nearest to `x` (ties to even).
    @inlinable @inline(__always)
    public static func f16Bits(_ x: Float) -> UInt16 {
        // After M. Maratyszcza's FP16 library (fp16_ieee_from_fp32_value): scaling by 2¹¹² then 2⁻¹¹⁰ makes
        // values too large for f16 overflow to Inf in float arithmetic; adding a power of two chosen from the
        // exponent makes the float adder round the mantissa to exactly the f16 precision (10 bits for normals,
        // fewer for subnormals), after which the f16 fields are read off the sum's bits.
        let w = x.bitPattern
        let twoW = w &+ w // the sign shifted out
        let sign = w & 0x8000_0000
        let scaled = (x.magnitude * Float(bitPattern: 0x7780_0000)) * Float(bitPattern: 0x0880_0000)
        var bias = twoW & 0xFF00_0000
        bias = bias < 0x7100_0000 ? 0x7100_0000 : bias
        let rounded = Float(bitPattern: (bias >> 1) &+ 0x0780_0000) + scaled
        let bits = rounded.bitPattern
        let exponentBits = (bits >> 13) & 0x0000_7C00
        let mantissaBits = bits & 0x0000_0FFF
        let nonSign = exponentBits &+ mantissaBits
        let nan = 0x7E00 | ((w >> 13) & 0x03FF)
        let magnitude = twoW > 0xFF00_0000 ? nan : nonSign
        return UInt16(truncatingIfNeeded: (sign >> 16) | magnitude)
    }

    /// The float value of the f16 bit pattern `bits` (exact).
    @inlinable @inline(__always)
    public static func floatFromF16(_ bits: UInt16) -> Float {
        // fp16_ieee_to_fp32_value: normals and Inf/NaN by re-biasing the exponent with one multiply (which also
        // quiets a signalling NaN), subnormals through the "magic 0.5" subtraction.
        let w = UInt32(bits) << 16
        let sign = w & 0x8000_0000
        let twoW = w &+ w
        let normalized = Float(bitPattern: (twoW >> 4) &+ (0xE0 << 23)) * Float(bitPattern: 0x0780_0000) // × 2⁻¹¹²
        let denormalized = Float(bitPattern: (twoW >> 17) | (126 << 23)) - 0.5
        let magnitude = twoW < (1 << 27) ? denormalized.bitPattern : normalized.bitPattern
        return Float(bitPattern: sign | magnitude)
    }

    // MARK: bf16

    /// The bf16 bit pattern nearest to `x` (ties to even). Values beyond the largest bf16 round to ±Inf.
    @inlinable @inline(__always)
    public static func bf16Bits(_ x: Float) -> UInt16 {
        let w = x.bitPattern
        let roundedUp = (w &+ 0x7FFF &+ ((w >> 16) & 1)) >> 16
        let nan = (w >> 16) | 0x0040
        let isNaN = (w & 0x7FFF_FFFF) > 0x7F80_0000
        return UInt16(truncatingIfNeeded: isNaN ? nan : roundedUp)
    }

    /// The float value of the bf16 bit pattern `bits` (exact; a signalling NaN comes back quiet).
    @inlinable @inline(__always)
    public static func floatFromBF16(_ bits: UInt16) -> Float {
        let w = UInt32(bits) << 16
        let isNaN = (w & 0x7FFF_FFFF) > 0x7F80_0000
        return Float(bitPattern: isNaN ? w | 0x0040_0000 : w)
    }

    // MARK: Bulk

    /// Converts `source` to f16 bit patterns in `destination` (same count).
    public static func encodeF16(_ source: UnsafeBufferPointer<Float>, into destination: UnsafeMutableBufferPointer<UInt16>) {
        precondition(source.count == destination.count, "encodeF16: \(source.count) values into \(destination.count) slots")
        guard let src = source.baseAddress, let dst = destination.baseAddress else { return }
        for i in 0..<source.count { dst[i] = f16Bits(src[i]) }
    }

    /// Converts f16 bit patterns in `source` to floats in `destination` (same count).
    public static func decodeF16(_ source: UnsafeBufferPointer<UInt16>, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(source.count == destination.count, "decodeF16: \(source.count) values into \(destination.count) slots")
        guard let src = source.baseAddress, let dst = destination.baseAddress else { return }
        for i in 0..<source.count { dst[i] = floatFromF16(src[i]) }
    }

    /// Converts `source` to bf16 bit patterns in `destination` (same count).
    public static func encodeBF16(_ source: UnsafeBufferPointer<Float>, into destination: UnsafeMutableBufferPointer<UInt16>) {
        precondition(source.count == destination.count, "encodeBF16: \(source.count) values into \(destination.count) slots")
        guard let src = source.baseAddress, let dst = destination.baseAddress else { return }
        for i in 0..<source.count { dst[i] = bf16Bits(src[i]) }
    }

    /// Converts bf16 bit patterns in `source` to floats in `destination` (same count).
    public static func decodeBF16(_ source: UnsafeBufferPointer<UInt16>, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(source.count == destination.count, "decodeBF16: \(source.count) values into \(destination.count) slots")
        guard let src = source.baseAddress, let dst = destination.baseAddress else { return }
        for i in 0..<source.count { dst[i] = floatFromBF16(src[i]) }
    }

    /// Decodes little-endian stored elements of a float storage type (`f32`, `f16`, `bf16`) into floats.
    /// `bytes` may be unaligned (a slice of a file); `destination.count` elements are read.
    /// Throws for `i8` (int8 data needs its scales, see `Int8Quantizer.dequantize`) or a size mismatch.
    public static func decode(_ bytes: UnsafeRawBufferPointer, storage: StorageType,
                              into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard storage.isFloat else {
            throw FlintError("decode: storage type \(storage) is not a float type")
        }
        let needed = destination.count * storage.byteSize
        guard bytes.count == needed else {
            throw FlintError("decode: \(destination.count) \(storage) elements need \(needed) bytes, got \(bytes.count)")
        }
        guard destination.count > 0, let base = bytes.baseAddress else { return }
        let aligned = Int(bitPattern: base) % storage.byteSize == 0
        switch storage {
        case .f32:
            if aligned {
                _ = destination.initialize(from: UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self),
                                                                      count: destination.count))
            } else {
                for i in 0..<destination.count {
                    destination[i] = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                }
            }
        case .f16, .bf16:
            if aligned {
                let halves = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt16.self), count: destination.count)
                if storage == .f16 { decodeF16(halves, into: destination) } else { decodeBF16(halves, into: destination) }
            } else {
                for i in 0..<destination.count {
                    let h = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    destination[i] = storage == .f16 ? floatFromF16(h) : floatFromBF16(h)
                }
            }
        case .i8, .i4:
            break // rejected above
        }
    }

    /// Encodes floats as little-endian elements of a float storage type into `bytes`
    /// (`source.count × storage.byteSize` bytes, which may be unaligned). Throws for `i8` or a size mismatch.
    public static func encode(_ source: UnsafeBufferPointer<Float>, storage: StorageType,
                              into bytes: UnsafeMutableRawBufferPointer) throws {
        guard storage.isFloat else {
            throw FlintError("encode: storage type \(storage) is not a float type")
        }
        let needed = source.count * storage.byteSize
        guard bytes.count == needed else {
            throw FlintError("encode: \(source.count) \(storage) elements need \(needed) bytes, got \(bytes.count)")
        }
        guard source.count > 0, let base = bytes.baseAddress else { return }
        let aligned = Int(bitPattern: base) % storage.byteSize == 0
        switch storage {
        case .f32:
            base.copyMemory(from: UnsafeRawPointer(source.baseAddress!), byteCount: needed)
        case .f16, .bf16:
            if aligned {
                let halves = UnsafeMutableBufferPointer(start: base.assumingMemoryBound(to: UInt16.self), count: source.count)
                if storage == .f16 { encodeF16(source, into: halves) } else { encodeBF16(source, into: halves) }
            } else {
                for i in 0..<source.count {
                    let h = storage == .f16 ? f16Bits(source[i]) : bf16Bits(source[i])
                    bytes.storeBytes(of: h.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                }
            }
        case .i8, .i4:
            break // rejected above
        }
    }
}
