// Hugging Face `config.json` → T5Config, following transformers' T5Config / MT5Config (4.57 and 5.x).
//
// The rules, and why:
// - `feed_forward_proj` is `ACT` or `gated-ACT`; the part after `gated-` names the activation, except that
//   `gated-gelu` means `gelu_new` (configuration_t5.py: "for backwards compatibility"). transformers then lets
//   the keys `dense_act_fn` and `is_gated_act`, when config.json carries them, override what it derived
//   (PretrainedConfig sets leftover keys as attributes after T5Config.__init__ ran), so we do the same.
// - Output head: original T5 ties `lm_head` to `shared.weight` and rescales the decoder output by d_model^-0.5;
//   T5 v1.1 / FLAN-T5 / mT5 write `tie_word_embeddings: false`, keep their own `lm_head.weight` and do not
//   rescale. `tie_word_embeddings` defaults to true for `t5` and to false for `mt5` (MT5Config's default).
//   transformers 5.x writes `scale_decoder_outputs` and forces `tie_word_embeddings` to true, so when
//   `scale_decoder_outputs` is present it alone decides the rescale, and tied-or-not can only be decided from
//   the weights (a stored `lm_head.weight` distinct from `shared.weight` means untied): see
//   `HFConfigDetails.tieDecidedByWeights` and `resolved(hasDistinctLMHead:)`.
// - UMT5 (`model_type` "umt5", modeling_umt5.py) is T5 v1.1 with a `relative_attention_bias` table in the
//   self-attention of every block of both stacks (T5 keeps one in block 0 and reuses it); same tensor names,
//   same bucketing. UMT5Config defaults `tie_word_embeddings` to true and `feed_forward_proj` to gated-gelu
//   (the released google/umt5-* configs write `tie_word_embeddings: false`).
// - LongT5 (local / transient-global attention) and Switch Transformers (mixture-of-experts FFN) are different
//   architectures: refused by name.
import Foundation
import FlintFormat

/// Everything read from a config.json that the model folder or the converter may need beyond T5Config.
public struct HFConfigDetails: Sendable, Equatable {
    /// The parsed configuration. When `tieDecidedByWeights` is true its `tieWordEmbeddings` is provisional
    /// (equal to `scaleDecoderOutputs`) until `resolved(hasDistinctLMHead:)` is applied.
    public var config: T5Config
    /// `t5`, `mt5` or `umt5`.
    public var modelType: String
    /// The `architectures` list as written (empty when absent).
    public var architectures: [String]
    /// The `is_encoder_decoder` key (true when absent).
    public var isEncoderDecoder: Bool
    /// `feed_forward_proj` as written or defaulted (`relu` for t5, `gated-gelu` for mt5).
    public var feedForwardProj: String
    /// The activation name as transformers resolves it (`relu`, `gelu_new`, …).
    public var denseActFn: String
    /// The config has `scale_decoder_outputs` (transformers 5.x): whether the output projection is tied must be
    /// decided from the weights.
    public var tieDecidedByWeights: Bool
    /// The raw `tie_word_embeddings` value, nil when absent.
    public var tieWordEmbeddingsKey: Bool?
    /// The raw `scale_decoder_outputs` value, nil when absent.
    public var scaleDecoderOutputsKey: Bool?

    /// The configuration with the tying decided: for transformers-5 configs, tied exactly when the checkpoint
    /// has no `lm_head.weight` distinct from `shared.weight`; otherwise `config` unchanged.
    public func resolved(hasDistinctLMHead: Bool) -> T5Config {
        guard tieDecidedByWeights else { return config }
        var c = config
        c.tieWordEmbeddings = !hasDistinctLMHead
        return c
    }
}

public enum HFConfig {
    /// Model types this reader accepts (T5 and mT5 share the architecture; UMT5 adds per-layer position bias).
    public static let supportedModelTypes = ["t5", "mt5", "umt5"]

