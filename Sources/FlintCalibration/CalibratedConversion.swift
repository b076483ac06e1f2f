// The default conversion recipe: calibrate the float model, smooth its activation outliers into the weights,
// then quantize everything (wo, o and lm_head included) — or, data-free, quantize with the gated-FFN `wo` kept
// in float32 as before.

import Foundation
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintQuant

/// Where calibration prompts come from.
public enum CalibrationSource: Sendable, Equatable {
    /// The built-in verify prompt set.
    case builtIn
    /// A prompt file (one per line, or JSON lines).
    case file(String)
    /// No calibration: a data-free conversion.
    case none
}

public struct RecipeOptions: Sendable {
    public var convert: ConvertOptions
    public var calibration: CalibrationSource
    /// Fold the calibrated outliers into the weights (SmoothQuant); when false, statistics are only recorded.
    public var smooth: Bool
    public var alpha: Double
    public var calibrationOptions: CalibrationOptions

    /// `convert.useDefaultKeep` applies to data-free conversions only: a smoothed model needs no float `wo`.
    public init(convert: ConvertOptions = ConvertOptions(), calibration: CalibrationSource = .builtIn,
                smooth: Bool = true, alpha: Double = Smoothing.defaultAlpha,
                calibrationOptions: CalibrationOptions = CalibrationOptions()) {
        self.convert = convert
        self.calibration = calibration
        self.smooth = smooth
        self.alpha = alpha
        self.calibrationOptions = calibrationOptions
    }
}

public enum RecipePhase: String, Sendable {
    case calibrating = "calibrating"
    case converting = "converting"
}

public struct RecipeReport: Sendable {
    public var convert: ConvertReport
    public var calibration: CalibrationSummary?
    public var calibrationSeconds: Double
    /// Why calibration was asked for but did not run (the conversion was data-free), nil otherwise.
    public var calibrationSkipped: String? = nil

    public init(convert: ConvertReport, calibration: CalibrationSummary?, calibrationSeconds: Double,
                calibrationSkipped: String? = nil) {
        self.convert = convert
        self.calibration = calibration
        self.calibrationSeconds = calibrationSeconds
        self.calibrationSkipped = calibrationSkipped
    }
}

/// What calibration decided, before any tensor is written: the converter options carrying the smoothing
/// scalings and the calibration metadata (`CalibratedConverter.prepare`).
public struct PreparedRecipe: Sendable {
    public var convert: ConvertOptions
    public var calibration: CalibrationSummary?
    public var calibrationSeconds: Double
    public var calibrationSkipped: String?
    /// The conversion folds outliers into the weights (its files run on the W8A8 kernels by default).
    public var smoothed: Bool { !convert.scalings.isEmpty }
}

public enum CalibratedConverter {
    /// Converts `folder` into `output` with the recipe. `progress(phase, done, total, item)`.
    public static func convert(_ folder: HFModelFolder, output: String, options: RecipeOptions,
                               pool: ThreadPool? = .shared,
                               progress: ((RecipePhase, Int, Int, String) -> Void)? = nil) throws -> RecipeReport {
        let prepared = try prepare(folder, options: options, pool: pool, progress: progress)
        let report = try Converter.convert(folder, output: output, options: prepared.convert) { done, total, name in
            progress?(.converting, done, total, name)
        }
        return RecipeReport(convert: report, calibration: prepared.calibration,
                            calibrationSeconds: prepared.calibrationSeconds, calibrationSkipped: prepared.calibrationSkipped)
    }

