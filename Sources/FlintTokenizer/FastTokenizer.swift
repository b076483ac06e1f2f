import FlintFormat
import Foundation

/// A Hugging Face fast tokenizer read from `tokenizer.json`, giving the ids, tokens and decoded text that the
/// `tokenizers` library (0.22) gives for the same file, as `T5TokenizerFast` / `AutoTokenizer` use it.
///
/// The pipeline, as `tokenizers` runs it (tokenizer/mod.rs `encode_single_sequence`):
/// 1. added tokens with `normalized: false` are cut out of the raw text (leftmost-longest match, with their
///    `single_word`, `lstrip`, `rstrip` rules);
/// 2. each remaining stretch is normalized, and added tokens with `normalized: true` are cut out of the
///    normalized text (matched against their own normalized form);
/// 3. the stretches left are pre-tokenized and each pre-token is segmented by the model (Unigram Viterbi, or BPE
///    merges);
/// 4. the post-processor (TemplateProcessing, RobertaProcessing, …) adds the special tokens around the sequence.
/// Decoding maps ids to token strings (added tokens first), drops special ones when asked, runs the decoder chain
/// and joins; transformers then applies `clean_up_tokenization` when the tokenizer config asks for it.
///
/// Supported components are those T5, FLAN-T5, mT5, UMT5, CodeT5 (byte-level BPE) and Pile-T5 (LLaMA-style BPE)
/// files use, plus a few simple neighbours (see the
/// `Normalizer`, `PreTokenizer` and `Decoder` cases); anything else is refused when the file is loaded, naming the
/// component, rather than tokenized differently.
final class FastTokenizer: @unchecked Sendable {
    struct AddedToken: Sendable, Equatable {
        var id: Int
        var content: String
        var singleWord: Bool
        var lstrip: Bool
        var rstrip: Bool
        var normalized: Bool
        var special: Bool
    }

    /// One token of an encoding: its id and the text it covers (as `Encoding.tokens`).
    struct Token {
        var id: Int
        var value: String
    }

    let addedTokens: [AddedToken]
    let cleanUpTokenizationSpaces: Bool
    /// `len(tokenizer)`: distinct token strings of the vocabulary and the added tokens.
    let count: Int

    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let model: TokenizerModel
    private let decoder: Decoder?
    private let prefix: [Token]
    private let suffix: [Token]
    private let addedById: [Int: AddedToken]
    private let addedByContent: [String: AddedToken]
    private let specialContents: Set<String>
    /// Patterns matched on the raw text (`normalized: false`) and on normalized text (`normalized: true`).
    private let rawPatterns: PatternSet
    private let normalizedPatterns: PatternSet

