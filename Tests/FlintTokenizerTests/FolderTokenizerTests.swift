import FlintCheckpoint
import FlintFormat
import FlintTokenizer
import Foundation
import Testing
import TestSupport

private func folderPath(_ name: String) -> String {
    fixturePath("tokenizer/folders/\(name)")
}

/// Goldens written by Tools/make_tokenizer_golden.py with `AutoTokenizer.from_pretrained(folder)` (fast for
/// tokenizer.json folders, the slow T5Tokenizer for spiece.model ones).
private struct FolderGolden: Decodable {
    typealias Case = GoldenEncodeCase
    typealias DecodeCase = GoldenDecodeCase
    let folder: String
    let tokenizer_file: String
    let tokenizer_len: Int
    let cases: [Case]
    let decode_cases: [DecodeCase]

    static func load(_ name: String) throws -> FolderGolden {
        let url = URL(fileURLWithPath: fixturePath("tokenizer/folder-\(name).json"))
        return try JSONDecoder().decode(FolderGolden.self, from: Data(contentsOf: url))
    }
}

private let folderNames = ["t5-fast", "small-fast-first", "small-fast-oldjson", "small-fast-added",
                           "small-slow-added", "small-fast-mt5", "small-slow-mt5", "codet5-bpe", "codet5-slow",
                           "codet5-slow-legacy", "codet5-bpe-prefix", "pile-bpe", "pile-bpe-metaspace"]

private func loadFolder(_ name: String) throws -> (TokenizerFiles, T5Tokenizer) {
    let files = try #require(try TokenizerFiles.discover(inFolder: folderPath(name)))
    return (files, try T5Tokenizer(bytes: files.bytes, info: files.info))
}

@Suite struct FolderTokenizerParityTests {
    @Test(arguments: folderNames)
    func encodesLikeAutoTokenizer(folder: String) throws {
        let golden = try FolderGolden.load(folder)
        let (files, tokenizer) = try loadFolder(folder)
        #expect(files.info.fileName == golden.tokenizer_file)
        #expect(tokenizer.count == golden.tokenizer_len)
        var failures = 0
        for c in golden.cases {
            let (ids, _) = tokenizer.encodeWithPieces(c.text)
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

    @Test(arguments: folderNames)
    func decodesLikeAutoTokenizer(folder: String) throws {
        let golden = try FolderGolden.load(folder)
        let (_, tokenizer) = try loadFolder(folder)
        var failures = 0
        let lists = golden.cases.map { ($0.ids, $0.decoded, $0.decoded_skip_special) }
            + golden.decode_cases.map { ($0.ids, $0.decoded, $0.decoded_skip_special) }
        for (ids, decoded, skipped) in lists {
            let got = tokenizer.decode(ids)
            let gotSkipped = tokenizer.decode(ids, skipSpecialTokens: true)
            if got != decoded || gotSkipped != skipped {
                failures += 1
                if failures <= 5 {
                    let message = "\(folder) \(ids): \(got.debugDescription) / \(gotSkipped.debugDescription), "
                        + "expected \(decoded.debugDescription) / \(skipped.debugDescription)"
                    Issue.record(Comment(rawValue: message))
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(lists.count) decodes differ")
    }
}
