// Issue 9's done-when for `flint verify`: on the outlier fixtures, it names the injected block when the outliers
// are in one block only (outlier-block: encoder.block.1, s = 300), and lm_head when only the head is damaged
// (outlier-head: decoder.final_layer_norm → lm_head columns, s = 300). The candidate is a plain per-row int8
// conversion with no keep-list, so the outlier channels are what breaks it; the reference is the variant's own
// float weights (the same function as the demo model).

import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintVerify

@Suite struct OutlierCulpritTests {
    func plainInt8(_ variant: String) throws -> (HFModelFolder, FlintFile) {
        let folder = try HFModelFolder(path: try materializeOutlierVariant(variant))
        let out = scratch() + "/int8.flint"
        _ = try Converter.convert(folder, output: out, options: ConvertOptions(quant: .int8(.int8Row), useDefaultKeep: false))
        return (folder, try FlintFile(path: out))
    }

    @Test func injectedBlockIsNamed() throws {
        let (folder, int8) = try plainInt8("outlier-block")
        for mode in [SensitivityMode.always, .never] {
            let r = try Verifier.verify(candidate: int8, reference: folder, inputs: try inputs(folder, demoPrompts),
                                        maxNewTokens: 12, thresholds: VerifyThresholds(), sensitivity: mode)
            #expect(r.culprit?.name == "encoder.block.1", "\(mode): \(String(describing: r.culprit)) \(r.sensitivity ?? []) \(r.layers)")
            #expect(r.culprit?.rule == (mode == .always ? "sensitivity" : "own-noise"))
        }
        // The float reference's residual stream shows nothing unusual: the outliers are inside the block (norm
        // outputs, v, wi_1), so the block is found by what its quantization costs, not by a peak.
    }

    @Test func damagedHeadIsNamed() throws {
        let (folder, int8) = try plainInt8("outlier-head")
        for mode in [SensitivityMode.always, .never] {
            let r = try Verifier.verify(candidate: int8, reference: folder, inputs: try inputs(folder, demoPrompts),
                                        maxNewTokens: 12, thresholds: VerifyThresholds(), sensitivity: mode)
            #expect(r.culprit?.name == "lm_head", "\(mode): \(String(describing: r.culprit)) \(r.sensitivity ?? [])")
            let head = try #require(r.head)
            // The head alone carries most of the model's loss.
            #expect(head.meanKL >= 0.5 * r.meanKL, "head \(head.meanKL) vs model \(r.meanKL)")
        }
    }
}