    /// Calibrates (unless data-free) and plans the smoothing: the options every conversion of this recipe
    /// uses (the recipe search converts more than once from one calibration).
    public static func prepare(_ folder: HFModelFolder, options: RecipeOptions, pool: ThreadPool? = .shared,
                               progress: ((RecipePhase, Int, Int, String) -> Void)? = nil) throws -> PreparedRecipe {
        // Refuse a checkpoint that disagrees with its config before running it (Converter checks again).
        let stored = folder.tensorInfos.filter { folder.aliases[$0.name] == nil && folder.ignoredTensors[$0.name] == nil }
        try folder.config.weightLayout.check(stored: stored.map { ($0.name, $0.shape) }, source: folder.sourceDescription,
                                      checkpointName: folder.checkpointNaming)
        var convertOptions = options.convert
        var summary: CalibrationSummary? = nil
        var seconds = 0.0
        let prompts: [String]?
        let source: String
        switch options.calibration {
        case .none: prompts = nil; source = ""
        case .builtIn: prompts = CalibrationPrompts.builtIn; source = CalibrationPrompts.builtInSource
        case .file(let path): prompts = try CalibrationPrompts.load(path); source = (path as NSString).lastPathComponent
        }
        let floatRequest: Bool
        if case .float = options.convert.quant { floatRequest = true } else { floatRequest = false }
        var skipped: String? = nil
        if prompts != nil, folder.tokenizerModel == nil {
            // Nothing can encode the prompts: convert data-free (the default keep-list applies) and say so.
            skipped = "\(folder.sourceDescription): no tokenizer, so no calibration: converted data-free (FFN wo kept float32 for gated models)"
        }
        if let prompts, skipped == nil, !folder.config.isEncoderOnly {
            let start = Date()
            let statistics = try Calibrator.calibrate(weights: folder, prompts: prompts, promptSource: source,
                                                      options: options.calibrationOptions, pool: pool) { done, total, what in
                progress?(.calibrating, done, total, what)
            }
            var smoothing: SmoothingSummary? = nil
            // A float conversion stores the weights as they are: smoothing helps only what gets quantized.
            if options.smooth && !floatRequest {
                var plan = try Smoothing.plan(folder, statistics: statistics, alpha: options.alpha)
                if case .int4(let groupSize) = options.convert.quant {
                    // Sites feeding only int4 layers get activation-aware (AWQ-style) scales instead.
                    let quantPlan = QuantPlan(request: options.convert.quant, keepRules: convertOptions.keepRules,
                                              schemeRules: convertOptions.schemeRules, useDefaultKeep: false,
                                              config: folder.config)
                    var shapes: [String: [Int]] = [:]
                    for info in folder.tensorInfos { shapes[info.name] = info.shape }
                    let refined = try Int4ActivationWeights.refine(plan, folder: folder, statistics: statistics, groupSize: groupSize) { name in
                        guard let shape = shapes[name] else { return false }
                        if case .int4 = quantPlan.decide(name: name, shape: shape).form { return true }
                        return false
                    }
                    plan = refined.plan
                    // The FFN output projections int4 would hurt most stay per-row int8 (recorded as scheme rules).
                    convertOptions.schemeRules += try refined.keepInt8.map { try SchemeRule(pattern: $0, form: .int8(.int8Row)) }
                }
                convertOptions.scalings = plan.scalings
                smoothing = SmoothingSummary(alpha: plan.alpha, folds: plan.folds)
                convertOptions.useDefaultKeep = false
            }
            if case .int4 = options.convert.quant {
                // Activation-aware int4: each column's error weighted by its (smoothed) input magnitude.
                convertOptions.int4ColumnWeights = Int4ActivationWeights.columnWeights(statistics, scalings: convertOptions.scalings)
            }
            seconds = Date().timeIntervalSince(start)
            summary = Self.summary(statistics, smoothing: smoothing)
            convertOptions.calibration = summary
        }
        return PreparedRecipe(convert: convertOptions, calibration: summary, calibrationSeconds: seconds,
                              calibrationSkipped: skipped)
    }

    /// The per-layer summary stored in the .flint metadata.
    public static func summary(_ statistics: ActivationStatistics, smoothing: SmoothingSummary?,
                               topChannels: Int = 4) -> CalibrationSummary {
        var layers: [String: CalibrationLayerSummary] = [:]
        for (name, stats) in statistics.layers {
            layers[name] = CalibrationLayerSummary(
                rows: stats.rows, absMax: Double(stats.largest), percentileMax: Double(stats.percentile.max() ?? 0),
                medianChannelAbsMax: Double(stats.medianAbsMax),
                topChannels: stats.topChannels(topChannels).map { [Double($0.channel), Double($0.absMax)] })
        }
        return CalibrationSummary(prompts: statistics.prompts, promptSource: statistics.promptSource,
                                  maxNewTokens: statistics.maxNewTokens, percentile: statistics.percentile,
                                  layers: layers, smoothing: smoothing)
    }
}
