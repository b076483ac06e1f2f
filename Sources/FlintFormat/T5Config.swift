// The T5 model configuration as the engine needs it, and as it is stored in a .flint file's metadata
// (Formats/FLINT.md, "config"). Hugging Face's config.json is parsed into this by FlintCheckpoint.

/// The feed-forward block's activation: every parameter-free function transformers' `ACT2FN` offers (the
/// `dense_act_fn` a T5-family config may name), one case per distinct formula; aliases map onto them when the
/// config is read (FlintCheckpoint's HFConfig).
public enum FeedForwardActivation: String, Codable, Sendable, CaseIterable {
    /// `max(0, x)` (original T5).
    case relu
    /// `0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))` (T5 v1.1, FLAN-T5, mT5), HF's `gelu_new`; also its
    /// `gelu_pytorch_tanh`, `gelu_fast`, `gelu_accurate`, `gelu_python_tanh` (the same formula).
    case geluNew = "gelu_new"
    /// Exact erf GELU `0.5·x·(1 + erf(x/√2))`, HF's `gelu` and `gelu_python`.
    case gelu
    // The values below came after the first version-1 files: a file using one lists
    // `T5Config.extraActivationsFeature` in required_features, so a reader that predates them refuses it by name.
    /// `x·σ(x)`, HF's `silu` / `swish` (UL2 and Flan-UL2, EleutherAI's Pile-T5: `gated-silu`).
    case silu
    /// `x·σ(1.702·x)`, HF's `quick_gelu`.
    case quickGelu = "quick_gelu"
    /// The erf GELU clipped to [−10, 10], HF's `gelu_10`.
    case gelu10 = "gelu_10"
    /// `min(max(0, x), 6)`.
    case relu6
    /// `max(0, x)²`, HF's `relu2`.
    case relu2
    /// `x` for `x ≥ 0`, else `0.01·x` (torch's default slope).
    case leakyRelu = "leaky_relu"
    /// `1 / (1 + e^−x)`.
    case sigmoid
    case tanh
    /// `x·tanh(softplus(x))`.
    case mish
    /// The identity, HF's `linear`.
    case linear
    /// `0.5·(1 + erf((x − 0.707107) / (0.282095·√2)))`, HF's `laplace`.
    case laplace

    /// The activations every version-1 reader knows; the others need `T5Config.extraActivationsFeature`.
    public static let original: Set<FeedForwardActivation> = [.relu, .geluNew, .gelu]
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
    /// Every self-attention layer of both stacks has its own `relative_attention_bias` table (UMT5); otherwise
    /// only block 0 of each stack has one and the other blocks reuse it (T5, mT5). Stored in the metadata only
    /// when true, and then the file lists `T5Config.perLayerRelativeBiasFeature` in `required_features`.
    public var relativeAttentionBiasPerLayer: Bool

    /// The `required_features` entry of files whose config sets `relative_attention_bias_per_layer`: a reader
    /// that predates it would reuse block 0's bias in every block and silently compute a different model.
    public static let perLayerRelativeBiasFeature = "per-layer-relative-attention-bias"

    /// The `required_features` entry of files whose `activation` is not `relu`, `gelu_new` or `gelu`: a reader that
    /// predates the other values should name what it lacks rather than fail to decode the config.
    public static let extraActivationsFeature = "feed-forward-activations"

    /// The `required_features` a file with this config must list.
    public var requiredFeatures: [String] {
        (relativeAttentionBiasPerLayer ? [Self.perLayerRelativeBiasFeature] : [])
            + (FeedForwardActivation.original.contains(activation) ? [] : [Self.extraActivationsFeature])
    }

