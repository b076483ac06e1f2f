@testable import FlintCheckpoint
import FlintFormat
@testable import FlintTokenizer
import Foundation
import Testing
import TestSupport

/// transformers' ByT5Tokenizer, as `AutoTokenizer.from_pretrained(folder)` builds it for the folders of
/// Tools/make_byt5_fixtures.py: google/byt5-small's file layout (byt5-legacy), a save_pretrained one (byt5-saved),
/// a config.json naming the class and nothing else (byt5-config) — all three the default tokenizer, one golden —
/// and one with other special tokens, a non-special added token and clean-up spaces (byt5-custom).
private struct ByT5Golden: Decodable {
    let folders: [String]
    let tokenizer_len: Int
    let cases: [GoldenEncodeCase]
    let decode_cases: [GoldenDecodeCase]

    static func load(_ name: String) throws -> ByT5Golden {
        let url = URL(fileURLWithPath: fixturePath("tokenizer/folder-\(name).json"))
        return try JSONDecoder().decode(ByT5Golden.self, from: Data(contentsOf: url))
    }
}

private let byt5Folders = [("byt5", "byt5-legacy"), ("byt5", "byt5-saved"), ("byt5", "byt5-config"),
                           ("byt5-custom", "byt5-custom")]

private func load(_ folder: String) throws -> (TokenizerFiles, T5Tokenizer) {
    let files = try #require(try TokenizerFiles.discover(inFolder: fixturePath("tokenizer/folders/\(folder)")))
    return (files, try T5Tokenizer(bytes: files.bytes, info: files.info))
}

@Suite struct ByT5TokenizerTests {
    @Test(arguments: byt5Folders)
    func encodesLikeTransformers(golden name: String, folder: String) throws {
        let golden = try ByT5Golden.load(name)
        #expect(golden.folders.contains(folder))
        let (files, tokenizer) = try load(folder)
        #expect(files.info.type == TokenizerInfo.byt5)
        #expect(files.info.requiredFeatures == [TokenizerInfo.byt5Feature])
        #expect(tokenizer.count == golden.tokenizer_len)
        var failures = 0
        for c in golden.cases {
            let ids = tokenizer.encode(c.text)
            let pieces = tokenizer.tokenize(c.text)
            if ids != c.ids || pieces != c.pieces {
                failures += 1
                if failures <= 5 {
                    Issue.record("\(folder) \(c.text.debugDescription): ids \(ids) pieces \(pieces), expected \(c.ids) \(c.pieces)")
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(golden.cases.count) cases differ")
    }

    @Test(arguments: byt5Folders)
    func decodesLikeTransformers(golden name: String, folder: String) throws {
        let golden = try ByT5Golden.load(name)
        let (_, tokenizer) = try load(folder)
        var failures = 0
        let lists = golden.cases.map { ($0.ids, $0.decoded, $0.decoded_skip_special) }
            + golden.decode_cases.map { ($0.ids, $0.decoded, $0.decoded_skip_special) }
        for (ids, decoded, skipped) in lists {
            let got = tokenizer.decode(ids)
            let gotSkipped = tokenizer.decode(ids, skipSpecialTokens: true)
            if got != decoded || gotSkipped != skipped {
                failures += 1
                if failures <= 5 {
                    Issue.record(Comment(rawValue: "\(folder) \(ids): \(got.debugDescription) / \(gotSkipped.debugDescription), "
                                         + "expected \(decoded.debugDescription) / \(skipped.debugDescription)"))
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(lists.count) decodes differ")
    }

    @Test func defaultIdsAreBytesPlusThreeAndIncreasingSentinels() throws {
        let (_, tokenizer) = try load("byt5-legacy")
        #expect((tokenizer.padId, tokenizer.eosId, tokenizer.unkId) == (0, 1, 2))
        #expect(tokenizer.extraIds == 125)
        #expect(tokenizer.sentinelId(0) == 259 && tokenizer.sentinelId(124) == 383 && tokenizer.sentinelId(125) == nil)
        #expect(tokenizer.spieceSize == 259)
        #expect(tokenizer.encode("A") == [0x41 + 3, 1])
        // Ids outside the tokenizer (transformers raises on them) decode to nothing.
        #expect(tokenizer.decode([0x41 + 3, 384, -1, 100_000, 0x42 + 3]) == "AB")
    }

    /// The encoder of Python's `decode("utf-8", errors="ignore")`: only the invalid bytes go.
    @Test func invalidUTF8IsDroppedLikePython() {
        let cases: [([UInt8], String)] = [
            ([0x61, 0xC3], "a"), ([0xE2, 0x82, 0x41], "A"), ([0xC0, 0x80, 0x41], "A"), ([0xED, 0xA0, 0x80, 0x43], "C"),
            ([0xF4, 0x90, 0x80, 0x80, 0x44], "D"), ([0xF0, 0x9F, 0x98, 0x80], "😀"), ([0xEF, 0xBF, 0xBD], "\u{FFFD}"),
        ]
        for (bytes, text) in cases {
            #expect(ByT5Tokenizer.decodeUTF8DroppingInvalid(bytes) == text, "\(bytes)")
        }
    }

    @Test func mismatchedExtraIdsAreRefusedLikeTransformers() throws {
        let config: [String: Any] = ["tokenizer_class": "ByT5Tokenizer", "extra_ids": 3,
                                     "additional_special_tokens": ["<extra_id_0>", "<extra_id_1>"]]
        #expect(throws: FlintError.self) {
            _ = try TokenizerFiles.byt5Info(config: config, specialMap: nil, addedTokensFile: nil, folder: "f")
        }
    }

    @Test func sectionMustHoldTheMarker() throws {
        let (files, _) = try load("byt5-legacy")
        #expect(throws: FlintError.self) { _ = try T5Tokenizer(bytes: Array("spiece".utf8), info: files.info) }
    }
}

/// The slow T5Tokenizer with `clean_up_tokenization_spaces: true` in tokenizer_config.json (common in files written by
/// transformers before 4.45) ends its decode with `clean_up_tokenization`; the fast one already did.
@Suite struct SlowCleanUpTests {
    struct Golden: Decodable { let cases: [GoldenEncodeCase.Decoded] }

    @Test func decodeCleansUpLikeTransformers() throws {
        let url = URL(fileURLWithPath: fixturePath("tokenizer/small-slow-cleanup.json"))
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: fixturePath("vocab/small/spiece.model"))))
        var info = TokenizerInfo(type: TokenizerInfo.sentencepiece, extraIds: 100)
        info.cleanUpTokenizationSpaces = true
        let tokenizer = try T5Tokenizer(bytes: bytes, info: info)
        #expect(golden.cases.count == 5)
        for c in golden.cases {
            #expect(tokenizer.encode(c.text) == c.ids, "\(c.text)")
            #expect(tokenizer.decode(c.ids) == c.decoded, "\(c.text)")
            #expect(tokenizer.decode(c.ids, skipSpecialTokens: true) == c.decoded_skip_special, "\(c.text)")
        }
    }
}

extension GoldenEncodeCase {
    /// A case without pieces.
    struct Decoded: Decodable {
        let text: String
        let ids: [Int]
        let decoded: String
        let decoded_skip_special: String
    }
}
