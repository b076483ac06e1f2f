import Foundation
import Testing
import TestSupport

/// The demo model (trained on the small vocabulary) with its spiece.model replaced by the files of one of the
/// tokenizer fixture folders, as a fine-tune saved by transformers ships them.
private func demoWithTokenizer(_ tokenizerFolder: String?) throws -> String {
    let fm = FileManager.default
    let dir = scratch() + "/model"
    try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let demo = packageRoot + "/Tests/Fixtures/models/demo"
    for name in ["config.json", "generation_config.json", "model.safetensors"] {
        try fm.copyItem(atPath: demo + "/" + name, toPath: dir + "/" + name)
    }
    if let tokenizerFolder {
        let source = packageRoot + "/Tests/Fixtures/tokenizer/folders/" + tokenizerFolder
        for name in try fm.contentsOfDirectory(atPath: source) {
            try fm.copyItem(atPath: source + "/" + name, toPath: dir + "/" + name)
        }
    }
    return dir
}

/// The metadata JSON of a .flint file (offset and size at header bytes 56 and 64).
@Suite struct TokenizerFilesCLITests {
    /// A tokenizer.json-only fine-tune: convert embeds tokenizer.json (and marks the file so older readers refuse
    /// it), run answers as with spiece.model, tokenize gives the ids transformers' fast tokenizer gives.
    @Test func tokenizerJSONOnlyFolderConvertsRunsAndTokenizes() throws {
        let folder = try demoWithTokenizer("small-fast-added")
        let out = (folder as NSString).deletingLastPathComponent + "/m.flint"
        let c = try flint("convert", folder, "-o", out, "--json")
        #expect(c.status == 0, "\(c.stderr)")
        let tokenizer = try #require((c.json as? [String: Any])?["tokenizer"] as? [String: Any])
        #expect(tokenizer["file"] as? String == "tokenizer.json")
        #expect(tokenizer["type"] as? String == "hf-tokenizers-json")
        #expect(tokenizer["extra_ids"] as? Int == 100)
        #expect(tokenizer["problem"] == nil)
        let metadata = try flintMetadata(out)
        #expect(metadata["required_features"] as? [String] == ["tokenizer-json", "int8-packed16x4"])

        let r = try flint("run", out, "reverse: red apple blue")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "blue apple red\n")

