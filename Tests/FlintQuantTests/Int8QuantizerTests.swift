import Testing
import FlintFormat
@testable import FlintQuant

private func quantize(_ q: any Int8Quantizer, _ values: [Float], rows: Int, cols: Int,
                      name: String = "t") throws -> QuantizedMatrix {
    try values.withUnsafeBufferPointer { try q.quantize($0, rows: rows, cols: cols, tensorName: name) }
}

@Test func rowQuantizerRoundsHalfToEvenAndUsesMaxOver127() throws {
    // max|row| = 127 → scale 1, so q = round-half-even(x) exactly.
    let row: [Float] = [127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -127, 126.5]
    let m = try quantize(Int8RowQuantizer(), row, rows: 1, cols: row.count)
    #expect(m.scales == [1])
    #expect(m.values == [127, 0, 2, 2, 0, -2, -2, 3, -127, 126])
}

@Test func rowQuantizerScalesEachRowAndZeroRowGetsZero() throws {
    let values: [Float] = [0.1, -0.4, 0.2,
                           0, 0, 0,
                           -2.54, 1.27, 0.01]
    let m = try quantize(Int8RowQuantizer(), values, rows: 3, cols: 3)
    #expect(m.scales.count == QuantScheme.int8Row.scaleCount(shape: [3, 3]))
    #expect(m.scales == [Float(0.4) / 127, 0, Float(2.54) / 127])
    #expect(m.values[1] == -127 && m.values[6] == -127)
    #expect(Array(m.values[3..<6]) == [0, 0, 0])
    // 0.1 / (0.4/127) = 31.75 → 32; 0.2 / (0.4/127) = 63.5 → 64 (even); 1.27/(2.54/127) = 63.5 → 64
    #expect(m.values[0] == 32 && m.values[2] == 64 && m.values[7] == 64)
    #expect(m.values[8] == 0) // 0.01 / 0.02 = 0.5 → 0 (even)
    let back = try Int8RowQuantizer().dequantize(m, tensorName: "t")
    #expect(Array(back[3..<6]) == [0, 0, 0])
    #expect(back[1] == -127 * m.scales[0])
}

@Test(arguments: [1, 3, 4, 7, 32])
func groupQuantizerHandlesShortLastGroup(groupSize: Int) throws {
    let rows = 5, cols = 10
    let values = testFloats(count: rows * cols, seed: UInt64(groupSize), scale: 3)
    let quantizer = try Int8GroupQuantizer(groupSize: groupSize)
    let m = try quantize(quantizer, values, rows: rows, cols: cols)
    let groups = (cols + groupSize - 1) / groupSize
    #expect(m.scales.count == rows * groups)
    #expect(m.scales.count == QuantScheme.int8Group(groupSize).scaleCount(shape: [rows, cols]))
    let back = try quantizer.dequantize(m, tensorName: "t")
    for r in 0..<rows {
        for g in 0..<groups {
            let range = (r * cols + g * groupSize)..<(r * cols + min(cols, (g + 1) * groupSize))
            let maxAbs = values[range].map(\.magnitude).max()!
            let scale = m.scales[r * groups + g]
            #expect(scale == maxAbs / 127, "row \(r) group \(g)")
            for i in range {
                // Each value is reproduced within half a step; the group's largest value hits ±127.
                #expect((values[i] - back[i]).magnitude <= scale / 2 * 1.0001, "element \(i)")
                #expect(abs(Int(m.values[i])) <= 127)
                if values[i].magnitude == maxAbs { #expect(abs(Int(m.values[i])) == 127) }
            }
        }
    }
}

@Test func groupOfWholeRowEqualsRowQuantizer() throws {
    let rows = 4, cols = 64
    let values = testFloats(count: rows * cols, seed: 99, scale: 0.05)
    let byRow = try quantize(Int8RowQuantizer(), values, rows: rows, cols: cols)
    let byGroup = try quantize(try Int8GroupQuantizer(groupSize: cols), values, rows: rows, cols: cols)
    #expect(byRow == byGroup)
    #expect(try makeInt8Quantizer(for: .int8Group(64)).scheme == .int8Group(64))
    #expect(try makeInt8Quantizer(for: .int8Row).scheme == .int8Row)
    #expect(throws: FlintError.self) { try makeInt8Quantizer(for: .none) }
    #expect(throws: FlintError.self) { try Int8GroupQuantizer(groupSize: 0) }
}

@Test func nonFiniteValuesAreAnErrorNamingTensorAndFirstIndex() throws {
    for bad in [Float.nan, .infinity, -.infinity] {
        var values = [Float](repeating: 1, count: 3 * 8)
        values[13] = bad // row 1, column 5
        values[20] = .nan // a later bad value must not be the one reported
        for quantizer in [Int8RowQuantizer() as any Int8Quantizer, try Int8GroupQuantizer(groupSize: 4)] {
            let error = try #require(throws: FlintError.self) {
                try quantize(quantizer, values, rows: 3, cols: 8, name: "encoder.block.0.layer.0.SelfAttention.q.weight")
            }
            #expect(error.message.contains("encoder.block.0.layer.0.SelfAttention.q.weight"))
            #expect(error.message.contains("element 13 (row 1, column 5)"), "\(error.message)")
        }
    }
}

