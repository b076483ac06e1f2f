// Large half-precision int8 matrices (xxl's bf16 embedding and lm_head) are widened, smoothed and quantized a
// slab of rows at a time; the codes, scales and SNR must be exactly the whole-tensor path's.
import Foundation
import Testing
import FlintFormat
import FlintQuant
@testable import FlintConvert

@Suite struct SlabbedInt8Tests {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 500 - 2
        }
    }

    @Test(arguments: [StorageType.bf16, .f16, .f32], [QuantScheme.int8Row, .int8Group(32)])
    func slabsGiveTheWholeTensorsCodesScalesAndSNR(storage: StorageType, scheme: QuantScheme) throws {
        let rows = 1500, cols = 96  // 682 rows per measurement chunk: slabs of 682 rows, the last one ragged
        let values = random(rows * cols, seed: 7)
        let ops = [ChannelScaling(tensor: "w", axis: .column, channel: 5, op: .multiply, factor: 3.5),
                   ChannelScaling(tensor: "w", axis: .row, channel: 700, op: .divide, factor: 0.3),
                   ChannelScaling(tensor: "w", axis: .column, channel: 5, op: .divide, factor: 1.7),
                   ChannelScaling(tensor: "w", axis: .row, channel: 1499, op: .multiply, factor: 2)]
        var bytes = [UInt8](repeating: 0, count: rows * cols * storage.byteSize)
        try values.withUnsafeBufferPointer { src in
            try bytes.withUnsafeMutableBytes { try HalfConversion.encode(src, storage: storage, into: $0) }
        }
        try bytes.withUnsafeBytes { data in
            let view = TensorView(name: "w", storage: storage, shape: [rows, cols], data: data, owner: nil)
            // The whole-tensor path: decode, apply the scalings, quantize, measure.
            var whole = [Float](repeating: 0, count: rows * cols)
            try whole.withUnsafeMutableBufferPointer { buffer in
                try HalfConversion.decode(data, storage: storage, into: buffer)
                for op in ops { try op.apply(to: buffer, shape: [rows, cols]) }
            }
            let quantizer = try makeInt8Quantizer(for: scheme)
            let expected = try whole.withUnsafeBufferPointer { try quantizer.quantize($0, rows: rows, cols: cols, tensorName: "w") }
            let expectedSNR = try whole.withUnsafeBufferPointer {
                try Converter.measureQuantizationError($0, expected, quantizer: quantizer, tensor: "w")
            }
            let slabbed = try #require(try Converter.slabbedInt8(view, scheme: scheme, ops: ops, source: "test", threshold: 0,
                                                                 slabBytes: 682 * cols * 4))
            #expect(slabbed.q.values == expected.values)
            #expect(slabbed.q.scales.map(\.bitPattern) == expected.scales.map(\.bitPattern))
            #expect(slabbed.snr.bitPattern == expectedSNR.bitPattern)
            // Small tensors, and float32 without scalings (quantized where it lies), keep the whole-tensor path.
            #expect(try Converter.slabbedInt8(view, scheme: scheme, ops: ops, source: "test") == nil)
            if storage == .f32 {
                #expect(try Converter.slabbedInt8(view, scheme: scheme, ops: [], source: "test", threshold: 0) == nil)
            }
        }
    }

    @Test func aNonFiniteValueIsNamedWithItsRowAndColumn() throws {
        var values = [Float](repeating: 1, count: 300 * 8)
        values[250 * 8 + 3] = .nan
        var bytes = [UInt8](repeating: 0, count: values.count * 2)
        try values.withUnsafeBufferPointer { src in
            try bytes.withUnsafeMutableBytes { try HalfConversion.encode(src, storage: .bf16, into: $0) }
        }
        try bytes.withUnsafeBytes { data in
            let view = TensorView(name: "w", storage: .bf16, shape: [300, 8], data: data, owner: nil)
            do {
                _ = try Converter.slabbedInt8(view, scheme: .int8Row, ops: [], source: "src", threshold: 0, slabBytes: 1)
                Issue.record("a NaN weight was quantized")
            } catch let error as FlintError {
                #expect(error.message.contains("element 2003 (row 250, column 3)"), "\(error.message)")
            }
        }
    }

    @Test func anInvalidScalingIsNamedAsTheWholeTensorPathNamesIt() throws {
        let values = [Float](repeating: 1, count: 300 * 8)
        var bytes = [UInt8](repeating: 0, count: values.count * 2)
        try values.withUnsafeBufferPointer { src in
            try bytes.withUnsafeMutableBytes { try HalfConversion.encode(src, storage: .bf16, into: $0) }
        }
        try bytes.withUnsafeBytes { data in
            let view = TensorView(name: "w", storage: .bf16, shape: [300, 8], data: data, owner: nil)
            for (op, expected) in [
                (ChannelScaling(tensor: "w", axis: .row, channel: 300, op: .multiply, factor: 2), "row 300 does not exist in shape [300, 8]"),
                (ChannelScaling(tensor: "w", axis: .column, channel: 8, op: .multiply, factor: 2), "column 8 does not exist in shape [300, 8]"),
                (ChannelScaling(tensor: "w", axis: .column, channel: 1, op: .divide, factor: 0), "factor 0.0 is not a finite non-zero number"),
            ] {
                var whole = [Float](values)
                let wholeMessage = whole.withUnsafeMutableBufferPointer { buffer -> String in
                    do { try op.apply(to: buffer, shape: [300, 8]); return "no error" } catch let e as FlintError { return e.message } catch { return "\(error)" }
                }
                #expect(wholeMessage.contains(expected), "\(wholeMessage)")
                do {
                    _ = try Converter.slabbedInt8(view, scheme: .int8Row, ops: [op], source: "src", threshold: 0, slabBytes: 1)
                    Issue.record("\(op) was applied")
                } catch let error as FlintError {
                    #expect(error.message == wholeMessage)
                }
            }
        }
    }

    @Test func aScalingOverflowIsNamedWithItsElement() throws {
        let values = [Float](repeating: 3e38, count: 300 * 8)
        try values.withUnsafeBytes { data in
            let view = TensorView(name: "w", storage: .f32, shape: [300, 8], data: data, owner: nil)
            let op = ChannelScaling(tensor: "w", axis: .row, channel: 250, op: .multiply, factor: 4)
            do {
                _ = try Converter.slabbedInt8(view, scheme: .int8Row, ops: [op], source: "src", threshold: 0, slabBytes: 1)
                Issue.record("an overflowed weight was quantized")
            } catch let error as FlintError {
                #expect(error.message == "src: tensor \"w\" has a non-finite value after smoothing at element 2000", "\(error.message)")
            }
        }
    }
}
