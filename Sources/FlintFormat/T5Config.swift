// The T5 model configuration as the engine needs it, and as it is stored in a .flint file's metadata
// (Formats/FLINT.md, "config"). Hugging Face's config.json is parsed into this by FlintCheckpoint.

/// The feed-forward block's activation.
public enum FeedForwardActivation: String, Codable, Sendable {
    /// `max(0, x)` (original T5).
    case relu
    /// `0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))` (T5 v1.1, FLAN-T5, mT5), HF's `gelu_new`.
    case geluNew = "gelu_new"
    /// Exact erf GELU, HF's `gelu`.
    case gelu
}

public struct T5Config: Codable, Sendable, Equatable {
    /// `encoder-decoder` (T5ForConditionalGeneration) or `encoder-only` (T5EncoderModel).
    public var architecture: String
    public var dModel: Int
    public var dKV: Int
    public var dFF: Int
    public var numHeads: Int
    public var numEncoderLayers: Int
    public var numDecoderLayers: Int
    public var vocabSize: Int
    public var relativeAttentionNumBuckets: Int
    public var relativeAttentionMaxDistance: Int
    public var activation: FeedForwardActivation
    /// Gated FFN: `wo(act(wi_0 x) * wi_1 x)`; otherwise `wo(act(wi x))`.
    public var isGatedFFN: Bool
    /// The output projection shares `shared.weight` (no separate `lm_head.weight`).
    public var tieWordEmbeddings: Bool
    /// Multiply the decoder output by `dModel ** -0.5` before the output projection (original T5, tied).
    public var scaleDecoderOutputs: Bool
    public var layerNormEpsilon: Double
    public var padTokenId: Int
    public var eosTokenId: Int
    public var decoderStartTokenId: Int

    public init(architecture: String = "encoder-decoder", dModel: Int, dKV: Int, dFF: Int, numHeads: Int,
                numEncoderLayers: Int, numDecoderLayers: Int, vocabSize: Int,
                relativeAttentionNumBuckets: Int = 32, relativeAttentionMaxDistance: Int = 128,
                activation: FeedForwardActivation, isGatedFFN: Bool, tieWordEmbeddings: Bool,
                scaleDecoderOutputs: Bool, layerNormEpsilon: Double = 1e-6,
                padTokenId: Int = 0, eosTokenId: Int = 1, decoderStartTokenId: Int = 0) {
        self.architecture = architecture
        self.dModel = dModel
        self.dKV = dKV
        self.dFF = dFF
        self.numHeads = numHeads
        self.numEncoderLayers = numEncoderLayers
        self.numDecoderLayers = numDecoderLayers
        self.vocabSize = vocabSize
        self.relativeAttentionNumBuckets = relativeAttentionNumBuckets
        self.relativeAttentionMaxDistance = relativeAttentionMaxDistance
        self.activation = activation
        self.isGatedFFN = isGatedFFN
        self.tieWordEmbeddings = tieWordEmbeddings
        self.scaleDecoderOutputs = scaleDecoderOutputs
        self.layerNormEpsilon = layerNormEpsilon
        self.padTokenId = padTokenId
        self.eosTokenId = eosTokenId
        self.decoderStartTokenId = decoderStartTokenId
    }

    public var isEncoderOnly: Bool { architecture == "encoder-only" }
    /// `numHeads * dKV`, which need not equal `dModel`.
    public var innerDim: Int { numHeads * dKV }

    enum CodingKeys: String, CodingKey {
        case architecture
        case dModel = "d_model"
        case dKV = "d_kv"
        case dFF = "d_ff"
        case numHeads = "num_heads"
        case numEncoderLayers = "num_encoder_layers"
        case numDecoderLayers = "num_decoder_layers"
        case vocabSize = "vocab_size"
        case relativeAttentionNumBuckets = "relative_attention_num_buckets"
        case relativeAttentionMaxDistance = "relative_attention_max_distance"
        case activation
        case isGatedFFN = "gated_ffn"
        case tieWordEmbeddings = "tie_word_embeddings"
        case scaleDecoderOutputs = "scale_decoder_outputs"
        case layerNormEpsilon = "layer_norm_epsilon"
        case padTokenId = "pad_token_id"
        case eosTokenId = "eos_token_id"
        case decoderStartTokenId = "decoder_start_token_id"
    }

    /// Checks the numbers make a model that can run; names the first bad field.
    public func validate() throws {
        func positive(_ v: Int, _ name: String) throws {
            guard v > 0 else { throw FlintError("config: \(name) must be positive, got \(v)") }
        }
        guard architecture == "encoder-decoder" || architecture == "encoder-only" else {
            throw FlintError("config: architecture must be \"encoder-decoder\" or \"encoder-only\", got \"\(architecture)\"")
        }
        try positive(dModel, "d_model"); try positive(dKV, "d_kv"); try positive(dFF, "d_ff")
        try positive(numHeads, "num_heads"); try positive(numEncoderLayers, "num_encoder_layers")
        if !isEncoderOnly { try positive(numDecoderLayers, "num_decoder_layers") }
        try positive(vocabSize, "vocab_size")
        try positive(relativeAttentionNumBuckets, "relative_attention_num_buckets")
        try positive(relativeAttentionMaxDistance, "relative_attention_max_distance")
        guard layerNormEpsilon > 0, layerNormEpsilon < 1 else {
            throw FlintError("config: layer_norm_epsilon must be in (0, 1), got \(layerNormEpsilon)")
        }
        for (v, name) in [(padTokenId, "pad_token_id"), (eosTokenId, "eos_token_id"),
                          (decoderStartTokenId, "decoder_start_token_id")] {
            guard v >= 0, v < vocabSize else {
                throw FlintError("config: \(name) \(v) is outside the vocabulary (0..<\(vocabSize))")
            }
        }
    }
}
