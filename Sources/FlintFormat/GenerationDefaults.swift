// The generation settings a model ships in its generation_config.json, as the .flint metadata stores them
// (Formats/FLINT.md, "generation"): what `model.generate(**inputs)` uses when the caller passes nothing.

/// The settings of a Hugging Face `generation_config.json` that Flint's generation implements; nil = not set
/// (transformers' default applies). Keys are transformers' names.
public struct GenerationDefaults: Codable, Sendable, Equatable {
    public var maxNewTokens: Int?
    /// Decoder length limit, the decoder start token included (used when `maxNewTokens` is not set).
    public var maxLength: Int?
    public var minNewTokens: Int?
    public var minLength: Int?
    public var numBeams: Int?
    public var lengthPenalty: Double?
    public var earlyStopping: Bool?
    public var doSample: Bool?
    public var temperature: Double?
    public var topK: Int?
    public var topP: Double?
    public var noRepeatNgramSize: Int?
    public var repetitionPenalty: Double?
    public var numReturnSequences: Int?
    public var badWordsIds: [[Int]]?
    public var suppressTokens: [Int]?
    /// The tokens that end a sequence (any of them), when the generation config names other than the model
    /// config's `eos_token_id`; transformers then stops on these and not on the config's.
    public var eosTokenIds: [Int]?
    /// The first decoder token, when the generation config names another than the model config's.
    public var decoderStartTokenId: Int?

    /// The `required_features` entry of files whose `generation` sets `eos_token_id` or `decoder_start_token_id`:
    /// a reader that predates the keys would ignore them and end (or start) sequences on other tokens.
    public static let specialIdsFeature = "generation-special-ids"

    /// The `required_features` a file with these settings must list.
    public var requiredFeatures: [String] {
        eosTokenIds != nil || decoderStartTokenId != nil ? [Self.specialIdsFeature] : []
    }

    public init() {}

    enum CodingKeys: String, CodingKey {
        case maxNewTokens = "max_new_tokens"
        case maxLength = "max_length"
        case minNewTokens = "min_new_tokens"
        case minLength = "min_length"
        case numBeams = "num_beams"
        case lengthPenalty = "length_penalty"
        case earlyStopping = "early_stopping"
        case doSample = "do_sample"
        case temperature
        case topK = "top_k"
        case topP = "top_p"
        case noRepeatNgramSize = "no_repeat_ngram_size"
        case repetitionPenalty = "repetition_penalty"
        case numReturnSequences = "num_return_sequences"
        case badWordsIds = "bad_words_ids"
        case suppressTokens = "suppress_tokens"
        case eosTokenIds = "eos_token_id"
        case decoderStartTokenId = "decoder_start_token_id"
    }

    /// No setting at all.
    public var isEmpty: Bool { self == GenerationDefaults() }

    /// Names the first value no generation could use (the reader rejects such a file; the converter such a folder).
    public func validate(vocabSize: Int) throws {
        func atLeast(_ v: Int?, _ lower: Int, _ name: String) throws {
            if let v, v < lower { throw FlintError(.invalidConfig, "generation: \(name) must be at least \(lower), got \(v)") }
        }
        try atLeast(maxNewTokens, 1, "max_new_tokens")
        try atLeast(maxLength, 2, "max_length")
        try atLeast(minNewTokens, 0, "min_new_tokens")
        try atLeast(minLength, 0, "min_length")
        try atLeast(numBeams, 1, "num_beams")
        try atLeast(topK, 0, "top_k")
        try atLeast(noRepeatNgramSize, 0, "no_repeat_ngram_size")
        try atLeast(numReturnSequences, 1, "num_return_sequences")
        if let v = lengthPenalty, !v.isFinite { throw FlintError(.invalidConfig, "generation: length_penalty must be finite, got \(v)") }
        if let v = temperature, !(v > 0 && v.isFinite) { throw FlintError(.invalidConfig, "generation: temperature must be positive, got \(v)") }
        if let v = topP, !(v > 0 && v <= 1) { throw FlintError(.invalidConfig, "generation: top_p must be in (0, 1], got \(v)") }
        if let v = repetitionPenalty, !(v > 0 && v.isFinite) { throw FlintError(.invalidConfig, "generation: repetition_penalty must be positive, got \(v)") }
        if eosTokenIds?.isEmpty == true { throw FlintError(.invalidConfig, "generation: eos_token_id must name at least one token") }
        let ids = (badWordsIds ?? []).flatMap { $0 } + (suppressTokens ?? []) + (eosTokenIds ?? [])
            + (decoderStartTokenId.map { [$0] } ?? [])
        if let bad = ids.first(where: { $0 < 0 || $0 >= vocabSize }) {
            throw FlintError(.invalidConfig, "generation: token \(bad) is outside the vocabulary (0..<\(vocabSize))")
        }
        if let empty = badWordsIds?.firstIndex(where: { $0.isEmpty }) {
            throw FlintError(.invalidConfig, "generation: bad_words_ids[\(empty)] is empty")
        }
    }
}
