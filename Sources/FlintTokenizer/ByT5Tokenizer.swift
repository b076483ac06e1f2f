import FlintFormat
import Foundation

/// transformers' `ByT5Tokenizer` (4.57.6; google/byt5-*): no vocabulary, a token per UTF-8 byte.
///
/// What transformers does, and this class repeats:
/// - Ids: `<pad>` 0, `</s>` 1, `<unk>` 2 (stripping the whitespace on both sides of them), byte `b` is id `b + 3`
///   (its token is the character `chr(b)`), then the added tokens — by default the sentinels `<extra_id_0>` …
///   `<extra_id_124>` at ids 259 … 383, in increasing order (unlike T5's).
/// - `encode`: the text is cut around added tokens (`AddedTokenSplitter`), every other stretch becomes its UTF-8
///   bytes, and `</s>` is appended unless the ids already end with it.
/// - `decode`: ids become tokens; "legacy added tokens" (added tokens that are not special, and the additional
///   special tokens with ids ≥ 256, i.e. the sentinels) split the token list, each run between them is turned
///   back into bytes (an added token's content as its UTF-8, a byte token as its byte) and decoded as UTF-8 with
///   invalid sequences dropped (`errors="ignore"`), and the parts are joined with single spaces; then
///   `clean_up_tokenization` when `clean_up_tokenization_spaces` is set. With `skipSpecialTokens` the ids of
///   pad / eos / unk and the additional special tokens are left out first.
/// - Ids the tokenizer does not have (negative, or ≥ 259 and not an added token) make transformers raise; they are
///   dropped here, so generated ids never crash a decode.
final class ByT5Tokenizer: @unchecked Sendable {
    /// Ids below this are pad / eos / unk; byte `b` is `b + offset`.
    static let offset = 3
    /// transformers' `vocab_size` (`2**8`): additional special tokens with ids at or above it split decoding.
    static let byteCount = 256

    let padId: Int, eosId: Int, unkId: Int
    /// `len(tokenizer)`.
    let count: Int

    private let splitter: AddedTokenSplitter
    private let specialTokenTexts: Set<String>
    private let specialIds: Set<Int>
    private let legacyAddedTokens: Set<String>
    private let cleanUpTokenizationSpaces: Bool

    /// The tokenizer `info` describes (type `byt5`); `bytes` must be the section marker.
    init(bytes: [UInt8], info: TokenizerInfo) throws {
        guard bytes == TokenizerInfo.byt5SectionBytes else {
            throw FlintError(.corrupt, "tokenizer: a byt5 tokenizer section must hold the \(TokenizerInfo.byt5SectionBytes.count) bytes "
                             + "\"ByT5Tokenizer\", found \(bytes.count) other bytes")
        }
        guard let added = info.addedTokens else {
            throw FlintError(.corrupt, "tokenizer: a byt5 tokenizer needs its added_tokens (pad, eos and unk at ids 0, 1, 2)")
        }
        for token in added {
            guard token.id >= 0, token.id < Int(Int32.max), !token.content.isEmpty else {
                throw FlintError(.corrupt, "tokenizer: added token \"\(token.content)\" has id \(token.id), outside 0..<2^31 or empty")
            }
        }
        let splitter = AddedTokenSplitter(added)
        self.splitter = splitter
        let byId = splitter.byId
        guard let pad = byId[0], let eos = byId[1], let unk = byId[2] else {
            throw FlintError(.corrupt, "tokenizer: a byt5 tokenizer needs added tokens at ids 0, 1 and 2 (pad, eos, unk); "
                             + "it has \(added.map(\.id).sorted().prefix(8))")
        }
        padId = 0
        eosId = 1
        unkId = 2
        let additional = info.additionalSpecialTokens ?? []
        let specials = Set([eos.content, unk.content, pad.content] + additional)
        specialTokenTexts = specials
        cleanUpTokenizationSpaces = info.cleanUpTokenizationSpaces ?? false

        // `get_vocab()`: ids 0..<259 through convert_ids_to_tokens, then the added tokens.
        var vocabulary: [String: Int] = [:]
        for id in 0..<(Self.offset + Self.byteCount) {
            vocabulary[byId[id]?.content ?? Self.byteToken(id - Self.offset)] = id
        }
        for token in added { vocabulary[token.content] = token.id }
        count = vocabulary.count
        // `convert_tokens_to_ids`: an added token, else a single character below U+0100 is a byte; else none.
        func tokenId(_ token: String) -> Int? {
            if let t = splitter.byContent[token] { return t.id }
            let scalars = Array(token.unicodeScalars)
            return scalars.count == 1 && scalars[0].value < 256 ? Int(scalars[0].value) + Self.offset : nil
        }
        specialIds = Set(specials.compactMap(tokenId))
        var legacy = Set(splitter.byContent.keys).subtracting(specials)
        for token in additional {
            if let id = tokenId(token), id >= Self.byteCount { legacy.insert(token) }
        }
        legacyAddedTokens = legacy
    }