    /// Parses `tokenizer.json` bytes. `cleanUpTokenizationSpaces` comes from `tokenizer_config.json`.
    init(json bytes: [UInt8], cleanUpTokenizationSpaces: Bool = false) throws {
        let root: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Data(Self.escapingByteOrderMarks(bytes))) as? [String: Any] else {
                throw FlintError(.corrupt, "tokenizer.json: the top level is not a JSON object")
            }
            root = object
        } catch let error as FlintError {
            throw error
        } catch {
            throw FlintError(.corrupt, "tokenizer.json: not valid JSON (\(bytes.count) bytes)")
        }
        guard let modelObject = root["model"] as? [String: Any] else {
            throw FlintError(.corrupt, "tokenizer.json: missing \"model\"")
        }
        model = try TokenizerModel(modelObject)
        normalizer = try Self.optional(root["normalizer"]).map(Normalizer.init)
        preTokenizer = try Self.optional(root["pre_tokenizer"]).map(PreTokenizer.init)
        decoder = try Self.optional(root["decoder"]).map(Decoder.init)

        var added: [AddedToken] = []
        if let list = root["added_tokens"] as? [Any] {
            for (index, item) in list.enumerated() {
                guard let entry = item as? [String: Any], let id = (entry["id"] as? NSNumber)?.intValue,
                      let content = entry["content"] as? String, id >= 0 else {
                    throw FlintError(.corrupt, "tokenizer.json: added_tokens[\(index)] needs an \"id\" and a \"content\"")
                }
                func flag(_ key: String, _ fallback: Bool) -> Bool { (entry[key] as? Bool) ?? fallback }
                let special = flag("special", false)
                added.append(AddedToken(id: id, content: content, singleWord: flag("single_word", false),
                                        lstrip: flag("lstrip", false), rstrip: flag("rstrip", false),
                                        normalized: flag("normalized", !special), special: special))
            }
        } else if root["added_tokens"] != nil && !(root["added_tokens"] is NSNull) {
            throw FlintError(.corrupt, "tokenizer.json: \"added_tokens\" is not a list")
        }
        addedTokens = added
        var byId: [Int: AddedToken] = [:]
        var byContent: [String: AddedToken] = [:]
        var specials: Set<String> = []
        for token in added where !token.content.isEmpty {
            byId[token.id] = token
            byContent[token.content] = token
            if token.special { specials.insert(token.content) }
        }
        addedById = byId
        addedByContent = byContent
        specialContents = specials
        var raw: [(pattern: [Unicode.Scalar], id: Int)] = []
        var normalizedList: [(pattern: [Unicode.Scalar], id: Int)] = []
        for token in byId.values.sorted(by: { $0.id < $1.id }) {
            if token.normalized {
                let pattern = normalizer?.normalize(token.content) ?? token.content
                normalizedList.append((Array(pattern.unicodeScalars), token.id))
            } else {
                raw.append((Array(token.content.unicodeScalars), token.id))
            }
        }
        rawPatterns = PatternSet(raw)
        normalizedPatterns = PatternSet(normalizedList)

        var contents = Set(model.pieces)
        for token in added where !token.content.isEmpty { contents.insert(token.content) }
        count = contents.count
        self.cleanUpTokenizationSpaces = cleanUpTokenizationSpaces

        (prefix, suffix) = try Self.parseTemplate(Self.optional(root["post_processor"]))
    }

    /// The JSON with every U+FEFF inside it written as the escape `\ufeff`: Foundation's JSONSerialization on Linux
    /// drops a raw U+FEFF at the start of a string (a vocabulary entry "\u{FEFF}" became ""), and an escaped one
    /// means the same character. A U+FEFF starting the document is a byte-order mark and stays.
    static func escapingByteOrderMarks(_ bytes: [UInt8]) -> [UInt8] {
        let mark: [UInt8] = [0xEF, 0xBB, 0xBF]
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        if bytes.starts(with: mark) {
            out += mark
            i = 3
        }
        while i < bytes.count {
            if bytes[i] == 0xEF, i + 2 < bytes.count, bytes[i + 1] == 0xBB, bytes[i + 2] == 0xBF {
                out += Array("\\ufeff".utf8)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    private static func optional(_ value: Any?) -> [String: Any]? {
        value as? [String: Any]
    }

    // MARK: - Ids

    /// The token string of an id (added tokens first), or nil for ids the tokenizer does not have.
    func idToToken(_ id: Int) -> String? {
        if let token = addedById[id] { return token.content }
        return model.piece(id)
    }

    /// The id of a token string (added tokens first), or nil.
    func tokenToId(_ token: String) -> Int? {
        if let added = addedByContent[token] { return added.id }
        return model.id(of: token)
    }

    func isSpecial(_ token: String) -> Bool { specialContents.contains(token) }

    /// Entries of the model's vocabulary (without added tokens beyond it).
    var modelVocabularySize: Int { model.pieces.count }

    // MARK: - Encoding

    /// The tokens of a text; with `addSpecialTokens`, the post-processor's tokens around them.
    func encode(_ text: String, addSpecialTokens: Bool) -> [Token] {
        var tokens: [Token] = []
        for piece in extractAndNormalize(text) {
            if let id = piece.addedId {
                tokens.append(Token(id: id, value: piece.text))
                continue
            }
            let preTokens = preTokenizer?.split(piece.text, atStart: piece.atStart) ?? [piece.text]
            for preToken in preTokens where !preToken.isEmpty {
                tokens.append(contentsOf: model.tokenize(preToken))
            }
        }
        if addSpecialTokens { tokens = prefix + tokens + suffix }
        return tokens
    }

    private struct Piece {
        var text: String
        var addedId: Int?
        /// The piece starts at offset 0 of the original text (Metaspace's `first` scheme looks at this).
        var atStart: Bool
    }

    /// `AddedVocabulary::extract_and_normalize`.
    private func extractAndNormalize(_ text: String) -> [Piece] {
        var pieces: [Piece] = []
        for first in split(Array(text.unicodeScalars), rawPatterns, atStart: true) {
            if first.addedId != nil {
                pieces.append(first)
                continue
            }
            let normalized = normalizer?.normalize(first.text) ?? first.text
            for second in split(Array(normalized.unicodeScalars), normalizedPatterns, atStart: first.atStart) {
                pieces.append(second)
            }
        }
        return pieces
    }

    /// `AddedVocabulary::find_matches`: leftmost-longest matches, filtered and widened by the token's flags.
    /// Empty stretches are dropped (as `PreTokenizedString::split` drops empty splits).
    private func split(_ s: [Unicode.Scalar], _ patterns: PatternSet, atStart: Bool) -> [Piece] {
        if s.isEmpty { return [] }
        func text(_ range: Range<Int>) -> String {
            var out = String.UnicodeScalarView()
            out.append(contentsOf: s[range])
            return String(out)
        }
        var pieces: [Piece] = []
        var startOffset = 0
        var position = 0
        while position < s.count {
            guard let match = patterns.longestMatch(s, at: position) else {
                position += 1
                continue
            }
            var start = position
            var stop = position + match.length
            position = stop
            let token = addedById[match.id]!
            if token.singleWord {
                let startSpace = start == 0 || !CharacterClass.isWord(s[start - 1])
                let stopSpace = stop == s.count || !CharacterClass.isWord(s[stop])
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip {
                var newStart = start
                while newStart > 0 && CharacterClass.isWhitespace(s[newStart - 1]) { newStart -= 1 }
                start = max(newStart, startOffset)
            }
            if token.rstrip {
                while stop < s.count && CharacterClass.isWhitespace(s[stop]) { stop += 1 }
                position = stop
            }
            if startOffset < start {
                pieces.append(Piece(text: text(startOffset..<start), addedId: nil, atStart: atStart && startOffset == 0))
            }
            pieces.append(Piece(text: text(start..<stop), addedId: token.id, atStart: atStart && start == 0))
            startOffset = stop
        }
        if startOffset < s.count {
            pieces.append(Piece(text: text(startOffset..<s.count), addedId: nil, atStart: atStart && startOffset == 0))
        }
        return pieces
    }

    // MARK: - Decoding

    /// `Tokenizer::decode`, then transformers' `clean_up_tokenization` when configured. Unknown ids are dropped.
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var tokens: [String] = []
        for id in ids {
            guard let token = idToToken(id) else { continue }
            if skipSpecialTokens && specialContents.contains(token) { continue }
            tokens.append(token)
        }
        let text = decoder?.decode(tokens) ?? tokens.joined(separator: " ")
        return cleanUpTokenizationSpaces ? Self.cleanUpTokenization(text) : text
    }

    /// transformers' `PreTrainedTokenizerBase.clean_up_tokenization`.
    static func cleanUpTokenization(_ text: String) -> String {
        var out = text
        for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            out = out.replacingOccurrences(of: from, with: to)
        }
        return out
    }

    // MARK: - Post-processor

    /// The special tokens the post-processor puts before and after a single sequence: TemplateProcessing (T5),
    /// RobertaProcessing / BertProcessing (`cls` A `sep`, CodeT5), ByteLevel (offsets only), or a Sequence of them.
    private static func parseTemplate(_ object: [String: Any]?) throws -> ([Token], [Token]) {
        guard let object else { return ([], []) }
        let type = object["type"] as? String ?? "?"
        switch type {
        case "TemplateProcessing":
            break
        case "RobertaProcessing", "BertProcessing":
            func token(_ key: String) throws -> Token {
                guard let pair = object[key] as? [Any], pair.count == 2, let value = pair[0] as? String,
                      let id = (pair[1] as? NSNumber)?.intValue else {
                    throw FlintError(.corrupt, "tokenizer.json: \(type) needs \"\(key)\" as [token, id]")
                }
                return Token(id: id, value: value)
            }
            return ([try token("cls")], [try token("sep")])
        case "ByteLevel":
            return ([], [])
        case "Sequence":
            guard let list = object["processors"] as? [[String: Any]] else {
                throw FlintError(.corrupt, "tokenizer.json: post_processor Sequence without \"processors\"")
            }
            // Each processor wraps what the ones before it produced.
            var prefix: [Token] = [], suffix: [Token] = []
            for item in list {
                let (before, after) = try parseTemplate(item)
                prefix = before + prefix
                suffix += after
            }
            return (prefix, suffix)
        default:
            throw FlintError(.unsupported, "tokenizer.json: post_processor \"\(type)\" is not supported (TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel and Sequence are)")
        }
        guard let single = object["single"] as? [Any] else {
            throw FlintError(.corrupt, "tokenizer.json: TemplateProcessing without a \"single\" template")
        }
        let specials = object["special_tokens"] as? [String: Any] ?? [:]
        var prefix: [Token] = [], suffix: [Token] = []
        var seenSequence = false
        for item in single {
            guard let entry = item as? [String: Any] else { throw FlintError(.corrupt, "tokenizer.json: bad TemplateProcessing item") }
            if entry["Sequence"] != nil {
                guard !seenSequence else { throw FlintError(.corrupt, "tokenizer.json: TemplateProcessing names the sequence twice") }
                seenSequence = true
            } else if let special = entry["SpecialToken"] as? [String: Any], let name = special["id"] as? String {
                guard let definition = specials[name] as? [String: Any],
                      let ids = definition["ids"] as? [NSNumber], let tokens = definition["tokens"] as? [String],
                      ids.count == tokens.count else {
                    throw FlintError(.corrupt, "tokenizer.json: TemplateProcessing special token \"\(name)\" is not defined")
                }
                let list = zip(ids, tokens).map { Token(id: $0.0.intValue, value: $0.1) }
                if seenSequence { suffix += list } else { prefix += list }
            } else {
                throw FlintError(.corrupt, "tokenizer.json: bad TemplateProcessing item")
            }
        }
        return (prefix, suffix)
    }
}

// MARK: - Models

/// The `model` of a `tokenizer.json`: Unigram (T5, mT5, UMT5) or BPE (CodeT5's byte-level BPE, LLaMA-style BPE
/// with byte fallback as Pile-T5 has it).
enum TokenizerModel: Sendable {
    case unigram(UnigramModel)
    case bpe(BPEModel)

    init(_ object: [String: Any]) throws {
        let type = object["type"] as? String ?? "?"
        switch type {
        case "Unigram": self = .unigram(try UnigramModel(object))
        case "BPE": self = .bpe(try BPEModel(object))
        default:
            throw FlintError(.unsupported, "tokenizer.json: model \"\(type)\" is not supported (Unigram and BPE are)")
        }
    }

    var pieces: [String] {
        switch self {
        case .unigram(let model): return model.pieces
        case .bpe(let model): return model.pieces
        }
    }

    func piece(_ id: Int) -> String? {
        switch self {
        case .unigram(let model): return model.piece(id)
        case .bpe(let model): return model.piece(id)
        }
    }

    func id(of piece: String) -> Int? {
        switch self {
        case .unigram(let model): return model.id(of: piece)
        case .bpe(let model): return model.id(of: piece)
        }
    }

    func tokenize(_ text: String) -> [FastTokenizer.Token] {
        switch self {
        case .unigram(let model): return model.tokenize(text)
        case .bpe(let model): return model.tokenize(text)
        }
    }
}

// MARK: - Character classes (Rust's char::is_whitespace and regex \w)

enum CharacterClass {
    /// Unicode White_Space, as Rust's `char::is_whitespace` and regex `\s`.
    static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// Rust regex's Unicode `\w`: Alphabetic, marks, decimal numbers, connector punctuation, join controls.
    static func isWord(_ c: Unicode.Scalar) -> Bool {
        let p = c.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

// MARK: - Added-token patterns

/// Patterns with ids, matched longest-first at a position (the leftmost-longest rule when scanned left to right).
struct PatternSet {
    private var byFirst: [Unicode.Scalar: [(pattern: [Unicode.Scalar], id: Int)]] = [:]

    init(_ patterns: [(pattern: [Unicode.Scalar], id: Int)]) {
        for p in patterns where !p.pattern.isEmpty { byFirst[p.pattern[0], default: []].append(p) }
        for key in byFirst.keys { byFirst[key]!.sort { $0.pattern.count > $1.pattern.count } }
    }

    var isEmpty: Bool { byFirst.isEmpty }

    func longestMatch(_ s: [Unicode.Scalar], at start: Int) -> (length: Int, id: Int)? {
        guard let candidates = byFirst[s[start]] else { return nil }
        for candidate in candidates where candidate.pattern.count <= s.count - start {
            var equal = true
            for k in 1..<max(candidate.pattern.count, 1) where s[start + k] != candidate.pattern[k] {
                equal = false
                break
            }
            if equal { return (candidate.pattern.count, candidate.id) }
        }
        return nil
    }
}

// MARK: - Normalizers

indirect enum Normalizer {
    case sequence([Normalizer])
    case precompiled(PrecompiledCharsmap)
    case replace(pattern: ReplacePattern, content: String)
    case strip(left: Bool, right: Bool)
    case prepend(String)
    case unicode(UnicodeForm)
    case lowercase

    enum UnicodeForm { case nfc, nfd, nfkc, nfkd }

    init(_ object: [String: Any]) throws {
        let type = object["type"] as? String ?? "?"
        switch type {
        case "Sequence":
            guard let list = object["normalizers"] as? [[String: Any]] else {
                throw FlintError(.corrupt, "tokenizer.json: normalizer Sequence without \"normalizers\"")
            }
            self = .sequence(try list.map(Normalizer.init))
        case "Precompiled":
            guard let base64 = object["precompiled_charsmap"] as? String else {
                // tokenizers writes null for a model without a charsmap: nothing to do.
                self = .sequence([])
                return
            }
            guard let data = Data(base64Encoded: base64) else {
                throw FlintError(.corrupt, "tokenizer.json: Precompiled precompiled_charsmap is not valid base64")
            }
            do {
                self = .precompiled(try PrecompiledCharsmap(blob: [UInt8](data)))
            } catch let error as FlintError {
                throw error.with(message: "tokenizer.json: normalizer \(error.message)")
            }
        case "Replace":
            self = .replace(pattern: try ReplacePattern(object["pattern"], where: "normalizer Replace"),
                            content: object["content"] as? String ?? "")
        case "Strip":
            self = .strip(left: object["strip_left"] as? Bool ?? false, right: object["strip_right"] as? Bool ?? false)
        case "Prepend":
            self = .prepend(object["prepend"] as? String ?? "")
        case "NFC": self = .unicode(.nfc)
        case "NFD": self = .unicode(.nfd)
        case "NFKC": self = .unicode(.nfkc)
        case "NFKD": self = .unicode(.nfkd)
        case "Lowercase": self = .lowercase
        default:
            throw FlintError(.unsupported, "tokenizer.json: normalizer \"\(type)\" is not supported")
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .sequence(let list):
            return list.reduce(text) { $1.normalize($0) }
        case .precompiled(let charsmap):
            return charsmap.normalize(text)
        case .replace(let pattern, let content):
            return pattern.replaceAll(in: text, with: content)
        case .strip(let left, let right):
            var scalars = Array(text.unicodeScalars)[...]
            if left { while let c = scalars.first, CharacterClass.isWhitespace(c) { scalars = scalars.dropFirst() } }
            if right { while let c = scalars.last, CharacterClass.isWhitespace(c) { scalars = scalars.dropLast() } }
            var out = String.UnicodeScalarView()
            out.append(contentsOf: scalars)
            return String(out)
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case .unicode(let form):
            switch form {
            case .nfc: return text.precomposedStringWithCanonicalMapping
            case .nfd: return text.decomposedStringWithCanonicalMapping
            case .nfkc: return text.precomposedStringWithCompatibilityMapping
            case .nfkd: return text.decomposedStringWithCompatibilityMapping
            }
        case .lowercase:
            return text.lowercased()
        }
    }
}

/// A `Replace` pattern: `{"String": ...}` or `{"Regex": ...}` (the regexes T5 files use, such as `" {2,}"`, mean
/// the same in ICU as in Oniguruma).
enum ReplacePattern {
    case string(String)
    case regex(NSRegularExpression)

    init(_ value: Any?, where place: String) throws {
        guard let object = value as? [String: Any] else {
            throw FlintError(.corrupt, "tokenizer.json: \(place) has no pattern")
        }
        if let string = object["String"] as? String {
            self = .string(string)
        } else if let source = object["Regex"] as? String {
            do {
                self = .regex(try NSRegularExpression(pattern: source))
            } catch {
                throw FlintError(.corrupt, "tokenizer.json: \(place) regex \"\(source)\" cannot be compiled")
            }
        } else {
            throw FlintError(.corrupt, "tokenizer.json: \(place) pattern must be {\"String\": …} or {\"Regex\": …}")
        }
    }

    func replaceAll(in text: String, with content: String) -> String {
        switch self {
        case .string(let s):
            return s.isEmpty ? text : text.replacingOccurrences(of: s, with: content)
        case .regex(let regex):
            let ns = text as NSString
            var out = ""
            var last = 0
            for match in regex.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
                if match.range.length == 0 { continue }
                out += ns.substring(with: NSRange(location: last, length: match.range.location - last))
                out += content
                last = match.range.location + match.range.length
            }
            out += ns.substring(from: last)
            return out
        }
    }
}

// MARK: - Pre-tokenizers

indirect enum PreTokenizer {
    case sequence([PreTokenizer])
    case whitespaceSplit
    case metaspace(replacement: Unicode.Scalar, scheme: PrependScheme, split: Bool)
    /// GPT-2's byte-level pre-tokenizer: an optional leading space, the GPT-2 split pattern, then every UTF-8 byte
    /// as its printable stand-in character (`ByteLevel.alphabet`).
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)

    enum PrependScheme: String { case always, first, never }

    init(_ object: [String: Any]) throws {
        let type = object["type"] as? String ?? "?"
        switch type {
        case "Sequence":
            guard let list = object["pretokenizers"] as? [[String: Any]] else {
                throw FlintError(.corrupt, "tokenizer.json: pre_tokenizer Sequence without \"pretokenizers\"")
            }
            self = .sequence(try list.map(PreTokenizer.init))
        case "WhitespaceSplit":
            self = .whitespaceSplit
        case "Metaspace":
            let (replacement, scheme) = try Self.metaspaceFields(object, where: "pre_tokenizer")
            self = .metaspace(replacement: replacement, scheme: scheme, split: object["split"] as? Bool ?? true)
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: object["add_prefix_space"] as? Bool ?? true,
                              useRegex: object["use_regex"] as? Bool ?? true)
        default:
            throw FlintError(.unsupported, "tokenizer.json: pre_tokenizer \"\(type)\" is not supported")
        }
    }

    /// `replacement` and `prepend_scheme` of a Metaspace pre-tokenizer or decoder, reading the old
    /// `add_prefix_space` key as tokenizers does (false means `never`; absent scheme means `always`).
    static func metaspaceFields(_ object: [String: Any], where place: String) throws -> (Unicode.Scalar, PrependScheme) {
        guard let string = object["replacement"] as? String, string.unicodeScalars.count == 1,
              let replacement = string.unicodeScalars.first else {
            throw FlintError(.corrupt, "tokenizer.json: \(place) Metaspace needs a one-character \"replacement\"")
        }
        var scheme = PrependScheme.always
        if let name = object["prepend_scheme"] as? String {
            guard let parsed = PrependScheme(rawValue: name) else {
                throw FlintError(.corrupt, "tokenizer.json: \(place) Metaspace prepend_scheme \"\(name)\" is not always/first/never")
            }
            scheme = parsed
        }
        if object["add_prefix_space"] as? Bool == false {
            guard scheme == .never || object["prepend_scheme"] == nil else {
                throw FlintError(.corrupt, "tokenizer.json: \(place) Metaspace add_prefix_space does not match prepend_scheme")
            }
            scheme = .never
        }
        return (replacement, scheme)
    }

    /// Pre-tokens of a normalized stretch; `atStart` says it begins at offset 0 of the original text.
    func split(_ text: String, atStart: Bool) -> [String] {
        apply([(text, atStart)]).map { $0.0 }
    }

    private func apply(_ pieces: [(String, Bool)]) -> [(String, Bool)] {
        switch self {
        case .sequence(let list):
            return list.reduce(pieces) { $1.apply($0) }
        case .whitespaceSplit:
            var out: [(String, Bool)] = []
            for (text, atStart) in pieces {
                var current = String.UnicodeScalarView()
                var currentStart = 0
                var index = 0
                for c in text.unicodeScalars {
                    if CharacterClass.isWhitespace(c) {
                        if !current.isEmpty { out.append((String(current), atStart && currentStart == 0)) }
                        current = String.UnicodeScalarView()
                        currentStart = index + 1
                    } else {
                        current.append(c)
                    }
                    index += 1
                }
                if !current.isEmpty { out.append((String(current), atStart && currentStart == 0)) }
            }
            return out
        case .metaspace(let replacement, let scheme, let split):
            var out: [(String, Bool)] = []
            for (text, atStart) in pieces {
                var scalars = String.UnicodeScalarView()
                for c in text.unicodeScalars { scalars.append(c == " " ? replacement : c) }
                let startsWithReplacement = scalars.first == replacement
                switch scheme {
                case .always where !startsWithReplacement, .first where !startsWithReplacement && atStart:
                    scalars.insert(replacement, at: scalars.startIndex)
                default:
                    break
                }
                guard split else {
                    if !scalars.isEmpty { out.append((String(scalars), atStart)) }
                    continue
                }
                // Split before every replacement character (MergedWithNext).
                var current = String.UnicodeScalarView()
                var first = true
                for c in scalars {
                    if c == replacement && !current.isEmpty {
                        out.append((String(current), atStart && first))
                        first = false
                        current = String.UnicodeScalarView()
                    }
                    current.append(c)
                }
                if !current.isEmpty { out.append((String(current), atStart && first)) }
            }
            return out
        case .byteLevel(let addPrefixSpace, let useRegex):
            var out: [(String, Bool)] = []
            for (text, atStart) in pieces {
                let spaced = addPrefixSpace && !text.hasPrefix(" ") ? " " + text : text
                let parts = useRegex ? ByteLevel.split(Array(spaced.unicodeScalars)) : [spaced]
                for (index, part) in parts.enumerated() {
                    out.append((ByteLevel.encode(part), atStart && index == 0))
                }
            }
            return out
        }
    }
}

