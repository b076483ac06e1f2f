// Hugging Face `generation_config.json` → GenerationDefaults (transformers 4.57 `GenerationConfig`).
//
// Only the settings Flint's generation implements are kept; the others are reported back (`ignored`) so the
// converter can say which ones a run will not follow. `null` means "not set", like transformers. Special ids
// (decoder_start_token_id, eos_token_id) are kept only where they differ from config.json's, as transformers
// generates with the generation config's; absent, config.json's apply (where transformers would have none).
// transformers' own defaults (`max_length` 20, `top_k` 50 when sampling, …) are not written into the result:
// absent keys stay nil, and the runner documents what it uses then.
import Foundation
import FlintFormat

public struct HFGenerationConfig: Sendable, Equatable {
    public var defaults: GenerationDefaults
    /// Keys of the file with a non-default value that Flint does not implement, sorted.
    public var ignored: [String]

    /// Keys transformers writes that carry no generation setting.
    static let bookkeeping: Set<String> = ["_from_model_config", "transformers_version", "pad_token_id", "bos_token_id",
                                           "use_cache", "output_scores", "return_dict_in_generate", "output_attentions",
                                           "output_hidden_states", "output_logits", "_commit_hash"]

    /// Reads `generation_config.json` in `folder`; nil when the folder has none.
    public static func read(folder: String, config: T5Config) throws -> HFGenerationConfig? {
        let path = (folder as NSString).appendingPathComponent("generation_config.json")
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FlintError(.io, "\(path): cannot be read")
        }
        return try parse(data, path: path, config: config)
    }

    public static func parse(_ data: Data, path: String, config: T5Config) throws -> HFGenerationConfig {
        let json: JSONValue
        do { json = try JSONParser.parse(data) } catch let e as JSONParseError {
            throw FlintError(.corrupt, "\(path): not valid JSON: \(e.message) at byte \(e.offset)")
        }
        guard case .object(let entries) = json else {
            throw FlintError(.corrupt, "\(path): must be a JSON object, got \(json.kindDescription)")
        }
        var d = GenerationDefaults()
        var ignored: [String] = []
        func int(_ key: String, _ v: JSONValue) throws -> Int {
            guard let i = v.exactInteger, let n = Int(exactly: i) else {
                throw FlintError(.invalidConfig, "\(path): \"\(key)\" must be an integer, got \(v.kindDescription)")
            }
            return n
        }
        func number(_ key: String, _ v: JSONValue) throws -> Double {
            guard let x = v.doubleValue, x.isFinite else { throw FlintError(.invalidConfig, "\(path): \"\(key)\" must be a number, got \(v.kindDescription)") }
            return x
        }
        func ints(_ key: String, _ v: JSONValue) throws -> [Int] {
            guard case .array(let items) = v else { throw FlintError(.invalidConfig, "\(path): \"\(key)\" must be a list of integers, got \(v.kindDescription)") }
            return try items.map { try int(key, $0) }
        }
        for (key, value) in entries {
            if value.isNull || bookkeeping.contains(key) { continue }
            switch key {
            case "max_new_tokens": d.maxNewTokens = try int(key, value)
            case "max_length": d.maxLength = try int(key, value)
            case "min_new_tokens":
                let n = try int(key, value)
                d.minNewTokens = n == 0 ? nil : n
            case "min_length":
                let n = try int(key, value)
                d.minLength = n == 0 ? nil : n
            case "num_beams": d.numBeams = try int(key, value)
            case "length_penalty": d.lengthPenalty = try number(key, value)
            case "early_stopping":
                guard case .bool(let b) = value else {
                    // "never" (the canonical beam-search stopping rule) is not implemented.
                    ignored.append(key); continue
                }
                d.earlyStopping = b
            case "do_sample":
                guard case .bool(let b) = value else { throw FlintError(.invalidConfig, "\(path): \"do_sample\" must be true or false") }
                d.doSample = b
            case "temperature": d.temperature = try number(key, value)
            case "top_k": d.topK = try int(key, value)
            case "top_p": d.topP = try number(key, value)
            case "no_repeat_ngram_size": d.noRepeatNgramSize = try int(key, value)
            case "repetition_penalty": d.repetitionPenalty = try number(key, value)
            case "num_return_sequences": d.numReturnSequences = try int(key, value)
            case "bad_words_ids":
                guard case .array(let words) = value else { throw FlintError(.invalidConfig, "\(path): \"bad_words_ids\" must be a list of lists of integers") }
                d.badWordsIds = try words.map { try ints(key, $0) }
            case "suppress_tokens": d.suppressTokens = try ints(key, value)
            case "eos_token_id":
                // transformers stops on the generation config's eos ids (any of them) rather than config.json's.
                let ids = value.exactInteger != nil ? [try int(key, value)] : try ints(key, value)
                guard !ids.isEmpty else { throw FlintError(.invalidConfig, "\(path): \"eos_token_id\" must name at least one token, got []") }
                if ids != [config.eosTokenId] { d.eosTokenIds = ids }
            case "decoder_start_token_id":
                let id = try int(key, value)
                if id != config.decoderStartTokenId { d.decoderStartTokenId = id }
            default:
                if !isDefault(key, value) { ignored.append(key) }
            }
        }
        do { try d.validate(vocabSize: config.vocabSize) } catch let e as FlintError {
            throw e.with(message: "\(path): \(e.message)")
        }
        return HFGenerationConfig(defaults: d, ignored: ignored.sorted())
    }

    /// Values of unimplemented settings that change nothing (transformers' defaults).
    static func isDefault(_ key: String, _ value: JSONValue) -> Bool {
        switch value {
        case .bool(let b): return !b
        case .array(let items): return items.isEmpty
        default:
            if let x = value.doubleValue {
                return (key.hasPrefix("num_") && x == 1) || x == 0 || (key.hasSuffix("penalty") && x == 1)
            }
            return false
        }
    }
}

extension HFModelFolder {
    /// The folder's generation_config.json, nil when it has none.
    public func generationConfig() throws -> HFGenerationConfig? {
        try HFGenerationConfig.read(folder: folder, config: config)
    }

    /// The settings of the folder's generation_config.json that Flint follows.
    public func generationDefaults() throws -> GenerationDefaults? { try generationConfig()?.defaults }
}

extension GenerationDefaults {
    /// nil when no setting is present (nothing to store).
    public var nilIfEmpty: GenerationDefaults? { isEmpty ? nil : self }
}
