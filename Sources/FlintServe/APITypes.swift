// The HTTP API's request parsing and response objects. Completions and embeddings follow OpenAI's API (field
// names, response objects, error object); generation options OpenAI lacks are extra fields named as `flint run`
// names its flags (beams, length_penalty, early_stopping, sample, top_k, seed, min_tokens, no_repeat_ngram,
// repetition_penalty, bad_words, suppress_tokens, decoder_prefix).
import Foundation
import FlintFormat
import FlintT5
import FlintTokenizer

/// A prompt as the client sent it: text, or token ids (OpenAI accepts both).
enum PromptInput {
    case text(String)
    case ids([Int])
}

/// The limits the server enforces on every request (from `flint serve`'s options).
struct RequestLimits {
    /// The model's generation settings (generation_config.json), used for every field a request leaves out,
    /// as `flint run` uses them for every flag not given.
    var defaults: GenerationDefaults = GenerationDefaults()
    var maxInputTokens: Int
    var maxTokens: Int
    var defaultMaxTokens: Int
    var maxBatch: Int
    var maxQueue: Int
    var vocabSize: Int
}

/// A checked `POST /v1/completions` body.
struct CompletionRequest {
    var prompts: [PromptInput]
    var maxTokens: Int
    var minTokens: Int
    var n: Int
    var stream: Bool
    var includeUsage: Bool
    var stop: [String]
    var beams: Int
    var lengthPenalty: Double?
    var earlyStopping: Bool
    var noRepeatNgram: Int
    var repetitionPenalty: Double
    /// Texts (or token-id lists) never generated, added to the model's bad_words_ids (flint run's --bad-words).
    var badWords: [PromptInput]
    /// Token ids never generated; given, they replace the model's suppress_tokens (flint run's --suppress-tokens).
    var suppressTokens: [Int]?
    /// Text (or token ids) every output starts with, forced after the decoder start token (--decoder-prefix).
    var decoderPrefix: PromptInput?
    /// The longest decoder prefix accepted (the server's --max-input-tokens).
    var maxPrefixTokens: Int
    /// The model's settings without a request field (min length, bad words, suppressed tokens).
    var defaults: GenerationDefaults
    /// Sampling settings, nil for greedy / beam search.
    var sampling: SamplingOptions?
    /// The seed the client gave (sampling choice i uses seed + i); nil: a random seed per choice.
    var seed: UInt64?

    static let maxStops = 4
    static let maxPrompts = 64
    static let maxBadWords = 256

