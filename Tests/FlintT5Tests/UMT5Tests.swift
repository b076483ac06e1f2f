import Foundation
import Testing
import FlintFormat
import FlintCheckpoint
import FlintKernels
@testable import FlintT5

/// A weight source that reports a different config than the one it was read with (to check the fixture would
/// catch an engine that ignored UMT5's per-layer bias).
final class ConfigOverride: WeightSource, @unchecked Sendable {
    let base: WeightSource
    let config: T5Config
    init(_ base: WeightSource, config: T5Config) { self.base = base; self.config = config }
    var tensorNames: [String] { base.tensorNames }
    func tensor(_ name: String) throws -> TensorView { try base.tensor(name) }
    var tokenizerModel: [UInt8]? { base.tokenizerModel }
    var tokenizerInfo: TokenizerInfo? { base.tokenizerInfo }
    var sourceDescription: String { base.sourceDescription }
}

/// UMT5 (umt5-tiny, written by transformers' UMT5ForConditionalGeneration): every self-attention layer of both stacks
/// has its own relative position bias. Greedy / beam ids and logits against its golden are in GoldenParityTests.
@Suite struct UMT5Tests {
    @Test func everySelfAttentionLayerHasItsOwnTable() throws {
        let model = try LoadedModels.shared.model("umt5-tiny")
        #expect(model.config.relativeAttentionBiasPerLayer)
        #expect(model.encoder.blockCount == 3 && model.decoder.blockCount == 3)
        #expect(model.encoder.relativeBiasTables.count == 3)
        #expect(model.decoder.relativeBiasTables.count == 3)
        #expect(model.encoder.biasTableOfBlock == [0, 1, 2])
        #expect(model.decoder.biasTableOfBlock == [0, 1, 2])
        // The tables really differ (random weights), so using the wrong one changes the output.
        #expect(model.encoder.relativeBiasTables[0].table != model.encoder.relativeBiasTables[1].table)
        #expect(model.decoder.relativeBiasTables[1].table != model.decoder.relativeBiasTables[2].table)
        // Encoder tables are bidirectional, decoder ones causal.
        #expect(model.encoder.relativeBiasTables.allSatisfy { $0.bucketing.bidirectional })
        #expect(model.decoder.relativeBiasTables.allSatisfy { !$0.bucketing.bidirectional })
    }

    /// T5's rule (block 0's table everywhere) on the UMT5 weights is far from transformers: the golden tells the
    /// two apart, so the parity tests would fail for an engine that ignored the flag.
    @Test func reusingBlockZerosTableIsCaughtByTheGolden() throws {
        let folder = try HFModelFolder(path: fixturesDirectory.appendingPathComponent("umt5-tiny").path)
        var t5Rule = folder.config
        t5Rule.relativeAttentionBiasPerLayer = false
        let wrong = try T5ForConditionalGeneration(weights: ConfigOverride(folder, config: t5Rule), pool: LoadedModels.shared.pool)
        #expect(wrong.encoder.relativeBiasTables.count == 1)
        let right = try LoadedModels.shared.model("umt5-tiny")
        let (_, cases) = try loadGolden("umt5-tiny")
        var worstWrong = 0.0, worstRight = 0.0, greedyDiffers = 0
        for golden in cases {
            let first = try #require(golden.firstLogits)
            for (model, isWrong) in [(wrong, true), (right, false)] {
                let encoded = try model.encode(golden.inputIds)
                let state = try model.startDecoding(encoded, maxLength: 4)
                let logits = Array(try model.decodeStep(state, tokens: [model.config.decoderStartTokenId]))
                let error = try relativeError(logits, first)
                if isWrong { worstWrong = max(worstWrong, error) } else { worstRight = max(worstRight, error) }
            }
            let greedy = try wrong.generate(inputIds: golden.inputIds, options: GenerationOptions(maxNewTokens: 20, strategy: .greedy))
            if greedy.sequence != golden.greedyIds { greedyDiffers += 1 }
        }
        #expect(worstRight < tolerance)
        #expect(worstWrong > 1000 * tolerance, "block-0 reuse: first-logit error only \(worstWrong)")
        #expect(greedyDiffers >= cases.count / 2, "block-0 reuse changed only \(greedyDiffers) of \(cases.count) greedy outputs")
    }
}
