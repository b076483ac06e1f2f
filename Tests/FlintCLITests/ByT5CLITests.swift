import Foundation
import Testing
import TestSupport

/// The metadata JSON of a .flint file (header offsets 56 / 64: metadata offset and size).
/// byt5-tiny: google/byt5-small's layout (config.json naming ByT5Tokenizer, tokenizer_config.json and
/// special_tokens_map.json, no vocabulary file). convert embeds the ByT5 tokenizer, and `run` tokenizes, generates
/// and decodes as transformers (AutoTokenizer + generate wrote the golden).
@Suite struct ByT5CLITests {
    static let folder = packageRoot + "/Tests/Fixtures/models/byt5-tiny"

    static func golden() throws -> [[String: Any]] {
        let url = URL(fileURLWithPath: folder + "/golden.json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        return try #require(json["cases"] as? [[String: Any]])
    }

    @Test func convertAndRunMatchTransformers() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases = try Self.golden()
        let prompts = cases.compactMap { $0["prompt"] as? String }
        #expect(prompts.count == 4)
        let f32 = dir + "/f32.flint"
        let c = try flint("convert", Self.folder, "-o", f32, "--quant", "f32")
        #expect(c.status == 0, "\(c.stderr)")
        let metadata = try flintMetadata(f32)
        #expect(metadata["required_features"] as? [String] == ["tokenizer-byt5"])
        let tokenizer = try #require(metadata["tokenizer"] as? [String: Any])
        #expect(tokenizer["type"] as? String == "byt5")
        #expect((tokenizer["added_tokens"] as? [Any])?.count == 3 + 125)
        for model in [f32, Self.folder] {
            let r = try flint(arguments: ["run", model] + prompts + ["--max-tokens", "20", "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            let lines = r.stdout.split(separator: "\n")
            #expect(lines.count == prompts.count)
            for (line, golden) in zip(lines, cases) {
                let out = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(out["input_ids"] as? [Int] == golden["input_ids"] as? [Int], "\(model) \(golden["prompt"] ?? "")")
                let expected = try #require(golden["greedy_ids"] as? [Int])
                #expect(out["ids"] as? [Int] == Array(expected.dropFirst()), "\(model) \(golden["prompt"] ?? "")")
                #expect(out["text"] as? String == golden["greedy_text"] as? String, "\(model) \(golden["prompt"] ?? "")")
            }
        }
        let int8 = dir + "/int8.flint"
        let q = try flint("convert", Self.folder, "-o", int8)
        #expect(q.status == 0, "\(q.stderr)")
        let r = try flint("run", int8, "reverse: red apple blue", "--max-tokens", "8")
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func tokenizeAFolderAndAFile() throws {
        let t = try flint("tokenize", Self.folder, "Ünï <extra_id_0>", "--json")
        #expect(t.status == 0, "\(t.stderr)")
        #expect(t.stdout.contains("[198,159,113,198,178,35,259,1]"), "\(t.stdout)")
        let d = try flint("tokenize", Self.folder, "--decode", "198,159,113,198,1,259", "--json")
        #expect(d.status == 0, "\(d.stderr)")
        #expect(d.stdout.contains(#""text":"Ün</s> <extra_id_0>""#), "\(d.stdout)")
    }
}
