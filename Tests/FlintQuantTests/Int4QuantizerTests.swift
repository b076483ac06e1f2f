// The int4 quantizer (groups of 32/64/128, f16 scales, written packed): reconstruction, the scale choice, the
// activation-aware weighting, and what it refuses.
import Testing
@testable import FlintFormat
@testable import FlintQuant

/// Deterministic pseudo-normal values (sum of uniforms), so the test needs no generator state across runs.
private func gaussian(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24)
    }
    return (0..<count).map { _ in (0..<4).reduce(Float(0)) { acc, _ in acc + next() } - 2 }
}

@Suite struct Int4QuantizerTests {
    @Test(arguments: [32, 64, 128])
    func reconstructsWithinTheChosenScale(groupSize: Int) throws {
        let (rows, cols) = (21, 200)
        let x = gaussian(rows * cols, seed: 7)
        let quantizer = try Int4Quantizer(groupSize: groupSize)
        let packed = try x.withUnsafeBufferPointer { try quantizer.quantize($0, rows: rows, cols: cols, tensorName: "w") }
        let g = packed.geometry
        #expect(packed.bytes.count == g.byteCount && g.groups == (cols + groupSize - 1) / groupSize)
        var back = [Float](repeating: 0, count: rows * cols)
        try packed.bytes.withUnsafeBytes { b in
            try back.withUnsafeMutableBufferPointer { try Int4Quantizer.dequantize(b, geometry: g, into: $0, tensorName: "w") }
        }
        try packed.bytes.withUnsafeBytes { b in
            for r in 0..<rows {
                for group in 0..<g.groups {
                    let s = HalfConversion.floatFromF16(g.scaleBits(b, row: r, group: group))
                    let range = (group * groupSize)..<min(cols, (group + 1) * groupSize)
                    let amax = range.map { abs(x[r * cols + $0]) }.max()!
                    // The chosen scale is one of the candidates: between 0.8·max/7 and max/7, f16-rounded.
                    #expect(s >= amax / 8.75 * 0.999 && s <= amax / 7 * 1.001, "row \(r) group \(group): scale \(s), max \(amax)")
                    for c in range {
                        let q = g.value(b, row: r, col: c)
                        #expect(q >= -8 && q <= 7)
                        #expect(back[r * cols + c] == Float(q) * s)
                        // Unclipped values are rounded to the nearest step.
                        if abs(x[r * cols + c]) <= 7 * s { #expect(abs(x[r * cols + c] - back[r * cols + c]) <= s / 2 * 1.0001) }
                    }
                }
            }
        }
        // Gaussian weights at 4 bits: about 20 dB at g32, a little less with longer groups.
        let snr = QuantError.snrDB(original: x, reconstructed: back)
        #expect(snr > (groupSize == 32 ? 19.5 : 18.5), "SNR \(snr) dB")
        // The scale search beats plain max/7 on the whole matrix.
        var plainError: Float = 0, chosenError: Float = 0
        for r in 0..<rows {
            for group in 0..<g.groups {
                let range = (group * groupSize)..<min(cols, (group + 1) * groupSize)
                let amax = range.map { abs(x[r * cols + $0]) }.max()!
                let s = HalfConversion.floatFromF16(HalfConversion.f16Bits(amax / 7))
                for c in range {
                    let v = x[r * cols + c]
                    let e = v - max(-8, min(7, (v / s).rounded())) * s
                    plainError += e * e
                    chosenError += (v - back[r * cols + c]) * (v - back[r * cols + c])
                }
            }
        }
        #expect(chosenError < plainError)
    }

    @Test func columnWeightsMoveErrorOffImportantColumns() throws {
        let (rows, cols) = (64, 64)
        let x = gaussian(rows * cols, seed: 11)
        let quantizer = try Int4Quantizer(groupSize: 32)
        var weights = [Float](repeating: 0.01, count: cols)
        for c in stride(from: 0, to: cols, by: 8) { weights[c] = 100 }
        func weightedError(_ packed: PackedInt4Matrix) throws -> Float {
            var back = [Float](repeating: 0, count: rows * cols)
            try packed.bytes.withUnsafeBytes { b in
                try back.withUnsafeMutableBufferPointer { try Int4Quantizer.dequantize(b, geometry: packed.geometry, into: $0, tensorName: "w") }
            }
            return (0..<(rows * cols)).reduce(Float(0)) { $0 + weights[$1 % cols] * (x[$1] - back[$1]) * (x[$1] - back[$1]) }
        }
        let plain = try x.withUnsafeBufferPointer { try quantizer.quantize($0, rows: rows, cols: cols, tensorName: "w") }
        let aware = try x.withUnsafeBufferPointer { xs in
            try weights.withUnsafeBufferPointer { try quantizer.quantize(xs, rows: rows, cols: cols, tensorName: "w", columnWeights: $0) }
        }
        #expect(try weightedError(aware) < weightedError(plain))
    }

    @Test func zeroGroupsAndRefusals() throws {
        let quantizer = try Int4Quantizer(groupSize: 32)
        // A zero row: scale 0, every code q = 0 (nibble 8).
        let zeros = [Float](repeating: 0, count: 2 * 40)
        let packed = try zeros.withUnsafeBufferPointer { try quantizer.quantize($0, rows: 2, cols: 40, tensorName: "z") }
        #expect(packed.bytes[..<packed.geometry.codeBytes].allSatisfy { $0 == 0x88 })
        #expect(packed.bytes[packed.geometry.codeBytes...].allSatisfy { $0 == 0 })

        #expect(throws: FlintError.self) { try Int4Quantizer(groupSize: 16) }
        var bad = [Float](repeating: 1, count: 40)
        bad[17] = .nan
        #expect { try bad.withUnsafeBufferPointer { try quantizer.quantize($0, rows: 1, cols: 40, tensorName: "w") } }
            throws: { ($0 as? FlintError)?.message.contains("tensor w: element 17 (row 0, column 17) is nan") == true }
        var huge = [Float](repeating: 1, count: 40)
        huge[3] = 1e6
        #expect { try huge.withUnsafeBufferPointer { try quantizer.quantize($0, rows: 1, cols: 40, tensorName: "w") } }
            throws: { ($0 as? FlintError)?.message.contains("does not fit f16") == true }
        #expect(throws: FlintError.self) {
            try [Float](repeating: 1, count: 40).withUnsafeBufferPointer { try quantizer.quantize($0, rows: 1, cols: 39, tensorName: "w") }
        }
    }

