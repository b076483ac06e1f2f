import Foundation
import Testing
import TestSupport
import FlintCalibration
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintTokenizer
import FlintVerify

/// A smoothed file's folds reach across blocks (encoder final norm → every cross-attention k/v, decoder final
/// norm → lm_head), so a per-block hybrid (float reference + one block of the candidate) is only meaningful in
/// the candidate's basis: the reference with the same folds applied (`ScaledWeights.smoothedBasis`). There each
/// block alone costs only its quantization; in the unsmoothed basis the hybrid computes another function.
@Suite struct SmoothedBasisTests {
    @Test func sensitivityOfASmoothedFileIsMeasuredInItsBasis() throws {
        let folder = try outlierVariant("outlier-s300")
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = RecipeOptions(calibrationOptions: CalibrationOptions(maxNewTokens: 8))
        _ = try CalibratedConverter.convert(folder, output: dir + "/m.flint", options: options, pool: nil)
        let file = try FlintFile(path: dir + "/m.flint")
        let tokenizer = try T5Tokenizer(modelBytes: folder.tokenizerModel!)
        let inputs = reversePrompts.prefix(6).map { VerifyInput(prompt: $0, inputIds: tokenizer.encode($0)) }
        let scripts = try Sensitivity.scripts(reference: folder, inputs: Array(inputs), maxNewTokens: 12, pool: nil)
        let components = Sensitivity.blockComponents(file)
        let basis = try ScaledWeights.smoothedBasis(folder, for: file)
        #expect(basis is ScaledWeights)
        let right = try Sensitivity.measure(reference: basis, candidate: file, components: components,
                                            scripts: scripts, pool: nil, int8Kernels: .w8a8)
        for c in right { #expect(c.meanKL < 1e-3 && c.top1Agreement == 1, "\(c.name): \(c)") }
        // The unsmoothed basis mixes a block's smoothed weights with unsmoothed neighbours: far off.
        let wrong = try Sensitivity.measure(reference: folder, candidate: file, components: components,
                                            scripts: scripts, pool: nil, int8Kernels: .w8a8)
        #expect(wrong.contains { $0.meanKL > 0.1 }, "\(wrong.map { ($0.name, $0.meanKL) })")
        // verify's own sensitivity pass uses the right basis: no block stands out as a culprit.
        let report = try Verifier.verify(candidate: file, reference: folder, inputs: Array(inputs), maxNewTokens: 12,
                                         thresholds: VerifyThresholds(), pool: nil, int8Kernels: .w8a8,
                                         sensitivity: .always)
        let measured = try #require(report.sensitivity)
        for c in measured { #expect(c.meanKL < 1e-3, "verify sensitivity \(c.name): \(c.meanKL)") }
        // An unsmoothed file's basis is the reference itself.
        _ = try Converter.convert(folder, output: dir + "/plain.flint", options: ConvertOptions(useDefaultKeep: false))
        #expect(try ScaledWeights.smoothedBasis(folder, for: try FlintFile(path: dir + "/plain.flint")) is HFModelFolder)
    }
}