    public init(architecture: String = "encoder-decoder", dModel: Int, dKV: Int, dFF: Int, numHeads: Int,
                numEncoderLayers: Int, numDecoderLayers: Int, vocabSize: Int,
                relativeAttentionNumBuckets: Int = 32, relativeAttentionMaxDistance: Int = 128,
                activation: FeedForwardActivation, isGatedFFN: Bool, tieWordEmbeddings: Bool,
                scaleDecoderOutputs: Bool, layerNormEpsilon: Double = 1e-6,
                padTokenId: Int = 0, eosTokenId: Int = 1, decoderStartTokenId: Int = 0,
                relativeAttentionBiasPerLayer: Bool = false) {
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
        self.relativeAttentionBiasPerLayer = relativeAttentionBiasPerLayer
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
        case relativeAttentionBiasPerLayer = "relative_attention_bias_per_layer"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try c.decode(String.self, forKey: .architecture)
        dModel = try c.decode(Int.self, forKey: .dModel)
        dKV = try c.decode(Int.self, forKey: .dKV)
        dFF = try c.decode(Int.self, forKey: .dFF)
        numHeads = try c.decode(Int.self, forKey: .numHeads)
        numEncoderLayers = try c.decode(Int.self, forKey: .numEncoderLayers)
        numDecoderLayers = try c.decode(Int.self, forKey: .numDecoderLayers)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        relativeAttentionNumBuckets = try c.decode(Int.self, forKey: .relativeAttentionNumBuckets)
        relativeAttentionMaxDistance = try c.decode(Int.self, forKey: .relativeAttentionMaxDistance)
        activation = try c.decode(FeedForwardActivation.self, forKey: .activation)
        isGatedFFN = try c.decode(Bool.self, forKey: .isGatedFFN)
        tieWordEmbeddings = try c.decode(Bool.self, forKey: .tieWordEmbeddings)
        scaleDecoderOutputs = try c.decode(Bool.self, forKey: .scaleDecoderOutputs)
        layerNormEpsilon = try c.decode(Double.self, forKey: .layerNormEpsilon)
        padTokenId = try c.decode(Int.self, forKey: .padTokenId)
        eosTokenId = try c.decode(Int.self, forKey: .eosTokenId)
        decoderStartTokenId = try c.decode(Int.self, forKey: .decoderStartTokenId)
        relativeAttentionBiasPerLayer = try c.decodeIfPresent(Bool.self, forKey: .relativeAttentionBiasPerLayer) ?? false
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architecture, forKey: .architecture)
        try c.encode(dModel, forKey: .dModel)
        try c.encode(dKV, forKey: .dKV)
        try c.encode(dFF, forKey: .dFF)
        try c.encode(numHeads, forKey: .numHeads)
        try c.encode(numEncoderLayers, forKey: .numEncoderLayers)
        try c.encode(numDecoderLayers, forKey: .numDecoderLayers)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(relativeAttentionNumBuckets, forKey: .relativeAttentionNumBuckets)
        try c.encode(relativeAttentionMaxDistance, forKey: .relativeAttentionMaxDistance)
        try c.encode(activation, forKey: .activation)
        try c.encode(isGatedFFN, forKey: .isGatedFFN)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(scaleDecoderOutputs, forKey: .scaleDecoderOutputs)
        try c.encode(layerNormEpsilon, forKey: .layerNormEpsilon)
        try c.encode(padTokenId, forKey: .padTokenId)
        try c.encode(eosTokenId, forKey: .eosTokenId)
        try c.encode(decoderStartTokenId, forKey: .decoderStartTokenId)
        // Written only when set, so T5 / mT5 files keep the bytes earlier writers gave them.
        if relativeAttentionBiasPerLayer {
            try c.encode(true, forKey: .relativeAttentionBiasPerLayer)
        }
    }

    /// Upper bounds on the sizes a config may declare (Formats/FLINT.md, "config"). Each is several times the
    /// largest released T5-family model (t5-11b: d_ff 65536, 128 heads of d_kv 128; UMT5-XXL: vocabulary
    /// 256384; 24–32 layers), and together they keep every size the engine computes from them — buffer
    /// lengths, offsets, `rows × num_heads × d_kv` — far inside 64-bit range, which the unchecked kernel
    /// modules rely on.
    public enum Limits {
        public static let dModel = 1 << 16
        public static let dKV = 1 << 14
        public static let dFF = 1 << 20
        public static let numHeads = 1 << 12
        /// `num_heads × d_kv`, the attention inner size.
        public static let innerDim = 1 << 17
        public static let numLayers = 1 << 10
        public static let vocabSize = 1 << 22
        public static let relativeAttentionNumBuckets = 1 << 12
        public static let relativeAttentionMaxDistance = 1 << 24
    }

    /// Checks the numbers make a model that can run and that every size derived from them is bounded (see
    /// `Limits`); names the first bad field.
    public func validate() throws {
        func inRange(_ v: Int, _ name: String, _ lower: Int, _ upper: Int) throws {
            guard v >= lower else {
                throw FlintError(.invalidConfig, "config: \(name) must be \(lower == 1 ? "positive" : "at least \(lower)"), got \(v)")
            }
            guard v <= upper else {
                throw FlintError(.invalidConfig, "config: \(name) \(v) is larger than any T5 model (at most \(upper))")
            }
        }
        guard architecture == "encoder-decoder" || architecture == "encoder-only" else {
            throw FlintError(.invalidConfig, "config: architecture must be \"encoder-decoder\" or \"encoder-only\", got \"\(architecture)\"")
        }
        try inRange(dModel, "d_model", 1, Limits.dModel)
        try inRange(dKV, "d_kv", 1, Limits.dKV)
        try inRange(dFF, "d_ff", 1, Limits.dFF)
        try inRange(numHeads, "num_heads", 1, Limits.numHeads)
        // Both factors are bounded above, so the product cannot overflow.
        guard numHeads * dKV <= Limits.innerDim else {
            throw FlintError(.invalidConfig, "config: num_heads × d_kv = \(numHeads) × \(dKV) = \(numHeads * dKV) is larger than any T5 model (at most \(Limits.innerDim))")
        }
        try inRange(numEncoderLayers, "num_encoder_layers", 1, Limits.numLayers)
        if isEncoderOnly {
            try inRange(numDecoderLayers, "num_decoder_layers", 0, Limits.numLayers)
        } else {
            try inRange(numDecoderLayers, "num_decoder_layers", 1, Limits.numLayers)
        }
        try inRange(vocabSize, "vocab_size", 1, Limits.vocabSize)
        // Bidirectional bucketing halves the buckets and keeps half of those exact: at least one exact bucket
        // needs 4; the logarithmic buckets need max_distance beyond the exact range (else the bucket formula
        // divides by log(1) = 0 or goes negative).
        try inRange(relativeAttentionNumBuckets, "relative_attention_num_buckets", 4, Limits.relativeAttentionNumBuckets)
        try inRange(relativeAttentionMaxDistance, "relative_attention_max_distance", 1, Limits.relativeAttentionMaxDistance)
        guard relativeAttentionMaxDistance > relativeAttentionNumBuckets / 2 else {
            throw FlintError(.invalidConfig, "config: relative_attention_max_distance \(relativeAttentionMaxDistance) must exceed half of relative_attention_num_buckets (\(relativeAttentionNumBuckets))")
        }
        guard layerNormEpsilon > 0, layerNormEpsilon < 1 else {
            throw FlintError(.invalidConfig, "config: layer_norm_epsilon must be in (0, 1), got \(layerNormEpsilon)")
        }
        for (v, name) in [(padTokenId, "pad_token_id"), (eosTokenId, "eos_token_id"),
                          (decoderStartTokenId, "decoder_start_token_id")] {
            guard v >= 0, v < vocabSize else {
                throw FlintError(.invalidConfig, "config: \(name) \(v) is outside the vocabulary (0..<\(vocabSize))")
            }
        }
    }
}

