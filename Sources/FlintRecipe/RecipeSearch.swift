// `flint convert --target-top1 X / --max-mean-kl X`: the recipe is searched, not guessed. The model is converted
// with the requested recipe and scored teacher-forced against the float model on the search prompts; while the
// target is missed, the tensor whose quantization alone costs the most (measured: the float model with only that
// tensor quantized, mean KL) moves to a finer form — int8 per row → int8-g32 → float32 — and is measured again
// in its new form. Candidates are assembled in memory (quantized exactly as the converter would), so only the
// final file is written twice: once as converted, once with the chosen scheme rules and the search record in
// its provenance.

import Foundation
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintQuant
import FlintVerify

/// What the search must reach; at least one bound.
public struct RecipeTarget: Sendable, Equatable {
    public var minTop1: Double?
    public var maxMeanKL: Double?

    public init(minTop1: Double? = nil, maxMeanKL: Double? = nil) {
        self.minTop1 = minTop1
        self.maxMeanKL = maxMeanKL
    }

    public func isMet(_ s: TeacherForcedScore) -> Bool {
        (minTop1.map { s.top1Agreement >= $0 } ?? true) && (maxMeanKL.map { s.meanKL <= $0 } ?? true)
    }
}

public struct RecipeSearchOptions: Sendable {
    public var target: RecipeTarget
    /// Prompts the candidates are scored on (the calibration prompts).
    public var inputs: [VerifyInput]
    /// Describes `inputs` in the record (`built-in verify prompts`, a file name).
    public var promptSource: String
    public var maxNewTokens: Int
    /// The kernels candidates are scored with (as `flint run` will run them).
    public var int8Kernels: Int8KernelMode
    /// The forms a tensor moves through, coarse to fine; the last should be a float form.
    public var ladder: [StoredForm]

    public init(target: RecipeTarget, inputs: [VerifyInput], promptSource: String, maxNewTokens: Int = 16,
                int8Kernels: Int8KernelMode = .weightOnly,
                ladder: [StoredForm] = [.int8(.int8Row), .int8(.int8Group(32)), .float(.f32)]) {
        self.target = target
        self.inputs = inputs
        self.promptSource = promptSource
        self.maxNewTokens = maxNewTokens
        self.int8Kernels = int8Kernels
        self.ladder = ladder
    }
}

/// What a search step or stage is doing, for progress display.
public enum RecipeSearchPhase: String, Sendable {
    case converting, scoring, measuring, searching, writing
}

public struct RecipeSearchResult: Sendable {
    public var record: RecipeSearchRecord
    /// The final conversion's report (the file at `output`).
    public var convert: ConvertReport
    /// Per quantized tensor of the first conversion: its measured sensitivity (mean KL when only it is quantized).
    public var sensitivity: [ComponentSensitivity]
}

/// A conversion of the model to `output`, with `schemeRules` added to the requested recipe and `search`
/// recorded in the provenance (the caller's usual conversion: calibration and smoothing included).
public typealias RecipeConversion = (_ output: String, _ schemeRules: [SchemeRule], _ search: RecipeSearchRecord?) throws -> ConvertReport

