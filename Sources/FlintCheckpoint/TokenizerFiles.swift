// Which tokenizer a Hugging Face model folder ships, read the way `AutoTokenizer.from_pretrained(folder)` reads it:
// `tokenizer.json` (the fast tokenizer) when present, else `spiece.model` with the added tokens and sentinels of
// `tokenizer_config.json`, `special_tokens_map.json` and `added_tokens.json` (transformers' slow T5Tokenizer).
import FlintFormat
import Foundation

/// The tokenizer bytes and descriptor found in a model folder, as stored in a `.flint` file.
public struct TokenizerFiles: Sendable {
    /// A special token as tokenizer_config.json / special_tokens_map.json write it: a string, or an AddedToken
    /// object with its `content`.
    static func tokenText(_ value: Any?) -> String? {
        if let s = value as? String { return s }
        if let d = value as? [String: Any] { return d["content"] as? String }
        return nil
    }

    /// A list of special tokens in either form.
    static func tokenList(_ value: Any?) -> [String]? {
        guard let list = value as? [Any] else { return nil }
        return list.compactMap(tokenText)
    }

    /// The bytes of `tokenizer.json` or `spiece.model`, unchanged.
    public let bytes: [UInt8]
    /// What the bytes are and the added tokens that go with them.
    public let info: TokenizerInfo
    /// The path of the file the bytes came from.
    public let path: String

    /// Files a folder may carry that hold a tokenizer, in the order they are looked for.
    public static let tokenizerFileNames = ["tokenizer.json", "spiece.model"]

    /// Largest tokenizer or tokenizer-config file read (the mT5 tokenizer.json is 17 MB).
    static let maximumFileSize = 256 << 20

    /// The tokenizer of a folder; nil when it has neither `tokenizer.json` nor `spiece.model` and does not name
    /// `ByT5Tokenizer` (which needs no file).
    public static func discover(inFolder folder: String) throws -> TokenizerFiles? {
        let url = URL(fileURLWithPath: folder)
        let fm = FileManager.default
        let configPath = url.appendingPathComponent("tokenizer_config.json").path
        let config = try readJSONObject(configPath)
        // AutoTokenizer takes the class from tokenizer_config.json, else from config.json; ByT5Tokenizer has no
        // fast version, so it wins over any tokenizer.json / spiece.model beside it.
        let modelConfigPath = url.appendingPathComponent("config.json").path
        let tokenizerClass = config?["tokenizer_class"] as? String
            ?? ((try? readJSONObject(modelConfigPath)) ?? nil)?["tokenizer_class"] as? String
        if tokenizerClass == "ByT5Tokenizer" {
            let specialMap = try readJSONObject(url.appendingPathComponent("special_tokens_map.json").path)
            let addedFile = try readJSONObject(url.appendingPathComponent("added_tokens.json").path)
            let info = try byt5Info(config: config, specialMap: specialMap, addedTokensFile: addedFile, folder: folder)
            return TokenizerFiles(bytes: TokenizerInfo.byt5SectionBytes, info: info,
                                  path: config != nil ? configPath : modelConfigPath)
        }
        let jsonPath = url.appendingPathComponent("tokenizer.json").path
        if fm.fileExists(atPath: jsonPath) {
            var info = TokenizerInfo(type: TokenizerInfo.tokenizersJSON, extraIds: 0)
            info.cleanUpTokenizationSpaces = (config?["clean_up_tokenization_spaces"] as? Bool) ?? false
            let bytes = try readFile(jsonPath)
            info.model = modelType(ofTokenizerJSON: bytes)
            return TokenizerFiles(bytes: bytes, info: info, path: jsonPath)
        }
        if let bpe = try robertaBPE(inFolder: folder, tokenizerClass: tokenizerClass, config: config) { return bpe }
        let spiecePath = url.appendingPathComponent("spiece.model").path
        guard fm.fileExists(atPath: spiecePath) else { return nil }
        let bytes = try readFile(spiecePath)
        let specialMap = try readJSONObject(url.appendingPathComponent("special_tokens_map.json").path)
        let addedPath = url.appendingPathComponent("added_tokens.json").path
        let addedFile = try readJSONObject(addedPath)
        var info: TokenizerInfo
        if let pieces = try? SpiecePieces(bytes: bytes, path: spiecePath) {
            info = try slowInfo(pieces: pieces, config: config, specialMap: specialMap, addedTokensFile: addedFile,
                                folder: folder)
        } else {
            // Not a readable ModelProto: the bytes are handed on as they are and loading the tokenizer reports
            // what is wrong with them (convert warns, tokenize/run fail naming the file).
            info = TokenizerInfo(type: TokenizerInfo.sentencepiece,
                                 extraIds: (config?["extra_ids"] as? NSNumber)?.intValue ?? 100)
        }
        return TokenizerFiles(bytes: bytes, info: info, path: spiecePath)
    }

