import Testing
import FlintFormat
@testable import FlintQuant

/// The value of an f16 bit pattern from the IEEE 754 definition, independent of the code under test.
private func referenceF16Value(_ bits: UInt16) -> Float {
    let sign: Float = bits & 0x8000 != 0 ? -1 : 1
    let exponent = Int((bits >> 10) & 0x1F)
    let mantissa = Float(bits & 0x3FF)
    switch exponent {
    case 0: return sign * mantissa * Float(sign: .plus, exponent: -24, significand: 1)
    case 31: return mantissa == 0 ? sign * .infinity : .nan
    default: return sign * (1 + mantissa / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
    }
}

@Test func everyF16BitPatternRoundTrips() {
    var failures = 0
    for raw in 0...0xFFFF {
        let bits = UInt16(raw)
        let value = HalfConversion.floatFromF16(bits)
        let expected = referenceF16Value(bits)
        let back = HalfConversion.f16Bits(value)
        if expected.isNaN {
            // NaN stays NaN, comes back quiet, keeps its sign and its payload's top bits.
            let quiet = value.isNaN && !value.isSignalingNaN && back & 0x7E00 == 0x7E00
                && back & 0x8000 == bits & 0x8000 && back & 0x1FF == bits & 0x1FF
            if !quiet { failures += 1 }
        } else if value.bitPattern != expected.bitPattern || back != bits {
            failures += 1
        }
    }
    #expect(failures == 0)
}

@Test func everyBF16BitPatternRoundTrips() {
    var failures = 0
    for raw in 0...0xFFFF {
        let bits = UInt16(raw)
        let value = HalfConversion.floatFromBF16(bits)
        let expected = Float(bitPattern: UInt32(bits) << 16)
        let back = HalfConversion.bf16Bits(value)
        if expected.isNaN {
            let quiet = value.isNaN && !value.isSignalingNaN && back & 0xFFC0 == bits & 0xFFC0 | 0x0040
                && back & 0x3F == bits & 0x3F
            if !quiet { failures += 1 }
        } else if value.bitPattern != expected.bitPattern || back != bits {
            failures += 1
        }
    }
    #expect(failures == 0)
}

private func pow2(_ e: Int) -> Float { Float(sign: .plus, exponent: e, significand: 1) }

@Test func f16RoundsToNearestTiesToEven() {
    // 1 + 2⁻¹¹ lies halfway between 1 (even mantissa) and 1 + 2⁻¹⁰: ties go to 1.
    #expect(HalfConversion.f16Bits(1 + pow2(-11)) == 0x3C00)
    // 1 + 3·2⁻¹¹ lies halfway between 1 + 2⁻¹⁰ (odd) and 1 + 2·2⁻¹⁰ (even): ties go up.
    #expect(HalfConversion.f16Bits(1 + 3 * pow2(-11)) == 0x3C02)
    // Just above the tie rounds up.
    #expect(HalfConversion.f16Bits((1 + pow2(-11)).nextUp) == 0x3C01)
    #expect(HalfConversion.f16Bits(-(1 + pow2(-11)).nextUp) == 0xBC01)
    // Largest finite, the overflow threshold 65520 (halfway to 2¹⁶, ties to even = Inf), and beyond.
    #expect(HalfConversion.f16Bits(65504) == 0x7BFF)
    #expect(HalfConversion.f16Bits(Float(65520).nextDown) == 0x7BFF)
    #expect(HalfConversion.f16Bits(65520) == 0x7C00)
    #expect(HalfConversion.f16Bits(-1e10) == 0xFC00)
    #expect(HalfConversion.f16Bits(.greatestFiniteMagnitude) == 0x7C00)
    #expect(HalfConversion.f16Bits(.infinity) == 0x7C00)
    #expect(HalfConversion.f16Bits(-.infinity) == 0xFC00)
    // Subnormals: 2⁻²⁴ is the smallest; 2⁻²⁵ is halfway between 0 and it (ties to 0); 3·2⁻²⁵ ties to 2·2⁻²⁴.
    #expect(HalfConversion.f16Bits(pow2(-24)) == 0x0001)
    #expect(HalfConversion.f16Bits(pow2(-25)) == 0x0000)
    #expect(HalfConversion.f16Bits(pow2(-25).nextUp) == 0x0001)
    #expect(HalfConversion.f16Bits(3 * pow2(-25)) == 0x0002)
    #expect(HalfConversion.f16Bits(-pow2(-24)) == 0x8001)
    // The largest subnormal plus half an ulp rounds to the smallest normal.
    #expect(HalfConversion.f16Bits(1023 * pow2(-24) + pow2(-25)) == 0x0400)
    #expect(HalfConversion.f16Bits(.leastNonzeroMagnitude) == 0x0000)
    #expect(HalfConversion.f16Bits(-0.0) == 0x8000)
    // NaN: quiet, sign kept, a signalling NaN becomes quiet.
    #expect(HalfConversion.f16Bits(.nan) & 0x7E00 == 0x7E00)
    #expect(HalfConversion.f16Bits(-Float.nan) & 0xFE00 == 0xFE00)
    #expect(HalfConversion.f16Bits(Float(bitPattern: 0x7F80_0001)) == 0x7E00)
    #expect(HalfConversion.floatFromF16(0x7C01).isNaN)
    #expect(!HalfConversion.floatFromF16(0x7C01).isSignalingNaN)
}

@Test func bf16RoundsToNearestTiesToEven() {
    #expect(HalfConversion.bf16Bits(1 + pow2(-8)) == 0x3F80)
    #expect(HalfConversion.bf16Bits(1 + 3 * pow2(-8)) == 0x3F82)
    #expect(HalfConversion.bf16Bits((1 + pow2(-8)).nextUp) == 0x3F81)
    #expect(HalfConversion.bf16Bits(-1.5) == 0xBFC0)
    #expect(HalfConversion.bf16Bits(.greatestFiniteMagnitude) == 0x7F80) // rounds past the largest bf16
    #expect(HalfConversion.bf16Bits(-.infinity) == 0xFF80)
    #expect(HalfConversion.bf16Bits(.leastNonzeroMagnitude) == 0x0000)
    #expect(HalfConversion.bf16Bits(Float(bitPattern: 0x0000_8000)) == 0x0000) // tie to even 0
    #expect(HalfConversion.bf16Bits(Float(bitPattern: 0x0001_8000)) == 0x0002) // tie to even 2
    // A NaN whose payload lives only in the low 16 bits must not truncate to Inf.
    #expect(HalfConversion.bf16Bits(Float(bitPattern: 0x7F80_0001)) == 0x7FC0)
    #expect(HalfConversion.bf16Bits(Float(bitPattern: 0xFFFF_FFFF)) == 0xFFFF)
    #expect(HalfConversion.floatFromBF16(0x7F81).isNaN && !HalfConversion.floatFromBF16(0x7F81).isSignalingNaN)
}

/// Deterministic pseudo-random floats over a wide range of magnitudes (xorshift; no global state).
func testFloats(count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var state = seed | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        let unit = Float(state >> 40) / Float(1 << 24) * 2 - 1
        return unit * scale
    }
}

