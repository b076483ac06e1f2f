import ArgumentParser
import Foundation
import FlintCalibration
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintQuant
import FlintRecipe

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a Hugging Face T5 checkpoint into one .flint file (int8 by default).",
        discussion: helpDiscussion("""
        SOURCE is a model folder (config.json, weights, and tokenizer.json or spiece.model with its tokenizer_config.json) \
        or a weights file with config.json beside it. The tokenizer AutoTokenizer would load is embedded; a folder \
        without a usable one gets a warning ("tokenizer" in --json says why). Weights may be model.safetensors, pytorch_model.bin (zip or legacy torch format, read without
        Python through a restricted unpickler), tf_model.h5 (Keras) or flax_model.msgpack, single or sharded
        with an *.index.json. When a folder holds several formats, safetensors is preferred, then bin, h5,
        msgpack; --from picks one.

        Calibration (on by default): the float model first runs on calibration prompts (the built-in verify
        prompt set, or --calibration FILE: one prompt per line or JSON lines with "prompt"), recording every
        linear layer's per-channel input maxima and 99.9th percentiles. FLAN-T5's activation outliers (inputs of
        wo and attention o, the residual stream after the layer norms) are then folded into the weights
        SmoothQuant-style — into the preceding layer norm, v or wi_1 — which leaves the float function unchanged
        and lets every linear layer, wo, o and lm_head included, be int8. The statistics and folds are stored in
        the file (`flint inspect` shows them). --no-calibration converts data-free: then, for gated-GELU models
        (T5 v1.1, FLAN-T5), the FFN output projections (*.DenseReluDense.wo.weight) stay float32, because their
        inputs reach magnitudes int8 cannot carry (--no-default-keep drops that). Layer norms and
        relative_attention_bias always stay float.

        Int4 (--quant int4-g32, int4-g64, int4-g128): symmetric 4-bit weights in groups of 32/64/128 inputs with
        f16 scales (4.5 bits per weight at g32), packed for the decode kernels (FLINT.md layout 2). The default
        int4 recipe keeps shared.weight (the embedding) per-row int8 and makes every linear layer, wo and lm_head
        included, int4 — except an FFN output projection wo whose calibrated, activation-aware int4 error is worse
        than the other int4 layers': that one stays per-row int8 (a scheme rule in the file); --keep keeps a tensor
        float, and --target-top1 moves the tensors int4 hurts most to int8 (then float).

        \(ConvertCommand.searchDiscussion)

        Examples:
          flint convert ./flan-t5-base -o flan-t5-base.flint
          flint convert ./flan-t5-base -o base-searched.flint --target-top1 0.99 \\
              --max-mean-kl 0.01
          flint convert ./flan-t5-base -o base.flint --calibration my-prompts.txt
          flint convert ./flan-t5-base -o base-datafree.flint --no-calibration
          flint convert ./flan-t5-base -o base-g64.flint --quant int8-g64 \\
              --keep 'shared.weight=f16'
          flint convert ./flan-t5-base -o base-int4.flint --quant int4-g32
          flint convert ./t5-small/model.safetensors -o t5-small-f32.flint \\
              --quant f32 --json
          flint convert ./t5-base -o t5-base.flint --from pytorch
          flint convert hf:google/flan-t5-small -o flan-t5-small.flint
          flint convert hf:google/flan-t5-small@main -o small.flint --json

        SOURCE may be hf:OWNER/NAME[@REVISION]: the files a conversion reads (config.json, generation_config.json,
        the tokenizer files and one weights format) are downloaded into the Hugging Face cache
        (HF_HOME, default ~/.cache/huggingface, laid out as huggingface_hub does, so either reuses the other's
        files); HF_TOKEN (or `hf auth login`'s token file) authenticates, HF_ENDPOINT picks another hub, and
        HF_HUB_OFFLINE=1 uses the cache only. An interrupted download resumes where it stopped. --json adds
        "hub": the commit, and for each file whether it was downloaded or found in the cache.
        """))

    @Argument(help: "Model folder, a weights file with config.json beside it, or hf:OWNER/NAME[@REVISION].")
    var source: String

    @OptionGroup var destination: OutputFileOptions<FlintOutputFile>

    @Option(help: "Storage scheme: \(QuantRequest.validNames.joined(separator: ", ")) (default: int8).", transform: QuantRequest.init(cliName:))
    var quant: QuantRequest = .int8(.int8Row)

    @Option(name: .customLong("keep"), help: ArgumentHelp(
        "Keep matching tensors float: GLOB[=f32|f16|bf16] (repeatable; later rules win).", valueName: "glob[=dtype]"),
            transform: KeepRule.init(parsing:))
    var keep: [KeepRule] = []

    @Option(name: .customLong("from"), help: "Read this weights format (default: detect; safetensors, then pytorch, h5, msgpack).")
    var from: CheckpointFormat?

    @Flag(help: "Data-free conversion with --no-calibration: do not keep the gated-GELU FFN output projections (wo) float.")
    var noDefaultKeep = false

    @Option(help: "Search the recipe until teacher-forced top-1 agreement with the float model reaches this (e.g. 0.99).")
    var targetTop1: Double?

    @Option(help: "Search the recipe until the mean KL against the float model is at most this (nats).")
    var maxMeanKl: Double?

    @Option(help: ArgumentHelp("Prompts the search scores on, e.g. a held-out set (default: the calibration prompts).", valueName: "file"))
    var searchPrompts: String?
    @Option(help: ArgumentHelp("Calibration prompts: one per line, or JSON lines with a \"prompt\" field (default: the built-in verify prompts).",
                               valueName: "file"))
    var calibration: String?

    @Flag(help: "Convert data-free: no calibration run, no smoothing (gated-GELU wo then stays float32).")
    var noCalibration = false

    @Flag(help: "Calibrate and record the statistics, but do not fold outliers into the weights (keeps wo float32 like --no-calibration).")
    var noSmoothing = false

    @Option(help: "SmoothQuant migration strength α in (0, 1): s_j = max|x_j|^α / max|W_j|^(1−α).")
    var smoothingAlpha: Double = Smoothing.defaultAlpha

    @Option(help: "Tokens generated per calibration prompt.")
    var calibrationTokens: Int = CalibrationOptions().maxNewTokens

    @OptionGroup var format: JSONOption

    var output: String { destination.output }

    func validate() throws {
        if let t = targetTop1, !(0...1).contains(t) { throw ValidationError("--target-top1 is a fraction in 0…1, got \(t)") }
        if let k = maxMeanKl, !(k >= 0) { throw ValidationError("--max-mean-kl must be ≥ 0, got \(k)") }
        if searchPrompts != nil && targetTop1 == nil && maxMeanKl == nil {
            throw ValidationError("--search-prompts needs --target-top1 or --max-mean-kl")
        }
        if let p = searchPrompts, !FileManager.default.fileExists(atPath: p) { throw ValidationError("\(p) does not exist") }
        guard modelArgumentExists(source) else {
            throw ValidationError("source \(source) does not exist")
        }
        if noCalibration && calibration != nil { throw ValidationError("--calibration and --no-calibration are exclusive") }
        if let calibration, !FileManager.default.fileExists(atPath: calibration) {
            throw ValidationError("--calibration \(calibration) does not exist")
        }
        guard smoothingAlpha > 0, smoothingAlpha < 1 else { throw ValidationError("--smoothing-alpha must be in (0, 1), got \(smoothingAlpha)") }
        guard calibrationTokens >= 1, calibrationTokens <= 512 else { throw ValidationError("--calibration-tokens must be 1…512, got \(calibrationTokens)") }
    }

    func run() throws {
        try reportingErrors {
            let convert = ConvertOptions(quant: quant,
                                         keepRules: keep,
                                         useDefaultKeep: !noDefaultKeep)
            // Before any work: the output must not be an input, nor replace a file without --force.
            try OutputTarget.check(output, inputs: OutputTarget.filesIn(source), force: destination.force)
            let prompts: CalibrationSource = noCalibration ? .none : calibration.map { .file($0) } ?? .builtIn
            let options = RecipeOptions(convert: convert, calibration: prompts, smooth: !noSmoothing,
                                        alpha: smoothingAlpha,
                                        calibrationOptions: CalibrationOptions(maxNewTokens: calibrationTokens))
            let started = Date()
            let calibrationBar = ProgressBar("calibrating")
            let bar = ProgressBar("converting")
            let hub = try resolveHubModel(source, format: from)
            if let hub { try OutputTarget.check(output, inputs: OutputTarget.filesIn(hub.folder), force: destination.force) }
            let folder = try HFModelFolder(path: hub?.folder ?? source, format: from)
            if let note = folder.formatChoice { warn(note) }
            try checkTokenizer(of: folder)
            let tokenizerStatus = TokenizerStatus(folder: folder)
            if let problem = tokenizerStatus.problem { warn(problem) }
            if let generation = try folder.generationConfig(), !generation.ignored.isEmpty {
                warn("generation_config.json: not stored (not implemented by flint run): \(generation.ignored.joined(separator: ", "))")
            }
            let report: ConvertReport
            var search: RecipeSearchRecord? = nil
            var recipe: RecipeReport? = nil
            if targetTop1 != nil || maxMeanKl != nil {
                let prepared: PreparedRecipe
                (report, search, prepared) = try searchRecipe(folder, options: options, promptsFile: searchPrompts,
                                                              target: RecipeTarget(minTop1: targetTop1, maxMeanKL: maxMeanKl))
                recipe = RecipeReport(convert: report, calibration: prepared.calibration,
                                      calibrationSeconds: prepared.calibrationSeconds,
                                      calibrationSkipped: prepared.calibrationSkipped)
            } else {
                var calibrating = true
                recipe = try CalibratedConverter.convert(folder, output: output, options: options) { phase, done, total, item in
                    switch phase {
                    case .calibrating: calibrationBar.update(done: done, total: total, detail: item)
                    case .converting:
                        if calibrating { calibrationBar.finish(); calibrating = false }
                        bar.update(done: done, total: total, detail: item)
                    }
                }
                if calibrating { calibrationBar.finish() }
                report = recipe!.convert
                if let skipped = recipe!.calibrationSkipped { warn(skipped) }
            }
            bar.finish()
            for rule in report.unmatchedKeepRules { warn("keep rule \(rule) matched no tensor") }
            for (name, why) in report.ignored.sorted(by: { $0.key < $1.key }) { warn("left out \(name): \(why)") }
            let seconds = Date().timeIntervalSince(started)
            if format.json {
                var result = ConvertJSON(report)
                result.hub = hub.map(HubSourceJSON.init)
                result.search = search
                result.tokenizer = tokenizerStatus
                result.calibration = recipe?.calibration.map { CalibrationJSON($0, seconds: recipe!.calibrationSeconds) }
                try printJSON(result)
            } else {
                printSummary(report, seconds: seconds)
                if let search { printSearch(search) }
                if let recipe, let c = recipe.calibration { printCalibration(c, seconds: recipe.calibrationSeconds) }
            }
        }
    }

    private func printSummary(_ r: ConvertReport, seconds: Double) {
        let quantized = r.tensors.filter { $0.scheme.hasPrefix("int8") }
        let quantizedCount = quantized.count + r.tensors.filter { $0.scheme.hasPrefix("int4") }.count
        let qIn = quantized.reduce(0) { $0 + $1.bytesIn }, qOut = quantized.reduce(0) { $0 + $1.bytesOut }
        print("wrote \(r.output)")
        print("  source       \(r.sourceFormat), \(formatBytes(r.bytesIn))")
        print("  quant        \(r.quant): \(quantizedCount) tensors quantized, \(r.keptFloat.count) kept float, \(r.tensors.count) stored"
              + (r.aliases.isEmpty ? "" : ", \(r.aliases.count) tied aliases"))
        print("  size         \(formatBytes(r.bytesOut)) (\(String(format: "%.1f", Double(r.bytesOut) * 100 / Double(max(r.bytesIn, 1))))% of the source)")
        if qIn > 0 {
            print("  int8 share   \(formatBytes(Int64(qOut))) for \(formatBytes(Int64(qIn))) of source tensors (\(String(format: "%.1f", Double(qOut) * 100 / Double(qIn)))%)")
        }
        let int4 = r.tensors.filter { $0.scheme.hasPrefix("int4") }
        if !int4.isEmpty {
            let out4 = int4.reduce(0) { $0 + $1.bytesOut }, in4 = int4.reduce(0) { $0 + $1.bytesIn }
            print("  int4 share   \(formatBytes(Int64(out4))) for \(formatBytes(Int64(in4))) of source tensors (\(int4.count) tensors, \(String(format: "%.1f", Double(out4) * 100 / Double(max(in4, 1))))%)")
        }
        if let w = r.worst, let snr = w.snrDB {
            print("  worst SNR    \(String(format: "%.1f", snr)) dB (\(w.name))")
        }
        print("  time         \(String(format: "%.2f", seconds)) s")
    }

    private func printCalibration(_ c: CalibrationSummary, seconds: Double) {
        let largest = c.layers.max { $0.value.absMax < $1.value.absMax }
        print("  calibration  \(c.prompts) prompts (\(c.promptSource)), \(c.layers.count) layers, \(String(format: "%.2f", seconds)) s"
              + (largest.map { "; largest input \(String(format: "%.4g", $0.value.absMax)) at \($0.key)" } ?? ""))
        if let s = c.smoothing {
            let before = s.folds.map(\.activationMaxBefore).max() ?? 0, after = s.folds.map(\.activationMaxAfter).max() ?? 0
            print("  smoothing    α \(s.alpha), \(s.folds.count) folds; largest smoothed input \(String(format: "%.4g", before)) → \(String(format: "%.4g", after))")
        }
    }
}

