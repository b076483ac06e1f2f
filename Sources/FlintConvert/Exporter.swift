// `flint export`: a .flint file back to float32 safetensors under Hugging Face names, so any Python tool can
// load what Flint made. Int8 and int4 tensors are dequantized; aliases (tied copies the source stored) are written back.

import FlintFormat
import FlintQuant

public struct ExportReport: Sendable {
    public var output: String
    public var tensors: Int
    public var bytesOut: Int
}

public enum Exporter {
    /// Writes `file` as float32 safetensors at `output`, one tensor in memory at a time.
    public static func export(_ file: FlintFile, to output: String,
                              progress: ((Int, Int, String) -> Void)? = nil) throws -> ExportReport {
        // Hugging Face's state-dict order (shared first, then encoder, decoder, lm_head), aliases included.
        let names = file.config.weightLayout.exportOrder(file.tensorNames + file.metadata.aliases.keys)
        var entries: [SafetensorsWriter.Entry] = []
        for name in names {
            let view = try file.tensor(name)
            entries.append(.init(name: name, dtype: "F32", shape: view.shape, byteCount: view.elementCount * 4))
        }
        let writer = try SafetensorsWriter(path: output, entries: entries, metadata: ["format": "pt"])
        var buffer: [Float] = []
        for (i, name) in names.enumerated() {
            let view = try file.tensor(name)
            try TensorDecoding.floats(view, into: &buffer)
            try buffer.withUnsafeBytes { try writer.write($0) }
            progress?(i + 1, names.count, name)
        }
        try writer.finish()
        let size = entries.reduce(0) { $0 + $1.byteCount }
        return ExportReport(output: output, tensors: names.count, bytesOut: size)
    }
}

/// Turns any stored tensor into float32 values.
public enum TensorDecoding {
    /// Decodes (f16, bf16) or dequantizes (int8 and int4 schemes) `view` into `out`, resized to the element count.
    public static func floats(_ view: TensorView, into out: inout [Float]) throws {
        let n = view.elementCount
        if out.count != n { out = [Float](repeating: 0, count: n) }
        try out.withUnsafeMutableBufferPointer { dst in
            switch view.scheme {
            case .none:
                try HalfConversion.decode(view.data, storage: view.storage, into: dst)
            case .int8Row, .int8Group:
                let q = makeQuantizerOrThrow(view)
                // Packed int8 (FLINT.md layout 1) is unpacked to row-major codes first.
                try view.withRowMajorInt8 { codes in
                    try q.dequantize(codes, scales: view.scales,
                                     rows: view.rows, cols: view.cols, tensorName: view.name, into: dst)
                }
            case .int4Group:
                try Int4Quantizer.dequantize(view, into: dst)
            }
        }
    }

    public static func floats(_ view: TensorView) throws -> [Float] {
        var out: [Float] = []
        try floats(view, into: &out)
        return out
    }

    private static func makeQuantizerOrThrow(_ view: TensorView) -> any Int8Quantizer {
        // The reader validated the scheme; a group size ≥ 1 always makes a quantizer.
        (try? makeInt8Quantizer(for: view.scheme)) ?? Int8RowQuantizer()
    }
}