public enum RecipeSearch {
    /// Runs the search for `folder` and writes the chosen recipe's file to `output`.
    /// - Parameters:
    ///   - convert: performs a conversion (see `RecipeConversion`).
    ///   - floatBase: the float model the per-tensor measurements start from, in the same basis as the first
    ///     conversion (for a smoothed conversion: the folder with the same folds applied, `ScaledWeights`).
    ///     Default: the folder itself (the right base for an unsmoothed conversion).
    public static func run(_ folder: HFModelFolder, output: String, options: RecipeSearchOptions,
                           convert: RecipeConversion,
                           floatBase: ((_ firstConversion: FlintFile) throws -> WeightSource)? = nil,
                           pool: ThreadPool? = .shared,
                           progress: ((RecipeSearchPhase, Int, Int, String) -> Void)? = nil) throws -> RecipeSearchResult {
        guard options.target.minTop1 != nil || options.target.maxMeanKL != nil else {
            throw FlintError("recipe search: give a target (--target-top1 and/or --max-mean-kl)")
        }
        guard !options.inputs.isEmpty else { throw FlintError("recipe search: no prompts to score on") }
        guard !folder.config.isEncoderOnly else {
            throw FlintError("\(folder.sourceDescription): --target-top1 needs a model that generates; this one is encoder-only")
        }
        let scratchDir = (output as NSString).deletingLastPathComponent.isEmpty ? "." : (output as NSString).deletingLastPathComponent
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let firstPath = scratchDir + "/.flint-search-\(tag)-candidate.flint"
        defer { unlink(firstPath) }
        let kernels = options.int8Kernels

        progress?(.converting, 0, 1, "as requested")
        _ = try convert(firstPath, [], nil)
        let first = try FlintFile(path: firstPath)
        let float: WeightSource = try floatBase?(first) ?? folder

        progress?(.scoring, 0, options.inputs.count, "float reference")
        let scripts = try Sensitivity.scripts(reference: folder, inputs: options.inputs, maxNewTokens: options.maxNewTokens,
                                              pool: pool, int8Kernels: kernels) { progress?(.scoring, $0, $1, "float reference") }
        let before = try Sensitivity.score(first, scripts: scripts, pool: pool, int8Kernels: kernels)
        var quality = before
        var changes: [RecipeSearchRecord.Change] = []
        var sensitivity: [ComponentSensitivity] = []
        var forms: [String: StoredForm] = [:]
        var cost: [String: Double] = [:]
        var overrides: OverriddenWeights? = nil

        /// Moves the costliest tensor one rung finer until `quality` meets the target or every tensor is at its
        /// finest form.
        func moveUntilMet() throws {
            guard !options.target.isMet(quality) else { return }
            if overrides == nil {
                // Every tensor the first conversion quantized, measured on its own.
                let quantized = first.records.filter { $0.storage == .i8 || $0.storage == .i4 }
                for r in quantized { forms[r.name] = r.storage == .i4 ? .int4(r.scheme.groupSize) : .int8(r.scheme) }
                let components = quantized.map { SensitivityComponent(name: $0.name, tensors: [$0.name]) }
                sensitivity = try Sensitivity.measure(reference: float, candidate: first, components: components,
                                                      scripts: scripts, pool: pool, int8Kernels: kernels) {
                    progress?(.measuring, $0, $1, $2)
                }
                cost = Dictionary(uniqueKeysWithValues: sensitivity.map { ($0.name, $0.meanKL) })
                overrides = OverriddenWeights(base: first, float: float)
            }
            let overrides = overrides!
            while !options.target.isMet(quality) {
                // The most costly tensor that still has a finer form to go to.
                guard let (name, kl) = cost.filter({ next(after: forms[$0.key]!, in: options.ladder) != nil })
                        .max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }) else { return }
                let from = forms[name]!
                let to = next(after: from, in: options.ladder)!
                let shape = try first.tensor(name).shape
                try overrides.set(name, to: to)
                forms[name] = to
                progress?(.searching, changes.count + 1, changes.count + 1, "\(name) → \(to)")
                quality = try Sensitivity.score(overrides, scripts: scripts, pool: pool, int8Kernels: kernels)
                changes.append(RecipeSearchRecord.Change(
                    tensor: name, from: from.description, to: to.description,
                    bytes: storedBytes(shape, to) - storedBytes(shape, from), sensitivityKL: kl,
                    after: RecipeSearchRecord.Quality(top1: quality.top1Agreement, meanKL: quality.meanKL)))
                if case .float = to {
                    cost[name] = nil
                } else if !options.target.isMet(quality) {
                    // Measure it again in its new form: it competes with the others from there.
                    let alone = OverriddenWeights(base: float, float: float)
                    try alone.set(name, to: to)
                    cost[name] = try Sensitivity.score(alone, scripts: scripts, pool: pool, int8Kernels: kernels).meanKL
                }
            }
        }

        var final: ConvertReport
        var record: RecipeSearchRecord
        while true {
            try moveUntilMet()
            record = RecipeSearchRecord(
                targetTop1: options.target.minTop1, maxMeanKL: options.target.maxMeanKL, prompts: options.inputs.count,
                promptSource: options.promptSource, kernels: kernels.cliName,
                before: .init(top1: before.top1Agreement, meanKL: before.meanKL),
                after: .init(top1: quality.top1Agreement, meanKL: quality.meanKL),
                met: options.target.isMet(quality), changes: changes)
            // The file is written with exact-name rules for the changed tensors, in the order they were chosen.
            let rules = try changes.reduce(into: [String: StoredForm]()) { $0[$1.tensor] = try parseForm($1.to) }
                .sorted { $0.key < $1.key }
                .map { try SchemeRule(pattern: $0.key, form: $0.value) }
            progress?(.writing, 0, 1, output)
            if changes.isEmpty {
                final = try convert(output, [], record)
                break
            }
            final = try convert(output, rules, record)
            // The written file must score what the search measured in memory.
            let written = try Sensitivity.score(try FlintFile(path: output), scripts: scripts, pool: pool, int8Kernels: kernels)
            if abs(written.top1Agreement - quality.top1Agreement) <= 1e-9 && abs(written.meanKL - quality.meanKL) <= 1e-6 * max(1, quality.meanKL) {
                break
            }
            record.after = .init(top1: written.top1Agreement, meanKL: written.meanKL)
            record.met = options.target.isMet(written)
            if record.met || !options.target.isMet(quality) {
                // Met as written, or the search is out of finer forms: the file says which.
                final = try convert(output, rules, record)
                break
            }
            // Met in memory but not as written: go on from the written file's score.
            quality = written
        }
        return RecipeSearchResult(record: record, convert: final, sensitivity: sensitivity)
    }

    /// The next finer form on the ladder (int8 schemes not on it move to the first finer rung), or nil at the end.
    static func next(after form: StoredForm, in ladder: [StoredForm]) -> StoredForm? {
        if let i = ladder.firstIndex(of: form) { return i + 1 < ladder.count ? ladder[i + 1] : nil }
        switch form {
        case .float: return nil
        case .int4:
            // Int4 moves to the ladder's first int8 rung (then on along the ladder).
            return ladder.first { if case .int8 = $0 { return true } else { return false } }
                ?? ladder.last { if case .float = $0 { return true } else { return false } }
        case .int8(let scheme):
            // A group scheme coarser than a rung's goes to that rung; anything else to the float end.
            for rung in ladder {
                if case .int8(let s) = rung, s.groupSize > 0, scheme.groupSize == 0 || s.groupSize < scheme.groupSize { return rung }
            }
            return ladder.last { if case .float = $0 { return true } else { return false } }
        }
    }

    /// Data and scale bytes of a `[rows, cols]` tensor stored in `form`.
    public static func storedBytes(_ shape: [Int], _ form: StoredForm) -> Int {
        let (rows, cols) = QuantScheme.matrixShape(shape)
        switch form {
        case .float(let s): return rows * cols * s.byteSize
        case .int8(let scheme):
            let groups = scheme.groupSize > 0 ? (cols + scheme.groupSize - 1) / scheme.groupSize : 1
            // Converted int8 matrices are packed (FLINT.md layout 1): padded blocks plus their weight sums.
            let data = PackedInt8Geometry(shape: [rows, cols], scheme: scheme)?.byteCount ?? rows * cols
            return data + rows * groups * 4
        case .int4(let g):
            // Packed int4 (FLINT.md layout 2): padded code blocks and their f16 scales, no scale region.
            return PackedInt4Geometry(shape: [rows, cols], scheme: .int4Group(g))?.byteCount ?? rows * cols
        }
    }

    static func parseForm(_ text: String) throws -> StoredForm {
        switch try QuantRequest(cliName: text) {
        case .float(let s): return .float(s)
        case .int8(let scheme): return .int8(scheme)
        case .int4(let g): return .int4(g)
        }
    }
}