@Test func bulkConversionsMatchScalar() throws {
    var values = testFloats(count: 10_001, seed: 7, scale: 70_000)
    values += [0, -0.0, .infinity, -.infinity, .nan, 1e-6, -3e-8, 65520]
    var f16 = [UInt16](repeating: 0, count: values.count)
    var bf16 = [UInt16](repeating: 0, count: values.count)
    values.withUnsafeBufferPointer { src in
        f16.withUnsafeMutableBufferPointer { HalfConversion.encodeF16(src, into: $0) }
        bf16.withUnsafeMutableBufferPointer { HalfConversion.encodeBF16(src, into: $0) }
    }
    #expect(f16 == values.map(HalfConversion.f16Bits))
    #expect(bf16 == values.map(HalfConversion.bf16Bits))
    var fromF16 = [Float](repeating: 0, count: values.count)
    var fromBF16 = [Float](repeating: 0, count: values.count)
    f16.withUnsafeBufferPointer { src in fromF16.withUnsafeMutableBufferPointer { HalfConversion.decodeF16(src, into: $0) } }
    bf16.withUnsafeBufferPointer { src in fromBF16.withUnsafeMutableBufferPointer { HalfConversion.decodeBF16(src, into: $0) } }
    #expect(fromF16.map(\.bitPattern) == f16.map { HalfConversion.floatFromF16($0).bitPattern })
    #expect(fromBF16.map(\.bitPattern) == bf16.map { HalfConversion.floatFromBF16($0).bitPattern })
}

@Test(arguments: [StorageType.f32, .f16, .bf16])
func rawEncodeDecodeRoundTripsAlignedAndUnaligned(storage: StorageType) throws {
    let values = testFloats(count: 257, seed: 11, scale: 100)
    let expected: [Float] = values.map {
        switch storage {
        case .f16: return HalfConversion.floatFromF16(HalfConversion.f16Bits($0))
        case .bf16: return HalfConversion.floatFromBF16(HalfConversion.bf16Bits($0))
        default: return $0
        }
    }
    let byteCount = values.count * storage.byteSize
    for misalignment in [0, 1] {
        let storageBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: byteCount + 8, alignment: 16)
        defer { storageBytes.deallocate() }
        let bytes = UnsafeMutableRawBufferPointer(rebasing: storageBytes[misalignment..<(misalignment + byteCount)])
        try values.withUnsafeBufferPointer { try HalfConversion.encode($0, storage: storage, into: bytes) }
        var decoded = [Float](repeating: 0, count: values.count)
        try decoded.withUnsafeMutableBufferPointer {
            try HalfConversion.decode(UnsafeRawBufferPointer(bytes), storage: storage, into: $0)
        }
        #expect(decoded == expected, "misalignment \(misalignment)")
    }
}

@Test func rawDecodeRejectsInt8AndSizeMismatch() {
    let bytes = [UInt8](repeating: 0, count: 6)
    var out = [Float](repeating: 0, count: 4)
    bytes.withUnsafeBytes { raw in
        out.withUnsafeMutableBufferPointer { dst in
            #expect(throws: FlintError.self) { try HalfConversion.decode(raw, storage: .i8, into: dst) }
            #expect(throws: FlintError.self) { try HalfConversion.decode(raw, storage: .f16, into: dst) }
        }
    }
}