    init(_ body: Data, limits: RequestLimits, model: String) throws {
        var f = try JSONFields(body: body)
        try checkModel(&f, model)
        prompts = try Self.prompts(&f, limits: limits)
        let d = limits.defaults
        defaults = d
        let configMax = d.maxNewTokens ?? d.maxLength.map { $0 - 1 }
        maxTokens = try f.integer("max_tokens", in: 1...limits.maxTokens) ?? min(configMax ?? limits.defaultMaxTokens, limits.maxTokens)
        minTokens = try f.integer("min_tokens", in: 0...limits.maxTokens) ?? min(d.minNewTokens ?? 0, maxTokens)
        guard minTokens <= maxTokens else {
            throw APIError.outOfRange("min_tokens", "must be at most max_tokens (\(maxTokens)), got \(minTokens)")
        }
        n = try f.integer("n", in: 1...16) ?? 1
        stream = try f.bool("stream") ?? false
        includeUsage = false
        if let options = f.value("stream_options") {
            guard case .object(let object) = options else { throw APIError.wrongType("stream_options", "an object", options) }
            var o = JSONFields(object: object)
            includeUsage = try o.bool("include_usage") ?? false
            do { try o.finish() } catch let e as APIError {
                throw APIError.badRequest("stream_options: \(e.message)", param: "stream_options")
            }
            guard stream else { throw APIError.badRequest("'stream_options' needs \"stream\": true", param: "stream_options") }
        }
        stop = try Self.stops(&f)

        noRepeatNgram = try f.integer("no_repeat_ngram", in: 0...1024) ?? d.noRepeatNgramSize ?? 0
        let penalty = try f.number("repetition_penalty")
        if let penalty, !(penalty > 0 && penalty.isFinite) {
            throw APIError.outOfRange("repetition_penalty", "must be a positive number (1 = off), got \(penalty)")
        }
        repetitionPenalty = penalty ?? d.repetitionPenalty ?? 1
        badWords = try Self.badWords(&f, limits: limits)
        suppressTokens = try f.value("suppress_tokens").map { value in
            guard case .array(let items) = value else { throw APIError.wrongType("suppress_tokens", "a list of token ids", value) }
            return try tokenIds(items, field: "suppress_tokens", what: "'suppress_tokens'", vocabSize: limits.vocabSize)
        }
        maxPrefixTokens = limits.maxInputTokens
        decoderPrefix = try f.value("decoder_prefix").map { value in
            switch value {
            case .string(let text) where !text.isEmpty: return .text(text)
            case .array(let items) where !items.isEmpty:
                return .ids(try tokenIds(items, field: "decoder_prefix", what: "'decoder_prefix'", vocabSize: limits.vocabSize))
            default: throw APIError.wrongType("decoder_prefix", "a non-empty string or list of token ids", value)
            }
        }
        let requestedBeams = try f.integer("beams", in: 1...limits.maxBatch)
        lengthPenalty = try f.number("length_penalty")
        earlyStopping = try f.bool("early_stopping") ?? false
        if let lengthPenalty, !lengthPenalty.isFinite {
            throw APIError.outOfRange("length_penalty", "must be a finite number")
        }
        // Sampling: "temperature" > 0 (OpenAI's way; 0 = greedy) or "sample": true (flint run's --sample); without
        // either, the model's generation config decides (do_sample, num_beams), as for flint run without flags.
        let temperature = try f.number("temperature")
        let sample = try f.bool("sample")
        let configSamples = requestedBeams == nil && temperature == nil && sample == nil && d.doSample == true && (d.numBeams ?? 1) == 1
        beams = requestedBeams ?? (configSamples || (temperature ?? 0) > 0 || sample == true ? 1 : min(d.numBeams ?? 1, limits.maxBatch))
        if requestedBeams == nil && beams > 1 {
            lengthPenalty = lengthPenalty ?? d.lengthPenalty
            earlyStopping = earlyStopping || (d.earlyStopping ?? false)
        }
        if beams == 1 && (lengthPenalty != nil || earlyStopping) {
            throw APIError.badRequest("'length_penalty' and 'early_stopping' need \"beams\": 2 or more",
                                      param: lengthPenalty != nil ? "length_penalty" : "early_stopping")
        }

        let topP = try f.number("top_p")
        let topK = try f.integer("top_k", in: 0...limits.vocabSize)
        if let seedValue = f.value("seed") {
            switch seedValue {
            case .integer(let s) where s >= 0: seed = UInt64(s)
            case .integer: throw APIError.outOfRange("seed", "must be 0 or more")
            default: throw APIError.wrongType("seed", "an integer", seedValue)
            }
        } else {
            seed = nil
        }
        if let temperature, !(temperature >= 0 && temperature.isFinite) {
            throw APIError.outOfRange("temperature", "must be 0 (greedy) or a positive number, got \(temperature)")
        }
        if let topP, !(topP > 0 && topP <= 1) { throw APIError.outOfRange("top_p", "must be in (0, 1], got \(topP)") }
        let sampled: Bool
        switch (sample, temperature) {
        case (false?, let t?) where t > 0:
            throw APIError.badRequest("\"sample\": false contradicts \"temperature\": \(t) (> 0 samples)", param: "sample")
        case (true?, 0?):
            throw APIError.badRequest("\"sample\": true needs a temperature above 0 (0 is greedy)", param: "temperature")
        case (true?, _): sampled = true
        case (_, let t?): sampled = t > 0
        default: sampled = configSamples
        }
        if sampled {
            guard beams == 1 else { throw APIError.badRequest("sampling cannot be combined with \"beams\" > 1", param: "beams") }
            // Settings from the model's config only when it chose sampling (transformers' top_k default is 50).
            sampling = SamplingOptions(temperature: Float(temperature ?? (configSamples ? d.temperature : nil) ?? 1),
                                       topK: topK ?? (configSamples ? d.topK ?? 50 : 0),
                                       topP: Float(topP ?? (configSamples ? d.topP : nil) ?? 1), seed: 0)
        } else {
            // The neutral values OpenAI clients send by default are accepted with greedy decoding.
            if let topP, topP != 1 {
                throw APIError.badRequest("'top_p' applies only when sampling (temperature > 0)", param: "top_p")
            }
            if let topK, topK != 0 {
                throw APIError.badRequest("'top_k' applies only when sampling (temperature > 0)", param: "top_k")
            }
            sampling = nil
        }

        // OpenAI fields this server does not implement: only their "off" values pass.
        try f.unsupported("echo", neutral: [.bool(false)], because: "the prompt is not repeated in the completion")
        try f.unsupported("logprobs", neutral: [.integer(0)], because: "log-probabilities are not returned")
        try f.unsupported("best_of", neutral: [.integer(1), .integer(n)], because: "use \"beams\" for beam search")
        try f.unsupported("presence_penalty", neutral: [.integer(0)], because: "no presence penalty")
        try f.unsupported("frequency_penalty", neutral: [.integer(0)], because: "no frequency penalty")
        try f.unsupported("suffix", neutral: [], because: "T5 has no insertion mode")
        if let bias = f.value("logit_bias"), bias != .object([:]) {
            throw APIError.badRequest("'logit_bias' is not supported", param: "logit_bias")
        }
        _ = try f.string("user")
        try f.finish()
    }