    /// T5 relatives this reader refuses, with why (`model_type` → reason).
    public static let refusedModelTypes: [String: String] = [
        "longt5": "LongT5 replaces T5's full self-attention with local / transient-global attention",
        "switch_transformers": "Switch Transformers replace the feed-forward blocks with a mixture of experts (router + experts)",
    ]

    /// Architecture-name suffixes of transformers' T5 task heads → what they are.
    static let refusedHeads: [String: String] = [
        "ForSequenceClassification": "a sequence-classification head",
        "ForTokenClassification": "a token-classification head",
        "ForQuestionAnswering": "a question-answering (span) head",
    ]

    /// transformers `ACT2FN` names that compute the same function as a `FeedForwardActivation` under another name.
    static let activationAliases: [String: FeedForwardActivation] = [
        // torch's tanh GELU and transformers' fast / accurate / python-tanh GELUs are all gelu_new's formula.
        "gelu_pytorch_tanh": .geluNew, "gelu_fast": .geluNew, "gelu_accurate": .geluNew, "gelu_python_tanh": .geluNew,
        "gelu_python": .gelu,
        "swish": .silu,
    ]

    /// `ACT2FN` names with learned parameters: the module would store tensors (`….act.weight`) T5 checkpoints do not
    /// otherwise have, and no released T5-family model uses them.
    static let refusedActivations: [String: String] = [
        "prelu": "PReLU has a learned slope (a DenseReluDense.act.weight tensor), which Flint does not implement",
        "xielu": "xIELU has learned parameters, which Flint does not implement",
    ]

    /// Parses config.json bytes (`path` is used in messages). For transformers-5 configs the tying is
    /// provisional; `HFModelFolder` finishes it from the weights.
    public static func parse(configJSON: Data, path: String) throws -> T5Config {
        try parseDetails(configJSON: configJSON, path: path).config
    }

    /// Reads and parses the config.json at `path`.
    public static func parse(path: String) throws -> T5Config {
        try parseDetails(path: path).config
    }

