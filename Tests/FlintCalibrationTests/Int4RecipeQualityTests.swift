// Issue 15's quality goal as a test: the default int4 recipe (`--quant int4-g32`: calibrate on the built-in
// prompts, fold activation-aware scales, int4 everywhere but the embedding) answers like the float
// model on the demo task for the trained demo and its outlier variants, and the AWQ-style scale choice is what
// the file records.
import Foundation
import Testing
import TestSupport
@testable import FlintCalibration
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintQuant
import FlintTokenizer
import FlintVerify

@Suite struct Int4RecipeQualityTests {
    /// Teacher-forced top-1 ≥ 0.98 and mean KL ≤ 0.02 on the demo task's prompts (these 20, 16 new tokens:
    /// top-1 0.991–1.000 and mean KL 0.003–0.011 measured; on Tools/outlier-prompts.txt, 32 tokens: top-1 1.000,
    /// KL 1–2e-4; the issue asks ≥ 0.97 / ≤ 0.03), with the kernels `flint run` picks for the file (W8A8 for the int8 tensors of a
    /// smoothed file, W4A8 for the int4 ones) and with weight-only int8.
    @Test(arguments: ["demo", "outlier-s30", "outlier-s100", "outlier-s300", "outlier-block", "outlier-head"])
    func defaultInt4RecipeIsFaithful(name: String) throws {
        let folder = name == "demo" ? try HFModelFolder(path: model("demo")) : try outlierVariant(name)
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = RecipeOptions(convert: ConvertOptions(quant: .int4(32)))
        let report = try CalibratedConverter.convert(folder, output: dir + "/m.flint", options: options, pool: nil)
        let file = try FlintFile(path: dir + "/m.flint")
        // The default int4 recipe: int8 embedding, every linear layer (wo and lm_head too) int4 — on these
        // variants no wo is worse in int4 than the other layers, so none is kept int8.
        #expect(file.metadata.provenance.quantization.schemeRules.isEmpty)
        for r in file.records where r.shape.count == 2 && !r.name.contains("relative_attention_bias") {
            #expect(r.storage == (r.name == "shared.weight" ? .i8 : .i4), "\(r.name): \(r.storage)")
        }
        #expect(try file.calibration()?.smoothing != nil)
        #expect(report.convert.bytesOut < 1_100_000, "\(report.convert.bytesOut) bytes (int8 default: 1.45 MB)")
        let tokenizer = try T5Tokenizer(modelBytes: folder.tokenizerModel!)
        let inputs = reversePrompts.map { VerifyInput(prompt: $0, inputIds: tokenizer.encode($0)) }
        for kernels in [Int8KernelMode.w8a8, .weightOnly] {
            let verify = try Verifier.verify(candidate: file, reference: folder, inputs: inputs, maxNewTokens: 16,
                                             thresholds: VerifyThresholds(), pool: nil, int8Kernels: kernels,
                                             sensitivity: .never)
            print("int4-g32 default recipe, \(name), \(kernels): top-1 \(verify.top1Agreement), mean KL \(verify.meanKL), exact \(verify.exactMatch)")
            #expect(verify.top1Agreement >= 0.98, "\(name) \(kernels): top-1 \(verify.top1Agreement)")
            #expect(verify.meanKL <= 0.02, "\(name) \(kernels): mean KL \(verify.meanKL)")
        }
    }

    /// The `wo` fallback (Int4ActivationWeights, rule 3), forced: the demo model with one FFN site made extreme —
    /// encoder.block.0's wi_1 rows 182 and 234 × 1e5 and its wo columns ÷ 1e5 (exact float32 rescalings, so the
    /// same function) — needs smoothing scales past the 1e4 clamp there, which leaves that wo's relative
    /// activation-weighted int4 error far above every other int4 site's. The default int4 recipe must store that
    /// wo per-row int8 (recording the scheme rule) and every other linear layer int4; without the fallback it is
    /// int4 like the rest (the unchanged demo keeps no wo int8: defaultInt4RecipeIsFaithful).
    @Test func aWoFarWorseInInt4ThanTheOtherSitesStaysInt8() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let site = "encoder.block.0.layer.1.DenseReluDense"
        let wo = site + ".wo.weight"
        let factor: Float = 1e5
        let scalings = [182, 234].flatMap { c in
            [ChannelScaling(tensor: site + ".wi_1.weight", axis: .row, channel: c, op: .multiply, factor: factor),
             ChannelScaling(tensor: wo, axis: .column, channel: c, op: .divide, factor: factor)]
        }
        _ = try ModelVariant.write(try HFModelFolder(path: model("demo")), scalings: scalings, to: dir + "/model")
        let folder = try HFModelFolder(path: dir + "/model")

        // The margin, on the site errors the rule compares (calibrated on the demo task's prompts).
        let stats = try Calibrator.calibrate(weights: folder, prompts: reversePrompts, promptSource: "test",
                                             options: CalibrationOptions(maxNewTokens: 8), pool: nil)
        let plan = try Smoothing.plan(folder, statistics: stats)
        let (_, keepInt8, errors) = try Int4ActivationWeights.refine(plan, folder: folder, statistics: stats, groupSize: 32,
                                                                     isInt4: { $0 != "shared.weight" })
        let worstOther = try #require(errors.filter { $0.key != wo }.map(\.value).max())
        let error = try #require(errors[wo])
        print("forced wo fallback: \(wo) relative int4 error \(error), worst other site \(worstOther)")
        #expect(keepInt8 == [wo])
        #expect(error > 3 * worstOther, "\(wo): \(error) vs \(worstOther)")

