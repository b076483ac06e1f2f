import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat

@Suite struct HFConfigParsing {
    func parse(_ text: String) throws -> HFConfigDetails {
        try HFConfig.parseDetails(configJSON: Data(text.utf8), path: "/models/x/config.json")
    }
    func failure(_ text: String) throws -> String {
        let m = try #require(flintErrorMessage { try parse(text) })
        #expect(m.contains("/models/x/config.json"), "message must name the config: \(m)")
        return m
    }

    @Test func originalT5WithoutTieKeyIsTiedAndRescaled() throws {
        let d = try parse(ConfigTexts.t5Small)
        let c = d.config
        #expect(c == T5Config(architecture: "encoder-decoder", dModel: 512, dKV: 64, dFF: 2048, numHeads: 8,
                              numEncoderLayers: 6, numDecoderLayers: 6, vocabSize: 32128,
                              relativeAttentionNumBuckets: 32, relativeAttentionMaxDistance: 128,
                              activation: .relu, isGatedFFN: false, tieWordEmbeddings: true,
                              scaleDecoderOutputs: true, layerNormEpsilon: 1e-6,
                              padTokenId: 0, eosTokenId: 1, decoderStartTokenId: 0))
        #expect(d.modelType == "t5" && d.feedForwardProj == "relu" && d.denseActFn == "relu")
        #expect(!d.tieDecidedByWeights && d.tieWordEmbeddingsKey == nil)
        #expect(try HFConfig.parse(configJSON: Data(ConfigTexts.t5Small.utf8), path: "x") == c)
    }

    @Test func flanT5IsUntiedGatedGeluNew() throws {
        let c = try parse(ConfigTexts.flanSmall).config
        #expect(c.activation == .geluNew && c.isGatedFFN)
        #expect(!c.tieWordEmbeddings && !c.scaleDecoderOutputs)
        #expect(c.numEncoderLayers == 8 && c.numDecoderLayers == 8 && c.numHeads == 6 && c.dFF == 1024)
        #expect(c.innerDim == 384 && c.architecture == "encoder-decoder")
    }

    @Test func feedForwardProjForms() throws {
        // "gated-gelu" is gelu_new (transformers' backwards-compatibility rule); other "gated-X" use X as written.
        let gatedGelu = try parse(ConfigTexts.tiny(#""feed_forward_proj": "gated-gelu""#)).config
        #expect(gatedGelu.activation == .geluNew && gatedGelu.isGatedFFN)
        let gatedGeluNew = try parse(ConfigTexts.tiny(#""feed_forward_proj": "gated-gelu_new""#)).config
        #expect(gatedGeluNew.activation == .geluNew && gatedGeluNew.isGatedFFN)
        let gatedRelu = try parse(ConfigTexts.tiny(#""feed_forward_proj": "gated-relu""#)).config
        #expect(gatedRelu.activation == .relu && gatedRelu.isGatedFFN)
        let gelu = try parse(ConfigTexts.tiny(#""feed_forward_proj": "gelu""#)).config
        #expect(gelu.activation == .gelu && !gelu.isGatedFFN)
        // dense_act_fn, when present, overrides what feed_forward_proj implies (as in transformers).
        let explicit = try parse(ConfigTexts.tiny(#""feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu""#)).config
        #expect(explicit.activation == .gelu && explicit.isGatedFFN)

        // UL2 / Flan-UL2 / Pile-T5's gated SiLU, and an ACT2FN name with learned parameters (refused).
        let silu = try parse(ConfigTexts.tiny(#""feed_forward_proj": "gated-silu""#)).config
        #expect(silu.activation == .silu && silu.isGatedFFN)
        let prelu = try failure(ConfigTexts.tiny(#""feed_forward_proj": "gated-prelu""#))
        #expect(prelu.contains("\"prelu\"") && prelu.contains("not supported"))
        let malformed = try failure(ConfigTexts.tiny(#""feed_forward_proj": "double-gated-gelu""#))
        #expect(malformed.contains("double-gated-gelu") && malformed.contains("gated-ACT"))
    }

    @Test(arguments: ["T5ForSequenceClassification", "MT5ForQuestionAnswering", "UMT5ForTokenClassification"])
    func taskHeadsAreRefusedByName(architecture: String) throws {
        let m = try failure(ConfigTexts.tiny(#""tie_word_embeddings": false"#)
            .replacingOccurrences(of: #""architectures": ["T5ForConditionalGeneration"]"#, with: #""architectures": ["\#(architecture)"]"#))
        #expect(m.contains(architecture) && m.contains("head") && m.contains("which Flint does not run"), "\(m)")
        // The old name of the LM model (t5-small's first config.json) and the bare T5Model stay accepted.
        for accepted in ["T5WithLMHeadModel", "T5Model"] {
            let d = try parse(ConfigTexts.tiny(#""tie_word_embeddings": false"#)
                .replacingOccurrences(of: #""architectures": ["T5ForConditionalGeneration"]"#, with: #""architectures": ["\#(accepted)"]"#))
            #expect(!d.config.isEncoderOnly)
        }
    }

    @Test func encoderOnly() throws {
        let d = try parse(ConfigTexts.tiny(#""architectures": ["T5EncoderModel"], "tie_word_embeddings": false"#)
            .replacingOccurrences(of: #""architectures": ["T5ForConditionalGeneration"], "#, with: ""))
        #expect(d.config.architecture == "encoder-only" && d.config.isEncoderOnly)
        #expect(d.architectures == ["T5EncoderModel"])
        // Without architectures, is_encoder_decoder decides.
        let noArch = try parse(#"{"model_type":"t5","d_model":4,"d_kv":2,"d_ff":8,"num_heads":2,"num_layers":1,"vocab_size":6,"is_encoder_decoder":false}"#)
        #expect(noArch.config.isEncoderOnly && !noArch.isEncoderDecoder)
    }

    @Test func missingRequiredKeyNamesKeyAndPath() throws {
        let text = ConfigTexts.t5Small.replacingOccurrences(of: #""d_model": 512, "#, with: "")
        let m = try failure(text)
        #expect(m.contains("missing required key \"d_model\""))
        let vocab = try failure(ConfigTexts.t5Small.replacingOccurrences(of: #", "vocab_size": 32128"#, with: ""))
        #expect(vocab.contains("\"vocab_size\""))
    }

    @Test func wrongTypesAndBadValues() throws {
        let s = try failure(ConfigTexts.t5Small.replacingOccurrences(of: #""d_model": 512"#, with: #""d_model": "512""#))
        #expect(s.contains("\"d_model\" must be an integer"))
        let f = try failure(ConfigTexts.t5Small.replacingOccurrences(of: #""d_model": 512"#, with: #""d_model": 512.5"#))
        #expect(f.contains("\"d_model\" must be an integer"))
        let zero = try failure(ConfigTexts.t5Small.replacingOccurrences(of: #""num_heads": 8"#, with: #""num_heads": 0"#))
        #expect(zero.contains("num_heads must be positive"))
        let eos = try failure(ConfigTexts.t5Small.replacingOccurrences(of: #""eos_token_id": 1"#, with: #""eos_token_id": 40000"#))
        #expect(eos.contains("eos_token_id 40000 is outside the vocabulary"))
        let json = try failure("{\"d_model\": 512,")
        #expect(json.contains("not valid JSON"))
        let tie = try failure(ConfigTexts.tiny(#""tie_word_embeddings": "no""#))
        #expect(tie.contains("\"tie_word_embeddings\" must be true or false"))
    }

    @Test func modelTypeMustBeT5MT5OrUMT5() throws {
        let m = try failure(ConfigTexts.t5Small.replacingOccurrences(of: #""model_type": "t5""#, with: #""model_type": "bart""#))
        #expect(m.contains("\"bart\"") && m.contains("\"t5\", \"mt5\" or \"umt5\""))
        let missing = try failure(#"{"d_model":4,"d_kv":2,"d_ff":8,"num_heads":2,"num_layers":1,"vocab_size":6}"#)
        #expect(missing.contains("missing key \"model_type\""))
    }

    @Test func defaultsAndNulls() throws {
        let c = try parse(ConfigTexts.tiny(#""num_decoder_layers": null, "pad_token_id": 3"#)).config
        #expect(c.numDecoderLayers == 1 && c.numEncoderLayers == 1)
        #expect(c.relativeAttentionNumBuckets == 32 && c.relativeAttentionMaxDistance == 128)
        #expect(c.layerNormEpsilon == 1e-6 && c.activation == .relu && !c.isGatedFFN)
        // decoder_start_token_id defaults to the pad id.
        #expect(c.padTokenId == 3 && c.eosTokenId == 1 && c.decoderStartTokenId == 3)
        #expect(c.tieWordEmbeddings && c.scaleDecoderOutputs)
    }

    @Test func mt5DefaultsAreUntiedAndGated() throws {
        // MT5Config defaults: feed_forward_proj "gated-gelu", tie_word_embeddings false.
        let c = try parse(ConfigTexts.tiny().replacingOccurrences(of: #""model_type": "t5""#, with: #""model_type": "mt5""#)).config
        #expect(c.activation == .geluNew && c.isGatedFFN && !c.tieWordEmbeddings && !c.scaleDecoderOutputs)
    }

    @Test func transformers5StyleLetsTheWeightsDecideTying() throws {
        // transformers 5.x: tie_word_embeddings forced true, the rescale in scale_decoder_outputs.
        let flan5 = try parse(ConfigTexts.tiny(#""tie_word_embeddings": true, "scale_decoder_outputs": false, "feed_forward_proj": "gated-gelu""#))
        #expect(flan5.tieDecidedByWeights && flan5.scaleDecoderOutputsKey == false && flan5.tieWordEmbeddingsKey == true)
        #expect(!flan5.config.scaleDecoderOutputs)
        #expect(flan5.resolved(hasDistinctLMHead: true).tieWordEmbeddings == false)
        #expect(flan5.resolved(hasDistinctLMHead: true).scaleDecoderOutputs == false)
        #expect(flan5.resolved(hasDistinctLMHead: false).tieWordEmbeddings == true)

        let t5v5 = try parse(ConfigTexts.tiny(#""tie_word_embeddings": true, "scale_decoder_outputs": true"#))
        #expect(t5v5.tieDecidedByWeights && t5v5.config.scaleDecoderOutputs)
        #expect(t5v5.resolved(hasDistinctLMHead: false).tieWordEmbeddings)
        #expect(t5v5.resolved(hasDistinctLMHead: false).scaleDecoderOutputs)
    }
}
