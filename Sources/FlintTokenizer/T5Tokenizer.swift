import FlintFormat
import Foundation

/// The tokenizer of a T5-family model, giving what `AutoTokenizer.from_pretrained(folder)` gives for the files the
/// model came with:
/// - from `tokenizer.json` (type `hf-tokenizers-json`): the fast tokenizer of the `tokenizers` library
///   (`FastTokenizer`), with its own added tokens and post-processor;
/// - from `spiece.model` (type `sentencepiece`): transformers' slow `T5Tokenizer` (`SlowT5Tokenizer`), with the
///   sentinels and added tokens of `tokenizer_config.json` / `added_tokens.json` / `special_tokens_map.json`;
/// - for a folder whose tokenizer class is `ByT5Tokenizer` (type `byt5`, google/byt5-*): UTF-8 bytes
///   (`ByT5Tokenizer`), with the added tokens of those files.
///
/// Ids outside the tokenizer (such as the padding rows 32100..<32128 of a T5 model's vocabulary) are dropped by
/// `decode`, so generated ids never crash a decode.
public final class T5Tokenizer: @unchecked Sendable {
    public static let padToken = "<pad>"
    public static let eosToken = "</s>"
    public static let unkToken = "<unk>"

    private enum Backend {
        case slow(SlowT5Tokenizer)
        case fast(FastTokenizer)
        case byt5(ByT5Tokenizer)
    }

    private let backend: Backend

    /// `len(tokenizer)`.
    public let count: Int
    /// Id of `</s>` (1 for T5).
    public let eosId: Int
    /// Id of `<pad>` (0 for T5).
    public let padId: Int
    /// Id of `<unk>` (2 for T5).
    public let unkId: Int
    /// Number of sentinels `<extra_id_0>`, `<extra_id_1>`, … the tokenizer has (consecutive from 0).
    public let extraIds: Int
    /// The descriptor stored with the tokenizer bytes in a `.flint` file.
    public let info: TokenizerInfo

    /// The slow tokenizer from the bytes of a `spiece.model`.
    /// - Parameter extraIds: number of sentinels, 100 as in every T5 / FLAN-T5 checkpoint.
    public convenience init(modelBytes: [UInt8], extraIds: Int = 100) throws {
        try self.init(bytes: modelBytes, info: TokenizerInfo(type: TokenizerInfo.sentencepiece, extraIds: extraIds))
    }

    /// The slow tokenizer from a `spiece.model` file.
    public convenience init(contentsOf path: String, extraIds: Int = 100) throws {
        let bytes = try Self.readFile(path, expected: "a sentencepiece spiece.model")
        do {
            try self.init(modelBytes: bytes, extraIds: extraIds)
        } catch let error as FlintError {
            throw error.with(message: "\(path): \(error.message)")
        }
    }

    /// The fast tokenizer from the bytes of a `tokenizer.json`.
    public convenience init(tokenizerJSON bytes: [UInt8], cleanUpTokenizationSpaces: Bool = false) throws {
        var info = TokenizerInfo(type: TokenizerInfo.tokenizersJSON, extraIds: 0)
        info.cleanUpTokenizationSpaces = cleanUpTokenizationSpaces
        try self.init(bytes: bytes, info: info)
    }

    /// The tokenizer described by `info` (as stored in a `.flint` file or found in a model folder) over `bytes`.
    public init(bytes: [UInt8], info: TokenizerInfo) throws {
        switch info.type {
        case TokenizerInfo.sentencepiece:
            let slow = try SlowT5Tokenizer(modelBytes: bytes, info: info)
            backend = .slow(slow)
            count = slow.count
            eosId = slow.eosId
            padId = slow.padId
            unkId = slow.unkId
        case TokenizerInfo.tokenizersJSON:
            let fast = try FastTokenizer(json: bytes, cleanUpTokenizationSpaces: info.cleanUpTokenizationSpaces ?? false)
            backend = .fast(fast)
            count = fast.count
            guard let eos = fast.tokenToId(Self.eosToken) else {
                throw FlintError(.corrupt, "tokenizer.json: no \"\(Self.eosToken)\" token; a T5 tokenizer needs <pad>, </s> and <unk>")
            }
            eosId = eos
            padId = fast.tokenToId(Self.padToken) ?? eos
            unkId = fast.tokenToId(Self.unkToken) ?? eos
        case TokenizerInfo.byt5:
            let byt5 = try ByT5Tokenizer(bytes: bytes, info: info)
            backend = .byt5(byt5)
            count = byt5.count
            eosId = byt5.eosId
            padId = byt5.padId
            unkId = byt5.unkId
        default:
            throw FlintError(.unsupported, "tokenizer type \"\(info.type)\" is not supported (expected \(TokenizerInfo.sentencepiece), "
                             + "\(TokenizerInfo.tokenizersJSON) or \(TokenizerInfo.byt5))")
        }
        var sentinels = 0
        while sentinels < 1_000_000, Self.lookUp(backend, "<extra_id_\(sentinels)>") != nil { sentinels += 1 }
        extraIds = sentinels
        var stored = info
        stored.extraIds = sentinels
        self.info = stored
    }

    private static func lookUp(_ backend: Backend, _ token: String) -> Int? {
        switch backend {
        case .slow(let slow): return slow.addedTokenId(token)
        case .fast(let fast): return fast.tokenToId(token)
        case .byt5(let byt5): return byt5.addedTokenId(token)
        }
    }

