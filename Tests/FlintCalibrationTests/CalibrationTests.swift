import Foundation
import Testing
import TestSupport
import FlintCalibration
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintQuant
import FlintT5
import FlintTokenizer
import FlintVerify

func model(_ name: String) -> String { packageRoot + "/Tests/Fixtures/models/" + name }

/// Rebuilds `Tests/Fixtures/outliers/<name>` from models/demo (bit-identical to what transformers checked).
func outlierVariant(_ name: String) throws -> HFModelFolder {
    let out = scratch() + "/" + name
    try ModelVariant.materialize(transform: packageRoot + "/Tests/Fixtures/outliers/" + name,
                                 base: try HFModelFolder(path: model("demo")), to: out)
    return try HFModelFolder(path: out)
}

/// The demo task's own prompts (seeded word lists, as Tools writes them): what quality is measured on.
let reversePrompts: [String] = {
    let words = ["red", "blue", "green", "apple", "bread", "cat", "dog", "house", "tree", "sun", "moon", "star",
                 "car", "boat", "one", "two", "three", "four", "five", "big", "small", "run", "sing", "fish"]
    var state: UInt64 = 9
    func next(_ n: Int) -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(n))
    }
    return (0..<20).map { _ in "reverse: " + (0..<(2 + next(5))).map { _ in words[next(words.count)] }.joined(separator: " ") }
}()

@Suite struct ChannelStatisticsTests {
    @Test func maximaAndPercentileOfAKnownInput() {
        // 2000 rows × 3 channels: channel 0 = row index + 1 (1…2000), channel 1 = −(row + 1) / 2, channel 2 = 0,
        // with one NaN that must be ignored.
        var acc = ChannelStatisticsAccumulator(channels: 3, tracked: 8)
        var x = [Float](repeating: 0, count: 2000 * 3)
        for r in 0..<2000 { x[r * 3] = Float(r + 1); x[r * 3 + 1] = -Float(r + 1) / 2 }
        x[5 * 3 + 2] = .nan
        x.withUnsafeBufferPointer { acc.add($0.baseAddress!, rows: 1000) }
        x.withUnsafeBufferPointer { acc.add($0.baseAddress! + 3000, rows: 1000) }
        let s = acc.statistics(percentile: 99.9)
        #expect(s.rows == 2000)
        #expect(s.absMax == [2000, 1000, 0])
        // p99.9 of 2000 rows: 2 rows may exceed it, so it is the 3rd largest.
        #expect(s.percentile == [1998, 999, 0])
        #expect(acc.percentileIsExact(99.9))
        #expect(s.topChannels(2).map(\.channel) == [0, 1])
        // 99 % of 2000 rows lets 20 exceed; only 8 are tracked, so it reports the 8th largest (a higher percentile).
        #expect(!acc.percentileIsExact(99))
        #expect(acc.statistics(percentile: 99).percentile[0] == 1993)
    }

    @Test func calibrationSeesEveryLinearLayerAndTheInjectedOutliers() throws {
        let folder = try outlierVariant("outlier-s300")
        let stats = try Calibrator.calibrate(weights: folder, prompts: Array(reversePrompts.prefix(6)),
                                             promptSource: "test", options: CalibrationOptions(maxNewTokens: 8), pool: nil)
        // 2 encoder blocks × 7 linears, 2 decoder blocks × 11, and lm_head.
        #expect(stats.layers.count == 2 * 7 + 2 * 11 + 1)
        #expect(stats.layers.values.allSatisfy { $0.rows > 0 && $0.absMax.allSatisfy { $0.isFinite } })
        let transform = try ChannelScalingFile.load(packageRoot + "/Tests/Fixtures/outliers/outlier-s300/transform.json")
        // Every channel the transform multiplied by 300 on the wi_1 → wo path is among wo's largest inputs.
        for (tensor, layer) in [("encoder.block.1.layer.1.DenseReluDense.wi_1.weight", "encoder.block.1.layer.1.DenseReluDense.wo.weight"),
                                ("decoder.block.0.layer.0.SelfAttention.v.weight", "decoder.block.0.layer.0.SelfAttention.o.weight")] {
            let injected = Set(transform.operations.filter { $0.tensor == tensor && $0.axis == .row }.map(\.channel))
            let stats = try #require(stats.layers[layer])
            let top = Set(stats.topChannels(injected.count).map(\.channel))
            #expect(top == injected, "\(layer): top channels \(top), injected \(injected)")
            #expect(stats.largest > 20 * stats.medianAbsMax)
        }
    }
}

