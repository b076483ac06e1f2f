import FlintFormat
import Foundation

/// A tokenizer that gives the same ids, pieces and decoded text as Hugging Face's slow `T5Tokenizer` with its
/// default settings (transformers 4.57.6: `legacy=True`, `add_prefix_space=True`, `extra_ids=100`,
/// `clean_up_tokenization_spaces=False`), over the same `spiece.model`.
///
/// What transformers does, and this class repeats:
/// - Added tokens are cut out of the text before sentencepiece sees it: `</s>`, `<pad>`, `<unk>` (at their
///   sentencepiece ids) and the sentinels `<extra_id_0>` … `<extra_id_{extraIds-1}>`, where `<extra_id_N>` has id
///   `spieceSize + extraIds - 1 - N`. Sentinels strip the whitespace on both sides of them; `</s>`, `<pad>` and
///   `<unk>` strip nothing. Each remaining stretch of text is encoded by sentencepiece on its own.
/// - `encode` appends `</s>` unless the ids already end with it.
/// - `decode` decodes the pieces between sentinels with sentencepiece, keeps `</s>` / `<pad>` / `<unk>` as
///   literal text (preceded by a space unless the previous token was one too), joins the parts around sentinels with
///   single spaces, and strips the ends of each part (Python's `str.strip()`).
/// - The sentencepiece steps themselves are those of sentencepiece 0.2.x, which transformers runs: normalization by
///   libsentencepiece, segmentation and piece decoding by `UnigramCodec` (the system library is 0.1.97 and differs
///   in both; see there).
///
/// Ids at or above `count` (the rows by which a model's vocabulary exceeds the tokenizer, e.g. 32100..<32128 for
/// T5) and negative ids: the slow transformers tokenizer raises `IndexError` ("piece id is out of range") on them;
/// the fast one (`T5TokenizerFast`) drops them. `decode` drops them too, so generated ids never crash a decode.
public final class T5Tokenizer: @unchecked Sendable {
    public static let padToken = "<pad>"
    public static let eosToken = "</s>"
    public static let unkToken = "<unk>"

    /// Number of pieces in the sentencepiece model (32000 for T5).
    public let spieceSize: Int
    /// Number of sentinels `<extra_id_N>` appended after the sentencepiece pieces.
    public let extraIds: Int
    /// Id of `<pad>` in the sentencepiece model (0 for T5).
    public let padId: Int
    /// Id of `</s>` (1 for T5).
    public let eosId: Int
    /// Id of `<unk>` (2 for T5).
    public let unkId: Int
    /// Size of the tokenizer's vocabulary: sentencepiece pieces plus sentinels, as `len(tokenizer)`.
    public var count: Int { spieceSize + extraIds }

    private let processor: SentencePieceProcessor
    /// sentencepiece 0.2.x segmentation and piece decoding (see UnigramCodec for why not the library's).
    private let codec: UnigramCodec
    /// `</s>`, `<pad>`, `<unk>` and their ids.
    private let fixedSpecialTokens: [(token: [Unicode.Scalar], text: String, id: Int)]
    /// Every special token's text (the three above and every sentinel), as transformers' `all_special_tokens`.
    private let specialTokenTexts: Set<String>

