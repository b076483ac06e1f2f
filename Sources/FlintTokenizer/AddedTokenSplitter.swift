import FlintFormat

/// transformers' `PreTrainedTokenizer.tokenize` up to the model's own `_tokenize` (4.57): the text is cut around
/// added tokens, leftmost-longest first (its `Trie.split`), then each added token's flags act on its neighbours —
/// `rstrip` / `lstrip` strip the whitespace after / before it, `single_word` glues it to an adjacent word. Shared
/// by the slow tokenizers (`SlowT5Tokenizer`, `ByT5Tokenizer`), which then encode the other stretches their way.
struct AddedTokenSplitter {
    /// transformers' `_added_tokens_decoder` / `_added_tokens_encoder`.
    let byId: [Int: AddedTokenInfo]
    let byContent: [String: AddedTokenInfo]
    private let patterns: PatternSet

    init(_ tokens: [AddedTokenInfo]) {
        var byId: [Int: AddedTokenInfo] = [:]
        var byContent: [String: AddedTokenInfo] = [:]
        for token in tokens {
            byId[token.id] = token
            byContent[token.content] = token
        }
        self.byId = byId
        self.byContent = byContent
        patterns = PatternSet(byId.values.sorted { $0.id < $1.id }.map { (Array($0.content.unicodeScalars), $0.id) })
    }

    /// The non-empty stretches of `text` in order, each an added token's content (`added`) or text to encode.
    func segments(_ text: String) -> [(text: String, added: Bool)] {
        var parts = split(Array(text.unicodeScalars))
        for i in parts.indices {
            // The neighbours as they were before this token's rules (transformers reads `left` / `right` once).
            guard let token = byContent[Self.string(parts[i])] else { continue }
            let left = i > 0 ? parts[i - 1] : []
            let right = i + 1 < parts.count ? parts[i + 1] : []
            if token.rstrip && !right.isEmpty { parts[i + 1] = Self.pythonLStrip(right) }
            if token.lstrip && !left.isEmpty { parts[i - 1] = Self.pythonRStrip(left) }
            if token.singleWord && !left.isEmpty && left.last != " " {
                parts[i - 1] += parts[i]
                parts[i] = []
            } else if token.singleWord && !right.isEmpty && right.first != " " {
                parts[i + 1] = parts[i] + parts[i + 1]
                parts[i] = []
            }
        }
        return parts.filter { !$0.isEmpty }.map { part in
            let string = Self.string(part)
            return (string, byContent[string] != nil)
        }
    }

    /// Cuts text around added tokens, leftmost-longest first, as transformers' `Trie.split`.
    private func split(_ scalars: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var parts: [[Unicode.Scalar]] = []
        var textStart = 0
        var i = 0
        while i < scalars.count {
            if let match = patterns.longestMatch(scalars, at: i) {
                if textStart < i { parts.append(Array(scalars[textStart..<i])) }
                parts.append(Array(scalars[i..<(i + match.length)]))
                i += match.length
                textStart = i
            } else {
                i += 1
            }
        }
        if textStart < scalars.count { parts.append(Array(scalars[textStart...])) }
        return parts
    }

    // MARK: - Python string helpers

    static func string(_ scalars: [Unicode.Scalar]) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    /// Python's `str.isspace()` set, which `strip()`, `lstrip()` and `rstrip()` remove.
    static func isPythonWhitespace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    static func pythonLStrip(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        Array(s.drop(while: isPythonWhitespace))
    }

    static func pythonRStrip(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var end = s.count
        while end > 0 && isPythonWhitespace(s[end - 1]) { end -= 1 }
        return Array(s[..<end])
    }

    static func pythonStrip(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] { pythonRStrip(pythonLStrip(s)) }
}

/// transformers' `PreTrainedTokenizer._decode`, shared by the slow tokenizers (T5Tokenizer, ByT5Tokenizer): ids to
/// tokens (ids the tokenizer does not have dropped; special ones skipped when asked), runs of ordinary tokens turned
/// into text by the tokenizer's `convert_tokens_to_string`, legacy added tokens written on their own, the parts
/// joined by spaces (`spaces_between_special_tokens`), then `clean_up_tokenization` when tokenizer_config.json's
/// `clean_up_tokenization_spaces` is set.
func slowTokenizerDecode(_ ids: [Int], skipSpecialTokens: Bool, specialIds: Set<Int>, specialTokenTexts: Set<String>,
                         legacyAddedTokens: Set<String>, cleanUpTokenizationSpaces: Bool,
                         idToPiece: (Int) -> String?, convertTokensToString: ([String]) -> String) -> String {
    var parts: [String] = []
    var stretch: [String] = []
    for id in ids {
        if skipSpecialTokens && specialIds.contains(id) { continue }
        guard let token = idToPiece(id) else { continue }
        if skipSpecialTokens && specialTokenTexts.contains(token) { continue }
        if legacyAddedTokens.contains(token) {
            if !stretch.isEmpty {
                let text = convertTokensToString(stretch)
                if !text.isEmpty { parts.append(text) }
                stretch = []
            }
            parts.append(token)
        } else {
            stretch.append(token)
        }
    }
    if !stretch.isEmpty { parts.append(convertTokensToString(stretch)) }
    let text = parts.joined(separator: " ")
    return cleanUpTokenizationSpaces ? FastTokenizer.cleanUpTokenization(text) : text
}