@Suite struct SmoothingTests {
    /// Smoothing changes the weights but not the function: the smoothed float32 model's logits equal the
    /// original's within 1e-5 relative, for a clean and an outlier-heavy model.
    @Test(arguments: ["demo", "outlier-s300"])
    func smoothedFloatModelEqualsTheOriginal(name: String) throws {
        let folder = name == "demo" ? try HFModelFolder(path: model("demo")) : try outlierVariant(name)
        let stats = try Calibrator.calibrate(weights: folder, prompts: Array(reversePrompts.prefix(4)),
                                             promptSource: "test", options: CalibrationOptions(maxNewTokens: 6), pool: nil)
        let plan = try Smoothing.plan(folder, statistics: stats)
        // Every site of the model was folded, including both cross-block ones.
        #expect(plan.folds.count == Smoothing.sites(config: folder.config).count)
        #expect(plan.folds.contains { $0.producer == "encoder.final_layer_norm.weight" && $0.consumers.count == 4 })
        #expect(plan.folds.contains { $0.producer == "decoder.final_layer_norm.weight" && $0.consumers == ["lm_head.weight"] })
        let dir = scratch()
        _ = try Converter.convert(folder, output: dir + "/smoothed.flint",
                                  options: ConvertOptions(quant: .float(.f32), scalings: plan.scalings))
        let smoothedFile = try FlintFile(path: dir + "/smoothed.flint")
        // The weights really changed.
        let original = try TensorDecoding.floats(try folder.tensor("encoder.block.0.layer.1.DenseReluDense.wo.weight"))
        let changed = try TensorDecoding.floats(try smoothedFile.tensor("encoder.block.0.layer.1.DenseReluDense.wo.weight"))
        #expect(zip(original, changed).contains { abs($0 - $1) > 1e-3 * abs($0) })
        let reference = try T5ForConditionalGeneration(weights: folder, pool: nil)
        let smoothed = try T5ForConditionalGeneration(weights: smoothedFile, pool: nil)
        let tokenizer = try T5Tokenizer(modelBytes: folder.tokenizerModel!)
        var worst = 0.0
        for prompt in reversePrompts.prefix(5) {
            let ids = tokenizer.encode(prompt)
            let greedy = try reference.generate(inputIds: ids, options: GenerationOptions(maxNewTokens: 12, strategy: .greedy)).sequence
            let a = try reference.logits(inputIds: ids, decoderInputIds: Array(greedy.dropLast()))
            let b = try smoothed.logits(inputIds: ids, decoderInputIds: Array(greedy.dropLast()))
            for (ra, rb) in zip(a, b) {
                let scale = Double(ra.map { abs($0) }.max()!)
                let diff = zip(ra, rb).map { Double(abs($0 - $1)) }.max()!
                worst = max(worst, diff / scale)
            }
        }
        #expect(worst <= 1e-5, "smoothed float logits moved by \(worst) relative")
    }
}

/// Issue 9's quality goal as a test, with the default recipe (calibrate on the built-in prompts, smooth,
/// everything int8): top-1 ≥ 0.99, greedy exact match ≥ 0.90, mean KL ≤ 0.01 against the float model, on the
/// weight-only and the W8A8 kernels.
@Suite struct DefaultRecipeQualityTests {
    @Test(arguments: ["outlier-s30", "outlier-s100", "outlier-s300", "demo"])
    func defaultRecipeIsFaithful(name: String) throws {
        let folder = name == "demo" ? try HFModelFolder(path: model("demo")) : try outlierVariant(name)
        let dir = scratch()
        let report = try CalibratedConverter.convert(folder, output: dir + "/m.flint", options: RecipeOptions(), pool: nil)
        #expect(report.convert.keptFloat.allSatisfy { $0.contains("layer_norm") || $0.contains("relative_attention_bias") },
                "\(report.convert.keptFloat)")
        let file = try FlintFile(path: dir + "/m.flint")
        #expect(try file.calibration()?.smoothing != nil)
        let tokenizer = try T5Tokenizer(modelBytes: folder.tokenizerModel!)
        let inputs = reversePrompts.map { VerifyInput(prompt: $0, inputIds: tokenizer.encode($0)) }
        for kernels in [Int8KernelMode.weightOnly, .w8a8] {
            let verify = try Verifier.verify(candidate: file, reference: folder, inputs: inputs, maxNewTokens: 16,
                                             thresholds: VerifyThresholds(), pool: nil, int8Kernels: kernels)
            #expect(verify.top1Agreement >= 0.99, "\(name) \(kernels): top-1 \(verify.top1Agreement)")
            #expect(verify.exactMatch >= 0.90, "\(name) \(kernels): exact \(verify.exactMatch)")
            #expect(verify.meanKL <= 0.01, "\(name) \(kernels): mean KL \(verify.meanKL)")
        }
    }
}

@Suite struct CalibrationMetadataTests {
    /// The .flint metadata records every fold with its scales, enough to rebuild the smoothed float model the
    /// file was quantized from, bit for bit.
    @Test func metadataRecordsFoldsThatRebuildTheSmoothedWeights() throws {
        let folder = try outlierVariant("outlier-s100")
        let dir = scratch()
        let options = RecipeOptions(calibrationOptions: CalibrationOptions(maxNewTokens: 4))
        let report = try CalibratedConverter.convert(folder, output: dir + "/m.flint", options: options, pool: nil)
        let file = try FlintFile(path: dir + "/m.flint")
        let calibration = try #require(try file.calibration())
        #expect(calibration == report.calibration)
        #expect(calibration.promptSource == CalibrationPrompts.builtInSource)
        #expect(calibration.prompts == CalibrationPrompts.builtIn.count)
        #expect(calibration.layers.count == 37)
        let wo = try #require(calibration.layers["encoder.block.0.layer.1.DenseReluDense.wo.weight"])
        #expect(wo.absMax > 10 * wo.medianChannelAbsMax && wo.topChannels.count == 4 && wo.rows > 0)
        let smoothing = try #require(calibration.smoothing)
        #expect(smoothing.alpha == 0.5 && smoothing.folds.count == Smoothing.sites(config: folder.config).count)
        #expect(smoothing.folds.allSatisfy { $0.activationMaxAfter < $0.activationMaxBefore || $0.activationMaxBefore < 1 })
        // wo is int8 now (no default keep), and the rebuilt smoothed f32 weights quantize to exactly the stored int8.
        let stored = try file.tensor("encoder.block.0.layer.1.DenseReluDense.wo.weight")
        #expect(stored.storage == .i8)
        let scalings = try Smoothing.scalings(from: smoothing)
        _ = try Converter.convert(folder, output: dir + "/again.flint",
                                  options: ConvertOptions(useDefaultKeep: false, scalings: scalings))
        let again = try FlintFile(path: dir + "/again.flint")
        for name in file.tensorNames {
            #expect(Array(try again.tensor(name).data) == Array(try file.tensor(name).data), "\(name)")
        }
    }
}
