import Foundation
import Testing
import FlintFormat
@testable import FlintT5

// generate() options against transformers 4.57.6 (Tests/Fixtures/generation/<model>.json, written by
// Tools/make_generation_golden.py): no_repeat_ngram_size, repetition_penalty, min_new_tokens, min_length,
// bad_words_ids, suppress_tokens, num_return_sequences (n-best with scores), decoder prefix, eos_token_id lists and
// another decoder_start_token_id; greedy and beam search, alone and combined. Ids must be identical; scores within `scoreTolerance`.

let generationGoldenDirectory = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("generation")

/// Beam scores are float32 sums of ~20 log-probs; transformers and Flint round differently (measured ≤ 3e-6 here).
let scoreTolerance: Float = 5e-5

struct GenerationGolden {
    let json: [String: Any]
    let common: [String: Any]
    let settings: [String: [String: Any]]
    let cases: [[String: Any]]

    init(_ model: String) throws {
        let url = generationGoldenDirectory.appendingPathComponent(model + ".json")
        json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        common = try #require(json["common"] as? [String: Any])
        settings = try #require(json["settings"] as? [String: [String: Any]])
        cases = try #require(json["cases"] as? [[String: Any]])
    }

    /// The GenerationOptions a golden setting means (its keys over `common`); `prefix` from the case's result.
    func options(_ setting: [String: Any], prefix: [Int]) throws -> GenerationOptions {
        let s = common.merging(setting) { $1 }
        var o = GenerationOptions(maxNewTokens: try #require(s["max_new_tokens"] as? Int))
        let beams = s["num_beams"] as? Int ?? 1
        if beams > 1 {
            o.strategy = .beamSearch(BeamSearchOptions(numBeams: beams, lengthPenalty: s["length_penalty"] as? Double ?? 1,
                                                       earlyStopping: s["early_stopping"] as? Bool ?? false))
        }
        o.minNewTokens = s["min_new_tokens"] as? Int ?? 0
        o.minLength = s["min_length"] as? Int ?? 0
        o.noRepeatNgramSize = s["no_repeat_ngram_size"] as? Int ?? 0
        o.repetitionPenalty = s["repetition_penalty"] as? Double ?? 1
        o.badWordsIds = s["bad_words_ids"] as? [[Int]] ?? []
        o.suppressTokens = s["suppress_tokens"] as? [Int] ?? []
        o.numReturnSequences = s["num_return_sequences"] as? Int ?? 1
        o.decoderPrefix = prefix
        o.eosTokenIds = s["eos_token_id"] as? [Int]
        o.decoderStartTokenId = s["decoder_start_token_id"] as? Int
        return o
    }
}

let generationGoldenModels = ["flan-tiny", "t5-tiny", "demo"]

@Suite struct GenerationOptionsGoldenTests {
    @Test(arguments: generationGoldenModels)
    func everyOptionGivesTransformersIds(model name: String) throws {
        let golden = try GenerationGolden(name)
        let model = try LoadedModels.shared.model(name)
        var compared = 0, differFromPlain = Set<String>()
        for c in golden.cases {
            let prompt = c["prompt"] as? String ?? ""
            let inputIds = try #require(c["input_ids"] as? [Int])
            let results = try #require(c["results"] as? [String: [String: Any]])
            let plain = try #require((results["plain"]?["sequences"] as? [[Int]])?.first)
            for (settingName, expected) in results.sorted(by: { $0.key < $1.key }) {
                // Stop strings need the tokenizer's token texts: GenerationCLITests checks them through flint run.
                if settingName == "stop_strings" { continue }
                let setting = settingName == "plain" ? [:] : try #require(golden.settings[settingName], "no setting \(settingName)")
                let options = try golden.options(setting, prefix: expected["prefix_ids"] as? [Int] ?? [])
                let sequences = try #require(expected["sequences"] as? [[Int]])
                let result = try model.generate(inputIds: inputIds, options: options)
                #expect(result.returned.map(\.sequence) == sequences, "\(name) \(settingName) \"\(prompt.prefix(30))\"")
                #expect(result.sequence == sequences[0])
                if let scores = expected["scores"] as? [Double] {
                    let ours = result.returned.compactMap(\.score)
                    #expect(ours.count == scores.count, "\(name) \(settingName): scores")
                    for (a, b) in zip(ours, scores) {
                        #expect(abs(a - Float(b)) <= scoreTolerance, "\(name) \(settingName) \"\(prompt.prefix(30))\": score \(a) vs \(b)")
                    }
                }
                if sequences[0] != plain { differFromPlain.insert(settingName) }
                compared += 1
            }
        }
        let tokenLevel = golden.settings.keys.filter { $0 != "stop_strings" }.count
        #expect(compared == golden.cases.count * (tokenLevel + 1))
        // The settings matter on these inputs (otherwise the comparison could not fail).
        #expect(differFromPlain.count >= tokenLevel / 2, "\(name): only \(differFromPlain.sorted()) change the output")
    }

