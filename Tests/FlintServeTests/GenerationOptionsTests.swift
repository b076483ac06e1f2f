// The generation options beyond OpenAI's (named as flint run's flags) and the model's generation config as the
// default of every field a request leaves out, against transformers' ids (Tests/Fixtures/generation).
import Foundation
import FlintCheckpoint
import FlintFormat
import FlintServe
import FlintT5
import FlintTokenizer
import Testing
import TestSupport

@Suite(.serialized) struct GenerationOptionsTests {
    func golden(_ model: String) throws -> [String: Any] {
        let url = URL(fileURLWithPath: packageRoot + "/Tests/Fixtures/generation/\(model).json")
        return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    @Test func repetitionAndNGramOptionsGiveTransformersIds() async throws {
        let g = try golden("demo")
        let cases = try #require(g["cases"] as? [[String: Any]])
        let tokenizer = Fixtures.demo.tokenizer
        let requests: [String: [String: Any]] = [
            "repetition_penalty_0.7": ["repetition_penalty": 0.7],
            "repetition_penalty_1.3_beam3": ["repetition_penalty": 1.3, "beams": 3],
            "no_repeat_ngram_3_beam4": ["no_repeat_ngram": 3, "beams": 4],
            "min_new_tokens_8": ["min_tokens": 8],
        ]
        try await withServer { port in
            let differsFromPlain = try await expectGoldenCompletions(port, cases: cases, requests: requests,
                                                                     tokenizer: tokenizer, checkUsage: true)
            // The options changed the output somewhere, so they really reached the decoder.
            #expect(differsFromPlain > 0)
            let bad = try await http(port, "POST", "/v1/completions", json: ["prompt": "x", "repetition_penalty": 0])
            #expect(bad.status == 400 && bad.errorParam == "repetition_penalty", "\(bad.text)")
        }
    }

    /// flan-tiny served with the golden's `"<key>_json"` as its generation_config.json, and the golden's
    /// `"<key>_cases"` (transformers' `generate(**inputs)` ids for that file).
    struct ConfiguredModel {
        let served: ServedModel
        let tokenizer: T5Tokenizer
        let defaults: GenerationDefaults
        let config: T5Config
        let cases: [[String: Any]]
    }

    func configured(_ key: String) throws -> ConfiguredModel {
        let g = try golden("flan-tiny")
        let json = try JSONSerialization.data(withJSONObject: try #require(g[key + "_json"]))
        let weights = try HFModelFolder(path: packageRoot + "/Tests/Fixtures/models/flan-tiny")
        let defaults = try HFGenerationConfig.parse(json, path: "generation_config.json", config: weights.config).defaults
        let model = try T5ForConditionalGeneration(weights: weights, pool: nil)
        let tokenizer = try #require(try T5Tokenizer.load(from: weights))
        return ConfiguredModel(served: ServedModel(id: "flan-tiny", engine: .seq2seq(model), tokenizer: tokenizer,
                                                   generationDefaults: defaults),
                               tokenizer: tokenizer, defaults: defaults, config: weights.config,
                               cases: try #require(g[key + "_cases"] as? [[String: Any]]))
    }

    /// A completion of the case's prompt with no options: transformers' text and token count. Returns the ids.
    func expectGoldenCompletion(_ port: Int, _ c: [String: Any], _ m: ConfiguredModel) async throws -> (expected: [Int], response: [String: Any]) {
        let expected = try #require(c["ids"] as? [Int])
        let r = try await complete(port, ["prompt": c["prompt"] as! String])
        #expect(choices(r).first?["text"] as? String == m.tokenizer.decode(Array(expected.dropFirst()), skipSpecialTokens: true),
                "\(c["prompt"]!)")
        #expect((r["usage"] as? [String: Int])?["completion_tokens"] == expected.count - 1)
        return (expected, r)
    }

    @Test func theModelsGenerationConfigIsTheDefault() async throws {
        let m = try configured("generation_config")
        #expect(m.defaults.numBeams == 4 && m.defaults.maxNewTokens == 12)
        let cases = m.cases
        try await withServer(served: m.served) { port in
            // No options: 4 beams, 12 new tokens, no repeated 2-gram, from the config.
            for c in cases { _ = try await expectGoldenCompletion(port, c, m) }
            // A field overrides its setting: beams 1 and max_tokens 3.
            let short = try await complete(port, ["prompt": cases[0]["prompt"] as! String, "beams": 1, "max_tokens": 3])
            #expect(((short["usage"] as? [String: Int])?["completion_tokens"] ?? 99) <= 3)
        }
    }

    /// A generation config with another decoder start token and an eos_token_id list: served completions start
    /// from that token and stop at any listed eos (finish_reason "stop"), as transformers' generate() does.
    @Test func theModelsSpecialIdsAreFollowed() async throws {
        let m = try configured("special_ids_config")
        let eos = try #require(m.defaults.eosTokenIds)
        #expect(m.defaults.decoderStartTokenId != nil && eos.count == 2)
        let cases = m.cases
        var endedOnTheListedToken = 0
        try await withServer(served: m.served) { port in
            for c in cases {
                let (expected, r) = try await expectGoldenCompletion(port, c, m)
                if let last = expected.last, eos.contains(last) {
                    #expect(choices(r).first?["finish_reason"] as? String == "stop", "\(c["prompt"]!)")
                    if last != m.config.eosTokenId { endedOnTheListedToken += 1 }
                }
            }
        }
        #expect(endedOnTheListedToken > 0, "no case ends on the eos the generation config adds")
    }
}