/// The calibration part of `flint convert --json`.
struct CalibrationJSON: Encodable {
    var prompts: Int
    var prompt_source: String
    var seconds: Double
    var layers: Int
    var largest_input: Double
    var largest_input_layer: String?
    var smoothing_alpha: Double?
    var smoothing_folds: Int
    var largest_smoothed_input_after: Double?

    init(_ c: CalibrationSummary, seconds: Double) {
        prompts = c.prompts
        prompt_source = c.promptSource
        self.seconds = seconds
        layers = c.layers.count
        let largest = c.layers.max { $0.value.absMax < $1.value.absMax }
        largest_input = largest?.value.absMax ?? 0
        largest_input_layer = largest?.key
        smoothing_alpha = c.smoothing?.alpha
        smoothing_folds = c.smoothing?.folds.count ?? 0
        largest_smoothed_input_after = c.smoothing.map { $0.folds.map(\.activationMaxAfter).max() ?? 0 }
    }
}

/// `flint convert --json` output.
struct ConvertJSON: Encodable {
    struct PerTensor: Encodable {
        var name: String
        var scheme: String
        var snr_db: Double?
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(scheme, forKey: .scheme)
            if let snr_db { try c.encode(snr_db, forKey: .snr_db) } else { try c.encodeNil(forKey: .snr_db) }
        }
        enum CodingKeys: String, CodingKey { case name, scheme, snr_db }
    }
    var output: String
    var source_format: String
    var quant: String
    var tensors: Int
    var bytes_in: Int64
    var bytes_out: Int64
    var kept_float: [String]
    var per_tensor: [PerTensor]
    /// For an hf: source: the commit and which files were downloaded or found in the cache.
    var hub: HubSourceJSON?
    /// With --target-top1 / --max-mean-kl: the search record (as stored in the provenance).
    var search: RecipeSearchRecord?
    /// The tokenizer embedded (or why there is none).
    var tokenizer: TokenizerStatus?
    /// Absent for --no-calibration.
    var calibration: CalibrationJSON?

    init(_ r: ConvertReport) {
        output = r.output
        source_format = r.sourceFormat
        quant = r.quant
        tensors = r.tensors.count
        bytes_in = r.bytesIn
        bytes_out = r.bytesOut
        kept_float = r.keptFloat
        per_tensor = r.tensors.map { PerTensor(name: $0.name, scheme: $0.scheme, snr_db: finiteOrNil($0.snrDB)) }
    }
}