    @Test func planParsesInt4AndKeepsTheEmbeddingInt8() throws {
        #expect(try QuantRequest(cliName: "int4-g32") == .int4(32))
        #expect(try QuantRequest(cliName: "int4-g128").name == "int4-g128")
        #expect(throws: FlintError.self) { try QuantRequest(cliName: "int4-g16") }
        #expect(try SchemeRule(parsing: "lm_head.weight=int4-g64").form == .int4(64))
        // Smoothed (no default keep): attention, wi, wo and lm_head int4; shared int8.
        let plan = QuantPlan(request: .int4(32), useDefaultKeep: false, isGatedFFN: true)
        #expect(plan.decide(name: "encoder.block.0.layer.0.SelfAttention.q.weight", shape: [8, 8]).form == .int4(32))
        #expect(plan.decide(name: "lm_head.weight", shape: [10, 8]).form == .int4(32))
        #expect(plan.decide(name: "shared.weight", shape: [10, 8]) ==
                TensorDecision(name: "shared.weight", shape: [10, 8], form: .int8(.int8Row), reason: .int4DefaultEmbedding))
        #expect(plan.decide(name: "decoder.block.1.layer.2.DenseReluDense.wo.weight", shape: [8, 16]).form == .int4(32))
        #expect(plan.decide(name: "encoder.final_layer_norm.weight", shape: [8]).form == .float(.f32))
        // Data-free gated: wo keeps the f32 default keep; scheme rules override the int4 defaults.
        #expect(QuantPlan(request: .int4(32), isGatedFFN: true)
                    .decide(name: "decoder.block.1.layer.2.DenseReluDense.wo.weight", shape: [8, 16]).form == .float(.f32))
        let ruled = QuantPlan(request: .int4(32), schemeRules: [try SchemeRule(parsing: "shared.weight=int4-g32")],
                              useDefaultKeep: false, isGatedFFN: true)
        #expect(ruled.decide(name: "shared.weight", shape: [10, 8]).form == .int4(32))
        // Int8 requests decide as before.
        #expect(QuantPlan(request: .int8(.int8Row), useDefaultKeep: false, isGatedFFN: true)
                    .decide(name: "shared.weight", shape: [10, 8]).form == .int8(.int8Row))
    }
}
