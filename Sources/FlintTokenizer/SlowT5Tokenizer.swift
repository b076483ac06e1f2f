import FlintFormat
import Foundation

/// A tokenizer that gives the same ids, pieces and decoded text as Hugging Face's slow `T5Tokenizer` with its
/// default settings (transformers 4.57.6: `legacy=True`, `add_prefix_space=True`, `extra_ids=100`,
/// `clean_up_tokenization_spaces=False`), over the same `spiece.model`.
///
/// What transformers does, and this class repeats:
/// - Added tokens are cut out of the text before sentencepiece sees it (leftmost-longest, as transformers' Trie):
///   by default `</s>`, `<pad>`, `<unk>` (at their sentencepiece ids) and the sentinels `<extra_id_0>` …
///   `<extra_id_{extraIds-1}>`, where `<extra_id_N>` has id `spieceSize + extraIds - 1 - N`; a folder's
///   `tokenizer_config.json` may list others (`TokenizerInfo.addedTokens`). A token with `rstrip` / `lstrip`
///   strips the whitespace after / before it (sentinels do both), `single_word` glues it to an adjacent word.
///   Each remaining stretch of text is encoded by sentencepiece on its own.
/// - `encode` appends `</s>` unless the ids already end with it.
/// - `decode` decodes the pieces between "legacy added tokens" (non-special added tokens and special ones beyond the
///   sentencepiece vocabulary, such as the sentinels) with sentencepiece, keeps the other special tokens (`</s>`,
///   `<pad>`, `<unk>`) as literal text (preceded by a space unless the previous token was one too), joins the parts
///   with single spaces, and strips the ends of each part (Python's `str.strip()`).
/// - The sentencepiece steps themselves are those of sentencepiece 0.2.x, which transformers runs: normalization by
///   libsentencepiece, segmentation and piece decoding by `UnigramCodec` (the system library is 0.1.97 and differs
///   in both; see there).
///
/// Ids at or above `count` (the rows by which a model's vocabulary exceeds the tokenizer, e.g. 32100..<32128 for
/// T5) and negative ids: the slow transformers tokenizer raises `IndexError` ("piece id is out of range") on them;
/// the fast one (`T5TokenizerFast`) drops them. `decode` drops them too, so generated ids never crash a decode.
final class SlowT5Tokenizer: @unchecked Sendable {
    static let padToken = "<pad>"
    static let eosToken = "</s>"
    static let unkToken = "<unk>"

    /// Number of pieces in the sentencepiece model (32000 for T5).
    let spieceSize: Int
    /// Id of `<pad>` in the sentencepiece model (0 for T5).
    let padId: Int
    /// Id of `</s>` (1 for T5).
    let eosId: Int
    /// Id of `<unk>` (2 for T5).
    let unkId: Int
    /// `len(tokenizer)`: distinct tokens of the sentencepiece vocabulary and the added tokens.
    let count: Int

    private let processor: SentencePieceProcessor
    /// sentencepiece 0.2.x segmentation and piece decoding (see UnigramCodec for why not the library's).
    private let codec: UnigramCodec
    /// transformers' `_added_tokens_decoder` / `_added_tokens_encoder`, and the cutting of text around them.
    private let splitter: AddedTokenSplitter
    private var addedById: [Int: AddedTokenInfo] { splitter.byId }
    private var addedByContent: [String: AddedTokenInfo] { splitter.byContent }
    private let cleanUpTokenizationSpaces: Bool
    /// transformers' `all_special_tokens` and their ids.
    private let specialTokenTexts: Set<String>
    private let specialIds: Set<Int>
    /// Added tokens that split the token list in `decode` (`legacy_added_tokens` in transformers' `_decode`).
    private let legacyAddedTokens: Set<String>

