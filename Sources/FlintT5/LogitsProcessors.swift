// The logits processors of transformers 4.57's `GenerationMixin._get_logits_processor` that `GenerationOptions`
// exposes, applied in transformers' fixed order (RepetitionPenalty, NoRepeatNGram, NoBadWords, MinLength,
// MinNewTokensLength, SuppressTokens). Greedy and sampling apply them to the raw logits, beam search to the
// log-softmax of each beam (as `_beam_search` does). They see the decoder sequence so far: the decoder start
// token, the decoder prefix if any, then the generated tokens.
import Foundation
import FlintFormat

struct LogitsProcessors {
    let repetitionPenalty: Float?
    let noRepeatNgramSize: Int
    /// Bad words of one token (always banned) and longer ones (banned when the sequence ends with their prefix).
    let bannedTokens: [Int]
    let bannedSequences: [[Int]]
    let minLength: Int
    let minNewTokens: Int
    let suppressTokens: [Int]
    /// The tokens that end a sequence (min_length / min_new_tokens ban all of them).
    let eos: [Int]
    /// Decoder tokens before generation starts: the start token and the prefix (`min_new_tokens` counts after them).
    let promptLength: Int

    init(options: GenerationOptions, config: T5Config) {
        repetitionPenalty = options.repetitionPenalty == 1 ? nil : Float(options.repetitionPenalty)
        noRepeatNgramSize = options.noRepeatNgramSize
        let endTokens = options.endTokens(config)
        eos = endTokens
        // NoBadWordsLogitsProcessor drops a bad word that is one eos token alone.
        let badWords = options.badWordsIds.filter { $0.count != 1 || !endTokens.contains($0[0]) }
        bannedTokens = badWords.filter { $0.count == 1 }.map { $0[0] }
        bannedSequences = badWords.filter { $0.count > 1 }
        minLength = options.minLength
        minNewTokens = options.minNewTokens
        suppressTokens = options.suppressTokens
        promptLength = 1 + options.decoderPrefix.count
    }

    var isEmpty: Bool {
        repetitionPenalty == nil && noRepeatNgramSize == 0 && bannedTokens.isEmpty && bannedSequences.isEmpty
            && minLength == 0 && minNewTokens == 0 && suppressTokens.isEmpty
    }

    /// Processes one row of scores for a sequence ending in `sequence`.
    func apply(_ scores: UnsafeMutableBufferPointer<Float>, sequence: [Int]) {
        let length = sequence.count
        if let penalty = repetitionPenalty {
            // RepetitionPenaltyLogitsProcessor: gather the scores of every token in the sequence (once each: a
            // repeated token's gathered value is the original one), divide positive ones, multiply negative ones.
            var seen = Set<Int>()
            for token in sequence where seen.insert(token).inserted {
                let s = scores[token]
                scores[token] = s < 0 ? s * penalty : s / penalty
            }
        }
        if noRepeatNgramSize > 0 && length + 1 >= noRepeatNgramSize {
            // NoRepeatNGramLogitsProcessor: ban every token that would complete an n-gram already in the sequence.
            let n = noRepeatNgramSize
            let tail = Array(sequence[(length + 1 - n)...])
            // Every n-gram of the sequence whose first n-1 tokens are the sequence's last n-1 (none while the
            // sequence is shorter than n).
            var start = 0
            while start + n <= length {
                if sequence[start..<(start + n - 1)].elementsEqual(tail) { scores[sequence[start + n - 1]] = -.infinity }
                start += 1
            }
        }
        // NoBadWordsLogitsProcessor (a SequenceBias of -inf): single tokens always; longer words when the sequence
        // ends with all but their last token (and is at least as long as the word).
        for token in bannedTokens { scores[token] = -.infinity }
        for word in bannedSequences where word.count <= length && sequence.suffix(word.count - 1).elementsEqual(word.dropLast()) {
            scores[word[word.count - 1]] = -.infinity
        }
        if length < minLength || length - promptLength < minNewTokens { for token in eos { scores[token] = -.infinity } }
        for token in suppressTokens { scores[token] = -.infinity }
    }
}

/// Stop strings with transformers' `StopStringCriteria` rule: generation stops once the text of the decoder
/// tokens contains a stop string that overlaps the newest token (the match may start inside an earlier token and
/// the newest token may run past its end: "st"+"opera" stops on "stop"; "stop"+"at" does not stop at "at").
/// A token's text is what it adds to decoded text (sentencepiece "▁" as a space), from `tokenText`.
public struct StopStrings: Sendable, Equatable {
    public let strings: [String]
    private let stops: [[Unicode.Scalar]]
    private let texts: [[Unicode.Scalar]]

    /// `tokenText[id]`: the text token `id` contributes.
    public init(_ strings: [String], tokenText: [String]) {
        self.strings = strings
        stops = strings.map { Array($0.unicodeScalars) }
        texts = tokenText.map { Array($0.unicodeScalars) }
    }

    /// Whether `sequence` (ending with the newest token) ends a match.
    func matches(_ sequence: [Int]) -> Bool {
        guard let newest = sequence.last, newest >= 0, newest < texts.count else { return false }
        let last = texts[newest]
        guard !last.isEmpty else { return false }
        for stop in stops where !stop.isEmpty {
            // The tail of the text long enough to hold any match overlapping the newest token.
            var tail = last
            var i = sequence.count - 2
            while tail.count < stop.count + last.count && i >= 0 {
                let t = sequence[i]
                if t >= 0 && t < texts.count { tail = texts[t] + tail }
                i -= 1
            }
            let boundary = tail.count - last.count  // the newest token starts here
            if stop.count > tail.count { continue }
            var start = max(0, boundary - stop.count + 1)
            while start + stop.count <= tail.count {
                if tail[start..<(start + stop.count)].elementsEqual(stop) && start + stop.count > boundary { return true }
                start += 1
            }
        }
        return false
    }
}
