// The one declaration of a T5-family model's tensors (T5 v1.0 with tied embeddings, T5 v1.1 / FLAN-T5 with a
// gated-GELU FFN and their own lm_head, mT5, UMT5 with a relative attention bias in every block): each tensor's
// Hugging Face name, its shape under a config, its role, whether it must stay float, which names are tied copies
// of another, which stored tensors transformers ignores, and how the Keras (tf_model.h5) and Flax (msgpack)
// checkpoints name it. Readers, the conversion check, the quantization plan's defaults, the model loader, export
// order and the verifier's block names all ask this type, so a tensor rule is written here once.
//
// Sources: transformers `modeling_t5.py` (T5Block: layer.0 SelfAttention, decoder layer.1 EncDecAttention, FFN
// last; `_keys_to_ignore_on_load_unexpected`; `_tied_weights_keys`), `modeling_umt5.py` (a bias table in every
// self-attention layer), `modeling_tf_pytorch_utils.py` (`convert_tf_weight_name_to_pt_weight_name`) and
// `modeling_flax_pytorch_utils.py` (`load_flax_weights_in_pytorch_model`).

/// The tensors of one T5 model, as its config declares them.
public struct T5WeightLayout: Sendable, Equatable {
    public let config: T5Config

    public init(config: T5Config) { self.config = config }

    /// What a tensor does in the model.
    public enum Role: String, Sendable, CaseIterable {
        /// `shared.weight`: the input embedding of both stacks (and the output projection when tied).
        case embedding
        /// `lm_head.weight`: the output projection of untied models.
        case outputProjection
        case attentionQuery, attentionKey, attentionValue, attentionOutput
        /// `relative_attention_bias.weight` `[num_buckets, num_heads]`.
        case relativeAttentionBias
        /// An RMS norm's weight (each sublayer's `layer_norm`, each stack's `final_layer_norm`).
        case layerNorm
        /// `wi` (ReLU FFN) or `wi_0` (the activated branch of a gated FFN).
        case feedForwardInput
        /// `wi_1`: the linear branch of a gated FFN.
        case feedForwardGate
        /// `wo`.
        case feedForwardOutput

        /// Stored float whatever the quantization request: norms and the bias table are tiny and feed every
        /// layer.
        public var isFloatOnly: Bool { self == .layerNorm || self == .relativeAttentionBias }
    }

    public enum Stack: String, Sendable, CaseIterable {
        case encoder, decoder
    }

    /// The sublayers of a block, in order (`layer.N` in the names).
    public enum Sublayer: Sendable {
        case selfAttention, crossAttention, feedForward

        /// The `layer.N` index in `stack`'s blocks (the decoder's FFN comes after its cross-attention).
        public func index(in stack: Stack) -> Int {
            switch self {
            case .selfAttention: return 0
            case .crossAttention: return 1
            case .feedForward: return stack == .decoder ? 2 : 1
            }
        }
    }

    /// One tensor of the model.
    public struct Tensor: Sendable, Equatable {
        /// The Hugging Face (PyTorch) name.
        public let name: String
        /// `[out, in]` for linear weights.
        public let shape: [Int]
        public let role: Role
        /// nil for `shared.weight` and `lm_head.weight`.
        public let stack: Stack?
        /// The block index for block tensors.
        public let block: Int?
        public var isFloatOnly: Bool { role.isFloatOnly }
        /// A 2-D weight a linear layer multiplies with (quantizable unless a plan keeps it).
        public var isLinearWeight: Bool { !isFloatOnly && shape.count == 2 }
    }

    // MARK: The declaration

    /// A tensor of every block of a stack, relative to its sublayer (`<stack>.block.<b>.layer.<n>.<path>`).
    struct BlockRule: Sendable {
        let sublayer: Sublayer
        let path: String
        let role: Role
        let shape: @Sendable (T5Config) -> [Int]
        /// Whether a block has the tensor (nil: every block of a stack that has the sublayer).
        let present: (@Sendable (T5Config, Stack, Int) -> Bool)?
    }

    /// A tensor outside the blocks.
    struct ModelRule: Sendable {
        let name: String
        let role: Role
        let stack: Stack?
        let shape: @Sendable (T5Config) -> [Int]
        let present: @Sendable (T5Config) -> Bool
    }