/// A candidate assembled in memory: `base`'s tensors, except the overridden ones, which are made from the float
/// model `float` (same basis) in their new form — quantized with the converter's own quantizers.
final class OverriddenWeights: WeightSource, @unchecked Sendable {
    let base: WeightSource
    let float: WeightSource
    private var views: [String: TensorView] = [:]
    /// Buffers behind the overridden int8 views, freed with the object.
    private var buffers: [UnsafeMutableRawBufferPointer] = []

    deinit { buffers.forEach { $0.deallocate() } }

    init(base: WeightSource, float: WeightSource) {
        self.base = base
        self.float = float
    }

    var holdsQuantizedWeights: Bool { base.holdsQuantizedWeights || views.values.contains { !$0.storage.isFloat } }

    func set(_ name: String, to form: StoredForm) throws {
        let source = try float.tensor(name)
        switch form {
        case .float(.f32):
            views[name] = source
        case .float(let other):
            throw FlintError("recipe search: \(other) is not a search rung (use f32)")
        case .int8(let scheme):
            let (rows, cols) = QuantScheme.matrixShape(source.shape)
            let floats = try TensorConversion.floatArray(source)
            let q = try floats.withUnsafeBufferPointer {
                try makeInt8Quantizer(for: scheme).quantize($0, rows: rows, cols: cols, tensorName: name)
            }
            let scales = UnsafeMutableRawBufferPointer.allocate(byteCount: max(4, q.scales.count * 4), alignment: 64)
            buffers.append(scales)
            q.scales.withUnsafeBytes { scales.copyMemory(from: $0) }
            let scaleFloats = UnsafeBufferPointer(start: scales.bindMemory(to: Float.self).baseAddress, count: q.scales.count)
            // Laid out as the writer stores it (FLINT.md layout 1 when the matrix packs): the candidate then runs
            // the kernels the written file will, and scores what the file scores — the row-major AVX-512 W8A8
            // kernel is not bit-identical to the packed one, and one flipped near-tie of top-1 was enough to
            // miss a target the in-memory candidate had met.
            let values: UnsafeMutableRawBufferPointer
            let layout: TensorLayout
            if let geometry = PackedInt8Geometry(shape: [rows, cols], scheme: scheme) {
                values = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, geometry.byteCount), alignment: 64)
                q.values.withUnsafeBufferPointer { geometry.pack($0, into: values) }
                layout = .int8Packed16x4
            } else {
                values = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, q.values.count), alignment: 64)
                q.values.withUnsafeBytes { values.copyMemory(from: $0) }
                layout = .rowMajor
            }
            buffers.append(values)
            views[name] = TensorView(name: name, storage: .i8, shape: source.shape, scheme: scheme,
                                     data: UnsafeRawBufferPointer(values), scales: scaleFloats, layout: layout, owner: self)
        case .int4(let g):
            let (rows, cols) = QuantScheme.matrixShape(source.shape)
            let floats = try TensorConversion.floatArray(source)
            let packed = try floats.withUnsafeBufferPointer {
                try Int4Quantizer(groupSize: g).quantize($0, rows: rows, cols: cols, tensorName: name)
            }
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, packed.bytes.count), alignment: 64)
            buffers.append(bytes)
            packed.bytes.withUnsafeBytes { bytes.copyMemory(from: $0) }
            views[name] = TensorView(name: name, storage: .i4, shape: source.shape, scheme: .int4Group(g),
                                     data: UnsafeRawBufferPointer(start: bytes.baseAddress, count: packed.bytes.count),
                                     layout: .int4Packed16x8, owner: self)
        }
    }

    var config: T5Config { base.config }
    var tensorNames: [String] { base.tensorNames }
    var tokenizerModel: [UInt8]? { base.tokenizerModel }
    var sourceDescription: String { base.sourceDescription + " (search candidate)" }
    func tensor(_ name: String) throws -> TensorView { try views[name] ?? base.tensor(name) }
}