    private static func prompts(_ f: inout JSONFields, limits: RequestLimits) throws -> [PromptInput] {
        guard let value = f.value("prompt") else { throw APIError.badRequest("'prompt' is required", param: "prompt") }
        func ids(_ items: [JSONValue], _ what: String) throws -> [Int] {
            try items.map { item in
                guard case .integer(let id) = item, (0..<limits.vocabSize).contains(id) else {
                    throw APIError.badRequest("\(what) must hold token ids in 0..<\(limits.vocabSize)", param: "prompt")
                }
                return id
            }
        }
        let prompts: [PromptInput]
        switch value {
        case .string(let text):
            prompts = [.text(text)]
        case .array(let items) where items.isEmpty:
            throw APIError.badRequest("'prompt' is an empty list", param: "prompt")
        case .array(let items):
            if items.allSatisfy({ if case .string = $0 { true } else { false } }) {
                prompts = items.map { if case .string(let s) = $0 { .text(s) } else { .text("") } }
            } else if items.allSatisfy({ if case .integer = $0 { true } else { false } }) {
                prompts = [.ids(try ids(items, "'prompt'"))]
            } else if items.allSatisfy({ if case .array = $0 { true } else { false } }) {
                prompts = try items.enumerated().map { i, item in
                    guard case .array(let inner) = item, !inner.isEmpty else {
                        throw APIError.badRequest("'prompt'[\(i)] is an empty list of token ids", param: "prompt")
                    }
                    return .ids(try ids(inner, "'prompt'[\(i)]"))
                }
            } else {
                throw APIError.badRequest("'prompt' must be a string, a list of strings, a list of token ids or a list of such lists",
                                          param: "prompt")
            }
        default:
            throw APIError.wrongType("prompt", "a string or a list", value)
        }
        guard prompts.count <= maxPrompts else {
            throw APIError.outOfRange("prompt", "has \(prompts.count) prompts; at most \(maxPrompts) per request")
        }
        return prompts
    }