    /// Pieces of the model vocabulary: the sentencepiece model's size (32000 for T5), the tokenizer.json
    /// Unigram vocabulary's (which may already include the sentinels), or ByT5's 3 + 256.
    public var spieceSize: Int {
        switch backend {
        case .slow(let slow): return slow.spieceSize
        case .fast(let fast): return fast.modelVocabularySize
        case .byt5: return ByT5Tokenizer.offset + ByT5Tokenizer.byteCount
        }
    }

    /// Which implementation runs: `sentencepiece` (slow T5Tokenizer) or `hf-tokenizers-json` (fast).
    public var type: String { info.type }

    // MARK: - Ids and pieces

    /// The id of sentinel `<extra_id_n>`, or nil when the tokenizer has no such token.
    public func sentinelId(_ n: Int) -> Int? {
        guard n >= 0 else { return nil }
        return Self.lookUp(backend, "<extra_id_\(n)>")
    }

    /// True for the special tokens (`<pad>`, `</s>`, `<unk>`, sentinels, special added tokens): the ids
    /// `decode(skipSpecialTokens: true)` leaves out.
    public func isSpecialId(_ id: Int) -> Bool {
        switch backend {
        case .slow(let slow): return slow.isSpecialId(id)
        case .fast(let fast): return fast.idToToken(id).map(fast.isSpecial) ?? false
        case .byt5(let byt5): return byt5.isSpecialId(id)
        }
    }

    /// The token of an id (`convert_ids_to_tokens`), or nil for ids outside the tokenizer.
    public func idToPiece(_ id: Int) -> String? {
        switch backend {
        case .slow(let slow): return slow.idToPiece(id)
        case .fast(let fast): return fast.idToToken(id)
        case .byt5(let byt5): return byt5.idToPiece(id)
        }
    }

    /// The id of a token (`convert_tokens_to_ids`); `unkId` for a string that is no token.
    public func pieceToId(_ piece: String) -> Int {
        switch backend {
        case .slow(let slow): return slow.pieceToId(piece)
        case .fast(let fast): return fast.tokenToId(piece) ?? unkId
        case .byt5(let byt5): return byt5.pieceToId(piece)
        }
    }

    // MARK: - Encoding and decoding

    /// Token ids of a text, as `tokenizer(text).input_ids` (with `addEOS`, the special tokens the tokenizer adds).
    public func encode(_ text: String, addEOS: Bool = true) -> [Int] {
        encodeWithPieces(text, addEOS: addEOS).ids
    }

    /// The pieces of a text, as `tokenizer.tokenize(text)` (no `</s>` appended).
    public func tokenize(_ text: String) -> [String] {
        switch backend {
        case .slow(let slow): return slow.tokenize(text)
        case .fast(let fast): return fast.encode(text, addSpecialTokens: false).map { $0.value }
        case .byt5(let byt5): return byt5.tokenize(text)
        }
    }

    /// Ids and the pieces they stand for, one to one (unknown pieces keep their text, as `tokenize` does).
    public func encodeWithPieces(_ text: String, addEOS: Bool = true) -> (ids: [Int], pieces: [String]) {
        switch backend {
        case .slow(let slow):
            let ids = slow.encode(text, addEOS: addEOS)
            var pieces = slow.tokenize(text)
            if ids.count > pieces.count { pieces.append(Self.eosToken) }
            return (ids, pieces)
        case .fast(let fast):
            let tokens = fast.encode(text, addSpecialTokens: addEOS)
            return (tokens.map { $0.id }, tokens.map { $0.value })
        case .byt5(let byt5):
            let ids = byt5.encode(text, addEOS: addEOS)
            var pieces = byt5.tokenize(text)
            if ids.count > pieces.count { pieces.append(byt5.idToPiece(byt5.eosId) ?? Self.eosToken) }
            return (ids, pieces)
        }
    }

    /// Text of ids, as `tokenizer.decode(ids, skip_special_tokens=skipSpecialTokens)`. Ids outside the tokenizer
    /// are dropped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        switch backend {
        case .slow(let slow): return slow.decode(ids, skipSpecialTokens: skipSpecialTokens)
        case .fast(let fast): return fast.decode(ids, skipSpecialTokens: skipSpecialTokens)
        case .byt5(let byt5): return byt5.decode(ids, skipSpecialTokens: skipSpecialTokens)
        }
    }

    // MARK: - Files

    /// Largest tokenizer file accepted from disk; real ones are 0.8 MB (T5 spiece.model) to 17 MB (mT5
    /// tokenizer.json).
    static let maximumFileSize = 256 << 20

    static func readFile(_ path: String, expected: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FlintError(.notFound, "\(path): no such file (expected \(expected))")
        }
        guard !isDirectory.boolValue else {
            throw FlintError(.invalidArgument, "\(path): is a directory, expected \(expected) file")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        if let size = (attributes?[.size] as? NSNumber)?.intValue, size > maximumFileSize {
            throw FlintError(.corrupt, "\(path): \(size) bytes is too large for a tokenizer file (limit \(maximumFileSize) bytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FlintError(.io, "\(path): cannot be read")
        }
        return [UInt8](data)
    }
}

extension T5Tokenizer {
    /// The tokenizer a weight source carries (a `.flint` file's tokenizer section, or a model folder's
    /// tokenizer files), nil when it carries none. Errors name the source.
    public static func load(from weights: WeightSource) throws -> T5Tokenizer? {
        guard let bytes = weights.tokenizerModel, let info = weights.tokenizerInfo else { return nil }
        do {
            return try T5Tokenizer(bytes: bytes, info: info)
        } catch let error as FlintError {
            throw error.with(message: "\(weights.sourceDescription): tokenizer (\(info.fileName)): \(error.message)")
        }
    }
}