    /// `TokenizerInfo.model` for a tokenizer.json: `BPE` for a BPE model, nil for Unigram and for bytes that do not
    /// parse (loading the tokenizer then reports what is wrong with them).
    static func modelType(ofTokenizerJSON bytes: [UInt8]) -> String? {
        guard let root = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any],
              let model = root["model"] as? [String: Any], let type = model["type"] as? String,
              type == TokenizerInfo.bpeModel else { return nil }
        return type
    }

    /// The added-token table transformers' `T5Tokenizer.__init__` and `PreTrainedTokenizer.__init__` (4.57) build
    /// from the configuration files, reduced to nil when it is T5's default (pad/eos/unk plus `extra_ids`
    /// sentinels), so such files stay readable by version-1 readers.
    static func slowInfo(pieces: SpiecePieces, config: [String: Any]?, specialMap: [String: Any]?,
                         addedTokensFile: [String: Any]?, folder: String) throws -> TokenizerInfo {
        let extraIds = (config?["extra_ids"] as? NSNumber)?.intValue ?? 100
        guard extraIds >= 0, extraIds <= 1_000_000 else {
            throw FlintError(.invalidConfig, "\(folder)/tokenizer_config.json: extra_ids \(extraIds) is outside 0...1000000")
        }
        let eos = tokenText(config?["eos_token"]) ?? tokenText(specialMap?["eos_token"]) ?? "</s>"
        let unk = tokenText(config?["unk_token"]) ?? tokenText(specialMap?["unk_token"]) ?? "<unk>"
        let pad = tokenText(config?["pad_token"]) ?? tokenText(specialMap?["pad_token"]) ?? "<pad>"
        let sentinels = (0..<extraIds).map { "<extra_id_\($0)>" }
        var additional = tokenList(config?["additional_special_tokens"]) ?? tokenList(specialMap?["additional_special_tokens"])
        let extraTokens: [String]
        if var list = additional {
            let named = list.filter { $0.contains("<extra_id_") }
            if named.isEmpty {
                list += sentinels
                extraTokens = []
            } else {
                guard extraIds == 0 || extraIds == named.count else {
                    throw FlintError(.unsupported, "\(folder)/tokenizer_config.json: extra_ids is \(extraIds) but "
                                     + "additional_special_tokens lists \(named.count) <extra_id_N> tokens "
                                     + "(transformers refuses this too)")
                }
                extraTokens = named
            }
            additional = list
        } else {
            extraTokens = sentinels
            additional = sentinels
        }
        let additionalTokens = additional ?? []

        var table: [Int: AddedTokenInfo] = [:]
        for n in 0..<extraTokens.count {
            let id = pieces.count - 1 + extraIds - n
            table[id] = AddedTokenInfo(id: id, content: "<extra_id_\(n)>", special: true, lstrip: true, rstrip: true)
        }
        if let decoder = config?["added_tokens_decoder"] as? [String: Any] {
            for (key, value) in decoder {
                guard let id = Int(key), id >= 0, let entry = value as? [String: Any],
                      let content = entry["content"] as? String, !content.isEmpty else {
                    throw FlintError(.invalidConfig, "\(folder)/tokenizer_config.json: added_tokens_decoder entry \"\(key)\" needs a "
                                     + "non-negative integer id and a \"content\"")
                }
                func flag(_ name: String, _ fallback: Bool) -> Bool { entry[name] as? Bool ?? fallback }
                let special = flag("special", false)
                table[id] = AddedTokenInfo(id: id, content: content, special: special, lstrip: flag("lstrip", false),
                                           rstrip: flag("rstrip", false), singleWord: flag("single_word", false),
                                           normalized: flag("normalized", !special))
            }
        } else if let added = addedTokensFile {
            let specials = Set([eos, unk, pad] + additionalTokens)
            for (content, value) in added {
                guard let id = (value as? NSNumber)?.intValue, id >= 0, !content.isEmpty else {
                    throw FlintError(.corrupt, "\(folder)/added_tokens.json: \"\(content)\" needs a non-negative integer id")
                }
                table[id] = AddedTokenInfo(id: id, content: content, special: specials.contains(content))
            }
        }
        // Special tokens not yet added get their sentencepiece id, or the next free id.
        var present = Set(table.values.map { $0.content })
        var nextId = max(pieces.count, (table.keys.max() ?? -1) + 1)
        for token in [eos, unk, pad] + additionalTokens where !present.contains(token) {
            let id: Int
            if let pieceId = pieces.id(of: token) {
                id = pieceId
            } else {
                id = nextId
                nextId += 1
            }
            table[id] = AddedTokenInfo(id: id, content: token, special: true)
            present.insert(token)
        }

        var info = TokenizerInfo(type: TokenizerInfo.sentencepiece, extraIds: extraTokens.count)
        let explicit = table.values.sorted { $0.id < $1.id }
        var defaultTable: [AddedTokenInfo] = []
        if eos == "</s>", unk == "<unk>", pad == "<pad>",
           let padId = pieces.id(of: pad), let eosId = pieces.id(of: eos), let unkId = pieces.id(of: unk) {
            defaultTable = [AddedTokenInfo(id: padId, content: pad, special: true),
                            AddedTokenInfo(id: eosId, content: eos, special: true),
                            AddedTokenInfo(id: unkId, content: unk, special: true)]
            defaultTable += (0..<extraTokens.count).map {
                AddedTokenInfo(id: pieces.count + extraTokens.count - 1 - $0, content: "<extra_id_\($0)>",
                               special: true, lstrip: true, rstrip: true)
            }
            defaultTable.sort { $0.id < $1.id }
        }
        let defaultAdditional = (0..<extraTokens.count).map { "<extra_id_\($0)>" }
        if explicit != defaultTable || additionalTokens != defaultAdditional {
            info.addedTokens = explicit
            info.additionalSpecialTokens = additionalTokens
        }
        info.cleanUpTokenizationSpaces = (config?["clean_up_tokenization_spaces"] as? Bool) ?? false
        if info.cleanUpTokenizationSpaces == false { info.cleanUpTokenizationSpaces = nil }
        return info
    }

    /// CodeT5's layout: `RobertaTokenizer` files (vocab.json + merges.txt, no tokenizer.json). AutoTokenizer loads
    /// them as `RobertaTokenizerFast`, converted by transformers' `RobertaConverter`; this builds the same
    /// tokenizer.json (BPE with empty subword prefix and suffix, ByteLevel pre-tokenizer with the folder's
    /// `add_prefix_space`, ByteLevel decoder, RobertaProcessing `cls` A `sep`) and the added tokens the tokenizer
    /// ends up with: `added_tokens_decoder` when tokenizer_config.json has it (transformers ≥ 4.34), else the special
    /// tokens (`<mask>` stripping on its left, as RobertaTokenizer makes it), `added_tokens.json` and
    /// `additional_special_tokens`. Nil unless the class is RobertaTokenizer(Fast) and both files are there.
    static func robertaBPE(inFolder folder: String, tokenizerClass: String?, config: [String: Any]?) throws -> TokenizerFiles? {
        guard tokenizerClass == "RobertaTokenizer" || tokenizerClass == "RobertaTokenizerFast" else { return nil }
        let url = URL(fileURLWithPath: folder)
        let vocabPath = url.appendingPathComponent("vocab.json").path
        let mergesPath = url.appendingPathComponent("merges.txt").path
        guard FileManager.default.fileExists(atPath: vocabPath), FileManager.default.fileExists(atPath: mergesPath) else {
            return nil
        }
        guard let vocabObject = try readJSONObject(vocabPath) else { return nil }
        guard !vocabObject.isEmpty else { throw FlintError(.corrupt, "\(vocabPath): no vocabulary entries") }
        var vocab: [String: Int] = [:]
        for (token, value) in vocabObject {
            guard let id = (value as? NSNumber)?.intValue, id >= 0 else {
                throw FlintError(.corrupt, "\(vocabPath): \"\(token)\" has no non-negative integer id")
            }
            vocab[token] = id
        }
        // RobertaTokenizer: `read().split("\n")[1:-1]` (the first line is the "#version" header, the last the
        // text after the final newline), each line split at whitespace; a pair listed again keeps its first place.
        let lines = String(decoding: try readFile(mergesPath), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        var merges: [[String]] = []
        var seen: Set<[String]> = []
        for (index, line) in lines.dropFirst().dropLast().enumerated() {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard parts.count == 2 else {
                throw FlintError(.corrupt, "\(mergesPath): line \(index + 2) \"\(line)\" is not two tokens")
            }
            if seen.insert(parts).inserted { merges.append(parts) }
        }
        let specialMap = try readJSONObject(url.appendingPathComponent("special_tokens_map.json").path)
        let addedFile = try readJSONObject(url.appendingPathComponent("added_tokens.json").path)
        func special(_ key: String, _ fallback: String) -> String {
            tokenText(config?[key]) ?? tokenText(specialMap?[key]) ?? fallback
        }
        let cls = special("cls_token", "<s>"), sep = special("sep_token", "</s>")
        var added: [(id: Int, content: String, flags: [String: Bool])] = []
        if let decoder = config?["added_tokens_decoder"] as? [String: Any] {
            for (key, value) in decoder {
                guard let id = Int(key), let entry = value as? [String: Any], let content = entry["content"] as? String else {
                    throw FlintError(.corrupt, "\(folder)/tokenizer_config.json: added_tokens_decoder[\"\(key)\"] needs an integer id and a content")
                }
                var flags: [String: Bool] = [:]
                for flag in ["lstrip", "rstrip", "single_word", "normalized", "special"] { flags[flag] = entry[flag] as? Bool ?? false }
                added.append((id, content, flags))
            }
        } else {
            let addedIds = (addedFile ?? [:]).compactMapValues { ($0 as? NSNumber)?.intValue }
            let additional = tokenList(config?["additional_special_tokens"]) ?? tokenList(specialMap?["additional_special_tokens"]) ?? []
            var nextId = max(vocab.values.max() ?? -1, addedIds.values.max() ?? -1) + 1
            func add(_ content: String, special: Bool, lstrip: Bool = false) {
                guard !added.contains(where: { $0.content == content }) else { return }
                let id: Int
                if let known = vocab[content] ?? addedIds[content] {
                    id = known
                } else {
                    id = nextId
                    nextId += 1
                }
                added.append((id, content, ["lstrip": lstrip, "rstrip": false, "single_word": false,
                                            "normalized": !special, "special": special]))
            }
            for (key, fallback) in [("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"), ("sep_token", "</s>"),
                                    ("pad_token", "<pad>"), ("cls_token", "<s>"), ("mask_token", "<mask>")] {
                add(special(key, fallback), special: true, lstrip: key == "mask_token")
            }
            for token in additional { add(token, special: true) }
            for (token, _) in addedIds.sorted(by: { $0.value < $1.value }) { add(token, special: false) }
        }
        added.sort { $0.id < $1.id }
        func id(_ token: String) throws -> Int {
            if let id = added.first(where: { $0.content == token })?.id ?? vocab[token] { return id }
            throw FlintError(.corrupt, "\(vocabPath): the tokenizer's \"\(token)\" has no id")
        }
        let addPrefixSpace = config?["add_prefix_space"] as? Bool ?? false
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": addPrefixSpace, "trim_offsets": true, "use_regex": true]
        let object: [String: Any] = [
            "version": "1.0",
            "added_tokens": added.map { token -> [String: Any] in
                var entry: [String: Any] = ["id": token.id, "content": token.content]
                for (flag, value) in token.flags { entry[flag] = value }
                return entry
            },
            "normalizer": NSNull(),
            "pre_tokenizer": byteLevel,
            "post_processor": ["type": "RobertaProcessing", "sep": [sep, try id(sep)], "cls": [cls, try id(cls)],
                               "trim_offsets": true, "add_prefix_space": addPrefixSpace],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges],
        ]
        let bytes = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        var info = TokenizerInfo(type: TokenizerInfo.tokenizersJSON, extraIds: 0)
        info.model = TokenizerInfo.bpeModel
        info.cleanUpTokenizationSpaces = (config?["clean_up_tokenization_spaces"] as? Bool) ?? false
        return TokenizerFiles(bytes: bytes, info: info, path: vocabPath)
    }

    /// For a folder `discover` finds no tokenizer in: the tokenizer class its files name (`tokenizer_config.json`'s
    /// `tokenizer_class`, else `config.json`'s) when it is not one Flint implements, with the vocabulary files present
    /// — e.g. CodeT5's `RobertaTokenizer` (vocab.json + merges.txt). Nil when no class is named.
    public static func unreadableTokenizerDescription(inFolder folder: String) -> String? {
        let url = URL(fileURLWithPath: folder)
        func object(_ name: String) -> [String: Any]? { (try? readJSONObject(url.appendingPathComponent(name).path)) ?? nil }
        let fromTokenizerConfig = object("tokenizer_config.json")?["tokenizer_class"] as? String
        guard let name = fromTokenizerConfig ?? object("config.json")?["tokenizer_class"] as? String,
              !["T5Tokenizer", "T5TokenizerFast", "MT5Tokenizer", "MT5TokenizerFast", "ByT5Tokenizer"].contains(name) else {
            return nil
        }
        let files = ["vocab.json", "merges.txt", "vocab.txt", "sentencepiece.bpe.model", "tokenizer.model"]
            .filter { FileManager.default.fileExists(atPath: url.appendingPathComponent($0).path) }
        return "\(fromTokenizerConfig != nil ? "tokenizer_config.json" : "config.json") names \(name)"
            + (files.isEmpty ? "" : " (\(files.joined(separator: ", ")))") + ", which Flint does not implement (it reads "
            + "T5Tokenizer's spiece.model, a Unigram or BPE tokenizer.json, and ByT5Tokenizer)"
    }

    /// The added-token table transformers' `ByT5Tokenizer` (4.57) ends up with after `from_pretrained(folder)`:
    ///  1. pad / eos / unk (`<pad>`, `</s>`, `<unk>` unless the files name others) at ids 0, 1, 2, stripping both
    ///     sides; `additional_special_tokens` default to `<extra_id_0>` … `<extra_id_{extra_ids-1}>` (extra_ids 125);
    ///  2. a saved `added_tokens_decoder` overrides entries by id; without one (files written before transformers
    ///     4.34, as google/byt5-*'s) `special_tokens_map.json` overrides the token names and `added_tokens.json`
    ///     adds its tokens (no stripping);
    ///  3. every special token not yet present is added at the next id (`len(tokenizer)`), in the order eos, unk,
    ///     pad, then the additional ones, special and not stripped.
    static func byt5Info(config: [String: Any]?, specialMap: [String: Any]?, addedTokensFile: [String: Any]?,
                         folder: String) throws -> TokenizerInfo {
        let configFile = "\(folder)/tokenizer_config.json"
        for key in ["bos_token", "sep_token", "cls_token", "mask_token"] where tokenText(config?[key]) != nil {
            throw FlintError(.unsupported, "\(configFile): ByT5Tokenizer with a \(key) is not supported (ByT5 has only pad, eos, "
                             + "unk and additional special tokens)")
        }
        let extraIds = (config?["extra_ids"] as? NSNumber)?.intValue ?? 125
        guard extraIds >= 0, extraIds <= 1_000_000 else {
            throw FlintError(.invalidConfig, "\(configFile): extra_ids \(extraIds) is outside 0...1000000")
        }
        let decoder = config?["added_tokens_decoder"] as? [String: Any]
        // Legacy files: special_tokens_map.json's names replace tokenizer_config.json's; its additional tokens are
        // appended to the config's.
        let legacyMap = decoder == nil ? specialMap : nil
        func name(_ key: String, _ fallback: String) -> String {
            tokenText(legacyMap?[key]) ?? tokenText(config?[key]) ?? fallback
        }
        let pad = name("pad_token", "<pad>"), eos = name("eos_token", "</s>"), unk = name("unk_token", "<unk>")
        var additional = tokenList(config?["additional_special_tokens"])
        if let extra = tokenList(legacyMap?["additional_special_tokens"]) {
            var list = additional ?? []
            for token in extra where !list.contains(token) { list.append(token) }
            additional = list
        }
        if extraIds > 0 {
            if additional == nil {
                additional = (0..<extraIds).map { "<extra_id_\($0)>" }
            } else if let list = additional, !list.isEmpty {
                let named = Set(list.filter { $0.contains("extra_id") }).count
                guard named == extraIds else {
                    throw FlintError(.unsupported, "\(configFile): extra_ids is \(extraIds) but additional_special_tokens lists "
                                     + "\(named) extra_id tokens (transformers' ByT5Tokenizer refuses this too)")
                }
            }
        }
        let additionalTokens = additional ?? []

        var table: [Int: AddedTokenInfo] = [
            0: AddedTokenInfo(id: 0, content: pad, special: true, lstrip: true, rstrip: true, normalized: true),
            1: AddedTokenInfo(id: 1, content: eos, special: true, lstrip: true, rstrip: true, normalized: true),
            2: AddedTokenInfo(id: 2, content: unk, special: true, lstrip: true, rstrip: true, normalized: true),
        ]
        if let decoder {
            for (key, value) in decoder {
                guard let id = Int(key), id >= 0, id < Int(Int32.max), let entry = value as? [String: Any],
                      let content = entry["content"] as? String, !content.isEmpty else {
                    throw FlintError(.invalidConfig, "\(configFile): added_tokens_decoder entry \"\(key)\" needs an id in 0..<2^31 and "
                                     + "a non-empty \"content\"")
                }
                func flag(_ name: String, _ fallback: Bool) -> Bool { entry[name] as? Bool ?? fallback }
                table[id] = AddedTokenInfo(id: id, content: content, special: flag("special", false), lstrip: flag("lstrip", false),
                                           rstrip: flag("rstrip", false), singleWord: flag("single_word", false),
                                           normalized: flag("normalized", true))
            }
        } else if let added = addedTokensFile {
            let specials = Set([eos, unk, pad] + additionalTokens)
            for (content, value) in added {
                guard let id = (value as? NSNumber)?.intValue, id >= 0, id < Int(Int32.max), !content.isEmpty else {
                    throw FlintError(.corrupt, "\(folder)/added_tokens.json: \"\(content)\" needs an id in 0..<2^31")
                }
                let special = specials.contains(content)
                table[id] = AddedTokenInfo(id: id, content: content, special: special, normalized: !special)
            }
        }
        // `get_vocab()` as `_add_tokens` sees it: ids 0..<259 (added tokens or the byte characters), then the
        // added tokens; a new token gets the next id after all of them.
        var vocabulary: [String: Int] = [:]
        for id in 0..<259 { vocabulary[table[id]?.content ?? String(Unicode.Scalar(UInt8(id < 3 ? 0 : id - 3)))] = id }
        for token in table.values { vocabulary[token.content] = token.id }
        var nextId = vocabulary.count
        var present = Set(table.values.map(\.content))
        for token in [eos, unk, pad] + additionalTokens where !present.contains(token) {
            let id: Int
            if let existing = vocabulary[token] {
                id = existing
            } else {
                id = nextId
                nextId += 1
                vocabulary[token] = id
            }
            table[id] = AddedTokenInfo(id: id, content: token, special: true, normalized: false)
            present.insert(token)
        }
        var info = TokenizerInfo(type: TokenizerInfo.byt5, extraIds: 0)
        info.addedTokens = table.values.sorted { $0.id < $1.id }
        info.additionalSpecialTokens = additionalTokens
        let contents = Set(table.values.map(\.content))
        info.extraIds = (0...).prefix(while: { contents.contains("<extra_id_\($0)>") }).count
        info.cleanUpTokenizationSpaces = (config?["clean_up_tokenization_spaces"] as? Bool) == true ? true : nil
        return info
    }

    /// A JSON object file, or nil when the file does not exist.
    static func readJSONObject(_ path: String) throws -> [String: Any]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let bytes = try readFile(path)
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw FlintError(.corrupt, "\(path): not a JSON object")
        }
        return object
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        if let size = (attributes?[.size] as? NSNumber)?.intValue, size > maximumFileSize {
            throw FlintError(.corrupt, "\(path): \(size) bytes is too large for a tokenizer file (limit \(maximumFileSize) bytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw FlintError(.io, "\(path): cannot read") }
        return [UInt8](data)
    }
}

