import FlintFormat
import Foundation

/// The `Unigram` model of a `tokenizer.json`, segmenting as the `tokenizers` library does
/// (models/unigram/model.rs `encode_optimized` and `tokenize`):
/// - Viterbi over UTF-8 byte positions with double-precision scores; every vocabulary string that is a prefix of
///   the rest of the text is a candidate, shorter ones first, and a candidate replaces the best path to its end only
///   when strictly better (so on ties the earliest-found path stays);
/// - where no piece covers the next character by itself, an unknown node of that character scores
///   `min(all scores) - 10`;
/// - consecutive unknown nodes are fused into one token; a token's id is looked up by its string (the last
///   vocabulary entry of that string wins), then `<0xNN>` byte pieces with `byte_fallback`, then `unk_id`.
struct UnigramModel: Sendable {
    /// Vocabulary strings by id.
    let pieces: [String]
    private let scores: [Double]
    private let idsByPiece: [String: Int]
    private let unknownId: Int
    private let byteFallback: Bool
    private let unknownScore: Double
    /// Every vocabulary entry's UTF-8 bytes, sorted, with its id: a prefix walk is a narrowing binary search.
    private let sortedBytes: [[UInt8]]
    private let sortedIds: [Int]

    init(_ object: [String: Any]) throws {
        let type = object["type"] as? String ?? "?"
        guard type == "Unigram" else {
            throw FlintError(.unsupported, "tokenizer.json: model \"\(type)\" is not supported (T5 tokenizers are Unigram)")
        }
        guard let vocab = object["vocab"] as? [Any], !vocab.isEmpty else {
            throw FlintError(.corrupt, "tokenizer.json: Unigram model without a \"vocab\" list")
        }
        guard let unk = (object["unk_id"] as? NSNumber)?.intValue else {
            throw FlintError(.unsupported, "tokenizer.json: Unigram model without an unk_id is not supported")
        }
        guard unk >= 0, unk < vocab.count else {
            throw FlintError(.corrupt, "tokenizer.json: Unigram unk_id \(unk) is outside the \(vocab.count)-entry vocabulary")
        }
        guard vocab.count <= Int(Int32.max) else {
            throw FlintError(.corrupt, "tokenizer.json: \(vocab.count) vocabulary entries do not fit in 32-bit ids")
        }
        var pieces: [String] = []
        var scores: [Double] = []
        pieces.reserveCapacity(vocab.count)
        scores.reserveCapacity(vocab.count)
        var idsByPiece: [String: Int] = [:]
        idsByPiece.reserveCapacity(vocab.count)
        var minimum = Double.infinity
        for (id, item) in vocab.enumerated() {
            guard let pair = item as? [Any], pair.count == 2, let piece = pair[0] as? String,
                  let score = (pair[1] as? NSNumber)?.doubleValue else {
                throw FlintError(.corrupt, "tokenizer.json: Unigram vocab[\(id)] is not a [piece, score] pair")
            }
            pieces.append(piece)
            scores.append(score)
            idsByPiece[piece] = id
            minimum = min(minimum, score)
        }
        self.pieces = pieces
        self.scores = scores
        self.idsByPiece = idsByPiece
        self.unknownId = unk
        self.byteFallback = object["byte_fallback"] as? Bool ?? false
        self.unknownScore = minimum - 10
        let entries = idsByPiece.filter { !$0.key.isEmpty }.map { (Array($0.key.utf8), $0.value) }
            .sorted { $0.0.lexicographicallyPrecedes($1.0) }
        sortedBytes = entries.map { $0.0 }
        sortedIds = entries.map { $0.1 }
    }

    func piece(_ id: Int) -> String? { id >= 0 && id < pieces.count ? pieces[id] : nil }
    func id(of piece: String) -> Int? { idsByPiece[piece] }