/// `n` times the smallest subnormal float.
private func ulps(_ n: UInt32) -> Float { Float(bitPattern: n) }

@Test func extremeMagnitudes() throws {
    // Too small for max/127 to be representable: scale underflows to 0 and everything is 0, not NaN.
    let tiny = try quantize(Int8RowQuantizer(), [ulps(7), -ulps(7), 0], rows: 1, cols: 3)
    #expect(tiny.scales == [0] && tiny.values == [0, 0, 0])
    // A subnormal scale has only a few bits of precision, so max/scale may land past 127: it is clamped.
    let small = try quantize(Int8RowQuantizer(), [ulps(214), -ulps(71), ulps(143)], rows: 1, cols: 3)
    #expect(small.scales[0] > 0)
    #expect(small.values.allSatisfy { abs(Int($0)) <= 127 })
    #expect(small.values[0] > 0 && small.values[1] < 0 && small.values[2] > 0)
    // Near the top of the float range: scale 2¹²⁰ exactly, and −63.5 ties to the even −64.
    let top = Float(sign: .plus, exponent: 120, significand: 127)
    let huge = try quantize(Int8RowQuantizer(), [top, -top / 2, .greatestFiniteMagnitude / 1e9], rows: 1, cols: 3)
    #expect(huge.scales == [Float(sign: .plus, exponent: 120, significand: 1)])
    #expect(huge.values == [127, -64, 0])
}

@Test func bufferSizeMismatchIsAnError() throws {
    let values = [Float](repeating: 1, count: 12)
    var q = [Int8](repeating: 0, count: 12)
    var scales = [Float](repeating: 0, count: 2) // 3 rows need 3 scales
    _ = values.withUnsafeBufferPointer { v in
        q.withUnsafeMutableBufferPointer { qb in
            scales.withUnsafeMutableBufferPointer { sb in
                #expect(throws: FlintError.self) {
                    try Int8RowQuantizer().quantize(v, rows: 3, cols: 4, tensorName: "w", into: qb, scales: sb)
                }
            }
        }
    }
    #expect(throws: FlintError.self) { try quantize(Int8RowQuantizer(), values, rows: 5, cols: 4) }
}

@Test func emptyRowsHaveZeroScales() throws {
    let m = try quantize(Int8RowQuantizer(), [], rows: 3, cols: 0)
    #expect(m.scales == [0, 0, 0] && m.values.isEmpty)
    #expect(m.scales.count == QuantScheme.int8Row.scaleCount(shape: [3, 0]))
    let g = try quantize(try Int8GroupQuantizer(groupSize: 8), [], rows: 3, cols: 0)
    #expect(g.scales.isEmpty)
}
