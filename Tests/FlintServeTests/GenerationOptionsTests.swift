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

    @Test func theModelsGenerationConfigIsTheDefault() async throws {
        let g = try golden("flan-tiny")
        let config = try JSONSerialization.data(withJSONObject: try #require(g["generation_config_json"]))
        let weights = try HFModelFolder(path: packageRoot + "/Tests/Fixtures/models/flan-tiny")
        let defaults = try HFGenerationConfig.parse(config, path: "generation_config.json", config: weights.config).defaults
        #expect(defaults.numBeams == 4 && defaults.maxNewTokens == 12)
        let cases = try #require(g["generation_config_cases"] as? [[String: Any]])
        let model = try T5ForConditionalGeneration(weights: weights, pool: nil)
        let tokenizer = try #require(try T5Tokenizer.load(from: weights))
        let served = ServedModel(id: "flan-tiny", engine: .seq2seq(model), tokenizer: tokenizer, generationDefaults: defaults)
        try await withServer(served: served) { port in
            for c in cases {
                let expected = try #require(c["ids"] as? [Int])
                // No options: 4 beams, 12 new tokens, no repeated 2-gram, from the config.
                let r = try await complete(port, ["prompt": c["prompt"] as! String])
                #expect(choices(r).first?["text"] as? String == tokenizer.decode(Array(expected.dropFirst()), skipSpecialTokens: true),
                        "\(c["prompt"]!)")
                #expect((r["usage"] as? [String: Int])?["completion_tokens"] == expected.count - 1)
            }
            // A field overrides its setting: beams 1 and max_tokens 3.
            let short = try await complete(port, ["prompt": cases[0]["prompt"] as! String, "beams": 1, "max_tokens": 3])
            #expect(((short["usage"] as? [String: Int])?["completion_tokens"] ?? 99) <= 3)
        }
    }

    /// A generation config with another decoder start token and an eos_token_id list: served completions start
    /// from that token and stop at any listed eos (finish_reason "stop"), as transformers' generate() does.
    @Test func theModelsSpecialIdsAreFollowed() async throws {
        let g = try golden("flan-tiny")
        let config = try JSONSerialization.data(withJSONObject: try #require(g["special_ids_config_json"]))
        let weights = try HFModelFolder(path: packageRoot + "/Tests/Fixtures/models/flan-tiny")
        let defaults = try HFGenerationConfig.parse(config, path: "generation_config.json", config: weights.config).defaults
        let eos = try #require(defaults.eosTokenIds)
        #expect(defaults.decoderStartTokenId != nil && eos.count == 2)
        let cases = try #require(g["special_ids_config_cases"] as? [[String: Any]])
        let model = try T5ForConditionalGeneration(weights: weights, pool: nil)
        let tokenizer = try #require(try T5Tokenizer.load(from: weights))
        let served = ServedModel(id: "flan-tiny", engine: .seq2seq(model), tokenizer: tokenizer, generationDefaults: defaults)
        var endedOnTheListedToken = 0
        try await withServer(served: served) { port in
            for c in cases {
                let expected = try #require(c["ids"] as? [Int])
                let r = try await complete(port, ["prompt": c["prompt"] as! String])
                #expect(choices(r).first?["text"] as? String == tokenizer.decode(Array(expected.dropFirst()), skipSpecialTokens: true),
                        "\(c["prompt"]!)")
                #expect((r["usage"] as? [String: Int])?["completion_tokens"] == expected.count - 1)
                if let last = expected.last, eos.contains(last) {
                    #expect(choices(r).first?["finish_reason"] as? String == "stop", "\(c["prompt"]!)")
                    if last != weights.config.eosTokenId { endedOnTheListedToken += 1 }
                }
            }
        }
        #expect(endedOnTheListedToken > 0, "no case ends on the eos the generation config adds")
    }
}
