import Testing
@testable import FlintQuant

@Test func snrOfKnownError() {
    // Σx² = 4, Σ(x−x̂)² = 4·0.01 = 0.04 → 10·log10(100) = 20 dB.
    let s = QuantError.measure(original: [1, -1, 1, -1], reconstructed: [1.1, -0.9, 0.9, -1.1])
    #expect(abs(s.snrDB - 20) < 1e-5)
    #expect(abs(s.maxAbsError - 0.1) < 1e-6)
    #expect(s.cosine > 0.99 && s.cosine < 1)
    // Σx² = 25, Σ(x−x̂)² = 1 → 10·log10(25) = 13.9794000867…
    #expect(abs(QuantError.snrDB(original: [3, 4], reconstructed: [3, 3]) - 13.979_400_086_720_376) < 1e-9)
}

@Test func exactReconstructionIsInfiniteSNR() {
    #expect(QuantError.snrDB(original: [1, 2, 3], reconstructed: [1, 2, 3]) == .infinity)
    #expect(QuantError.snrDB(original: [0, 0], reconstructed: [0, 0]) == .infinity)
    #expect(QuantError.snrDB(original: [0, 0], reconstructed: [0, 1]) == -.infinity)
    #expect(QuantError.jsonSNR(.infinity) == nil)
    #expect(QuantError.jsonSNR(42.5) == 42.5)
    let s = QuantError.measure(original: [0, 0], reconstructed: [0, 0])
    #expect(s.cosine == 1 && s.maxAbsError == 0)
    #expect(QuantError.measure(original: [1, 0], reconstructed: [0, 1]).cosine == 0)
}

@Test func accumulatorOverChunksEqualsOnePass() {
    let x = testFloats(count: 1000, seed: 3)
    let y = x.map { $0 + 0.001 * $0 * $0 }
    var acc = QuantErrorAccumulator()
    x.withUnsafeBufferPointer { xb in
        y.withUnsafeBufferPointer { yb in
            acc.add(original: UnsafeBufferPointer(rebasing: xb[0..<400]), reconstructed: UnsafeBufferPointer(rebasing: yb[0..<400]))
            acc.add(original: UnsafeBufferPointer(rebasing: xb[400...]), reconstructed: UnsafeBufferPointer(rebasing: yb[400...]))
        }
    }
    let whole = QuantError.measure(original: x, reconstructed: y)
    #expect(acc.count == 1000)
    #expect(abs(acc.snrDB - whole.snrDB) < 1e-9)
    #expect(acc.maxAbsError == whole.maxAbsError)
}

@Test func nanReconstructionIsNotHidden() {
    let s = QuantError.measure(original: [1, 2], reconstructed: [1, .nan])
    #expect(s.maxAbsError.isNaN)
    #expect(QuantError.jsonSNR(s.snrDB) == nil)
}

@Test func int8RowQuantizationOfGaussianLikeDataHasExpectedSNR() throws {
    // Uniform data in [-1, 1], 4096 per row: step = 1/127, error ~ uniform(±step/2) → SNR ≈ 10·log10((1/3)/(step²/12))
    // = 10·log10(4·127²) ≈ 48.1 dB. A broken rounding or scale shows up as many dB off.
    let rows = 8, cols = 4096
    let x = testFloats(count: rows * cols, seed: 5)
    let m = try x.withUnsafeBufferPointer { try Int8RowQuantizer().quantize($0, rows: rows, cols: cols, tensorName: "w") }
    let back = try Int8RowQuantizer().dequantize(m, tensorName: "w")
    let snr = QuantError.snrDB(original: x, reconstructed: back)
    #expect(abs(snr - 48.1) < 0.5, "snr \(snr)")
}