    /// The same options through generate(batch:): every input of a batch gets what it gets alone.
    @Test func batchedGenerationAppliesTheProcessorsPerSequence() throws {
        let golden = try GenerationGolden("t5-tiny")
        let model = try LoadedModels.shared.model("t5-tiny")
        let inputs = try golden.cases.map { try #require($0["input_ids"] as? [Int]) }
        for settingName in ["combined_beam4", "combined_greedy", "num_return_3_beam4", "no_repeat_ngram_2", "eos_list_beam4",
                            "eos_list_greedy", "decoder_start_beam4"] {
            let options = try golden.options(try #require(golden.settings[settingName]), prefix: [])
            let batch = try model.generate(batch: inputs, options: options)
            for (c, result) in zip(golden.cases, batch) {
                let results = try #require(c["results"] as? [String: [String: Any]])
                #expect(result.returned.map(\.sequence) == results[settingName]?["sequences"] as? [[Int]], "\(settingName)")
            }
        }
    }

    @Test func optionsAreValidated() throws {
        let model = try LoadedModels.shared.model("t5-tiny")
        func message(_ change: (inout GenerationOptions) -> Void) -> String {
            var o = GenerationOptions(maxNewTokens: 5)
            change(&o)
            do { _ = try model.generate(inputIds: [5, 1], options: o); return "" } catch let e as FlintError { return e.message } catch { return "\(error)" }
        }
        #expect(message { $0.numReturnSequences = 2 }.contains("greedy decoding returns one sequence"))
        #expect(message { $0.numReturnSequences = 3; $0.strategy = .beamSearch(BeamSearchOptions(numBeams: 2)) }.contains("at least as many beams"))
        #expect(message { $0.repetitionPenalty = 0 }.contains("repetition penalty must be a positive number"))
        #expect(message { $0.noRepeatNgramSize = -1 }.contains("no-repeat n-gram size"))
        #expect(message { $0.suppressTokens = [99999] }.contains("suppressed tokens: token 99999 is outside the vocabulary"))
        #expect(message { $0.badWordsIds = [[]] }.contains("bad word 0 has no tokens"))
        #expect(message { $0.decoderPrefix = [-1] }.contains("decoder prefix: token -1"))
        #expect(message { $0.eosTokenIds = [] }.contains("eos token ids: the list is empty"))
        #expect(message { $0.eosTokenIds = [1, 70000] }.contains("eos token ids: token 70000 is outside the vocabulary"))
        #expect(message { $0.decoderStartTokenId = 70000 }.contains("decoder start token: token 70000"))
        // Sampling with several returned sequences: independent draws, draw 0 the single-sequence result.
        var sampled = GenerationOptions(maxNewTokens: 8, strategy: .sampling(SamplingOptions(seed: 7)))
        let one = try model.generate(inputIds: [5, 1], options: sampled)
        sampled.numReturnSequences = 3
        let three = try model.generate(inputIds: [5, 1], options: sampled)
        #expect(three.returned.count == 3 && three.returned[0].sequence == one.sequence)
    }
}

/// transformers' `_beam_search` keeps `max(2, 1 + number of eos tokens) × num_beams` candidates per step, so that
/// `num_beams` beams can go on even when the eos tokens take the best places. With eos {1, 2, 3} and 2 beams the
/// six best first-step candidates are 1, 4, 2, 3, 5, 0: 1 finishes a hypothesis, the running beams are 4 and 5
/// (with four candidates the second beam would be the eos candidate 1, marked impossible).
@Suite struct BeamCandidatesRuleTests {
    @Test func everyEosTokenWidensTheCandidates() {
        let config = T5Config(dModel: 8, dKV: 4, dFF: 16, numHeads: 2, numEncoderLayers: 1, numDecoderLayers: 1, vocabSize: 6,
                              activation: .relu, isGatedFFN: false, tieWordEmbeddings: true, scaleDecoderOutputs: true)
        var options = GenerationOptions(maxNewTokens: 5, strategy: .beamSearch(BeamSearchOptions(numBeams: 2)))
        options.eosTokenIds = [1, 2, 3]
        guard case .beamSearch(let beam) = options.strategy else { return }
        let request = BeamSearchRequest(index: 0, options: options, beam: beam, config: config,
                                        processors: LogitsProcessors(options: options, config: config))
        var logits: [Float] = [0, 9, 7, 6, 8, 5,  0, 0, 0, 0, 0, 0]
        let step = logits.withUnsafeMutableBufferPointer { request.advance($0, onToken: nil) }
        #expect(!step.finished)
        #expect(request.nextTokens == [4, 5])
        #expect(step.sources == [0, 0])
    }
}

/// The overlap rule of transformers' StopStringCriteria (its docstring's examples): a match must overlap the newest
/// token; it may start inside an earlier token and the newest token may run past it.
@Suite struct StopStringsRuleTests {
    let texts = ["st", "op", "stop", "opera", "sto", "pper", "las", "topper", "s", "to", "pped", "at", "tion"]
    func ids(_ pieces: [String]) -> [Int] { pieces.map { texts.firstIndex(of: $0)! } }

    @Test func matchesOnlyWhenTheNewestTokenOverlaps() {
        let stop = StopStrings(["stop"], tokenText: texts)
        for yes in [["st", "op"], ["stop"], ["st", "opera"], ["sto", "pper"], ["las", "topper"], ["s", "to", "pped"]] {
            #expect(stop.matches(ids(yes)), "\(yes)")
        }
        for no in [["stop", "at"], ["st", "op", "at"], ["st", "opera", "tion"], ["st"], ["sto"]] {
            #expect(!stop.matches(ids(no)), "\(no)")
        }
    }
}