    static let blockRules: [BlockRule] = [
        BlockRule(sublayer: .selfAttention, path: "layer_norm.weight", role: .layerNorm, shape: { [$0.dModel] }, present: nil),
        BlockRule(sublayer: .selfAttention, path: "SelfAttention.q.weight", role: .attentionQuery, shape: { [$0.innerDim, $0.dModel] }, present: nil),
        BlockRule(sublayer: .selfAttention, path: "SelfAttention.k.weight", role: .attentionKey, shape: { [$0.innerDim, $0.dModel] }, present: nil),
        BlockRule(sublayer: .selfAttention, path: "SelfAttention.v.weight", role: .attentionValue, shape: { [$0.innerDim, $0.dModel] }, present: nil),
        BlockRule(sublayer: .selfAttention, path: "SelfAttention.o.weight", role: .attentionOutput, shape: { [$0.dModel, $0.innerDim] }, present: nil),
        // T5 / mT5: block 0 of each stack holds the table and the other blocks reuse it; UMT5: every block.
        BlockRule(sublayer: .selfAttention, path: "SelfAttention.relative_attention_bias.weight", role: .relativeAttentionBias,
                  shape: { [$0.relativeAttentionNumBuckets, $0.numHeads] },
                  present: { c, _, block in block == 0 || c.relativeAttentionBiasPerLayer }),
        BlockRule(sublayer: .crossAttention, path: "layer_norm.weight", role: .layerNorm, shape: { [$0.dModel] }, present: nil),
        BlockRule(sublayer: .crossAttention, path: "EncDecAttention.q.weight", role: .attentionQuery, shape: { [$0.innerDim, $0.dModel] }, present: nil),
        BlockRule(sublayer: .crossAttention, path: "EncDecAttention.k.weight", role: .attentionKey, shape: { [$0.innerDim, $0.dModel] }, present: nil),
        BlockRule(sublayer: .crossAttention, path: "EncDecAttention.v.weight", role: .attentionValue, shape: { [$0.innerDim, $0.dModel] }, present: nil),
        BlockRule(sublayer: .crossAttention, path: "EncDecAttention.o.weight", role: .attentionOutput, shape: { [$0.dModel, $0.innerDim] }, present: nil),
        BlockRule(sublayer: .feedForward, path: "layer_norm.weight", role: .layerNorm, shape: { [$0.dModel] }, present: nil),
        BlockRule(sublayer: .feedForward, path: "DenseReluDense.wi.weight", role: .feedForwardInput, shape: { [$0.dFF, $0.dModel] },
                  present: { c, _, _ in !c.isGatedFFN }),
        BlockRule(sublayer: .feedForward, path: "DenseReluDense.wi_0.weight", role: .feedForwardInput, shape: { [$0.dFF, $0.dModel] },
                  present: { c, _, _ in c.isGatedFFN }),
        BlockRule(sublayer: .feedForward, path: "DenseReluDense.wi_1.weight", role: .feedForwardGate, shape: { [$0.dFF, $0.dModel] },
                  present: { c, _, _ in c.isGatedFFN }),
        BlockRule(sublayer: .feedForward, path: "DenseReluDense.wo.weight", role: .feedForwardOutput, shape: { [$0.dModel, $0.dFF] }, present: nil),
    ]

    static let modelRules: [ModelRule] = [
        ModelRule(name: embeddingName, role: .embedding, stack: nil, shape: { [$0.vocabSize, $0.dModel] }, present: { _ in true }),
        ModelRule(name: "encoder.final_layer_norm.weight", role: .layerNorm, stack: .encoder, shape: { [$0.dModel] },
                  present: { _ in true }),
        ModelRule(name: "decoder.final_layer_norm.weight", role: .layerNorm, stack: .decoder, shape: { [$0.dModel] },
                  present: { !$0.isEncoderOnly }),
        ModelRule(name: outputProjectionName, role: .outputProjection, stack: nil, shape: { [$0.vocabSize, $0.dModel] },
                  present: { !$0.isEncoderOnly && !$0.tieWordEmbeddings }),
    ]

    /// The embedding table's name.
    public static let embeddingName = "shared.weight"
    /// The untied output projection's name.
    public static let outputProjectionName = "lm_head.weight"