    /// Loads the tokenizer from the bytes of a `spiece.model`.
    /// - Parameter extraIds: number of sentinels, 100 as in every T5 / FLAN-T5 checkpoint.
    public init(modelBytes: [UInt8], extraIds: Int = 100) throws {
        guard extraIds >= 0, extraIds <= 1_000_000 else {
            throw FlintError("tokenizer: extraIds must be in 0...1000000, got \(extraIds)")
        }
        let processor = try SentencePieceProcessor(modelBytes: modelBytes)
        let proto = try SentencePieceModelProto(bytes: modelBytes)
        guard proto.pieces.count == processor.pieceCount else {
            throw FlintError("tokenizer: the sentencepiece model lists \(proto.pieces.count) pieces but "
                             + "libsentencepiece loaded \(processor.pieceCount)")
        }
        guard proto.modelType == 1 else {
            throw FlintError("tokenizer: sentencepiece model type \(proto.modelType) is not supported; "
                             + "T5 vocabularies are unigram models (type 1)")
        }
        guard !proto.hasDenormalizer else {
            throw FlintError("tokenizer: sentencepiece models with a denormalizer are not supported (T5's has none)")
        }
        guard processor.pieceCount + extraIds <= Int(Int32.max) else {
            throw FlintError("tokenizer: \(processor.pieceCount) pieces plus \(extraIds) sentinels do not fit in 32-bit ids")
        }
        var ids: [String: Int] = [:]
        for token in [Self.padToken, Self.eosToken, Self.unkToken] {
            let id = processor.pieceToId(token)
            guard processor.idToPiece(id) == token else {
                throw FlintError("tokenizer: the sentencepiece model (\(processor.pieceCount) pieces) has no \"\(token)\" "
                                 + "piece; a T5 vocabulary needs <pad>, </s> and <unk>")
            }
            ids[token] = id
        }
        self.processor = processor
        self.codec = UnigramCodec(model: proto)
        self.spieceSize = processor.pieceCount
        self.extraIds = extraIds
        self.padId = ids[Self.padToken]!
        self.eosId = ids[Self.eosToken]!
        self.unkId = ids[Self.unkToken]!
        self.fixedSpecialTokens = [Self.eosToken, Self.padToken, Self.unkToken].map {
            (token: Array($0.unicodeScalars), text: $0, id: ids[$0]!)
        }
        var texts: Set<String> = [Self.padToken, Self.eosToken, Self.unkToken]
        for n in 0..<extraIds { texts.insert(Self.sentinelText(n)) }
        self.specialTokenTexts = texts
    }

    /// Loads the tokenizer from a `spiece.model` file.
    public convenience init(contentsOf path: String, extraIds: Int = 100) throws {
        let bytes = try Self.readModelFile(path)
        do {
            try self.init(modelBytes: bytes, extraIds: extraIds)
        } catch let error as FlintError {
            throw FlintError("\(path): \(error.message)")
        }
    }

    // MARK: - Ids and pieces

    /// The id of sentinel `<extra_id_n>`, or nil when n is outside 0..<extraIds.
    public func sentinelId(_ n: Int) -> Int? {
        guard n >= 0, n < extraIds else { return nil }
        return count - 1 - n
    }

    /// True for `<pad>`, `</s>`, `<unk>` and the sentinels: the ids `decode(skipSpecialTokens: true)` leaves out.
    public func isSpecialId(_ id: Int) -> Bool {
        id == padId || id == eosId || id == unkId || (id >= spieceSize && id < count)
    }

    /// The token of an id, as transformers' `convert_ids_to_tokens`: a sentencepiece piece, or `<extra_id_N>` for
    /// the sentinel ids. Nil for ids outside 0..<count.
    public func idToPiece(_ id: Int) -> String? {
        if id >= spieceSize && id < count { return Self.sentinelText(count - 1 - id) }
        return processor.idToPiece(id)
    }

    /// The id of a token, as transformers' `convert_tokens_to_ids`: special tokens and sentinels first, then the
    /// sentencepiece vocabulary; `unkId` for anything else.
    public func pieceToId(_ piece: String) -> Int {
        let scalars = Array(piece.unicodeScalars)
        if let match = matchAddedToken(scalars, at: 0), match.length == scalars.count { return match.id }
        return processor.pieceToId(piece)
    }

    // MARK: - Encoding

    /// Token ids of a text, as `tokenizer(text).input_ids`: `</s>` is appended (when `addEOS`) unless the ids
    /// already end with it.
    public func encode(_ text: String, addEOS: Bool = true) -> [Int] {
        var ids = tokenizeWithIds(text).map { $0.id }
        if addEOS && ids.last != eosId { ids.append(eosId) }
        return ids
    }

    /// The pieces of a text, as `tokenizer.tokenize(text)` (no `</s>` appended).
    public func tokenize(_ text: String) -> [String] {
        tokenizeWithIds(text).map { $0.piece }
    }