    public static func parseDetails(path: String) throws -> HFConfigDetails {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FlintError(.io, "\(path): cannot read config.json")
        }
        return try parseDetails(configJSON: data, path: path)
    }

    public static func parseDetails(configJSON: Data, path: String) throws -> HFConfigDetails {
        let json: JSONValue
        do {
            json = try JSONParser.parse(configJSON)
        } catch let e as JSONParseError {
            throw FlintError(.corrupt, "\(path): config is not valid JSON: \(e.message) at byte \(e.offset)")
        }
        guard case .object = json else {
            throw FlintError(.corrupt, "\(path): config must be a JSON object, got \(json.kindDescription)")
        }
        let keys = Keys(json: json, path: path)

        // Which model.
        let architectures = try keys.stringList("architectures") ?? []
        var modelType = try keys.string("model_type")
        if modelType == nil {
            // Very old configs may lack model_type; the architecture class then says which model it is.
            if architectures.contains(where: { $0.hasPrefix("UMT5") }) { modelType = "umt5" }
            else if architectures.contains(where: { $0.hasPrefix("MT5") }) { modelType = "mt5" }
            else if architectures.contains(where: { $0.hasPrefix("T5") }) { modelType = "t5" }
        }
        guard let modelType else {
            throw FlintError(.invalidConfig, "\(path): missing key \"model_type\" (expected \"t5\", \"mt5\" or \"umt5\")")
        }
        if let reason = refusedModelTypes[modelType] {
            throw FlintError(.unsupported, "\(path): model_type \"\(modelType)\" is not supported: \(reason), which Flint does not "
                + "implement (supported: t5, mt5, umt5)")
        }
        guard supportedModelTypes.contains(modelType) else {
            throw FlintError(.unsupported, "\(path): model_type is \"\(modelType)\"; this reader handles T5-family checkpoints "
                + "with model_type \"t5\", \"mt5\" or \"umt5\"")
        }
        // Task heads transformers builds on T5 (a classifier or span scorer instead of the LM head, and for
        // sequence / token classification the stacks under a `transformer.` prefix): refused by name rather than
        // run as a text-to-text model or reported as missing tensors.
        if let head = architectures.lazy.compactMap({ a in refusedHeads.first { a.hasSuffix($0.key) }.map { (a, $0.value) } }).first,
           architectures.allSatisfy({ a in refusedHeads.keys.contains { a.hasSuffix($0) } }) {
            throw FlintError(.unsupported, "\(path): architectures \(architectures) is \(head.1) on \(modelType), which Flint does not "
                + "run; it runs text-to-text checkpoints (T5ForConditionalGeneration, MT5…, UMT5…) and encoders (T5EncoderModel, …)")
        }
        let isMT5 = modelType == "mt5"
        let isUMT5 = modelType == "umt5"

        // Sizes.
        let dModel = try keys.requiredInt("d_model")
        let dKV = try keys.requiredInt("d_kv")
        let dFF = try keys.requiredInt("d_ff")
        let numHeads = try keys.requiredInt("num_heads")
        let numLayers = try keys.requiredInt("num_layers")
        let numDecoderLayers = try keys.int("num_decoder_layers") ?? numLayers
        let vocabSize = try keys.requiredInt("vocab_size")
        let buckets = try keys.int("relative_attention_num_buckets") ?? 32
        let maxDistance = try keys.int("relative_attention_max_distance") ?? 128
        let epsilon = try keys.double("layer_norm_epsilon") ?? 1e-6

        // Feed-forward block.
        let feedForwardProj = try keys.string("feed_forward_proj") ?? (isMT5 || isUMT5 ? "gated-gelu" : "relu")
        let parts = feedForwardProj.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 1 || (parts.count == 2 && parts[0] == "gated"), !(parts.last ?? "").isEmpty else {
            throw FlintError(.invalidConfig, "\(path): feed_forward_proj \"\(feedForwardProj)\" is not of the form "
                + "\"ACT\" or \"gated-ACT\" (e.g. \"relu\", \"gated-gelu\")")
        }
        var isGated = parts[0] == "gated"
        var actName = feedForwardProj == "gated-gelu" ? "gelu_new" : parts[parts.count - 1]
        if let explicit = try keys.string("dense_act_fn") { actName = explicit }
        if let explicit = try keys.bool("is_gated_act") { isGated = explicit }
        let activation: FeedForwardActivation
        let actSource = keys.has("dense_act_fn") ? "dense_act_fn" : "feed_forward_proj \"\(feedForwardProj)\""
        if let known = activationAliases[actName] ?? FeedForwardActivation(rawValue: actName) {
            activation = known
        } else if let reason = refusedActivations[actName] {
            throw FlintError(.unsupported, "\(path): feed-forward activation \"\(actName)\" (from \(actSource)) is not supported: "
                + reason)
        } else {
            throw FlintError(.unsupported, "\(path): feed-forward activation \"\(actName)\" (from \(actSource)) is not one "
                + "transformers' ACT2FN offers without parameters; supported: "
                + (FeedForwardActivation.allCases.map(\.rawValue) + activationAliases.keys).sorted().joined(separator: ", "))
        }

        // Architecture: a T5EncoderModel checkpoint has no decoder.
        let isEncoderDecoder = try keys.bool("is_encoder_decoder") ?? true
        let encoderOnly: Bool
        if !architectures.isEmpty {
            encoderOnly = architectures.allSatisfy { $0.hasSuffix("EncoderModel") }
        } else {
            encoderOnly = !isEncoderDecoder
        }

        // Output head.
        let tieKey = try keys.bool("tie_word_embeddings")
        let scaleKey = try keys.bool("scale_decoder_outputs")
        let tied: Bool
        let scale: Bool
        if let scaleKey {
            scale = scaleKey
            tied = scaleKey  // provisional: the folder decides from the weights
        } else {
            tied = tieKey ?? !isMT5  // T5Config and UMT5Config default to tied, MT5Config to untied
            scale = tied
        }

        // Special tokens.
        let pad = try keys.tokenId("pad_token_id") ?? 0
        let eos = try keys.tokenId("eos_token_id") ?? 1
        let decoderStart = try keys.tokenId("decoder_start_token_id") ?? pad

        let config = T5Config(
            architecture: encoderOnly ? "encoder-only" : "encoder-decoder",
            dModel: dModel, dKV: dKV, dFF: dFF, numHeads: numHeads,
            numEncoderLayers: numLayers, numDecoderLayers: numDecoderLayers, vocabSize: vocabSize,
            relativeAttentionNumBuckets: buckets, relativeAttentionMaxDistance: maxDistance,
            activation: activation, isGatedFFN: isGated, tieWordEmbeddings: tied, scaleDecoderOutputs: scale,
            layerNormEpsilon: epsilon, padTokenId: pad, eosTokenId: eos, decoderStartTokenId: decoderStart,
            relativeAttentionBiasPerLayer: isUMT5)
        do {
            try config.validate()
        } catch let e as FlintError {
            throw e.with(message: "\(path): \(e.message)")
        }
        return HFConfigDetails(config: config, modelType: modelType, architectures: architectures,
                               isEncoderDecoder: isEncoderDecoder, feedForwardProj: feedForwardProj,
                               denseActFn: actName, tieDecidedByWeights: scaleKey != nil,
                               tieWordEmbeddingsKey: tieKey, scaleDecoderOutputsKey: scaleKey)
    }

    /// Typed access to config keys; `null` counts as absent (transformers treats it as "use the default").
    private struct Keys {
        let json: JSONValue
        let path: String

        func has(_ key: String) -> Bool { json[key].map { !$0.isNull } ?? false }

        private func value(_ key: String) -> JSONValue? {
            guard let v = json[key], !v.isNull else { return nil }
            return v
        }

        func int(_ key: String) throws -> Int? {
            guard let v = value(key) else { return nil }
            guard let i = v.exactInteger, let n = Int(exactly: i) else {
                throw FlintError(.invalidConfig, "\(path): key \"\(key)\" must be an integer, got \(v.kindDescription)")
            }
            return n
        }

        func requiredInt(_ key: String) throws -> Int {
            guard let n = try int(key) else {
                throw FlintError(.invalidConfig, "\(path): missing required key \"\(key)\" (an integer)")
            }
            return n
        }

        func double(_ key: String) throws -> Double? {
            guard let v = value(key) else { return nil }
            guard let d = v.doubleValue, d.isFinite else {
                throw FlintError(.invalidConfig, "\(path): key \"\(key)\" must be a number, got \(v.kindDescription)")
            }
            return d
        }

        func bool(_ key: String) throws -> Bool? {
            guard let v = value(key) else { return nil }
            guard case .bool(let b) = v else {
                throw FlintError(.invalidConfig, "\(path): key \"\(key)\" must be true or false, got \(v.kindDescription)")
            }
            return b
        }

        func string(_ key: String) throws -> String? {
            guard let v = value(key) else { return nil }
            guard case .string(let s) = v else {
                throw FlintError(.invalidConfig, "\(path): key \"\(key)\" must be a string, got \(v.kindDescription)")
            }
            return s
        }

        func stringList(_ key: String) throws -> [String]? {
            guard let v = value(key) else { return nil }
            guard case .array(let items) = v else {
                throw FlintError(.invalidConfig, "\(path): key \"\(key)\" must be a list of strings, got \(v.kindDescription)")
            }
            return try items.map { item in
                guard case .string(let s) = item else {
                    throw FlintError(.invalidConfig, "\(path): key \"\(key)\" must be a list of strings, found \(item.kindDescription)")
                }
                return s
            }
        }

        /// A token id; a list (generation configs allow several eos ids) gives its first element.
        func tokenId(_ key: String) throws -> Int? {
            guard let v = value(key) else { return nil }
            if case .array(let items) = v {
                guard let first = items.first, let i = first.exactInteger, let n = Int(exactly: i) else {
                    throw FlintError(.invalidConfig, "\(path): key \"\(key)\" must be an integer or a non-empty list of integers, got \(v.kindDescription)")
                }
                return n
            }
            return try int(key)
        }
    }
}
