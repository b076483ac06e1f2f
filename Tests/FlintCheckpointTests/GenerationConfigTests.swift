import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat

@Suite struct GenerationConfigTests {
    let config = T5Config(dModel: 8, dKV: 4, dFF: 16, numHeads: 2, numEncoderLayers: 1, numDecoderLayers: 1, vocabSize: 100,
                          activation: .relu, isGatedFFN: false, tieWordEmbeddings: true, scaleDecoderOutputs: true)

    func parse(_ text: String) throws -> HFGenerationConfig {
        try HFGenerationConfig.parse(Data(text.utf8), path: "/m/generation_config.json", config: config)
    }

    @Test func specialIdsOnlyGiveNothingToStore() throws {
        // What save_pretrained writes for the fixtures (and most T5 checkpoints).
        let g = try parse(#"{"_from_model_config": true, "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "transformers_version": "4.57.6"}"#)
        #expect(g.defaults.isEmpty && g.defaults.nilIfEmpty == nil && g.ignored.isEmpty)
        // The same ids as a one-element list, as some repos write them.
        #expect(try parse(#"{"eos_token_id": [1], "decoder_start_token_id": 0}"#).defaults.isEmpty)
    }

    /// transformers generates with the generation config's special ids: kept where they differ from config.json's
    /// (and then the file needs the feature older readers know to refuse).
    @Test func otherSpecialIdsAreKept() throws {
        let g = try parse(#"{"decoder_start_token_id": 5, "eos_token_id": [1, 32], "pad_token_id": 0}"#)
        #expect(g.defaults.eosTokenIds == [1, 32] && g.defaults.decoderStartTokenId == 5 && g.ignored.isEmpty)
        #expect(g.defaults.requiredFeatures == [GenerationDefaults.specialIdsFeature])
        let single = try parse(#"{"eos_token_id": 7}"#)
        #expect(single.defaults.eosTokenIds == [7] && single.defaults.decoderStartTokenId == nil)
        #expect(try parse(#"{"max_new_tokens": 5}"#).defaults.requiredFeatures.isEmpty)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        #expect(String(decoding: try encoder.encode(g.defaults), as: UTF8.self) == #"{"decoder_start_token_id":5,"eos_token_id":[1,32]}"#)
    }

    @Test func settingsAreReadWithTransformersNames() throws {
        let g = try parse("""
        {"num_beams": 4, "max_new_tokens": 12, "no_repeat_ngram_size": 2, "repetition_penalty": 1.3, "min_length": 0,
         "min_new_tokens": 3, "length_penalty": 0.6, "early_stopping": true, "bad_words_ids": [[5], [6, 7]],
         "suppress_tokens": [9], "num_return_sequences": 2, "do_sample": false, "top_k": 10, "max_length": null,
         "diversity_penalty": 0.0, "forced_bos_token_id": 3, "early_stopping_x": false}
        """)
        let d = g.defaults
        #expect(d.numBeams == 4 && d.maxNewTokens == 12 && d.noRepeatNgramSize == 2 && d.repetitionPenalty == 1.3)
        #expect(d.minLength == nil && d.minNewTokens == 3 && d.lengthPenalty == 0.6 && d.earlyStopping == true)
        #expect(d.badWordsIds == [[5], [6, 7]] && d.suppressTokens == [9] && d.numReturnSequences == 2)
        #expect(d.doSample == false && d.topK == 10 && d.maxLength == nil)
        // Not implemented and not at its default: reported; defaults (diversity 0, a false flag) are not.
        #expect(g.ignored == ["forced_bos_token_id"])
        // Stored with transformers' key names.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(d), as: UTF8.self)
        #expect(json.contains(#""no_repeat_ngram_size":2"#) && json.contains(#""num_beams":4"#) && !json.contains("max_length"))
    }

    @Test func badValuesNameTheFileAndKey() throws {
        for (text, fragment) in [(#"{"num_beams": 0}"#, "num_beams must be at least 1"),
                                 (#"{"suppress_tokens": [100]}"#, "token 100 is outside the vocabulary"),
                                 (#"{"eos_token_id": [1, 100]}"#, "token 100 is outside the vocabulary"),
                                 (#"{"decoder_start_token_id": -1}"#, "token -1 is outside the vocabulary"),
                                 (#"{"eos_token_id": []}"#, "\"eos_token_id\" must name at least one token"),
                                 (#"{"eos_token_id": "1"}"#, "\"eos_token_id\" must be a list of integers"),
                                 (#"{"top_p": 1.5}"#, "top_p must be in (0, 1]"),
                                 (#"{"max_new_tokens": "ten"}"#, "\"max_new_tokens\" must be an integer"),
                                 (#"[1]"#, "must be a JSON object")] {
            let message = try #require(flintErrorMessage { try parse(text) }, "\(text)")
            #expect(message.contains("/m/generation_config.json") && message.contains(fragment), "\(message)")
        }
    }
}
