// The text of one completion as its tokens arrive: stop strings (the text ends before the first one, and
// generation stops there), and the pieces a stream may already send. Work is on UTF-8 bytes: a stop string
// matched in valid UTF-8 always starts and ends on character boundaries.
import FlintTokenizer

struct CompletionText {
    let tokenizer: T5Tokenizer
    let stops: [[UInt8]]
    /// Whether pieces are wanted while generating (a streaming request); otherwise only stops are checked.
    let streaming: Bool
    private(set) var ids: [Int] = []
    /// The bytes already handed out as stream pieces: always a prefix of the final text.
    private(set) var sent: [UInt8] = []
    /// Set once a stop string was found: the final text (without the stop string).
    private(set) var stoppedText: [UInt8]?

    init(tokenizer: T5Tokenizer, stops: [String], streaming: Bool) {
        self.tokenizer = tokenizer
        self.stops = stops.map { Array($0.utf8) }
        self.streaming = streaming
    }

    private func decode(_ ids: some Collection<Int>) -> [UInt8] {
        Array(tokenizer.decode(Array(ids), skipSpecialTokens: true).utf8)
    }

    /// Adds a generated token; returns a piece to stream (nil: nothing new yet) and whether a stop string ended
    /// the text.
    mutating func add(_ token: Int) -> (piece: String?, stopped: Bool) {
        ids.append(token)
        guard !stops.isEmpty || streaming else { return (nil, false) }
        let full = decode(ids)
        if let cut = firstStop(in: full) {
            let text = Array(full[..<cut])
            stoppedText = text
            return (piece(upTo: text), true)
        }
        guard streaming else { return (nil, false) }
        // The last token may still change how the text before it decodes (sentencepiece joins pieces), so a
        // stream lags one token behind; and bytes that could begin a stop string wait until they cannot.
        var stable = decode(ids.dropLast())
        stable.removeLast(heldBack(stable))
        return (piece(upTo: stable), false)
    }

    /// The final text, given the finished sequence's generated ids (beam search knows them only now), and the
    /// rest a stream still has to send.
    mutating func finish(generatedIds: [Int]) -> (text: String, rest: String?, stopped: Bool) {
        if let stoppedText {
            return (String(decoding: stoppedText, as: UTF8.self), piece(upTo: stoppedText), true)
        }
        ids = generatedIds
        var full = decode(generatedIds)
        var stopped = false
        if let cut = firstStop(in: full) {
            full = Array(full[..<cut])
            stopped = true
        }
        return (String(decoding: full, as: UTF8.self), piece(upTo: full), stopped)
    }

    /// The bytes of `text` after what was sent, when `text` extends it (a stream never takes anything back).
    private mutating func piece(upTo text: [UInt8]) -> String? {
        guard text.count > sent.count, text.starts(with: sent) else { return nil }
        let piece = String(decoding: text[sent.count...], as: UTF8.self)
        sent = text
        return piece
    }

    /// Where the earliest stop string starts in `text`.
    private func firstStop(in text: [UInt8]) -> Int? {
        var best: Int?
        for stop in stops where stop.count <= text.count {
            // Only the part not yet searched can hold a new match, but texts are short: search all of it.
            for start in 0...(text.count - stop.count) where best.map({ start < $0 }) ?? true {
                if text[start..<(start + stop.count)].elementsEqual(stop) { best = start; break }
            }
        }
        return best
    }

    /// The longest suffix of `text` that is the beginning of a stop string (it may still become one).
    private func heldBack(_ text: [UInt8]) -> Int {
        var held = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, text.count), to: held, by: -1)
            where text[(text.count - length)...].elementsEqual(stop[..<length]) {
                held = length
                break
            }
        }
        return held
    }
}
