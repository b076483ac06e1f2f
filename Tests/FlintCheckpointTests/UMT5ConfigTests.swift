import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat

/// config.json of UMT5 (google/umt5-small's keys) and of the T5 relatives Flint refuses.
@Suite struct UMT5ConfigTests {
    func parse(_ text: String) throws -> HFConfigDetails {
        try HFConfig.parseDetails(configJSON: Data(text.utf8), path: "/models/x/config.json")
    }

    /// google/umt5-small's config.json (sizes and keys as published).
    static let umt5Small = """
    {"architectures": ["UMT5ForConditionalGeneration"], "classifier_dropout": 0.0, "d_ff": 1024, "d_kv": 64,
     "d_model": 512, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1,
     "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": true,
     "is_gated_act": true, "layer_norm_epsilon": 1e-06, "model_type": "umt5", "num_decoder_layers": 8,
     "num_heads": 6, "num_layers": 8, "pad_token_id": 0, "relative_attention_max_distance": 128,
     "relative_attention_num_buckets": 32, "tie_word_embeddings": false, "tokenizer_class": "T5Tokenizer",
     "use_cache": true, "vocab_size": 256384}
    """

    @Test func umt5SmallHasPerLayerBias() throws {
        let d = try parse(Self.umt5Small)
        #expect(d.modelType == "umt5")
        let c = d.config
        #expect(c.relativeAttentionBiasPerLayer)
        #expect(c.vocabSize == 256384 && c.numEncoderLayers == 8 && c.numDecoderLayers == 8 && c.numHeads == 6)
        #expect(c.activation == .geluNew && c.isGatedFFN && !c.tieWordEmbeddings && !c.scaleDecoderOutputs)
        #expect(c.requiredFeatures == ["per-layer-relative-attention-bias"])
    }

    @Test func umt5DefaultsAreTiedAndGated() throws {
        // UMT5Config defaults: feed_forward_proj "gated-gelu", tie_word_embeddings true (unlike MT5Config).
        let c = try parse(#"{"model_type":"umt5","d_model":8,"d_kv":4,"d_ff":16,"num_heads":2,"num_layers":2,"vocab_size":32}"#).config
        #expect(c.relativeAttentionBiasPerLayer && c.activation == .geluNew && c.isGatedFFN)
        #expect(c.tieWordEmbeddings && c.scaleDecoderOutputs)
        // An old config without model_type names the class.
        let byClass = try parse(#"{"architectures":["UMT5EncoderModel"],"d_model":8,"d_kv":4,"d_ff":16,"num_heads":2,"num_layers":2,"vocab_size":32}"#)
        #expect(byClass.modelType == "umt5" && byClass.config.isEncoderOnly && byClass.config.relativeAttentionBiasPerLayer)
    }

    @Test func t5AndMT5KeepOneTablePerStack() throws {
        for type in ["t5", "mt5"] {
            let c = try parse(#"{"model_type":"\#(type)","d_model":8,"d_kv":4,"d_ff":16,"num_heads":2,"num_layers":2,"vocab_size":32}"#).config
            #expect(!c.relativeAttentionBiasPerLayer, "\(type)")
        }
    }

    @Test(arguments: [("longt5", "local / transient-global attention"), ("switch_transformers", "mixture of experts")])
    func longT5AndSwitchAreRefusedByName(modelType: String, reason: String) throws {
        let text = #"{"model_type":"\#(modelType)","d_model":8,"d_kv":4,"d_ff":16,"num_heads":2,"num_layers":2,"vocab_size":32}"#
        let m = try #require(flintErrorMessage { try parse(text) })
        #expect(m.contains("/models/x/config.json"), "\(m)")
        #expect(m.contains("model_type \"\(modelType)\" is not supported"), "\(m)")
        #expect(m.contains(reason), "\(m)")
        #expect(m.contains("supported: t5, mt5, umt5"), "\(m)")
    }
}