    /// "bad_words": a list of texts, or of token-id lists.
    private static func badWords(_ f: inout JSONFields, limits: RequestLimits) throws -> [PromptInput] {
        guard let value = f.value("bad_words") else { return [] }
        guard case .array(let items) = value else { throw APIError.wrongType("bad_words", "a list of strings or of token-id lists", value) }
        guard items.count <= maxBadWords else {
            throw APIError.outOfRange("bad_words", "has \(items.count) entries; at most \(maxBadWords)")
        }
        return try items.enumerated().map { i, item in
            switch item {
            case .string(let text) where !text.isEmpty: return .text(text)
            case .array(let inner) where !inner.isEmpty:
                return .ids(try tokenIds(inner, field: "bad_words", what: "'bad_words'[\(i)]", vocabSize: limits.vocabSize))
            default:
                throw APIError.badRequest("'bad_words'[\(i)] must be a non-empty string or a non-empty list of token ids", param: "bad_words")
            }
        }
    }

    private static func stops(_ f: inout JSONFields) throws -> [String] {
        guard let value = f.value("stop") else { return [] }
        let stops: [String]
        switch value {
        case .string(let s): stops = [s]
        case .array(let items):
            stops = try items.map { item in
                guard case .string(let s) = item else { throw APIError.badRequest("'stop' must be a string or a list of strings", param: "stop") }
                return s
            }
        default: throw APIError.wrongType("stop", "a string or a list of strings", value)
        }
        guard stops.count <= maxStops else { throw APIError.outOfRange("stop", "has \(stops.count) strings; at most \(maxStops)") }
        guard !stops.contains("") else { throw APIError.outOfRange("stop", "must not contain an empty string") }
        return stops
    }

    /// The generation options of choice `choice` (sampling choices get seeds seed, seed + 1, …); texts in
    /// bad_words and decoder_prefix become their tokens without </s>, as flint run tokenizes its flags.
    func options(choice: Int, tokenizer: T5Tokenizer) throws -> GenerationOptions {
        let strategy: DecodingStrategy
        if var sampling {
            sampling.seed = seed.map { $0 &+ UInt64(choice) } ?? UInt64.random(in: 0...UInt64.max)
            strategy = .sampling(sampling)
        } else if beams > 1 {
            strategy = .beamSearch(BeamSearchOptions(numBeams: beams, lengthPenalty: lengthPenalty ?? 1, earlyStopping: earlyStopping))
        } else {
            strategy = .greedy
        }
        var options = GenerationOptions(maxNewTokens: maxTokens, minNewTokens: minTokens, strategy: strategy)
        options.minLength = defaults.minLength ?? 0
        options.noRepeatNgramSize = noRepeatNgram
        options.repetitionPenalty = repetitionPenalty
        options.badWordsIds = defaults.badWordsIds ?? []
        for (i, word) in badWords.enumerated() {
            let ids: [Int]
            switch word {
            case .text(let text): ids = tokenizer.encode(text, addEOS: false)
            case .ids(let given): ids = given
            }
            guard !ids.isEmpty else {
                throw APIError.badRequest("'bad_words'[\(i)] has no tokens once tokenized", param: "bad_words")
            }
            options.badWordsIds.append(ids)
        }
        options.suppressTokens = suppressTokens ?? defaults.suppressTokens ?? []
        switch decoderPrefix {
        case .text(let text):
            options.decoderPrefix = tokenizer.encode(text, addEOS: false)
            guard !options.decoderPrefix.isEmpty else {
                throw APIError.badRequest("'decoder_prefix' has no tokens once tokenized", param: "decoder_prefix")
            }
        case .ids(let ids): options.decoderPrefix = ids
        case nil: break
        }
        guard options.decoderPrefix.count <= maxPrefixTokens else {
            throw APIError.outOfRange("decoder_prefix", "has \(options.decoderPrefix.count) tokens; at most \(maxPrefixTokens) (--max-input-tokens)")
        }
        return options.withSpecialIds(of: defaults)
    }
}