/// The byte-level alphabet and split pattern of GPT-2, as `tokenizers`' ByteLevel pre-tokenizer and decoder use them.
enum ByteLevel {
    /// `bytes_to_unicode`: the printable bytes ("!"…"~", "¡"…"¬", "®"…"ÿ") stand for themselves, the other 68 for
    /// U+0100, U+0101, … in byte order.
    static let alphabet: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            if printable {
                table[byte] = Unicode.Scalar(UInt32(byte))!
            } else {
                table[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    static let bytesByCharacter: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (byte, scalar) in alphabet.enumerated() { map[scalar] = UInt8(byte) }
        return map
    }()

    static func encode(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for byte in text.utf8 { out.append(alphabet[Int(byte)]) }
        return String(out)
    }

    /// The pieces of GPT-2's pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
    /// matched left to right with its alternatives in order (the pattern matches every character, so the pieces
    /// cover the text).
    static func split(_ s: [Unicode.Scalar]) -> [String] {
        func isLetter(_ c: Unicode.Scalar) -> Bool {
            switch c.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
            default: return false
            }
        }
        func isNumber(_ c: Unicode.Scalar) -> Bool {
            switch c.properties.generalCategory {
            case .decimalNumber, .letterNumber, .otherNumber: return true
            default: return false
            }
        }
        func isOther(_ c: Unicode.Scalar) -> Bool { !CharacterClass.isWhitespace(c) && !isLetter(c) && !isNumber(c) }
        let contractions: [[Unicode.Scalar]] = ["s", "t", "re", "ve", "m", "ll", "d"].map { Array(("'" + $0).unicodeScalars) }
        var pieces: [String] = []
        var i = 0
        while i < s.count {
            var end = i
            if s[i] == "'", let c = contractions.first(where: { i + $0.count <= s.count && Array(s[i..<(i + $0.count)]) == $0 }) {
                end = i + c.count
            } else {
                // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
                let start = s[i] == " " ? i + 1 : i
                if start < s.count, let inClass = [isLetter, isNumber, isOther].first(where: { $0(s[start]) }) {
                    end = start
                    while end < s.count && inClass(s[end]) { end += 1 }
                } else {
                    // Whitespace: `\s+(?!\S)` leaves the last one of a run to the word after it; a single one
                    // before a word is `\s+` alone.
                    while end < s.count && CharacterClass.isWhitespace(s[end]) { end += 1 }
                    if end < s.count && end - i > 1 { end -= 1 }
                }
            }
            var piece = String.UnicodeScalarView()
            piece.append(contentsOf: s[i..<end])
            pieces.append(String(piece))
            i = end
        }
        return pieces
    }
}

