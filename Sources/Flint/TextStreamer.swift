// Text pieces from token ids as they are generated.
//
// Sentencepiece decodes a sequence as a whole: a token can change how the text before it reads (a byte-fallback
// token completes a UTF-8 character, punctuation drops the space before it). So the streamer decodes every id
// seen so far and hands out only text that will not change: up to the last whitespace, and never a text that
// does not extend what was already handed out. The rest comes with `finish()`.

/// Turns generated token ids into text pieces whose concatenation is the decoded text, spaces kept.
public struct TextStreamer {
    public let tokenizer: T5Tokenizer
    private var ids: [Int] = []
    /// The text handed out so far.
    public private(set) var text = ""

    public init(tokenizer: T5Tokenizer) {
        self.tokenizer = tokenizer
    }

    /// Adds a generated token; returns the new piece of text when a whole word (with the whitespace after it)
    /// became final, else nil.
    public mutating func add(_ id: Int) -> String? {
        ids.append(id)
        let decoded = tokenizer.decode(ids, skipSpecialTokens: true)
        // The text up to and including its last whitespace: a later token can no longer change it.
        guard let lastSpace = decoded.lastIndex(where: \.isWhitespace) else { return nil }
        let stable = String(decoded[...lastSpace])
        return advance(to: stable)
    }

    /// The rest of the text once generation has ended (empty when nothing is left).
    public mutating func finish() -> String {
        advance(to: tokenizer.decode(ids, skipSpecialTokens: true)) ?? ""
    }

    private mutating func advance(to stable: String) -> String? {
        guard stable.count > text.count, stable.hasPrefix(text) else { return nil }
        let piece = String(stable.dropFirst(text.count))
        text = stable
        return piece
    }
}