        // transformers 4.57.6 T5TokenizerFast on this folder (Tests/Fixtures/tokenizer/folder-small-fast-added.json).
        let expected = [1100, 217, 7, 240, 1101, 3, 996, 997, 6, 237, 1]
        for model in [folder, out, folder + "/tokenizer.json"] {
            let t = try flint("tokenize", model, "<user> hello <bot> hi there", "--json")
            #expect(t.status == 0, "\(t.stderr)")
            let j = try #require(t.json as? [String: Any])
            #expect(j["ids"] as? [Int] == expected, "\(model)")
            #expect(j["tokenizer"] as? String == "tokenizer.json")
        }
        let d = try flint("tokenize", out, "--decode", expected.map(String.init).joined(separator: " "), "--json")
        #expect((d.json as? [String: Any])?["text"] as? String == "<user> hello<bot> hi there</s>")
    }

    /// A BPE tokenizer (byte-level, as CodeT5 ships it; LLaMA-style with byte fallback, as Pile-T5): convert
    /// embeds it and lists `tokenizer-bpe` beside `tokenizer-json`, so readers that know only Unigram files refuse
    /// it at open; tokenize gives transformers' ids from the folder, the file and the tokenizer.json alike.
    // ids: transformers 4.57.6 AutoTokenizer on the folder (Tools/make_tokenizer_golden.py made both).
    // codet5-slow-legacy is the same tokenizer as codet5-bpe in CodeT5's published files (vocab.json + merges.txt).
    @Test(arguments: [("codet5-bpe", "def add(a, b): return a + b", [1, 637, 378, 696, 12, 69, 16, 262, 626, 623, 378, 457, 262, 2]),
                      ("codet5-slow-legacy", "def add(a, b): return a + b", [1, 637, 378, 696, 12, 69, 16, 262, 626, 623, 378, 457, 262, 2]),
                      ("pile-bpe", "café 🧑 x", [655, 505, 597, 505, 349, 1])])
    func bpeTokenizerFolderConvertsAndTokenizes(folder tokenizerFolder: String, text: String, expected: [Int]) throws {
        let folder = try demoWithTokenizer(tokenizerFolder)
        let out = (folder as NSString).deletingLastPathComponent + "/m.flint"
        let c = try flint("convert", folder, "-o", out, "--json")
        #expect(c.status == 0, "\(c.stderr)")
        let metadata = try flintMetadata(out)
        #expect(metadata["required_features"] as? [String] == ["tokenizer-json", "tokenizer-bpe", "int8-packed16x4"])
        #expect((metadata["tokenizer"] as? [String: Any])?["model"] as? String == "BPE")
        let json = folder + "/tokenizer.json"
        for model in [folder, out] + (FileManager.default.fileExists(atPath: json) ? [json] : []) {
            let t = try flint("tokenize", model, text, "--json")
            #expect(t.status == 0, "\(t.stderr)")
            #expect((t.json as? [String: Any])?["ids"] as? [Int] == expected, "\(model)")
        }
        let d = try flint("tokenize", out, "--decode", expected.map(String.init).joined(separator: " "), "--skip-special", "--json")
        #expect((d.json as? [String: Any])?["text"] as? String == text)
    }

    /// spiece.model with added tokens in tokenizer_config.json (the slow path): they are ids, not <unk> pieces,
    /// and the file lists the feature old readers lack.
    @Test func slowFolderWithAddedTokens() throws {
        let folder = try demoWithTokenizer("small-slow-added")
        let out = (folder as NSString).deletingLastPathComponent + "/m.flint"
        let c = try flint("convert", folder, "-o", out, "--json")
        #expect(c.status == 0, "\(c.stderr)")
        let tokenizer = try #require((c.json as? [String: Any])?["tokenizer"] as? [String: Any])
        #expect(tokenizer["file"] as? String == "spiece.model")
        #expect(try flintMetadata(out)["required_features"] as? [String] == ["tokenizer-added-tokens", "int8-packed16x4"])
        // transformers 4.57.6 T5Tokenizer (folder-small-slow-added.json).
        for model in [folder, out] {
            let t = try flint("tokenize", model, "<user> hello <bot> hi there", "--json")
            #expect((t.json as? [String: Any])?["ids"] as? [Int] == [1100, 217, 7, 240, 1101, 3, 996, 997, 6, 237, 1])
        }
        let r = try flint("run", out, "reverse: red apple blue")
        #expect(r.stdout == "blue apple red\n", "\(r.stderr)")
    }

    /// mT5 as published (extra_ids 0): no sentinels, <extra_id_0> is plain text, and the file stays a plain
    /// version-1 sentencepiece file (needing only the packed int8 layout every conversion writes).
    @Test func mT5StyleFolderHasNoSentinels() throws {
        let folder = try demoWithTokenizer("small-slow-mt5")
        let out = (folder as NSString).deletingLastPathComponent + "/m.flint"
        let c = try flint("convert", folder, "-o", out, "--json")
        #expect(c.status == 0, "\(c.stderr)")
        #expect(((c.json as? [String: Any])?["tokenizer"] as? [String: Any])?["extra_ids"] as? Int == 0)
        let metadata = try flintMetadata(out)
        #expect(metadata["required_features"] as? [String] == ["int8-packed16x4"])
        #expect((metadata["tokenizer"] as? [String: Any])?["extra_ids"] as? Int == 0)
        let t = try flint("tokenize", out, "<extra_id_0>", "--json")
        // transformers 4.57.6 T5Tokenizer(extra_ids=0) (folder-small-slow-mt5.json).
        #expect((t.json as? [String: Any])?["ids"] as? [Int] == [3, 2, 14, 984, 128, 305, 999, 2, 23, 2, 557, 2, 1])
    }

    /// A folder with no tokenizer: convert still writes the weights, but says so (stderr and --json).
    @Test func folderWithoutTokenizerIsReported() throws {
        let folder = try demoWithTokenizer(nil)
        let out = (folder as NSString).deletingLastPathComponent + "/m.flint"
        let c = try flint("convert", folder, "-o", out, "--json")
        #expect(c.status == 0, "\(c.stderr)")
        #expect(c.stderr.contains("no tokenizer"), "\(c.stderr)")
        let tokenizer = try #require((c.json as? [String: Any])?["tokenizer"] as? [String: Any])
        #expect(tokenizer["file"] == nil)
        #expect((tokenizer["problem"] as? String)?.contains("no tokenizer") == true)
        let t = try flint("tokenize", out, "hello")
        #expect(t.status != 0 && t.stderr.contains("carries no tokenizer"), "\(t.stderr)")
    }

    /// A folder whose tokenizer is one Flint does not implement (a slow BertTokenizer with its vocab.txt): the
    /// warning names the class and its files instead of saying there is none.
    @Test func unimplementedTokenizerClassIsNamed() throws {
        let folder = try demoWithTokenizer(nil)
        try #"{"tokenizer_class": "BertTokenizer", "cls_token": "[CLS]"}"#
            .write(toFile: folder + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        try "[PAD]\n[UNK]\n".write(toFile: folder + "/vocab.txt", atomically: true, encoding: .utf8)
        let out = (folder as NSString).deletingLastPathComponent + "/m.flint"
        let c = try flint("convert", folder, "-o", out)
        #expect(c.status == 0, "\(c.stderr)")
        #expect(c.stderr.contains("tokenizer_config.json names BertTokenizer (vocab.txt), which Flint does not implement"),
                "\(c.stderr)")
        let t = try flint("tokenize", folder, "hello")
        #expect(t.status != 0 && t.stderr.contains("names BertTokenizer"), "\(t.stderr)")
    }

    /// CodeT5's slow files when they are broken: convert stops, naming the file and what is wrong.
    @Test func brokenRobertaFilesAreAnError() throws {
        let folder = try demoWithTokenizer(nil)
        try #"{"tokenizer_class": "RobertaTokenizer"}"#
            .write(toFile: folder + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        try #"{"a": 0, "b": 1}"#.write(toFile: folder + "/vocab.json", atomically: true, encoding: .utf8)
        try "#version: 0.2\na b c\n".write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)
        let c = try flint("convert", folder, "-o", folder + "/m.flint")
        #expect(c.status != 0)
        #expect(c.stderr.contains("merges.txt: line 2 \"a b c\" is not two tokens"), "\(c.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/m.flint"))
    }

    /// A tokenizer.json this flint cannot run (a WordPiece model) is refused by convert with the file and the reason.
    @Test func unsupportedTokenizerJSONIsAnError() throws {
        let folder = try demoWithTokenizer(nil)
        try #"{"version": "1.0", "added_tokens": [], "model": {"type": "WordPiece", "vocab": {}, "unk_token": "[UNK]"}}"#
            .write(toFile: folder + "/tokenizer.json", atomically: true, encoding: .utf8)
        let c = try flint("convert", folder, "-o", folder + "/m.flint")
        #expect(c.status != 0)
        #expect(c.stderr.contains("tokenizer.json") && c.stderr.contains("WordPiece"), "\(c.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/m.flint"))
    }
}