// MARK: - Decoders

indirect enum Decoder {
    case sequence([Decoder])
    case metaspace(replacement: Unicode.Scalar, scheme: PreTokenizer.PrependScheme)
    case replace(pattern: ReplacePattern, content: String)
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case byteFallback
    /// Byte-level tokens back to bytes (a token with a character outside the alphabet keeps its UTF-8 bytes), all
    /// of them decoded as one UTF-8 text with U+FFFD for invalid sequences (Rust's `from_utf8_lossy`).
    case byteLevel

    init(_ object: [String: Any]) throws {
        let type = object["type"] as? String ?? "?"
        switch type {
        case "Sequence":
            guard let list = object["decoders"] as? [[String: Any]] else {
                throw FlintError(.corrupt, "tokenizer.json: decoder Sequence without \"decoders\"")
            }
            self = .sequence(try list.map(Decoder.init))
        case "Metaspace":
            let (replacement, scheme) = try PreTokenizer.metaspaceFields(object, where: "decoder")
            self = .metaspace(replacement: replacement, scheme: scheme)
        case "Replace":
            self = .replace(pattern: try ReplacePattern(object["pattern"], where: "decoder Replace"),
                            content: object["content"] as? String ?? "")
        case "Fuse":
            self = .fuse
        case "Strip":
            guard let content = (object["content"] as? String)?.unicodeScalars.first else {
                throw FlintError(.corrupt, "tokenizer.json: decoder Strip needs a \"content\" character")
            }
            self = .strip(content: content, start: (object["start"] as? NSNumber)?.intValue ?? 0,
                          stop: (object["stop"] as? NSNumber)?.intValue ?? 0)
        case "ByteFallback":
            self = .byteFallback
        case "ByteLevel":
            self = .byteLevel
        default:
            throw FlintError(.unsupported, "tokenizer.json: decoder \"\(type)\" is not supported")
        }
    }

    /// `Decoder::decode`: the chain, then the strings joined.
    func decode(_ tokens: [String]) -> String {
        chain(tokens).joined()
    }

    private func chain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let list):
            return list.reduce(tokens) { $1.chain($0) }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { index, token in
                var out = String.UnicodeScalarView()
                for c in token.unicodeScalars {
                    if c == replacement {
                        if index == 0 && scheme != .never { continue }
                        out.append(" ")
                    } else {
                        out.append(c)
                    }
                }
                return String(out)
            }
        case .replace(let pattern, let content):
            return tokens.map { pattern.replaceAll(in: $0, with: content) }
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                var scalars = Array(token.unicodeScalars)[...]
                var n = 0
                while n < start, scalars.first == content { scalars = scalars.dropFirst(); n += 1 }
                n = 0
                while n < stop, scalars.last == content { scalars = scalars.dropLast(); n += 1 }
                var out = String.UnicodeScalarView()
                out.append(contentsOf: scalars)
                return String(out)
            }
        case .byteFallback:
            // Runs of <0xNN> tokens become the UTF-8 text they spell (U+FFFD per byte when invalid).
            var out: [String] = []
            var bytes: [UInt8] = []
            func flush() {
                guard !bytes.isEmpty else { return }
                if let text = String(validating: bytes, as: UTF8.self) {
                    out.append(text)
                } else {
                    out.append(contentsOf: Array(repeating: "\u{FFFD}", count: bytes.count))
                }
                bytes = []
            }
            for token in tokens {
                let u = Array(token.utf8)
                if u.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">"),
                   let byte = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                    bytes.append(byte)
                } else {
                    flush()
                    out.append(token)
                }
            }
            flush()
            return out
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                let mapped = token.unicodeScalars.map { ByteLevel.bytesByCharacter[$0] }
                if mapped.allSatisfy({ $0 != nil }) {
                    bytes.append(contentsOf: mapped.map { $0! })
                } else {
                    bytes.append(contentsOf: token.utf8)
                }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        }
    }
}
