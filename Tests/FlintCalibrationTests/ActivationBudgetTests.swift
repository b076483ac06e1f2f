// The default activation budget decides how many chunks the prompts run in, and each chunk streams the decoder
// once per generated token: on bf16 flan-t5-xxl the old fixed 192 MiB made the built-in prompts 5 chunks (80
// decoder passes with 16 tokens), twice the largest tensor makes them 3 — still within the convert's memory bound.
import Foundation
import Testing
import FlintCheckpoint
import FlintFormat
@testable import FlintCalibration

@Suite struct ActivationBudgetTests {
    static let xxl = T5Config(dModel: 4096, dKV: 64, dFF: 10240, numHeads: 64, numEncoderLayers: 24,
                              numDecoderLayers: 24, vocabSize: 32128, activation: .geluNew, isGatedFFN: true,
                              tieWordEmbeddings: false, scaleDecoderOutputs: false)

    @Test func smallModelsKeepTheOldBudgetAndItsChunks() throws {
        let folder = try HFModelFolder(path: model("demo"))
        #expect(Calibrator.activationBudget(folder) == 192 << 20)
        #expect(CalibrationOptions().maxActivationBytes == nil)
    }

    @Test func xxlChunksFollowTheBudget() {
        // 22 short prompts and one of 480 tokens, as the built-in set; 16 new tokens.
        let lengths = Array(repeating: 20, count: 22) + [480]
        // Per token: 24 blocks' cross keys and values + the encoder's scratch rows, 999,424 bytes; per prompt: 24
        // blocks' self-attention caches for 16 steps, 12,582,912 bytes.
        let old = Calibrator.chunks(lengths, config: Self.xxl, maxNewTokens: 16, maxActivationBytes: 192 << 20)
        #expect(old == [0..<6, 6..<12, 12..<18, 18..<22, 22..<23])
        let head = 32128 * 4096 * 2  // the bf16 lm_head, the largest tensor
        let new = Calibrator.chunks(lengths, config: Self.xxl, maxNewTokens: 16, maxActivationBytes: 2 * head)
        #expect(new == [0..<16, 16..<22, 22..<23])
        // A prompt over the budget on its own is still a chunk by itself.
        #expect(Calibrator.chunks([480, 480], config: Self.xxl, maxNewTokens: 16, maxActivationBytes: 1 << 20)
                == [0..<1, 1..<2])
    }
}