    /// Names a checkpoint may store the embedding table under, in the order a reader takes the table from
    /// (transformers builds both stacks' `embed_tokens` on the shared module).
    public static let embeddingNames = [embeddingName, "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]

    /// Names that may hold a copy of the embedding table: tied, they are aliases of it (`_tied_weights_keys`).
    public static let tiedCopyNames = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight", outputProjectionName]

    /// Stored tensors transformers drops when it loads the model, with the reason; nil for every other name.
    public func ignoredReason(ofTensor name: String) -> String? {
        if name.hasPrefix("decoder.block."), name.hasSuffix(".EncDecAttention.relative_attention_bias.weight") {
            return "cross-attention has no position bias; transformers ignores this table"
        }
        // A bias table in a later block of a T5 / mT5 model (only UMT5 has one per block): transformers' T5
        // reads block 0's and drops the others as unexpected keys.
        if !config.relativeAttentionBiasPerLayer, name.hasSuffix(".SelfAttention.relative_attention_bias.weight"),
           let block = classify(name)?.block, block > 0 {
            return "T5 reads the bias table of block 0 only (relative_attention_bias_per_layer is not set); transformers ignores this one"
        }
        if config.isEncoderOnly {
            if name.hasPrefix("decoder.") && !Self.embeddingNames.contains(name) {
                return "an encoder-only model (T5EncoderModel) has no decoder; transformers ignores it"
            }
            if name == Self.outputProjectionName {
                return "an encoder-only model (T5EncoderModel) has no output projection; transformers ignores it"
            }
        }
        return nil
    }

    // MARK: Tensors of this config

    /// Every tensor the model reads, in Hugging Face's order: `shared.weight`, the encoder's blocks and final
    /// norm, the decoder's, then `lm_head.weight` when untied. Tied names are not listed (see `storedName`).
    public var tensors: [Tensor] {
        var result: [Tensor] = []
        func top(_ name: String) {
            guard let r = Self.modelRules.first(where: { $0.name == name }), r.present(config) else { return }
            result.append(Tensor(name: r.name, shape: r.shape(config), role: r.role, stack: r.stack, block: nil))
        }
        top(Self.embeddingName)
        for stack in stacks {
            for b in 0..<layerCount(stack) {
                for rule in Self.blockRules where has(rule, stack, b) {
                    result.append(Tensor(name: blockTensorName(stack, b, rule), shape: rule.shape(config),
                                         role: rule.role, stack: stack, block: b))
                }
            }
            top("\(stack.rawValue).final_layer_norm.weight")
        }
        top(Self.outputProjectionName)
        return result
    }

    /// The stacks this model has.
    public var stacks: [Stack] { config.isEncoderOnly ? [.encoder] : [.encoder, .decoder] }

    public func layerCount(_ stack: Stack) -> Int {
        stack == .encoder ? config.numEncoderLayers : (config.isEncoderOnly ? 0 : config.numDecoderLayers)
    }

    /// `encoder.block.N` / `decoder.block.N`: a block's name prefix, as the verifier reports blocks.
    public static func blockName(_ stack: Stack, _ block: Int) -> String { "\(stack.rawValue).block.\(block)" }

    /// Every block's name, encoder blocks first.
    public var blockNames: [String] {
        stacks.flatMap { stack in (0..<layerCount(stack)).map { Self.blockName(stack, $0) } }
    }

    /// The sublayer prefix: `encoder.block.0.layer.1` …
    public static func sublayerPrefix(_ stack: Stack, _ block: Int, _ sublayer: Sublayer) -> String {
        "\(blockName(stack, block)).layer.\(sublayer.index(in: stack))"
    }

    /// The tensor that projects the decoder output onto the vocabulary: `shared.weight` when tied.
    public var outputProjection: String {
        config.tieWordEmbeddings ? Self.embeddingName : Self.outputProjectionName
    }

    private func has(_ rule: BlockRule, _ stack: Stack, _ block: Int) -> Bool {
        if rule.sublayer == .crossAttention && stack == .encoder { return false }
        return rule.present?(config, stack, block) ?? true
    }

    private func blockTensorName(_ stack: Stack, _ block: Int, _ rule: BlockRule) -> String {
        "\(Self.sublayerPrefix(stack, block, rule.sublayer)).\(rule.path)"
    }

    // MARK: Names

    /// What a Hugging Face name is under the declaration, whatever the config: its role, stack and block, and
    /// its rule's shape. nil for a name no rule declares. Block indices are not checked against the config.
    func classify(_ name: String) -> (role: Role, stack: Stack?, block: Int?, shape: [Int])? {
        if let r = Self.modelRules.first(where: { $0.name == name }) {
            return (r.role, r.stack, nil, r.shape(config))
        }
        if Self.tiedCopyNames.contains(name) {
            return (.embedding, name.hasPrefix("decoder.") ? .decoder : .encoder, nil, [config.vocabSize, config.dModel])
        }
        let parts = name.split(separator: ".", maxSplits: 5, omittingEmptySubsequences: false)
        guard parts.count == 6, let stack = Stack(rawValue: String(parts[0])), parts[1] == "block",
              let block = Int(parts[2]), block >= 0, parts[3] == "layer", let sub = Int(parts[4]) else { return nil }
        let path = String(parts[5])
        // The cross-attention's stray bias table has the bias's shape (checked, then ignored).
        if path == "EncDecAttention.relative_attention_bias.weight", stack == .decoder, sub == 1 {
            return (.relativeAttentionBias, stack, block, [config.relativeAttentionNumBuckets, config.numHeads])
        }
        guard let rule = Self.blockRules.first(where: {
            $0.path == path && $0.sublayer.index(in: stack) == sub && !($0.sublayer == .crossAttention && stack == .encoder)
        }) else { return nil }
        return (rule.role, stack, block, rule.shape(config))
    }

    /// The role of a Hugging Face T5 tensor name, nil for other names.
    public func role(ofTensor name: String) -> Role? { classify(name)?.role }

    /// Whether a tensor of this name is stored float whatever the request (norms, the bias table), by the
    /// declaration's float-only rules: any name ending like one of them (`*layer_norm.weight`,
    /// `*relative_attention_bias.weight`), so a plan decides the same for names it does not know.
    public static func floatOnlyRole(ofTensor name: String) -> Role? {
        for rule in blockRules where rule.role.isFloatOnly && name.hasSuffix(rule.path) { return rule.role }
        for rule in modelRules where rule.role.isFloatOnly && name.hasSuffix(rule.name) { return rule.role }
        return nil
    }

    /// The pattern of the FFN output projections (`wo`), which the quantization plan keeps float in gated-GELU
    /// models (their input reaches magnitudes over 1e5; transformers' `_keep_in_fp32_modules = ["wo"]`).
    public static let feedForwardOutputPattern = "*.DenseReluDense.wo.weight"

    /// The shape a Hugging Face T5 tensor must have under this config (`[out, in]` matrices), or nil for a name
    /// that is not a T5 weight. A block index outside its stack's layer count gives an empty shape, which no
    /// tensor has.
    public func expectedShape(ofTensor name: String) -> [Int]? {
        guard let c = classify(name) else { return nil }
        if let stack = c.stack, let block = c.block {
            let layers = stack == .encoder ? config.numEncoderLayers : config.numDecoderLayers
            guard block < layers else { return [] }
        }
        return c.shape
    }

    /// The stored tensor a name resolves to: itself when stored, else for a tied name (`*.embed_tokens.weight`,
    /// `shared.weight`, and `lm_head.weight` of a tied encoder-decoder) the first stored of `embeddingNames`;
    /// nil when nothing holds it. `isStored` answers for stored tensors that are neither aliases nor ignored.
    public func storedName(for name: String, isStored: (String) -> Bool) -> String? {
        if isStored(name) { return name }
        let tied = Self.embeddingNames.contains(name)
            || (name == Self.outputProjectionName && config.tieWordEmbeddings && !config.isEncoderOnly)
        return tied ? Self.embeddingNames.first(where: isStored) : nil
    }

    // MARK: Checking a checkpoint

    /// Checks the tensors a checkpoint stores (aliases and ignored tensors left out) against the declaration
    /// and throws ONE error naming `source` and every problem: tensors the model needs that are missing,
    /// tensors it does not know, shapes that disagree with the config, blocks beyond the layer count.
    /// `checkpointName` names each missing tensor the way the checkpoint's format would (Keras, Flax).
    public func check(stored: [(name: String, shape: [Int])], source: String,
                      checkpointName: ((String) -> String)? = nil) throws {
        let declared = tensors
        let known = Set(declared.map(\.name)).union(Self.embeddingNames)
        let storedNames = Set(stored.map(\.name))
        var problems: [String] = []
        var unexpected: [String] = []
        for t in stored {
            guard let expected = expectedShape(ofTensor: t.name) else {
                unexpected.append(t.name)
                continue
            }
            if expected.isEmpty {
                problems.append("tensor \"\(t.name)\" names a block beyond the config's layer count")
            } else if !known.contains(t.name) {
                unexpected.append(t.name)
            } else if t.shape != expected {
                problems.append("tensor \"\(t.name)\" has shape \(t.shape), the config (d_model \(config.dModel), "
                                + "num_heads × d_kv \(config.numHeads) × \(config.dKV), d_ff \(config.dFF), "
                                + "vocab_size \(config.vocabSize)) needs \(expected)")
            }
        }
        let missing = declared.map(\.name).filter { storedName(for: $0, isStored: storedNames.contains) == nil }
        if !missing.isEmpty {
            let listed = missing.map { name in checkpointName.map { "\(name) (\($0(name)))" } ?? name }
            problems.append(missing.count == 1 ? "1 tensor the model needs is missing: " : "\(missing.count) tensors the model needs are missing: ")
            problems[problems.count - 1] += listed.joined(separator: ", ")
        }
        if !unexpected.isEmpty {
            problems.append((unexpected.count == 1 ? "1 tensor is" : "\(unexpected.count) tensors are")
                            + " not part of this model (\(variantDescription)): " + unexpected.joined(separator: ", "))
        }
        guard !problems.isEmpty else { return }
        // The kind of the gravest problem: a missing tensor, else an unknown one, else a shape.
        let kind: FlintError.Kind = !missing.isEmpty ? .notFound : (!unexpected.isEmpty ? .unsupported : .shapeMismatch)
        throw FlintError(kind, "\(source): " + problems.joined(separator: "; "))
    }

    /// Throws ONE error naming every declared tensor `source` cannot give (tied names resolve to the
    /// embedding table), before a model loads any of them. `stacks` limits the check to the tensors an
    /// encoder-only model reads (the embedding, the encoder and its final norm).
    public func checkComplete(_ source: WeightSource, stacks only: [Stack]? = nil) throws {
        let names = Set(source.tensorNames)
        let needed = tensors.filter { t in
            guard let only else { return true }
            if let stack = t.stack { return only.contains(stack) }
            return t.role == .embedding
        }
        let missing = needed.map(\.name).filter { storedName(for: $0, isStored: names.contains) == nil }
        guard !missing.isEmpty else { return }
        throw FlintError(.notFound, "\(source.sourceDescription): "
                         + (missing.count == 1 ? "1 tensor the model needs is missing: " : "\(missing.count) tensors the model needs are missing: ")
                         + missing.joined(separator: ", ") + " (\(variantDescription))")
    }

    /// `encoder-decoder, relu FFN (wi), tied embeddings, relative bias in block 0` …, for messages.
    public var variantDescription: String {
        var parts: [String] = [config.isEncoderOnly ? "encoder-only" : "encoder-decoder"]
        parts.append(config.isGatedFFN ? "gated \(config.activation.rawValue) FFN (wi_0, wi_1)" : "\(config.activation.rawValue) FFN (wi)")
        if !config.isEncoderOnly { parts.append(config.tieWordEmbeddings ? "tied embeddings" : "untied lm_head") }
        parts.append(config.relativeAttentionBiasPerLayer ? "relative bias in every block" : "relative bias in block 0")
        return parts.joined(separator: ", ")
    }

    // MARK: Export order

    /// `names` in Hugging Face's state-dict order (`shared.weight`, `encoder.embed_tokens.weight`, the encoder's
    /// blocks in block order and its final norm, the decoder's the same way, `lm_head.weight`); names the
    /// layout does not declare follow, sorted.
    public func exportOrder(_ names: [String]) -> [String] {
        var ordered: [String] = []
        for t in tensors {
            if t.stack == .decoder && !ordered.contains("decoder.embed_tokens.weight") {
                ordered.append("decoder.embed_tokens.weight")
            }
            ordered.append(t.name)
            if t.role == .embedding { ordered.append("encoder.embed_tokens.weight") }
        }
        ordered += Self.tiedCopyNames.filter { !ordered.contains($0) }
        let rank = Dictionary(ordered.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        return names.sorted { a, b in
            switch (rank[a], rank[b]) {
            case let (x?, y?): return x < y
            case (_?, nil): return true
            case (nil, _?): return false
            case (nil, nil): return a < b
            }
        }
    }
}

// MARK: Keras (tf_model.h5) and Flax (msgpack) names

extension T5WeightLayout {
    /// transformers' `convert_tf_weight_name_to_pt_weight_name`: the PyTorch name of a TF variable and whether
    /// its value is stored transposed. `dropsModelScope` removes the first level (the model's name scope), which
    /// variable names carry and shard dataset names do not.
    public static func hfName(kerasVariable tfName: String, dropsModelScope: Bool) -> (name: String, transposed: Bool) {
        var name = tfName.replacingOccurrences(of: ":0", with: "")
        // `/$1___$2/` → `/$2/`, matched left to right without overlap as Python's re.sub does: a component
        // rewritten this way consumed its trailing slash, so the next component cannot match.
        var parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 2 {
            var previousRewritten = false
            for i in 1..<(parts.count - 1) {
                if !previousRewritten, let r = parts[i].range(of: "___", options: .backwards) {
                    parts[i] = String(parts[i][r.upperBound...])
                    previousRewritten = true
                } else {
                    previousRewritten = false
                }
            }
            name = parts.joined(separator: "/")
        }
        name = name.replacingOccurrences(of: "_._", with: "/")
        while name.contains("//") { name = name.replacingOccurrences(of: "//", with: "/") }  // `//+` → `/`
        parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if dropsModelScope && parts.count > 1 { parts.removeFirst() }
        let last = parts.last ?? ""
        let transposed = ["kernel", "pointwise_kernel", "depthwise_kernel"].contains(last)
            || parts.contains("emb_projs") || parts.contains("out_projs")
        switch last {
        case "kernel", "embeddings", "gamma": parts[parts.count - 1] = "weight"
        case "beta": parts[parts.count - 1] = "bias"
        case "pointwise_kernel": parts[parts.count - 1] = "pointwise.weight"
        case "depthwise_kernel": parts[parts.count - 1] = "depthwise.weight"
        default: break
        }
        return (parts.joined(separator: "."), transposed)
    }

    /// The Hugging Face (PyTorch) name of a Flax parameter path, and whether its array is stored transposed
    /// (transformers' `load_flax_weights_in_pytorch_model`, for tensors of up to two dimensions).
    public static func hfName(flaxPath: [String]) -> (name: String, transposed: Bool) {
        var parts = flaxPath
        var transposed = false
        switch parts.last {
        case "kernel"?:
            parts[parts.count - 1] = "weight"
            transposed = true
        case "scale"?, "embedding"?:
            parts[parts.count - 1] = "weight"
        case let last? where last.contains("mean"):
            parts[parts.count - 1] = "running_mean"
        case let last? where last.contains("var"):
            parts[parts.count - 1] = "running_var"
        default:
            break
        }
        return (parts.joined(separator: "."), transposed)
    }

    /// The TF variable a T5 tensor is stored as in `tf_model.h5` (as its shard index names it, with the model
    /// scope): `tft5_for_conditional_generation/encoder/block_._0/layer_._0/SelfAttention/q/kernel:0`,
    /// `shared/shared/embeddings:0`, `…/relative_attention_bias/embeddings:0`, `…/layer_norm/weight:0`.
    public func kerasName(ofTensor name: String) -> String {
        let role = role(ofTensor: name)
        if role == .embedding { return "shared/shared/embeddings:0" }
        var parts = name.split(separator: ".").map(String.init)
        guard let last = parts.popLast() else { return name }
        var i = 0
        while i < parts.count {
            // `block.0` → `block_._0`: the index joins the level before it.
            if i + 1 < parts.count, Int(parts[i + 1]) != nil {
                parts[i] += "_._" + parts[i + 1]
                parts.remove(at: i + 1)
            }
            i += 1
        }
        switch role {
        case .relativeAttentionBias?: parts.append("embeddings")
        case .layerNorm?, nil: parts.append(last)
        case .some: parts.append("kernel")
        }
        let scope = config.isEncoderOnly ? "tft5_encoder_model" : "tft5_for_conditional_generation"
        return scope + "/" + parts.joined(separator: "/") + ":0"
    }

    /// The Flax parameter path a T5 tensor is stored at in `flax_model.msgpack`:
    /// `encoder/block/0/layer/0/SelfAttention/q/kernel`, `shared/embedding`, `…/relative_attention_bias/embedding`.
    public func flaxPath(ofTensor name: String) -> String {
        var parts = name.split(separator: ".").map(String.init)
        guard parts.popLast() != nil else { return name }
        switch role(ofTensor: name) {
        case .embedding?, .relativeAttentionBias?: parts.append("embedding")
        case .layerNorm?: parts.append("weight")
        case .some: parts.append("kernel")
        case nil: parts.append("weight")
        }
        return parts.joined(separator: "/")
    }
}