    /// `Unigram::tokenize` of one pre-token.
    func tokenize(_ text: String) -> [FastTokenizer.Token] {
        var tokens: [FastTokenizer.Token] = []
        for string in encode(Array(text.utf8)) {
            let value = String(decoding: string, as: UTF8.self)
            if let id = idsByPiece[value] {
                tokens.append(FastTokenizer.Token(id: id, value: value))
                continue
            }
            if byteFallback {
                let byteIds = string.map { idsByPiece[String(format: "<0x%02X>", $0)] }
                if byteIds.allSatisfy({ $0 != nil }) {
                    for (byte, id) in zip(string, byteIds) {
                        tokens.append(FastTokenizer.Token(id: id!, value: String(format: "<0x%02X>", byte)))
                    }
                    continue
                }
            }
            tokens.append(FastTokenizer.Token(id: unknownId, value: value))
        }
        return tokens
    }

    /// `Unigram::encode_optimized`: the best segmentation's strings, unknown runs fused.
    private func encode(_ s: [UInt8]) -> [[UInt8]] {
        let size = s.count
        if size == 0 { return [] }
        var bestScore = [Double](repeating: 0, count: size + 1)
        var bestStart = [Int](repeating: -1, count: size + 1)
        var bestId = [Int](repeating: 0, count: size + 1)
        var startsAt = 0
        while startsAt < size {
            let scoreTillHere = bestScore[startsAt]
            var hasSingleNode = false
            let characterLength = min(Self.utf8Length(s[startsAt]), size - startsAt)
            var low = 0
            var high = sortedBytes.count
            var depth = 0
            while startsAt + depth < size && low < high {
                let byte = s[startsAt + depth]
                // Narrow [low, high) to the entries whose byte at `depth` is `byte` (all share the prefix so far).
                low = lowerBound(low, high, depth) { $0 < byte }
                high = lowerBound(low, high, depth) { $0 <= byte }
                guard low < high else { break }
                depth += 1
                if sortedBytes[low].count == depth {  // the prefix itself is a vocabulary entry
                    let end = startsAt + depth
                    let id = sortedIds[low]
                    let candidate = scores[id] + scoreTillHere
                    if bestStart[end] == -1 || candidate > bestScore[end] {
                        bestScore[end] = candidate
                        bestStart[end] = startsAt
                        bestId[end] = id
                    }
                    if depth == characterLength { hasSingleNode = true }
                }
            }
            if !hasSingleNode {
                let end = startsAt + characterLength
                let candidate = unknownScore + scoreTillHere
                if bestStart[end] == -1 || candidate > bestScore[end] {
                    bestScore[end] = candidate
                    bestStart[end] = startsAt
                    bestId[end] = unknownId
                }
            }
            startsAt += characterLength
        }
        var results: [[UInt8]] = []
        var unknownRun: [[UInt8]] = []
        var end = size
        while end > 0 {
            let start = bestStart[end]
            if bestId[end] == unknownId {
                unknownRun.append(Array(s[start..<end]))
            } else {
                if !unknownRun.isEmpty {
                    results.append(unknownRun.reversed().flatMap { $0 })
                    unknownRun = []
                }
                results.append(Array(s[start..<end]))
            }
            end = start
        }
        if !unknownRun.isEmpty { results.append(unknownRun.reversed().flatMap { $0 }) }
        return results.reversed()
    }

    /// First index in [low, high) whose byte at `depth` fails `before` (entries shorter than depth+1 come first
    /// within a shared prefix, so they count as "before").
    private func lowerBound(_ low: Int, _ high: Int, _ depth: Int, _ before: (UInt8) -> Bool) -> Int {
        var lo = low, hi = high
        while lo < hi {
            let mid = (lo + hi) / 2
            let entry = sortedBytes[mid]
            if entry.count <= depth || before(entry[depth]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private static func utf8Length(_ lead: UInt8) -> Int {
        switch lead {
        case 0..<0x80: return 1
        case 0xC0..<0xE0: return 2
        case 0xE0..<0xF0: return 3
        case 0xF0...: return 4
        default: return 1
        }
    }
}