extension T5Config {
    /// The tensors this config declares (names, shapes, roles, tying): `T5WeightLayout`.
    public var weightLayout: T5WeightLayout { T5WeightLayout(config: self) }

    /// The shape a Hugging Face T5 tensor must have under this config (`T5WeightLayout.expectedShape`).
    public func expectedShape(ofTensor name: String) -> [Int]? {
        weightLayout.expectedShape(ofTensor: name)
    }

    /// Throws naming `source` and the first tensor whose shape disagrees with this config; names the layout
    /// does not declare are skipped (`T5WeightLayout.check` also reports missing and unexpected tensors).
    public func checkTensorShapes(_ tensors: [(name: String, shape: [Int])], source: String) throws {
        for t in tensors {
            guard let expected = expectedShape(ofTensor: t.name) else { continue }
            if expected.isEmpty {
                throw FlintError(.shapeMismatch, "\(source): tensor \"\(t.name)\" names a block beyond the config's layer count")
            }
            guard t.shape == expected else {
                throw FlintError(.shapeMismatch, "\(source): tensor \"\(t.name)\" has shape \(t.shape), the config (d_model \(dModel), "
                                 + "num_heads × d_kv \(numHeads) × \(dKV), d_ff \(dFF), vocab_size \(vocabSize)) needs \(expected)")
            }
        }
    }
}
