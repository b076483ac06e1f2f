// `flint convert`: a Hugging Face model folder → one .flint file. Tensors are read, converted and written one
// at a time (bounded memory); each quantized tensor's error against the float original is measured on the way.

import Foundation
import FlintCheckpoint
import FlintFormat
import FlintQuant

public struct ConvertOptions: Sendable {
    public var quant: QuantRequest
    public var keepRules: [KeepRule]
    /// Per-tensor storage overrides (QuantPlan precedence 3).
    public var schemeRules: [SchemeRule]
    public var useDefaultKeep: Bool
    /// Channel scalings applied to the float weights before they are stored (a function-preserving smoothing
    /// plan, `Smoothing.plan`); empty for none.
    public var scalings: [ChannelScaling]
    /// Stored as the metadata's `calibration` object.
    public var calibration: CalibrationSummary?

    public init(quant: QuantRequest = .int8(.int8Row), keepRules: [KeepRule] = [], schemeRules: [SchemeRule] = [],
                useDefaultKeep: Bool = true, scalings: [ChannelScaling] = [], calibration: CalibrationSummary? = nil) {
        self.quant = quant
        self.keepRules = keepRules
        self.schemeRules = schemeRules
        self.useDefaultKeep = useDefaultKeep
        self.scalings = scalings
        self.calibration = calibration
    }

    /// Recorded in the provenance when `flint convert --target-top1 / --max-mean-kl` chose the recipe.
    public var search: RecipeSearchRecord? = nil
    /// How int8 matrices are stored: packed for the kernels (FLINT.md layout 1, the default) or row-major.
    public var int8Layout: TensorLayout = .int8Packed16x4
    /// Activation-aware int4: per tensor, one non-negative weight per input column (the layer's mean squared
    /// input) that the int4 quantizer weights its squared error with when it picks each group's scale.
    public var int4ColumnWeights: [String: [Float]] = [:]
}

public struct ConvertedTensor: Sendable, Equatable {
    public var name: String
    /// `f32`, `f16`, `bf16`, `int8`, `int8-g64`, …
    public var scheme: String
    /// SNR of the stored form against the float original; nil when exact (float kept at source precision).
    public var snrDB: Double?
    /// Why the tensor stayed float when the request asked for int8 (nil otherwise).
    public var keptBecause: String?
    public var bytesIn: Int
    public var bytesOut: Int
}

public struct ConvertReport: Sendable {
    public var output: String
    public var sourceFormat: String
    public var quant: String
    public var tensors: [ConvertedTensor]
    public var aliases: [String: String]
    /// Total size of the source weight files (and config) read.
    public var bytesIn: Int64
    /// Size of the written .flint file.
    public var bytesOut: Int64
    /// Keep rules that matched no tensor (a misspelt rule keeps nothing).
    public var unmatchedKeepRules: [String]
    /// Stored tensors left out because transformers ignores them, with the reason.
    public var ignored: [String: String]

    /// Tensors stored in a float type although the request asked for int8 (scheme rules to another int8 scheme
    /// are not "kept float").
    public var keptFloat: [String] {
        tensors.filter { $0.keptBecause != nil && !$0.scheme.hasPrefix("int8") && !$0.scheme.hasPrefix("int4") }.map(\.name)
    }
    public var worst: ConvertedTensor? {
        tensors.filter { $0.snrDB != nil }.min { $0.snrDB! < $1.snrDB! }
    }
}

public enum Converter {
    /// Converts the model at `source` (a folder, or a weights file with config.json beside it) into `output`.
    /// `progress(done, total, name)` is called after each tensor.
    public static func convert(source: String, output: String, options: ConvertOptions,
                               progress: ((Int, Int, String) -> Void)? = nil) throws -> ConvertReport {
        let folder = try HFModelFolder(path: source)
        return try convert(folder, output: output, options: options, progress: progress)
    }