        // The product path: `flint convert --quant int4-g32` on the built-in prompts.
        let options = RecipeOptions(convert: ConvertOptions(quant: .int4(32)))
        _ = try CalibratedConverter.convert(folder, output: dir + "/m.flint", options: options, pool: nil)
        let file = try FlintFile(path: dir + "/m.flint")
        #expect(file.metadata.provenance.quantization.schemeRules == ["\(wo)=int8"])
        var linears = 0
        for r in file.records where r.shape.count == 2 && !r.name.contains("relative_attention_bias") {
            linears += 1
            switch r.name {
            case wo: #expect(r.storage == .i8 && r.scheme == .int8Row, "\(r.name): \(r.storage) \(r.scheme)")
            case "shared.weight": #expect(r.storage == .i8, "\(r.name): \(r.storage)")
            default: #expect(r.storage == .i4, "\(r.name): \(r.storage) \(r.scheme)")
            }
        }
        #expect(linears == 2 * 7 + 2 * 11 + 2)
    }

    /// What calibration buys: data-free int4 of the s300 variant misses the goal by far (measured
    /// 0.89 / 0.66 on 40 prompts), so the test above measures the recipe, not an easy model.
    @Test func dataFreeInt4MissesOnTheOutlierModel() throws {
        let folder = try outlierVariant("outlier-s300")
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = RecipeOptions(convert: ConvertOptions(quant: .int4(32)), calibration: .none)
        _ = try CalibratedConverter.convert(folder, output: dir + "/m.flint", options: options, pool: nil)
        let file = try FlintFile(path: dir + "/m.flint")
        let tokenizer = try T5Tokenizer(modelBytes: folder.tokenizerModel!)
        let inputs = reversePrompts.map { VerifyInput(prompt: $0, inputIds: tokenizer.encode($0)) }
        let verify = try Verifier.verify(candidate: file, reference: folder, inputs: inputs, maxNewTokens: 16,
                                         thresholds: VerifyThresholds(), pool: nil, int8Kernels: .weightOnly,
                                         sensitivity: .never)
        #expect(verify.top1Agreement < 0.97 || verify.meanKL > 0.03, "top-1 \(verify.top1Agreement), KL \(verify.meanKL)")
    }

    /// At every site feeding only int4 layers the chosen scales have an activation-weighted int4 error no larger
    /// than SmoothQuant's (they are among the candidates), sites feeding int8 wo keep SmoothQuant's, and the
    /// file's calibration metadata gives back exactly the scalings the conversion applied.
    @Test(arguments: ["demo", "outlier-s300"])
    func activationAwareScalesBeatSmoothQuantsAndAreRecorded(name: String) throws {
        let folder = name == "demo" ? try HFModelFolder(path: model("demo")) : try outlierVariant(name)
        let recipe = RecipeOptions(convert: ConvertOptions(quant: .int4(32)), calibrationOptions: CalibrationOptions(maxNewTokens: 6))
        let stats = try Calibrator.calibrate(weights: folder, prompts: Array(reversePrompts.prefix(6)), promptSource: "test",
                                             options: recipe.calibrationOptions, pool: nil)
        let smoothQuant = try Smoothing.plan(folder, statistics: stats)
        let isInt4: (String) -> Bool = { $0 != "shared.weight" && !$0.hasSuffix("DenseReluDense.wo.weight") }
        let (refined, keepInt8, _) = try Int4ActivationWeights.refine(smoothQuant, folder: folder, statistics: stats, groupSize: 32, isInt4: isInt4)
        #expect(keepInt8.isEmpty, "wo is int8 here, so no int4 wo is kept back: \(keepInt8)")
        #expect(refined.folds.count == smoothQuant.folds.count)
        let quantizer = try Int4Quantizer(groupSize: 32)
        var changed = 0
        for (before, after) in zip(smoothQuant.folds, refined.folds) {
            #expect(before.producer == after.producer && before.consumers == after.consumers)
            guard before.consumers.allSatisfy(isInt4) else {
                #expect(after.scales == before.scales, "\(before.producer) feeds int8 \(before.consumers)")
                continue
            }
            let layer = try #require(stats.layers[before.consumers[0]])
            let magnitude = zip(layer.percentile, layer.absMax).map { $0 > 0 ? $0 : $1 }
            let weights = try before.consumers.map { name -> (rows: Int, values: [Float]) in
                let view = try folder.tensor(name)
                return (view.shape[0], try TensorDecoding.floats(view))
            }
            func loss(_ scales: [Float]) throws -> Double {
                try Int4ActivationWeights.weightedError(weights, scales: scales, magnitude: magnitude, quantizer: quantizer,
                                                        channels: magnitude.count, name: before.consumers[0])
            }
            #expect(try loss(after.scales) <= loss(before.scales), "\(before.producer)")
            if after.scales != before.scales { changed += 1 }
        }
        print("activation-aware int4 scales: \(changed) of \(refined.folds.count) folds differ from SmoothQuant's")
        // On the demo most sites change (15 of 22 measured); on outlier-s300 SmoothQuant's scales, which undo
        // the injected per-channel outliers exactly, win everywhere (0 of 22).
        if name == "demo" { #expect(changed > 0, "the activation-aware choice never differed from SmoothQuant's") }

        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let prepared = try CalibratedConverter.prepare(folder, options: recipe, pool: nil)
        _ = try Converter.convert(folder, output: dir + "/m.flint", options: prepared.convert)
        let smoothing = try #require(try FlintFile(path: dir + "/m.flint").calibration()?.smoothing)
        #expect(try Smoothing.scalings(from: smoothing) == prepared.convert.scalings)
        #expect(!prepared.convert.int4ColumnWeights.isEmpty)
    }
}