    /// Loads the tokenizer from the bytes of a `spiece.model` and the added tokens `info` describes (nil
    /// `addedTokens`: `<pad>`, `</s>`, `<unk>` and `info.extraIds` sentinels, T5Tokenizer's defaults).
    init(modelBytes: [UInt8], info: TokenizerInfo) throws {
        let extraIds = info.extraIds
        guard extraIds >= 0, extraIds <= 1_000_000 else {
            throw FlintError(.invalidArgument, "tokenizer: extraIds must be in 0...1000000, got \(extraIds)")
        }
        // The proto first: it checks the charsmap tries that libsentencepiece would read without bounds checks.
        let proto = try SentencePieceModelProto(bytes: modelBytes)
        let processor = try SentencePieceProcessor(modelBytes: modelBytes)
        guard proto.pieces.count == processor.pieceCount else {
            throw FlintError(.corrupt, "tokenizer: the sentencepiece model lists \(proto.pieces.count) pieces but "
                             + "libsentencepiece loaded \(processor.pieceCount)")
        }
        guard proto.modelType == 1 else {
            throw FlintError(.unsupported, "tokenizer: sentencepiece model type \(proto.modelType) is not supported; "
                             + "T5 vocabularies are unigram models (type 1)")
        }
        guard !proto.hasDenormalizer else {
            throw FlintError(.unsupported, "tokenizer: sentencepiece models with a denormalizer are not supported (T5's has none)")
        }
        guard processor.pieceCount + extraIds <= Int(Int32.max) else {
            throw FlintError(.corrupt, "tokenizer: \(processor.pieceCount) pieces plus \(extraIds) sentinels do not fit in 32-bit ids")
        }
        var ids: [String: Int] = [:]
        for token in [Self.padToken, Self.eosToken, Self.unkToken] {
            let id = processor.pieceToId(token)
            guard processor.idToPiece(id) == token else {
                throw FlintError(.corrupt, "tokenizer: the sentencepiece model (\(processor.pieceCount) pieces) has no \"\(token)\" "
                                 + "piece; a T5 vocabulary needs <pad>, </s> and <unk>")
            }
            ids[token] = id
        }
        self.processor = processor
        self.codec = UnigramCodec(model: proto)
        self.spieceSize = processor.pieceCount
        self.padId = ids[Self.padToken]!
        self.eosId = ids[Self.eosToken]!
        self.unkId = ids[Self.unkToken]!

        let sentinels = (0..<extraIds).map { "<extra_id_\($0)>" }
        let added: [AddedTokenInfo] = info.addedTokens ?? (
            [Self.padToken, Self.eosToken, Self.unkToken].map { AddedTokenInfo(id: ids[$0]!, content: $0, special: true) }
            + sentinels.enumerated().map { n, text in
                AddedTokenInfo(id: processor.pieceCount + extraIds - 1 - n, content: text, special: true,
                               lstrip: true, rstrip: true)
            })
        for token in added {
            guard token.id >= 0, token.id < Int(Int32.max), !token.content.isEmpty else {
                throw FlintError(.corrupt, "tokenizer: added token \"\(token.content)\" has id \(token.id), outside 0..<2^31 or empty")
            }
        }
        splitter = AddedTokenSplitter(added)
        let byContent = splitter.byContent, byId = splitter.byId
        cleanUpTokenizationSpaces = info.cleanUpTokenizationSpaces ?? false
        let additional = info.additionalSpecialTokens ?? sentinels
        let specials = Set([Self.eosToken, Self.unkToken, Self.padToken] + additional)
        specialTokenTexts = specials
        specialIds = Set(specials.map { byContent[$0]?.id ?? processor.pieceToId($0) })
        var legacy = Set(byContent.keys).subtracting(specials)
        for token in additional {
            let id = byContent[token]?.id ?? processor.pieceToId(token)
            if id >= processor.pieceCount { legacy.insert(token) }
        }
        legacyAddedTokens = legacy
        var vocabulary = Set<String>()
        for id in 0..<processor.pieceCount { vocabulary.insert(byId[id]?.content ?? processor.idToPiece(id) ?? "") }
        vocabulary.formUnion(byContent.keys)
        count = vocabulary.count
    }

    // MARK: - Ids and pieces

    /// The id of an added token (sentinels included), or nil.
    func addedTokenId(_ content: String) -> Int? { addedByContent[content]?.id }

    /// True for the ids of `all_special_tokens`: the ids `decode(skipSpecialTokens: true)` leaves out.
    func isSpecialId(_ id: Int) -> Bool { specialIds.contains(id) }

    /// The token of an id, as transformers' `convert_ids_to_tokens`: an added token, else a sentencepiece piece.
    /// Nil for ids the tokenizer does not have.
    func idToPiece(_ id: Int) -> String? {
        if let token = addedById[id] { return token.content }
        return processor.idToPiece(id)
    }

    /// The id of a token, as transformers' `convert_tokens_to_ids`: added tokens first, then the sentencepiece
    /// vocabulary; `unkId` for anything else.
    func pieceToId(_ piece: String) -> Int {
        if let token = addedByContent[piece] { return token.id }
        return processor.pieceToId(piece)
    }

    // MARK: - Encoding

    /// Token ids of a text, as `tokenizer(text).input_ids`: `</s>` is appended (when `addEOS`) unless the ids
    /// already end with it.
    func encode(_ text: String, addEOS: Bool = true) -> [Int] {
        var ids = tokenize(text).map { pieceToId($0) }
        if addEOS && ids.last != eosId { ids.append(eosId) }
        return ids
    }

    /// The pieces of a text, as `tokenizer.tokenize(text)` (no `</s>` appended): transformers'
    /// `PreTrainedTokenizer.tokenize` with its added-token flag rules, then sentencepiece on each other stretch.
    func tokenize(_ text: String) -> [String] {
        var result: [String] = []
        for part in splitter.segments(text) {
            if part.added {
                result.append(part.text)
            } else {
                result.append(contentsOf: encodePiecesOrDie(part.text))
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

    // MARK: - Decoding

    /// Text of ids, as `tokenizer.decode(ids, skip_special_tokens=skipSpecialTokens)` (transformers'
    /// `PreTrainedTokenizer._decode`). Ids the tokenizer does not have are dropped (see the type's documentation).
    func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        slowTokenizerDecode(ids, skipSpecialTokens: skipSpecialTokens, specialIds: specialIds,
                            specialTokenTexts: specialTokenTexts, legacyAddedTokens: legacyAddedTokens,
                            cleanUpTokenizationSpaces: cleanUpTokenizationSpaces, idToPiece: idToPiece,
                            convertTokensToString: convertTokensToString)
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

    private static func pythonStrip(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] { AddedTokenSplitter.pythonStrip(s) }
}