/// A JSON list of token ids, each in 0..<vocabSize (400 naming the field otherwise).
private func tokenIds(_ items: [JSONValue], field: String, what: String, vocabSize: Int) throws -> [Int] {
    guard items.count <= 4096 else { throw APIError.outOfRange(field, "(\(what)) has \(items.count) ids; at most 4096") }
    return try items.map { item in
        guard case .integer(let id) = item, (0..<vocabSize).contains(id) else {
            throw APIError.badRequest("\(what) must hold token ids in 0..<\(vocabSize)", param: field)
        }
        return id
    }
}

/// `"model"` is optional; when given it must name the served model (404 otherwise, as OpenAI answers).
private func checkModel(_ f: inout JSONFields, _ model: String) throws {
    guard let requested = try f.string("model") else { return }
    guard requested == model else {
        throw APIError(status: 404, message: "model '\(requested)' is not served here; this server serves '\(model)'",
                       type: "invalid_request_error", param: "model", code: "model_not_found")
    }
}

/// Tokenizes prompts and checks their length against `--max-input-tokens` (400 naming the prompt).
func tokenizePrompts(_ prompts: [PromptInput], tokenizer: T5Tokenizer, maxInputTokens: Int, field: String) throws -> [[Int]] {
    try prompts.enumerated().map { i, prompt in
        let ids: [Int]
        switch prompt {
        case .text(let text): ids = tokenizer.encode(text)
        case .ids(let given): ids = given
        }
        guard ids.count <= maxInputTokens else {
            let which = prompts.count == 1 ? "'\(field)'" : "'\(field)'[\(i)]"
            throw APIError.outOfRange(field, "(\(which)) has \(ids.count) tokens; this server accepts at most \(maxInputTokens) (--max-input-tokens)")
        }
        return ids
    }
}

/// A checked `POST /v1/embeddings` body.
struct EmbeddingRequest {
    var inputs: [PromptInput]
    var base64: Bool

    init(_ body: Data, limits: RequestLimits, model: String) throws {
        var f = try JSONFields(body: body)
        try checkModel(&f, model)
        guard let value = f.value("input") else { throw APIError.badRequest("'input' is required", param: "input") }
        switch value {
        case .string(let s): inputs = [.text(s)]
        case .array(let items) where !items.isEmpty && items.allSatisfy({ if case .string = $0 { true } else { false } }):
            inputs = items.map { if case .string(let s) = $0 { .text(s) } else { .text("") } }
        case .array(let items) where !items.isEmpty && items.allSatisfy({ if case .integer(let id) = $0 { (0..<limits.vocabSize).contains(id) } else { false } }):
            inputs = [.ids(items.map { if case .integer(let id) = $0 { id } else { 0 } })]
        case .array(let items) where !items.isEmpty && items.allSatisfy({ item in
            guard case .array(let inner) = item, !inner.isEmpty else { return false }
            return inner.allSatisfy { if case .integer(let id) = $0 { (0..<limits.vocabSize).contains(id) } else { false } }
        }):
            inputs = items.map { item in
                guard case .array(let inner) = item else { return .ids([]) }
                return .ids(inner.map { if case .integer(let id) = $0 { id } else { 0 } })
            }
        default:
            throw APIError.badRequest("'input' must be a string, a non-empty list of strings, or token ids in 0..<\(limits.vocabSize) (a list, or a list of lists)",
                                      param: "input")
        }
        guard inputs.count <= CompletionRequest.maxPrompts else {
            throw APIError.outOfRange("input", "has \(inputs.count) inputs; at most \(CompletionRequest.maxPrompts) per request")
        }
        switch try f.string("encoding_format") ?? "float" {
        case "float": base64 = false
        case "base64": base64 = true
        case let other: throw APIError.outOfRange("encoding_format", "must be \"float\" or \"base64\", got \"\(other)\"")
        }
        try f.unsupported("dimensions", neutral: [], because: "the embedding has the model's d_model dimensions")
        _ = try f.string("user")
        try f.finish()
    }
}

