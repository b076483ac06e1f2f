import FlintFormat
import FlintTokenizer
import Foundation
import Testing
import TestSupport

/// The BPE fixture folders' tokenizer.json rewritten in the ways published files differ, checked against the
/// goldens transformers wrote for the original (Tests/Fixtures/tokenizer/folder-*-bpe.json).
@Suite struct BPETokenizerTests {
    private struct Golden: Decodable {
        let cases: [GoldenEncodeCase]
    }

    private func json(_ folder: String) throws -> [String: Any] {
        // Escaped: Foundation's JSONSerialization drops a raw U+FEFF at the start of a string (pile-bpe has one).
        let text = try String(contentsOfFile: fixturePath("tokenizer/folders/\(folder)/tokenizer.json"), encoding: .utf8)
            .replacingOccurrences(of: "\u{FEFF}", with: "\\ufeff")
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    private func tokenizer(_ object: [String: Any]) throws -> T5Tokenizer {
        try T5Tokenizer(tokenizerJSON: Array(try JSONSerialization.data(withJSONObject: object)))
    }

    private func golden(_ folder: String) throws -> [GoldenEncodeCase] {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturePath("tokenizer/folder-\(folder).json")))
        return try JSONDecoder().decode(Golden.self, from: data).cases
    }

    /// Files written before tokenizers 0.20 give merges as "a b" strings; the segmentation is the same.
    @Test(arguments: ["codet5-bpe", "pile-bpe"])
    func legacyMergeStringsSegmentAlike(folder: String) throws {
        var object = try json(folder)
        var model = try #require(object["model"] as? [String: Any])
        let pairs = try #require(model["merges"] as? [[String]])
        model["merges"] = pairs.map { $0.joined(separator: " ") }
        object["model"] = model
        let t = try tokenizer(object)
        let cases = try golden(folder)
        let differing = cases.filter { t.encode($0.text) != $0.ids }.map(\.text)
        #expect(differing.isEmpty, "\(differing.prefix(3))")
    }

    /// Without merges, a byte-level pre-token is its characters' tokens; with `ignore_merges`, a pre-token that is
    /// a vocabulary entry stays whole even where the merges would not reach it.
    @Test func ignoreMergesKeepsVocabularyWords() throws {
        var object = try json("codet5-bpe")
        var model = try #require(object["model"] as? [String: Any])
        let vocab = try #require(model["vocab"] as? [String: Any])
        model["merges"] = [[String]]()
        object["model"] = model
        let plain = try tokenizer(object)
        #expect(plain.tokenize("red") == ["r", "e", "d"])
        var withWord = vocab
        withWord["red"] = vocab.count
        model["vocab"] = withWord
        model["ignore_merges"] = true
        object["model"] = model
        var added = try #require(object["added_tokens"] as? [[String: Any]])
        for i in added.indices where (added[i]["id"] as? Int ?? 0) >= vocab.count {
            added[i]["id"] = (added[i]["id"] as? Int ?? 0) + 1
        }
        object["added_tokens"] = added
        #expect(try tokenizer(object).tokenize("red") == ["red"])
    }

    @Test func refusesWhatItCannotReproduce() throws {
        var object = try json("pile-bpe")
        var model = try #require(object["model"] as? [String: Any])
        func message(_ change: (inout [String: Any]) -> Void) -> String {
            var m = model
            change(&m)
            object["model"] = m
            do {
                _ = try tokenizer(object)
                return "accepted"
            } catch let error as FlintError {
                return error.message
            } catch {
                return "\(error)"
            }
        }
        #expect(message { $0["dropout"] = 0.1 }.contains("dropout 0.1"))
        #expect(message { $0["type"] = "WordPiece" }.contains("model \"WordPiece\" is not supported"))
        #expect(message { $0["merges"] = [["zz", "qq"]] }.contains("merges[0] names \"zz\""))
        #expect(message { $0["merges"] = ["a b c"] }.contains("merges[0] \"a b c\" is not two tokens"))
        #expect(message { $0["unk_token"] = "<nope>" }.contains("unk_token \"<nope>\" is not in the vocabulary"))
        var vocab = try #require(model["vocab"] as? [String: Any])
        vocab["extra"] = vocab.count + 5
        model["vocab"] = vocab
        #expect(message { _ in }.contains("outside 0..<"))
    }
}
