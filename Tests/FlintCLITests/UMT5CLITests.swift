import Foundation
import Testing
import TestSupport

/// umt5-tiny with the small vocabulary's spiece.model beside it (the fixture folder leaves it out to save space;
/// transformers' golden was made with that same file).
private func umt5Folder(_ dir: String) throws -> String {
    let fm = FileManager.default
    let folder = dir + "/umt5"
    try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let source = packageRoot + "/Tests/Fixtures/models/umt5-tiny"
    for name in ["config.json", "generation_config.json", "model.safetensors"] {
        try fm.copyItem(atPath: source + "/" + name, toPath: folder + "/" + name)
    }
    try fm.copyItem(atPath: packageRoot + "/Tests/Fixtures/vocab/small/spiece.model", toPath: folder + "/spiece.model")
    return folder
}

private func umt5Golden() throws -> [[String: Any]] {
    let url = URL(fileURLWithPath: packageRoot + "/Tests/Fixtures/models/umt5-tiny/golden.json")
    let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    #expect(json["class"] as? String == "UMT5ForConditionalGeneration")
    return try #require(json["cases"] as? [[String: Any]])
}

@Suite struct UMT5CLITests {
    /// convert writes the per-layer flag and its required feature, keeps every bias table float, and `run` of the
    /// float32 file gives transformers' greedy and 4-beam ids for every golden prompt.
    @Test func convertAndRunMatchTransformers() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = try umt5Folder(dir)
        let f32 = dir + "/f32.flint"
        let c = try flint("convert", folder, "-o", f32, "--quant", "f32", "--json")
        #expect(c.status == 0, "\(c.stderr)")
        let metadata = try flintMetadata(f32)
        #expect(metadata["required_features"] as? [String] == ["per-layer-relative-attention-bias"])
        let config = try #require(metadata["config"] as? [String: Any])
        #expect(config["relative_attention_bias_per_layer"] as? Bool == true)

        let cases = try umt5Golden()
        let prompts = cases.compactMap { $0["prompt"] as? String }.filter { !$0.isEmpty }
        #expect(prompts.count == 5)
        for (mode, key) in [([String](), "greedy_ids"), (["--beams", "4"], "beam4_ids")] {
            let r = try flint(arguments: ["run", f32] + prompts + ["--max-tokens", "20", "--json"] + mode)
            #expect(r.status == 0, "\(r.stderr)")
            let lines = r.stdout.split(separator: "\n")
            #expect(lines.count == prompts.count)
            for (line, prompt) in zip(lines, prompts) {
                let out = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let golden = try #require(cases.first { $0["prompt"] as? String == prompt })
                #expect(out["input_ids"] as? [Int] == golden["input_ids"] as? [Int], "\(prompt)")
                let expected = try #require(golden[key] as? [Int])
                #expect(out["ids"] as? [Int] == Array(expected.dropFirst()), "\(key) \"\(prompt.prefix(30))\"")
            }
        }

        // int8: every layer's bias table (3 + 3) stays float, the linear weights are quantized.
        let int8 = dir + "/int8.flint"
        let q = try flint("convert", folder, "-o", int8, "--json")
        #expect(q.status == 0, "\(q.stderr)")
        let report = try #require(q.json as? [String: Any])
        let perTensor = try #require(report["per_tensor"] as? [[String: Any]])
        let biases = perTensor.filter { ($0["name"] as? String ?? "").hasSuffix("relative_attention_bias.weight") }
        #expect(biases.count == 6)
        #expect(biases.allSatisfy { $0["scheme"] as? String == "f32" }, "\(biases)")
        #expect(perTensor.contains { $0["name"] as? String == "encoder.block.2.layer.0.SelfAttention.q.weight" && $0["scheme"] as? String == "int8" })
        #expect(try flintMetadata(int8)["required_features"] as? [String] == ["per-layer-relative-attention-bias", "int8-packed16x4"])
        let r = try flint("run", int8, "reverse: red apple blue", "--max-tokens", "20")
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test(arguments: [("longt5", "LongT5"), ("switch_transformers", "Switch Transformers")])
    func longT5AndSwitchAreRefused(modelType: String, name: String) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = try umt5Folder(dir)
        let configPath = folder + "/config.json"
        let text = try String(contentsOfFile: configPath, encoding: .utf8)
            .replacingOccurrences(of: #""model_type": "umt5""#, with: #""model_type": "\#(modelType)""#)
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        let r = try flint("convert", folder, "-o", dir + "/m.flint")
        #expect(r.status != 0)
        #expect(r.stderr.contains("model_type \"\(modelType)\" is not supported: \(name)"), "\(r.stderr)")
        #expect(r.stderr.contains("supported: t5, mt5, umt5"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/m.flint"))
    }
}
