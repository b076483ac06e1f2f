import Foundation
import Testing
import TestSupport
import FlintFormat

/// Issue 13, items 1, 2 and 7: configs no real T5 has, reached through config.json, a .flint, or convert.
@Suite struct HostileConfigCLITests {
    /// A converted flan-tiny rewritten with `change` applied to its stored config (FlintWriter does not judge
    /// configs; readers must).
    func flintWithConfig(_ change: (inout T5Config) -> Void) throws -> String {
        let dir = scratch()
        let valid = dir + "/valid.flint", hostile = dir + "/hostile.flint"
        #expect(try flint("convert", flanTiny, "-o", valid).status == 0)
        let f = try FlintFile(path: valid)
        let w = try FlintWriter(path: hostile)
        for r in f.records {
            let v = try f.tensor(r.name)
            try w.addTensor(name: r.name, storage: r.storage, shape: r.shape, scheme: r.scheme, data: v.data,
                            scales: UnsafeRawBufferPointer(v.scales), layout: r.layout)
        }
        var m = f.metadata
        change(&m.config)
        try w.finish(metadata: m, tokenizer: f.tokenizerModel)
        return hostile
    }

    @Test func wrappingInnerSizeInAFlintFileIsRefusedAtOpen() throws {
        let hostile = try flintWithConfig { $0.numHeads = 8; $0.dKV = (1 << 61) + 64 }
        for args in [["run", hostile, "hello"], ["inspect", hostile], ["embed", hostile, "hello"]] {
            let r = try measuredFlint(args)
            #expect(isCleanRefusal(r, naming: hostile, saying: "d_kv"), "\(args): \(r)")
        }
    }

    @Test func hugeLayerCountInAFlintFileIsRefused() throws {
        let hostile = try flintWithConfig { $0.numEncoderLayers = 1 << 60 }
        let r = try measuredFlint(["run", hostile, "hello"])
        #expect(isCleanRefusal(r, naming: hostile, saying: "num_encoder_layers"), "\(r)")
    }

    @Test(arguments: [
        ("d_kv", ["num_heads": 8, "d_kv": (1 << 61) + 64]),
        ("num_layers", ["num_layers": 1 << 60]),
        ("num_decoder_layers", ["num_decoder_layers": 1_000_000_000]),
        ("vocab_size", ["vocab_size": 1 << 40]),
        ("relative_attention_num_buckets", ["relative_attention_num_buckets": 1 << 40]),
    ] as [(String, [String: Int])])
    func absurdConfigJSONIsRefusedByConvertAndRun(field: String, values: [String: Int]) throws {
        let model = try copyFixture(flanTiny)
        try editJSON(model + "/config.json") { for (k, v) in values { $0[k] = v } }
        let before = snapshot(model)
        let out = model + "/../out.flint"
        let convert = try measuredFlint(["convert", model, "-o", out])
        // HF's key for the encoder layer count is num_layers; the message names the config field it fills.
        let name = field == "num_layers" ? "num_encoder_layers" : field
        #expect(isCleanRefusal(convert, naming: "config.json", saying: name), "\(convert)")
        #expect(!FileManager.default.fileExists(atPath: out))
        let run = try measuredFlint(["run", model, "hello"])
        #expect(isCleanRefusal(run, naming: "config.json", saying: name), "\(run)")
        #expect(snapshot(model) == before)
    }

    @Test func tensorShapesDisagreeingWithTheConfigAreRefusedBeforeWriting() throws {
        let model = try copyFixture(flanTiny)
        // d_ff 72 → 80: every wi/wo tensor now disagrees with the config.
        try editJSON(model + "/config.json") { $0["d_ff"] = 80 }
        let out = model + "/../out.flint"
        let r = try measuredFlint(["convert", model, "-o", out])
        #expect(isCleanRefusal(r, naming: model, saying: "DenseReluDense"), "\(r)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try FileManager.default.contentsOfDirectory(atPath: model + "/..").filter { $0.contains("tmp") }.isEmpty)
    }

    @Test(arguments: ["empty", "garbage"])
    func unusableSentencepieceModelIsRefusedByConvert(kind: String) throws {
        let model = try copyFixture(flanTiny)
        let bytes: [UInt8] = kind == "empty" ? [] : Array("this is not a sentencepiece model\n".utf8) + (0..<200).map { UInt8($0) }
        try Data(bytes).write(to: URL(fileURLWithPath: model + "/spiece.model"))
        let out = model + "/../out.flint"
        let r = try measuredFlint(["convert", model, "-o", out])
        #expect(isCleanRefusal(r, naming: "spiece.model", saying: "sentencepiece"), "\(r)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func aBrokenTokenizerIsReportedWithTheModelItCameWith() throws {
        // A folder run directly (no convert to check it first), and a .flint whose tokenizer section is garbage.
        let model = try copyFixture(flanTiny)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: model + "/spiece.model"))
        for args in [["run", model, "hello"], ["embed", model, "hello"]] {
            let r = try measuredFlint(args)
            #expect(isCleanRefusal(r, naming: model, saying: "spiece.model"), "\(args): \(r)")
        }
        let dir = scratch()
        let valid = dir + "/valid.flint", hostile = dir + "/hostile.flint"
        #expect(try flint("convert", flanTiny, "-o", valid).status == 0)
        let f = try FlintFile(path: valid)
        let w = try FlintWriter(path: hostile)
        for r in f.records {
            let v = try f.tensor(r.name)
            try w.addTensor(name: r.name, storage: r.storage, shape: r.shape, scheme: r.scheme, data: v.data,
                            scales: UnsafeRawBufferPointer(v.scales), layout: r.layout)
        }
        try w.finish(metadata: f.metadata, tokenizer: Array("garbage".utf8))
        for args in [["run", hostile, "hello"], ["tokenize", hostile, "hello"]] {
            let r = try measuredFlint(args)
            #expect(isCleanRefusal(r, naming: hostile, saying: "tokenizer"), "\(args): \(r)")
        }
    }
}
