// bad_words, suppress_tokens and decoder_prefix (flint run's --bad-words, --suppress-tokens, --decoder-prefix)
// as completion fields, against transformers' ids (Tests/Fixtures/generation/demo.json), and their bad values.
import Foundation
import FlintServe
import Testing
import TestSupport

@Suite(.serialized) struct RequestGenerationFieldsTests {
    @Test func badWordsSuppressTokensAndDecoderPrefixGiveTransformersIds() async throws {
        let url = URL(fileURLWithPath: packageRoot + "/Tests/Fixtures/generation/demo.json")
        let g = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let cases = try #require(g["cases"] as? [[String: Any]])
        let badWordsText = try #require(g["bad_words_text"] as? [String])
        let tokenizer = Fixtures.demo.tokenizer
        // The golden's settings, spelled as request fields.
        let requests: [String: [String: Any]] = [
            "bad_words_text": ["bad_words": badWordsText],
            "bad_words": ["bad_words": [[76], [36, 1]]],
            "bad_words_beam4": ["bad_words": [[42], [36, 1]], "beams": 4],
            "suppress_tokens": ["suppress_tokens": [42, 76]],
            "suppress_tokens_beam3": ["suppress_tokens": [42], "beams": 3],
            "decoder_prefix": ["decoder_prefix": "blue apple"],
            "decoder_prefix_beam4": ["decoder_prefix": "blue apple", "beams": 4, "min_tokens": 2],
        ]
        try await withServer { port in
            let differsFromPlain = try await expectGoldenCompletions(port, cases: cases, requests: requests,
                                                                     tokenizer: tokenizer, checkUsage: false)
            // The fields changed the output, so they really reached the decoder.
            #expect(differsFromPlain > cases.count)
        }
    }

    @Test func badValuesAre400NamingTheField() async throws {
        try await withServer { port in
            let bad: [(field: String, value: Any)] = [
                ("bad_words", "apple"), ("bad_words", [""]), ("bad_words", [[]]), ("bad_words", [[1 << 40]]),
                ("bad_words", [3.5]), ("bad_words", Array(repeating: "x", count: 257)),
                ("suppress_tokens", 5), ("suppress_tokens", [-1]), ("suppress_tokens", ["a"]),
                ("decoder_prefix", ""), ("decoder_prefix", []), ("decoder_prefix", [999_999]), ("decoder_prefix", 7),
                ("decoder_prefix", String(repeating: "blue ", count: 600)),
            ]
            for (field, value) in bad {
                let r = try await http(port, "POST", "/v1/completions", json: ["prompt": "reverse: red", field: value])
                #expect(r.status == 400 && r.errorParam == field, "\(field) = \(value): \(r.status) \(r.text)")
            }
            let healthy = try await complete(port, ["prompt": "reverse: red apple blue", "max_tokens": 4])
            #expect(choices(healthy).count == 1)
        }
    }
}