/// The piece strings of a `spiece.model` (a protobuf ModelProto: field 1 repeated SentencePiece, whose field 1 is
/// the piece), enough to look up which ids special tokens have without loading sentencepiece here.
struct SpiecePieces {
    private var ids: [String: Int] = [:]
    let count: Int

    init(bytes: [UInt8], path: String) throws {
        var reader = ProtoReader(bytes: bytes[...])
        var index = 0
        while let (field, wire) = try reader.nextKey(path) {
            if field == 1 && wire == 2 {
                var piece = ProtoReader(bytes: try reader.lengthDelimited(path))
                while let (pfield, pwire) = try piece.nextKey(path) {
                    if pfield == 1 && pwire == 2 {
                        let text = String(decoding: try piece.lengthDelimited(path), as: UTF8.self)
                        if ids[text] == nil { ids[text] = index }
                    } else {
                        try piece.skip(pwire, path)
                    }
                }
                index += 1
            } else {
                try reader.skip(wire, path)
            }
        }
        count = index
    }

    func id(of piece: String) -> Int? { ids[piece] }
}

/// Minimal protobuf wire reader (varints, length-delimited fields, skipping the rest).
struct ProtoReader {
    var bytes: ArraySlice<UInt8>

    mutating func varint(_ path: String) throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte = bytes.first, shift < 64 else {
                throw FlintError(.corrupt, "\(path): truncated or malformed protobuf varint (not a sentencepiece model)")
            }
            bytes = bytes.dropFirst()
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
    }

    mutating func nextKey(_ path: String) throws -> (Int, Int)? {
        if bytes.isEmpty { return nil }
        let key = try varint(path)
        return (Int(key >> 3), Int(key & 7))
    }

    mutating func lengthDelimited(_ path: String) throws -> ArraySlice<UInt8> {
        let length = try varint(path)
        guard length <= UInt64(bytes.count) else {
            throw FlintError(.corrupt, "\(path): protobuf field runs past the end of the file (not a sentencepiece model)")
        }
        let value = bytes.prefix(Int(length))
        bytes = bytes.dropFirst(Int(length))
        return value
    }

    mutating func skip(_ wire: Int, _ path: String) throws {
        switch wire {
        case 0: _ = try varint(path)
        case 1: guard bytes.count >= 8 else { throw FlintError(.corrupt, "\(path): truncated protobuf") }; bytes = bytes.dropFirst(8)
        case 2: _ = try lengthDelimited(path)
        case 5: guard bytes.count >= 4 else { throw FlintError(.corrupt, "\(path): truncated protobuf") }; bytes = bytes.dropFirst(4)
        default: throw FlintError(.corrupt, "\(path): protobuf wire type \(wire) is not valid (not a sentencepiece model)")
        }
    }
}
