import FlintFormat
import FlintTokenizer
import Foundation
import Testing
import TestSupport

private func vocabPath(_ name: String) -> String {
    fixturePath("vocab/\(name)/spiece.model")
}

/// Goldens written by Tools/make_tokenizer_golden.py with transformers' slow T5Tokenizer.
private struct TokenizerGolden: Decodable {
    typealias Case = GoldenEncodeCase
    typealias DecodeCase = GoldenDecodeCase
    let vocab: String
    let spiece_size: Int
    let tokenizer_len: Int
    let cases: [Case]
    let decode_cases: [DecodeCase]

    static func load(_ name: String) throws -> TokenizerGolden {
        let url = URL(fileURLWithPath: fixturePath("tokenizer/\(name).json"))
        return try JSONDecoder().decode(TokenizerGolden.self, from: Data(contentsOf: url))
    }
}

private let loadedTokenizers = LoadedTokenizers()

/// Loads each vocabulary once for all tests (the T5 model takes a moment to parse).
private final class LoadedTokenizers: @unchecked Sendable {
    private let lock = NSLock()
    private var tokenizers: [String: T5Tokenizer] = [:]
    func get(_ name: String) throws -> T5Tokenizer {
        lock.lock()
        defer { lock.unlock() }
        if let tokenizer = tokenizers[name] { return tokenizer }
        let tokenizer = try T5Tokenizer(contentsOf: vocabPath(name))
        tokenizers[name] = tokenizer
        return tokenizer
    }
}

@Suite struct T5TokenizerParityTests {
    @Test(arguments: ["small", "t5"])
    func vocabularySizes(vocab: String) throws {
        let golden = try TokenizerGolden.load(vocab)
        let tokenizer = try loadedTokenizers.get(vocab)
        #expect(golden.vocab == vocab)
        #expect(tokenizer.spieceSize == golden.spiece_size)
        #expect(tokenizer.count == golden.tokenizer_len)
        #expect(tokenizer.padId == 0 && tokenizer.eosId == 1 && tokenizer.unkId == 2)
    }

    @Test(arguments: ["small", "t5"])
    func encodeAndDecodeMatchTransformers(vocab: String) throws {
        let golden = try TokenizerGolden.load(vocab)
        let tokenizer = try loadedTokenizers.get(vocab)
        #expect(golden.cases.count > 200)
        for c in golden.cases {
            #expect(tokenizer.encode(c.text) == c.ids, "ids of \(String(reflecting: c.text))")
            #expect(tokenizer.tokenize(c.text) == c.pieces, "pieces of \(String(reflecting: c.text))")
            #expect(tokenizer.decode(c.ids) == c.decoded, "decode of \(String(reflecting: c.text))")
            #expect(tokenizer.decode(c.ids, skipSpecialTokens: true) == c.decoded_skip_special,
                    "decode(skip) of \(String(reflecting: c.text))")
        }
    }

    @Test(arguments: ["small", "t5"])
    func decodeCasesMatchTransformers(vocab: String) throws {
        let golden = try TokenizerGolden.load(vocab)
        let tokenizer = try loadedTokenizers.get(vocab)
        #expect(golden.decode_cases.count > 10)
        for c in golden.decode_cases {
            #expect(tokenizer.decode(c.ids) == c.decoded, "decode of \(c.ids)")
            #expect(tokenizer.decode(c.ids, skipSpecialTokens: true) == c.decoded_skip_special,
                    "decode(skip) of \(c.ids)")
        }
    }
}

