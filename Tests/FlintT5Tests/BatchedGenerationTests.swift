import Foundation
import Testing
import FlintFormat
import FlintCheckpoint
@testable import FlintT5

// Batched decoding must give every sequence what it gets alone: the transformers goldens' ids for greedy and
// beam search with all golden prompts in one batch (different lengths, so the encoder packs them and
// sequences leave the batch at different steps), logits within float noise of the unbatched ones, and the
// decoder state's rows joining and leaving between steps without disturbing the others.
struct BatchedGenerationTests {
    @Test(arguments: encoderDecoderFixtures)
    func batchedIdsMatchTheGoldens(model name: String) throws {
        try #require(fixtureExists(name), "missing fixture \(name)")
        let model = try LoadedModels.shared.model(name)
        let (json, cases) = try loadGolden(name)
        let settings = try beamSettings(json)
        let maxNewTokens = try #require(settings["beam4"]?.maxNewTokens)
        let inputs = cases.map(\.inputIds)
        #expect(Set(inputs.map(\.count)).count > 1 || inputs.count == 1, "\(name): golden prompts should differ in length")
        var streamed = [[Int]](repeating: [], count: inputs.count)
        let greedy = try model.generate(batch: inputs, options: GenerationOptions(maxNewTokens: maxNewTokens)) {
            streamed[$0].append($1)
        }
        for (i, golden) in cases.enumerated() {
            #expect(greedy[i].sequence == golden.greedyIds, "\(name) \"\(golden.prompt)\": batched greedy")
            #expect(streamed[i] == greedy[i].generatedIds)
        }
        for (setting, beam) in settings.sorted(by: { $0.key < $1.key }) {
            let results = try model.generate(batch: inputs, options: GenerationOptions(
                maxNewTokens: beam.maxNewTokens, strategy: .beamSearch(beam.options)))
            for (i, golden) in cases.enumerated() {
                guard let expected = golden.beams[setting] else { continue }
                #expect(results[i].sequence == expected.ids, "\(name) \"\(golden.prompt)\": batched \(setting)")
            }
        }
    }

    @Test func batchedSamplingEqualsOneByOne() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        let inputs = [[37, 12, 99, 5, 1], [8, 1], [400, 401, 402, 403, 404, 405, 406, 1]]
        let options = GenerationOptions(maxNewTokens: 12, strategy: .sampling(SamplingOptions(temperature: 1.3, topK: 40, seed: 5)))
        let batched = try model.generate(batch: inputs, options: options)
        for (i, input) in inputs.enumerated() {
            #expect(batched[i].sequence == (try model.generate(inputIds: input, options: options)).sequence)
        }
    }

    @Test func packedEncoderAndBatchedStepsMatchUnbatchedLogits() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        let inputs = [[37, 12, 99, 5, 1], [8, 1], [400, 401, 402, 403, 404, 405, 406, 407, 408, 1]]
        let packed = try model.encode(batch: inputs)
        for (i, input) in inputs.enumerated() {
            let alone = try model.encode(input).hiddenStates
            #expect(maxDifference(packed[i].hiddenStates, alone) <= 1e-5 * maxMagnitude(alone))
        }
        // Rows at different positions: input 1 joins after two steps of input 0 and leaves after two of its own,
        // input 2 joins after three.
        let vocab = model.config.vocabSize
        let tokens = [[0, 5, 9, 22, 3], [0, 7], [0, 11]]
        let expected = try zip(inputs, tokens).map { try model.logits(inputIds: $0, decoderInputIds: $1) }
        let state = model.makeDecoderState()
        let caches = try packed.map { try model.crossAttentionCache($0) }
        try model.addSequences(to: state, cross: caches[0], maxLength: 8)
        var rows = [0]  // which input each row is
        var stepOf = [0, 0, 0]
        for step in 0..<5 {
            if step == 2 { try model.addSequences(to: state, cross: caches[1], maxLength: 8); rows.append(1) }
            if step == 3 { try model.addSequences(to: state, cross: caches[2], maxLength: 8); rows.append(2) }
            let logits = try model.decodeStep(state, tokens: rows.map { tokens[$0][stepOf[$0]] })
            #expect(state.lengths == rows.map { stepOf[$0] + 1 })
            for (r, input) in rows.enumerated() {
                let got = Array(logits[(r * vocab)..<((r + 1) * vocab)])
                let want = expected[input][stepOf[input]]
                #expect(maxDifference(got, want) <= 1e-5 * maxMagnitude(want), "step \(step) input \(input)")
                stepOf[input] += 1
            }
            if rows.contains(1), stepOf[1] == tokens[1].count {
                let leaving = rows.firstIndex(of: 1)!
                try state.removeRows([leaving])
                rows.remove(at: leaving)
            }
        }
        #expect(rows == [0, 2])
        #expect(throws: FlintError.self) { try model.decodeStep(state, tokens: [0]) }  // one token for two rows
        #expect(throws: FlintError.self) { try state.removeRows([7]) }
    }
}