    /// The character transformers uses as the token of byte `b` (`chr(b)`).
    private static func byteToken(_ b: Int) -> String { String(Unicode.Scalar(UInt8(b))) }

    // MARK: - Ids and tokens

    func addedTokenId(_ content: String) -> Int? { splitter.byContent[content]?.id }

    func isSpecialId(_ id: Int) -> Bool { specialIds.contains(id) }

    /// `convert_ids_to_tokens`; nil for ids the tokenizer does not have.
    func idToPiece(_ id: Int) -> String? {
        if let token = splitter.byId[id] { return token.content }
        guard id >= Self.offset, id < Self.offset + Self.byteCount else { return nil }
        return Self.byteToken(id - Self.offset)
    }

    /// `convert_tokens_to_ids`; transformers gives None for a string that is neither an added token nor one
    /// character below U+0100: `unkId` here, as the other tokenizers' lookups.
    func pieceToId(_ piece: String) -> Int {
        if let token = splitter.byContent[piece] { return token.id }
        let scalars = Array(piece.unicodeScalars)
        if scalars.count == 1 && scalars[0].value < 256 { return Int(scalars[0].value) + Self.offset }
        return unkId
    }

    // MARK: - Encoding

    /// `tokenizer.tokenize(text)`: added tokens whole, every other byte as the character `chr(byte)`.
    func tokenize(_ text: String) -> [String] {
        var result: [String] = []
        for part in splitter.segments(text) {
            if part.added {
                result.append(part.text)
            } else {
                result.append(contentsOf: part.text.utf8.map { Self.byteToken(Int($0)) })
            }
        }
        return result
    }

    /// `tokenizer(text).input_ids`.
    func encode(_ text: String, addEOS: Bool = true) -> [Int] {
        var ids = tokenize(text).map(pieceToId)
        if addEOS && ids.last != eosId { ids.append(eosId) }
        return ids
    }

    // MARK: - Decoding

    func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        slowTokenizerDecode(ids, skipSpecialTokens: skipSpecialTokens, specialIds: specialIds,
                            specialTokenTexts: specialTokenTexts, legacyAddedTokens: legacyAddedTokens,
                            cleanUpTokenizationSpaces: cleanUpTokenizationSpaces, idToPiece: idToPiece,
                            convertTokensToString: convertTokensToString)
    }

    /// ByT5Tokenizer.convert_tokens_to_string: added tokens as their UTF-8, byte tokens as their byte, the whole
    /// decoded with `errors="ignore"`.
    private func convertTokensToString(_ tokens: [String]) -> String {
        var bytes: [UInt8] = []
        for token in tokens {
            if splitter.byContent[token] != nil {
                bytes.append(contentsOf: token.utf8)
            } else if let scalar = token.unicodeScalars.first, scalar.value < 256 {
                bytes.append(UInt8(scalar.value))
            }
        }
        return Self.decodeUTF8DroppingInvalid(bytes)
    }

    /// Python's `bytes.decode("utf-8", errors="ignore")`: the Unicode "maximal subpart" rule (which both Python and
    /// Swift's decoder follow) decides where an invalid sequence ends; its bytes are dropped.
    static func decodeUTF8DroppingInvalid(_ bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        loop: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput: break loop
            case .error: continue
            }
        }
        return String(scalars)
    }
}