@Suite struct T5TokenizerBehaviourTests {
    /// The example from the T5 documentation.
    @Test func documentedTranslationPrompt() throws {
        let tokenizer = try loadedTokenizers.get("t5")
        #expect(tokenizer.encode("translate English to German: The house is wonderful.")
                == [13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1])
        #expect(tokenizer.encode("translate English to German: The house is wonderful.", addEOS: false)
                == [13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5])
    }

    @Test func sentinelIds() throws {
        let tokenizer = try loadedTokenizers.get("t5")
        #expect(tokenizer.count == 32100)
        #expect(tokenizer.sentinelId(0) == 32099)
        #expect(tokenizer.sentinelId(99) == 32000)
        #expect(tokenizer.sentinelId(100) == nil)
        #expect(tokenizer.pieceToId("<extra_id_0>") == 32099)
        #expect(tokenizer.pieceToId("<extra_id_00>") == tokenizer.unkId)
        #expect(tokenizer.pieceToId("</s>") == 1)
        #expect(tokenizer.pieceToId("▁The") == 37)
        #expect(tokenizer.idToPiece(32099) == "<extra_id_0>")
        #expect(tokenizer.idToPiece(37) == "▁The")
        #expect(tokenizer.idToPiece(32100) == nil)
        #expect(tokenizer.idToPiece(-1) == nil)
        #expect(tokenizer.isSpecialId(32000) && tokenizer.isSpecialId(0) && !tokenizer.isSpecialId(37))
    }

    /// Model vocabularies are padded past the tokenizer (T5: 32128 rows for 32100 tokens); transformers' slow
    /// tokenizer raises IndexError on those ids, the fast one drops them, and so do we.
    @Test func idsBeyondTheVocabularyAreDropped() throws {
        let tokenizer = try loadedTokenizers.get("t5")
        let plain = tokenizer.decode([37, 629, 1])
        #expect(plain == "The house</s>")
        #expect(tokenizer.decode([37, 32100, 629, 32127, -1, 1, Int.max, Int.min]) == plain)
        #expect(tokenizer.decode([32100, 32127]) == "")
        #expect(tokenizer.decode([32127], skipSpecialTokens: true) == "")
    }

    @Test func withoutSentinelsTheyAreOrdinaryText() throws {
        let tokenizer = try T5Tokenizer(contentsOf: vocabPath("t5"), extraIds: 0)
        #expect(tokenizer.count == 32000)
        let ids = tokenizer.encode("<extra_id_0>")
        #expect(ids.count > 2)
        #expect(ids.allSatisfy { $0 < 32000 })
    }

    @Test func corruptModelBytesGiveAClearError() throws {
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: vocabPath("small"))))
        var rng = SplitMix64(seed: 0x70C3)
        let corruptions: [(String, [UInt8])] = [
            ("empty", []),
            ("truncated", Array(good.prefix(good.count / 2))),
            ("random", (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }),
            ("text", Array("this is not a sentencepiece model".utf8)),
        ]
        for (name, bytes) in corruptions {
            let error = #expect(throws: FlintError.self, "\(name) bytes") { try T5Tokenizer(modelBytes: bytes) }
            #expect(error?.message.contains("sentencepiece model") == true, "\(name): \(error?.message ?? "")")
        }
        #expect(throws: FlintError.self) { try T5Tokenizer(modelBytes: good, extraIds: -1) }
    }

    /// Damaged models (bit flips, truncation) either load or fail with a FlintError; never a crash.
    @Test func damagedModelsNeverCrash() throws {
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: vocabPath("small"))))
        var rng = SplitMix64(seed: 20261125)
        var loaded = 0
        var rejected = 0
        for _ in 0..<60 {
            var bytes = good
            for _ in 0..<(1 + Int(rng.next() % 8)) {
                bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1) << UInt8(rng.next() % 8)
            }
            if rng.next() % 10 == 0 { bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count)))) }
            do {
                let tokenizer = try T5Tokenizer(modelBytes: bytes)
                let ids = tokenizer.encode("The <extra_id_0> costs 1,000 dollars! 你好 ½")
                _ = tokenizer.decode(ids + [tokenizer.count + 5, -3, 0, 3])
                loaded += 1
            } catch is FlintError {
                rejected += 1
            }
        }
        #expect(loaded + rejected == 60)
        #expect(rejected > 0)
    }

    @Test func missingFileGivesAClearError() {
        let path = fixturePath("vocab/none/spiece.model")
        let error = #expect(throws: FlintError.self) { try T5Tokenizer(contentsOf: path) }
        #expect(error?.message.contains(path) == true)
        let folder = fixturePath("vocab/t5")
        let folderError = #expect(throws: FlintError.self) { try T5Tokenizer(contentsOf: folder) }
        #expect(folderError?.message.contains("directory") == true)
    }
}



/// A spiece.model whose normalizer charsmap trie is corrupted (four bytes of flan-tiny's, the input
/// `make fuzz-smoke` found crashing libsentencepiece in `Normalizer::NormalizePrefix`) is refused with the place,
/// before libsentencepiece reads it.
@Suite struct CorruptCharsmapTests {
    @Test func corruptedTrieIsAnErrorNotACrash() throws {
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: fixturePath("models/flan-tiny/spiece.model"))))
        #expect(bytes[15782..<15786] == [0, 0, 0, 0])  // inside normalizer_spec's precompiled_charsmap trie
        bytes.replaceSubrange(15782..<15786, with: [0xFE, 0xFF, 0xFF, 0xF9])
        do {
            let t = try T5Tokenizer(modelBytes: bytes)
            Issue.record("loaded a corrupted charsmap: \(t.encode("Hello <extra_id_0> wörld, 12 3!"))")
        } catch let error as FlintError {
            #expect(error.message.contains("normalizer_spec precompiled_charsmap: a trie node at unit"), "\(error.message)")
        }
    }
}