    public static func convert(_ folder: HFModelFolder, output: String, options: ConvertOptions,
                               progress: ((Int, Int, String) -> Void)? = nil) throws -> ConvertReport {
        let config = folder.config
        let plan = QuantPlan(request: options.quant, keepRules: options.keepRules, schemeRules: options.schemeRules,
                             useDefaultKeep: options.useDefaultKeep, config: config)
        let aliases = folder.aliases
        // Tied copies become aliases; tensors transformers itself ignores (a stray cross-attention position
        // bias, a stale lm_head in a tied model) are left out, as loading the model in transformers would.
        let stored = folder.tensorInfos.filter { aliases[$0.name] == nil && folder.ignoredTensors[$0.name] == nil }

        // A checkpoint that disagrees with its own config (missing, unknown or misshapen tensors: all of them in
        // one error) is refused before anything is written.
        try config.weightLayout.check(stored: stored.map { ($0.name, $0.shape) }, source: folder.sourceDescription,
                                      checkpointName: folder.checkpointNaming)
        let writer = try FlintWriter(path: output, int8Layout: options.int8Layout)
        var converted: [ConvertedTensor] = []
        var errors: [String: Double?] = [:]
        var source: [Float] = []
        var restored: [Float] = []
        var encoded: [UInt8] = []
        let scalings = options.scalings.byTensor()
        for name in scalings.keys where !stored.contains(where: { $0.name == name }) {
            throw FlintError("\(folder.sourceDescription): smoothing names tensor \"\(name)\", which the checkpoint does not store")
        }
        for (i, info) in stored.enumerated() {
            var view = try folder.tensor(info.name)
            let decision = plan.decide(name: info.name, shape: info.shape)
            var record = ConvertedTensor(name: info.name, scheme: decision.form.description, snrDB: nil,
                                         keptBecause: decision.reason?.description, bytesIn: view.data.count, bytesOut: 0)
            // A smoothed tensor: decode to float32, rescale its channels, and go on from that float32 copy.
            var smoothed: UnsafeMutableBufferPointer<Float>? = nil
            defer { smoothed?.deallocate() }
            // A large int8 matrix stored as plain half precision (xxl's bf16 embedding and lm_head: 526 MB each as
            // float32) is widened, smoothed and quantized a slab of rows at a time: the same numbers, without
            // a float32 copy of the whole tensor.
            if case .int8(let scheme) = decision.form, let slabs = try slabbedInt8(view, scheme: scheme, ops: scalings[info.name] ?? [],
                                                                               source: folder.sourceDescription) {
                try slabs.q.values.withUnsafeBytes { d in
                    try slabs.q.scales.withUnsafeBytes { s in
                        try writer.addTensor(name: info.name, storage: .i8, shape: info.shape, scheme: scheme, data: d, scales: s)
                    }
                }
                record.snrDB = slabs.snr.isFinite ? slabs.snr : nil
                errors[info.name] = record.snrDB
                record.bytesOut = writer.lastTensorBytes
                releaseMappedPages(view.data)
                converted.append(record)
                progress?(i + 1, stored.count, info.name)
                continue
            }
            if let ops = scalings[info.name] {
                // Decoded straight into the copy that gets rescaled: one float32 copy of the tensor, not two.
                let buffer = try decodedCopy(view)
                smoothed = buffer
                for op in ops { try op.apply(to: buffer, shape: info.shape) }
                try checkFiniteAfterSmoothing(UnsafeBufferPointer(buffer), firstElement: 0, tensor: info.name,
                                              source: folder.sourceDescription)
                releaseMappedPages(view.data)
                view = TensorView(name: info.name, storage: .f32, shape: info.shape,
                                  data: UnsafeRawBufferPointer(buffer), owner: nil)
            }
            switch decision.form {
            case .float(let target) where target == view.storage:
                // Same float type: copy the bytes untouched (bit-identical round trips).
                try writer.addTensor(name: info.name, storage: target, shape: info.shape, scheme: .none, data: view.data)
                record.bytesOut = view.data.count
            case .float(let target):
                try TensorDecoding.floats(view, into: &source)
                try checkFinite(source, tensor: info.name, source: folder.sourceDescription)
                encoded = [UInt8](repeating: 0, count: source.count * target.byteSize)
                try source.withUnsafeBufferPointer { src in
                    try encoded.withUnsafeMutableBytes { try HalfConversion.encode(src, storage: target, into: $0) }
                }
                try encoded.withUnsafeBytes {
                    try writer.addTensor(name: info.name, storage: target, shape: info.shape, scheme: .none, data: $0)
                }
                if target != .f32 {
                    // Narrowing loses precision: measure it like a quantization.
                    try encoded.withUnsafeBytes { bytes in
                        restored = [Float](repeating: 0, count: source.count)
                        try restored.withUnsafeMutableBufferPointer { try HalfConversion.decode(bytes, storage: target, into: $0) }
                    }
                    let snr = QuantError.snrDB(original: source, reconstructed: restored)
                    record.snrDB = snr.isFinite ? snr : nil
                    errors[info.name] = record.snrDB
                }
                record.bytesOut = encoded.count
            case .int8(let scheme):
                let (rows, cols) = QuantScheme.matrixShape(info.shape)
                let quantizer = try makeInt8Quantizer(for: scheme)
                // Aligned float32 sources are quantized where they lie (no float copy of the tensor).
                let (q, snr) = try withFloats(view, scratch: &source) { floats in
                    let q: QuantizedMatrix
                    do { q = try quantizer.quantize(floats, rows: rows, cols: cols, tensorName: info.name) }
                    catch let e as FlintError { throw FlintError("\(folder.sourceDescription): \(e.message)") }
                    return (q, try measureQuantizationError(floats, q, quantizer: quantizer, tensor: info.name))
                }
                try q.values.withUnsafeBytes { d in
                    try q.scales.withUnsafeBytes { s in
                        try writer.addTensor(name: info.name, storage: .i8, shape: info.shape, scheme: scheme, data: d, scales: s)
                    }
                }
                record.snrDB = snr.isFinite ? snr : nil
                errors[info.name] = record.snrDB
                record.bytesOut = writer.lastTensorBytes
            case .int4(let groupSize):
                let (rows, cols) = QuantScheme.matrixShape(info.shape)
                let quantizer = try Int4Quantizer(groupSize: groupSize)
                let importance = options.int4ColumnWeights[info.name]
                if let importance, importance.count != cols {
                    throw FlintError("\(folder.sourceDescription): tensor \"\(info.name)\": \(importance.count) int4 column weights for \(cols) columns")
                }
                let (packed, snr) = try withFloats(view, scratch: &source) { floats in
                    let packed: PackedInt4Matrix
                    do {
                        packed = try importance.map { w in
                            try w.withUnsafeBufferPointer {
                                try quantizer.quantize(floats, rows: rows, cols: cols, tensorName: info.name, columnWeights: $0)
                            }
                        } ?? quantizer.quantize(floats, rows: rows, cols: cols, tensorName: info.name)
                    } catch let e as FlintError { throw FlintError("\(folder.sourceDescription): \(e.message)") }
                    restored = [Float](repeating: 0, count: rows * cols)
                    try packed.bytes.withUnsafeBytes { bytes in
                        try restored.withUnsafeMutableBufferPointer {
                            try Int4Quantizer.dequantize(bytes, geometry: packed.geometry, into: $0, tensorName: info.name)
                        }
                    }
                    return (packed, restored.withUnsafeBufferPointer { QuantError.snrDB(original: floats, reconstructed: $0) })
                }
                try packed.bytes.withUnsafeBytes {
                    try writer.addTensor(name: info.name, storage: .i4, shape: info.shape, scheme: .int4Group(groupSize),
                                         data: $0, layout: .int4Packed16x8)
                }
                record.snrDB = snr.isFinite ? snr : nil
                errors[info.name] = record.snrDB
                record.bytesOut = writer.lastTensorBytes
            }
            // The source bytes are done with: drop them from resident memory (bounded-memory conversion).
            releaseMappedPages(view.data)
            converted.append(record)
            progress?(i + 1, stored.count, info.name)
        }
        let unmatched = plan.unmatchedKeepRules(tensorNames: folder.tensorInfos.map(\.name)).map(\.text)
        let recipe = QuantizationRecipe(scheme: options.quant.name, keep: options.keepRules.map(\.text),
                                        defaultKeep: options.useDefaultKeep,
                                        schemeRules: options.schemeRules.map(\.description), search: options.search)
        let provenance = Provenance(sourceFormat: folder.sourceFormat,
                                    sourceFiles: folder.sourceFiles.map { SourceFile(name: $0.name, bytes: $0.bytes) },
                                    quantization: recipe)
        let tokenizer = folder.tokenizerModel
        let tokenizerInfo = tokenizer == nil ? nil : folder.tokenizerInfo
        let metadata = FlintMetadata(config: config, tokenizer: tokenizerInfo,
                                     provenance: provenance, aliases: aliases, quantizationError: errors,
                                     requiredFeatures: (tokenizerInfo?.requiredFeatures ?? []) + config.requiredFeatures,
                                     calibration: options.calibration,
                                     generation: try folder.generationConfig()?.defaults.nilIfEmpty)
        try writer.finish(metadata: metadata, tokenizer: tokenizer)
        let outSize = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int64) ?? nil
        return ConvertReport(output: output, sourceFormat: folder.sourceFormat, quant: options.quant.name,
                             tensors: converted, aliases: aliases,
                             bytesIn: folder.sourceFiles.reduce(0) { $0 + $1.bytes },
                             bytesOut: outSize ?? Int64(writer.bytesWritten), unmatchedKeepRules: unmatched,
                             ignored: folder.ignoredTensors)
    }

    /// Float32 bytes above which an int8 matrix stored as f16/bf16 is converted in slabs (`slabbedInt8`).
    static let slabThreshold = 64 << 20

    /// Quantizes a 2-D f16/bf16 matrix (or a smoothed float32 one) whose float32 copy would exceed
    /// `slabThreshold` a slab of rows at a time:
    /// widened, rescaled by `ops` (row and column scalings, in their order, so every element gets the same
    /// float32 operations as on the whole tensor), checked finite, quantized row by row (int8 scales are per row
    /// or per group within a row) and measured in the same row chunks as `measureQuantizationError`, each slab's
    /// source pages handed back. nil when the tensor does not qualify (then the whole-tensor path runs).
    static func slabbedInt8(_ view: TensorView, scheme: QuantScheme, ops: [ChannelScaling], source: String,
                            threshold: Int = slabThreshold, slabBytes: Int = 8 << 20) throws -> (q: QuantizedMatrix, snr: Double)? {
        // Aligned float32 without scalings is quantized where it lies already (no copy).
        guard view.storage == .f16 || view.storage == .bf16 || (view.storage == .f32 && !ops.isEmpty),
              view.scheme == .none, view.layout == .rowMajor,
              view.shape.count == 2, view.elementCount * 4 > threshold else { return nil }
        let (rows, cols) = (view.shape[0], view.shape[1])
        let width = view.storage.byteSize
        guard cols > 0, view.data.count == rows * cols * width else { return nil }
        let quantizer = try makeInt8Quantizer(for: scheme)
        let groups = quantizer.groupsPerRow(cols: cols)
        let chunkRows = max(1, 65_536 / cols)
        // A whole number of measurement chunks per slab, about 8 MB of float32.
        let slabRows = max(1, slabBytes / (cols * 4) / chunkRows) * chunkRows
        var values = [Int8](repeating: 0, count: rows * cols)
        var scales = [Float](repeating: 0, count: rows * groups)
        var slab = [Float](repeating: 0, count: min(rows, slabRows) * cols)
        var restored = [Float](repeating: 0, count: min(rows, chunkRows) * cols)
        var accumulator = QuantErrorAccumulator()
        var first = 0
        while first < rows {
            let n = min(slabRows, rows - first)
            let bytes = UnsafeRawBufferPointer(rebasing: view.data[(first * cols * width)..<((first + n) * cols * width)])
            try slab.withUnsafeMutableBufferPointer { all in
                let part = UnsafeMutableBufferPointer(rebasing: all[0..<(n * cols)])
                try HalfConversion.decode(bytes, storage: view.storage, into: part)
                for op in ops { try op.apply(to: part, shape: view.shape, firstRow: first) }
                if !ops.isEmpty { try checkFiniteAfterSmoothing(UnsafeBufferPointer(part), firstElement: first * cols,
                                                               tensor: view.name, source: source) }
                try values.withUnsafeMutableBufferPointer { q in
                    try scales.withUnsafeMutableBufferPointer { sc in
                        do {
                            try quantizer.quantize(UnsafeBufferPointer(part), rows: n, cols: cols, tensorName: view.name,
                                                   into: UnsafeMutableBufferPointer(rebasing: q[(first * cols)..<((first + n) * cols)]),
                                                   scales: UnsafeMutableBufferPointer(rebasing: sc[(first * groups)..<((first + n) * groups)]),
                                                   firstRow: first)
                        } catch let e as FlintError { throw FlintError("\(source): \(e.message)") }
                        var row = 0
                        try restored.withUnsafeMutableBufferPointer { out in
                            while row < n {
                                let m = min(chunkRows, n - row)
                                let chunk = UnsafeMutableBufferPointer(rebasing: out[0..<(m * cols)])
                                let at = first + row
                                try quantizer.dequantize(UnsafeBufferPointer(rebasing: q[(at * cols)..<((at + m) * cols)]),
                                                         scales: UnsafeBufferPointer(rebasing: sc[(at * groups)..<((at + m) * groups)]),
                                                         rows: m, cols: cols, tensorName: view.name, into: chunk)
                                accumulator.add(original: UnsafeBufferPointer(rebasing: part[(row * cols)..<((row + m) * cols)]),
                                                reconstructed: UnsafeBufferPointer(chunk))
                                row += m
                            }
                        }
                    }
                }
            }
            releaseMappedPages(bytes)
            first += n
        }
        return (QuantizedMatrix(rows: rows, cols: cols, values: values, scales: scales), accumulator.snrDB)
    }

    /// The tensor's values as a new float32 buffer (the caller deallocates it).
    static func decodedCopy(_ view: TensorView) throws -> UnsafeMutableBufferPointer<Float> {
        let count = view.elementCount
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
        do {
            let values = UnsafeMutableBufferPointer(rebasing: buffer[0..<count])
            switch view.storage {
            case .f32 where view.scheme == .none && view.data.count == count * 4:
                if count > 0 { UnsafeMutableRawPointer(values.baseAddress!).copyMemory(from: view.data.baseAddress!, byteCount: count * 4) }
            case .f16 where view.scheme == .none, .bf16 where view.scheme == .none:
                try HalfConversion.decode(view.data, storage: view.storage, into: values)
            default:
                _ = values.initialize(from: try TensorDecoding.floats(view))
            }
            return UnsafeMutableBufferPointer(start: buffer.baseAddress, count: count)
        } catch {
            buffer.deallocate()
            throw error
        }
    }

    /// SNR of a quantized matrix against its float original, dequantizing a few rows at a time so no second
    /// full-size float copy of the tensor is ever held (the largest tensors are the embedding and lm_head).
    /// Calls `body` with the tensor's values as float32: the stored bytes themselves when they are aligned float32,
    /// otherwise decoded into `scratch`.
    static func withFloats<T>(_ view: TensorView, scratch: inout [Float],
                              _ body: (UnsafeBufferPointer<Float>) throws -> T) throws -> T {
        if view.storage == .f32, view.scheme == .none, let base = view.data.baseAddress,
           Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
            return try body(UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: view.elementCount))
        }
        try TensorDecoding.floats(view, into: &scratch)
        return try scratch.withUnsafeBufferPointer { try body($0) }
    }

    static func measureQuantizationError(_ original: UnsafeBufferPointer<Float>, _ q: QuantizedMatrix,
                                         quantizer: any Int8Quantizer, tensor: String) throws -> Double {
        let cols = q.cols, groups = quantizer.groupsPerRow(cols: cols)
        let chunkRows = max(1, 65_536 / max(1, cols))
        var accumulator = QuantErrorAccumulator()
        var scratch = [Float](repeating: 0, count: min(q.rows, chunkRows) * cols)
        try q.values.withUnsafeBufferPointer { values in
            try q.scales.withUnsafeBufferPointer { scales in
                try scratch.withUnsafeMutableBufferPointer { out in
                    var row = 0
                    while row < q.rows {
                        let n = min(chunkRows, q.rows - row)
                        let range = (row * cols)..<((row + n) * cols)
                        let part = UnsafeMutableBufferPointer(rebasing: out[0..<(n * cols)])
                        try quantizer.dequantize(UnsafeBufferPointer(rebasing: values[range]),
                                                 scales: UnsafeBufferPointer(rebasing: scales[(row * groups)..<((row + n) * groups)]),
                                                 rows: n, cols: cols, tensorName: tensor, into: part)
                        accumulator.add(original: UnsafeBufferPointer(rebasing: original[range]),
                                        reconstructed: UnsafeBufferPointer(part))
                        row += n
                    }
                }
            }
        }
        return accumulator.snrDB
    }

    /// A NaN or infinite weight makes a model that cannot be trusted; say where instead of storing it.
    /// A smoothed tensor (or rows of it from `firstElement` on) must still be finite: a scaling can overflow.
    static func checkFiniteAfterSmoothing(_ values: UnsafeBufferPointer<Float>, firstElement: Int, tensor: String,
                                          source: String) throws {
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw FlintError("\(source): tensor \"\(tensor)\" has a non-finite value after smoothing at element \(firstElement + bad)")
        }
    }

    static func checkFinite(_ values: [Float], tensor: String, source: String) throws {
        if let i = values.firstIndex(where: { !$0.isFinite }) {
            throw FlintError("\(source): tensor \"\(tensor)\" has a non-finite value (\(values[i])) at element \(i)")
        }
    }
}