/// `POST /tokenize`: `{"text"}` (and optionally `"add_special_tokens": false` to leave out the </s>).
struct TokenizeRequest {
    var text: String
    var addEOS: Bool

    init(_ body: Data) throws {
        var f = try JSONFields(body: body)
        guard let text = try f.string("text") else { throw APIError.badRequest("'text' is required", param: "text") }
        self.text = text
        addEOS = try f.bool("add_special_tokens") ?? true
        try f.finish()
    }
}

/// `POST /detokenize`: `{"ids": [...], "skip_special_tokens": false}`.
struct DetokenizeRequest {
    var ids: [Int]
    var skipSpecialTokens: Bool

    init(_ body: Data, tokenizer: T5Tokenizer) throws {
        var f = try JSONFields(body: body)
        guard let value = f.value("ids") else { throw APIError.badRequest("'ids' is required", param: "ids") }
        guard case .array(let items) = value else { throw APIError.wrongType("ids", "a list of token ids", value) }
        ids = try items.enumerated().map { i, item in
            guard case .integer(let id) = item else { throw APIError.badRequest("'ids'[\(i)] must be an integer, got \(item.kind)", param: "ids") }
            guard tokenizer.idToPiece(id) != nil else {
                throw APIError.badRequest("'ids'[\(i)] = \(id) is not a token of this tokenizer (it has \(tokenizer.count) tokens)", param: "ids")
            }
            return id
        }
        skipSpecialTokens = try f.bool("skip_special_tokens") ?? false
        try f.finish()
    }
}

// MARK: - Responses

struct CompletionChoiceJSON: Encodable {
    var index: Int
    var text: String
    var logprobs: String? = nil
    var finish_reason: String?

    // finish_reason and logprobs are written even when null, as OpenAI's objects have them.
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        try c.encodeNil(forKey: .logprobs)
        try c.encode(finish_reason, forKey: .finish_reason)
    }

    enum CodingKeys: String, CodingKey { case index, text, logprobs, finish_reason }
}

struct UsageJSON: Encodable {
    var prompt_tokens: Int
    var completion_tokens: Int?
    var total_tokens: Int
}

struct CompletionJSON: Encodable {
    var id: String
    var object = "text_completion"
    var created: Int
    var model: String
    var choices: [CompletionChoiceJSON]
    var usage: UsageJSON?
}

struct EmbeddingJSON: Encodable {
    struct Item: Encodable {
        var object = "embedding"
        var index: Int
        var embedding: EmbeddingValue
    }
    enum EmbeddingValue: Encodable {
        case floats([Float])
        case base64(String)
        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .floats(let v): try c.encode(v)
            case .base64(let s): try c.encode(s)
            }
        }
    }
    var object = "list"
    var data: [Item]
    var model: String
    var usage: UsageJSON
}

struct ModelListJSON: Encodable {
    struct Model: Encodable {
        var id: String
        var object = "model"
        var created: Int
        var owned_by = "flint"
    }
    var object = "list"
    var data: [Model]
}

struct ErrorJSON: Encodable {
    struct Body: Encodable {
        var message: String
        var type: String
        var param: String?
        var code: String?
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(message, forKey: .message)
            try c.encode(type, forKey: .type)
            try c.encode(param, forKey: .param)
            try c.encode(code, forKey: .code)
        }
        enum CodingKeys: String, CodingKey { case message, type, param, code }
    }
    var error: Body

    init(_ e: APIError) { error = Body(message: e.message, type: e.type, param: e.param, code: e.code) }
}

/// JSON as the API writes it: compact, keys sorted (the same bytes for the same answer), slashes unescaped.
func encodeJSON<T: Encodable>(_ value: T) -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    // Every value here is encodable (finite floats: the model's outputs are checked before they get here).
    return (try? encoder.encode(value)) ?? Data("{}".utf8)
}
