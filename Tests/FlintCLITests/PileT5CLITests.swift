import Foundation
import Testing
import TestSupport

/// The metadata JSON of a .flint file (header offsets 56 / 64: metadata offset and size).
/// pile-t5-tiny (UMT5 with a gated-SiLU FFN, like EleutherAI/pile-t5-*) with the small vocabulary's spiece.model
/// beside it, as its golden was made.
@Suite struct PileT5CLITests {
    @Test func convertRecordsTheActivationAndRunMatchesTransformers() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        let folder = dir + "/pile-t5"
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let source = packageRoot + "/Tests/Fixtures/models/pile-t5-tiny"
        for name in ["config.json", "generation_config.json", "model.safetensors"] {
            try fm.copyItem(atPath: source + "/" + name, toPath: folder + "/" + name)
        }
        try fm.copyItem(atPath: packageRoot + "/Tests/Fixtures/vocab/small/spiece.model", toPath: folder + "/spiece.model")

        let f32 = dir + "/f32.flint"
        let c = try flint("convert", folder, "-o", f32, "--quant", "f32")
        #expect(c.status == 0, "\(c.stderr)")
        let metadata = try flintMetadata(f32)
        #expect(metadata["required_features"] as? [String] == ["per-layer-relative-attention-bias", "feed-forward-activations"])
        #expect((metadata["config"] as? [String: Any])?["activation"] as? String == "silu")

        let golden = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: source + "/golden.json"))) as? [String: Any])
        let cases = try #require(golden["cases"] as? [[String: Any]])
        let prompts = cases.compactMap { $0["prompt"] as? String }.filter { !$0.isEmpty }
        #expect(prompts.count == 5)
        for model in [f32, folder] {
            let r = try flint(arguments: ["run", model] + prompts + ["--max-tokens", "20", "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            for (line, prompt) in zip(r.stdout.split(separator: "\n"), prompts) {
                let out = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let expected = try #require(cases.first { $0["prompt"] as? String == prompt }?["greedy_ids"] as? [Int])
                #expect(out["ids"] as? [Int] == Array(expected.dropFirst()), "\(model) \"\(prompt.prefix(30))\"")
            }
        }
        let int8 = dir + "/int8.flint"
        let q = try flint("convert", folder, "-o", int8)
        #expect(q.status == 0, "\(q.stderr)")
        let r = try flint("run", int8, "reverse: red apple blue", "--max-tokens", "20")
        #expect(r.status == 0, "\(r.stderr)")
    }
}