    private enum Segment {
        case text([Unicode.Scalar])
        case added(text: String, id: Int, isSentinel: Bool)
    }

    private func tokenizeWithIds(_ text: String) -> [(piece: String, id: Int)] {
        var segments = splitOnAddedTokens(Array(text.unicodeScalars))
        // Sentinels are AddedToken(lstrip=True, rstrip=True): they eat the whitespace next to them.
        for i in segments.indices {
            guard case .text(var scalars) = segments[i] else { continue }
            if i > 0, case .added(_, _, true) = segments[i - 1] { scalars = Self.pythonLStrip(scalars) }
            if i + 1 < segments.count, case .added(_, _, true) = segments[i + 1] { scalars = Self.pythonRStrip(scalars) }
            segments[i] = .text(scalars)
        }
        var result: [(piece: String, id: Int)] = []
        for segment in segments {
            switch segment {
            case .added(let text, let id, _):
                result.append((text, id))
            case .text(let scalars):
                if scalars.isEmpty { continue }
                var string = ""
                string.unicodeScalars.append(contentsOf: scalars)
                for piece in encodePiecesOrDie(string) {
                    result.append((piece, pieceToId(piece)))
                }
            }
        }
        return result
    }

    /// `sp_model.encode(text, out_type=str)`: library normalization, then sentencepiece 0.2.x segmentation.
    /// sentencepiece only fails to normalize when its model failed to load, which `init` already rules out.
    private func encodePiecesOrDie(_ text: String) -> [String] {
        let normalized: [UInt8]
        do {
            normalized = try processor.normalize(text)
        } catch {
            preconditionFailure("tokenizer: sentencepiece failed on a model that loaded: \(error)")
        }
        return codec.encodePieces(normalized: normalized).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Cuts text around added tokens, leftmost first, as transformers' `Trie.split`. No added token is a prefix or
    /// part of another, so the trie's longest-match lookahead never picks a different cut than this scan.
    private func splitOnAddedTokens(_ scalars: [Unicode.Scalar]) -> [Segment] {
        var segments: [Segment] = []
        var textStart = 0
        var i = 0
        while i < scalars.count {
            if let match = matchAddedToken(scalars, at: i) {
                if textStart < i { segments.append(.text(Array(scalars[textStart..<i]))) }
                segments.append(.added(text: match.text, id: match.id, isSentinel: match.isSentinel))
                i += match.length
                textStart = i
            } else {
                i += 1
            }
        }
        if textStart < scalars.count { segments.append(.text(Array(scalars[textStart...]))) }
        return segments
    }

    private static let sentinelPrefix = Array("<extra_id_".unicodeScalars)

    /// The added token starting at `start`, if any. Sentinels are matched only in their canonical spelling
    /// (`<extra_id_7>`, not `<extra_id_07>`), since transformers matches the exact strings it registered.
    private func matchAddedToken(_ s: [Unicode.Scalar], at start: Int)
        -> (length: Int, text: String, id: Int, isSentinel: Bool)? {
        guard start < s.count, s[start] == "<" else { return nil }
        for special in fixedSpecialTokens where Self.hasPrefix(s, special.token, at: start) {
            return (special.token.count, special.text, special.id, false)
        }
        guard extraIds > 0, Self.hasPrefix(s, Self.sentinelPrefix, at: start) else { return nil }
        var j = start + Self.sentinelPrefix.count
        let digitsStart = j
        var n = 0
        while j < s.count, j - digitsStart < 10, let digit = Self.asciiDigit(s[j]) {
            n = n * 10 + digit
            j += 1
        }
        let digitCount = j - digitsStart
        guard digitCount > 0, j < s.count, s[j] == ">" else { return nil }
        guard digitCount == 1 || s[digitsStart] != "0", n < extraIds else { return nil }
        return (j + 1 - start, Self.sentinelText(n), count - 1 - n, true)
    }

    // MARK: - Decoding

    /// Text of ids, as `tokenizer.decode(ids, skip_special_tokens=skipSpecialTokens)`. Ids outside 0..<count are
    /// dropped (see the type's documentation).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        // transformers' PreTrainedTokenizer._decode: sentinels (added tokens beyond the sentencepiece vocabulary)
        // split the token list; each stretch between them goes through T5's convert_tokens_to_string.
        var parts: [String] = []
        var stretch: [String] = []
        for id in ids {
            if skipSpecialTokens && isSpecialId(id) { continue }
            guard let token = idToPiece(id) else { continue }
            if skipSpecialTokens && specialTokenTexts.contains(token) { continue }
            if id >= spieceSize {  // a sentinel
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
        return parts.joined(separator: " ")
    }

    /// T5Tokenizer.convert_tokens_to_string: drops the prefix space of the first token, decodes runs of ordinary
    /// pieces with sentencepiece and writes `</s>` / `<pad>` / `<unk>` literally, then strips both ends.
    private func convertTokensToString(_ tokens: [String]) -> String {
        var tokens = tokens
        if let first = tokens.first, first.unicodeScalars.first == "\u{2581}" {
            var rest = String.UnicodeScalarView()
            rest.append(contentsOf: first.unicodeScalars.dropFirst())
            tokens[0] = String(rest)
        }
        var out = ""
        var run: [String] = []
        var previousIsSpecial = false
        for token in tokens {
            if specialTokenTexts.contains(token) {
                if !previousIsSpecial { out += " " }
                out += decodePiecesOrDie(run) + token
                previousIsSpecial = true
                run = []
            } else {
                run.append(token)
                previousIsSpecial = false
            }
        }
        out += decodePiecesOrDie(run)
        var stripped = String.UnicodeScalarView()
        stripped.append(contentsOf: Self.pythonStrip(Array(out.unicodeScalars)))
        return String(stripped)
    }

    /// `sp_model.decode(pieces)` of sentencepiece 0.2.x.
    private func decodePiecesOrDie(_ pieces: [String]) -> String {
        if pieces.isEmpty { return "" }
        return codec.decodePieces(pieces, pieceToId: processor.pieceToId)
    }

    // MARK: - Helpers

    private static func sentinelText(_ n: Int) -> String { "<extra_id_\(n)>" }

    private static func hasPrefix(_ s: [Unicode.Scalar], _ prefix: [Unicode.Scalar], at start: Int) -> Bool {
        guard s.count - start >= prefix.count else { return false }
        for k in 0..<prefix.count where s[start + k] != prefix[k] { return false }
        return true
    }

    private static func asciiDigit(_ c: Unicode.Scalar) -> Int? {
        c.value >= 0x30 && c.value <= 0x39 ? Int(c.value - 0x30) : nil
    }

    /// Python's `str.isspace()` set, which `strip()`, `lstrip()` and `rstrip()` remove.
    private static func isPythonWhitespace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    private static func pythonLStrip(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        Array(s.drop(while: isPythonWhitespace))
    }

    private static func pythonRStrip(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var end = s.count
        while end > 0 && isPythonWhitespace(s[end - 1]) { end -= 1 }
        return Array(s[..<end])
    }

    private static func pythonStrip(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] { pythonRStrip(pythonLStrip(s)) }

    /// Largest `spiece.model` accepted from disk; real ones are 0.8 MB (T5) to 5 MB (mT5).
    private static let maximumModelFileSize = 256 << 20

    private static func readModelFile(_ path: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FlintError("\(path): no such file (expected a sentencepiece spiece.model)")
        }
        guard !isDirectory.boolValue else {
            throw FlintError("\(path): is a directory, expected a sentencepiece spiece.model file")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        if let size = (attributes?[.size] as? NSNumber)?.intValue, size > maximumModelFileSize {
            throw FlintError("\(path): \(size) bytes is too large for a sentencepiece model "
                             + "(limit \(maximumModelFileSize) bytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FlintError("\(path): cannot be read")
        }
        return [UInt8](data)
    }
}
