import Foundation
import Testing
import TestSupport

/// run's beam and sampling flags against transformers' goldens, embed against the encoder golden, export of int8
/// and grouped files, and verify --golden's failing exit code.
@Suite struct RunFlagsCLITests {
    func golden(_ model: String) throws -> [[String: Any]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: packageRoot + "/Tests/Fixtures/models/\(model)/golden.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(json["cases"] as? [[String: Any]])
    }

    func runIds(_ args: [String]) throws -> [Int] {
        let r = try flint(arguments: args + ["--json"])
        #expect(r.status == 0, "\(args): \(r.stderr)")
        let j = try #require(r.json as? [String: Any], "\(args): \(r.stdout)")
        return try #require(j["ids"] as? [Int])
    }

    @Test func beamFlagsMatchTransformers() throws {
        let c = try golden("flan-tiny")[0]
        let prompt = try #require(c["prompt"] as? String)
        let beams = try #require(c["beams"] as? [String: [String: Any]])
        let beam3 = try #require(beams["beam3"]?["ids"] as? [Int])
        #expect(try runIds(["run", flanTiny, prompt, "--beams", "3", "--max-tokens", "20"]) == Array(beam3.dropFirst()))
        let beam4ES = try #require(c["beam4_es_ids"] as? [Int])
        #expect(try runIds(["run", flanTiny, prompt, "--beams", "4", "--length-penalty", "0.6", "--early-stopping",
                            "--max-tokens", "20"]) == Array(beam4ES.dropFirst()))
        let greedy = try #require(c["greedy_ids"] as? [Int])
        #expect(try runIds(["run", flanTiny, prompt, "--max-tokens", "20"]) == Array(greedy.dropFirst()))
    }

    @Test func samplingFlagsAreSeededAndTopKOneIsGreedy() throws {
        let prompt = "reverse: red apple blue"
        let sampled = ["run", flanTiny, prompt, "--sample", "--temperature", "1.5", "--top-p", "0.9", "--seed", "7"]
        let first = try runIds(sampled)
        #expect(try runIds(sampled) == first, "the same seed must give the same tokens")
        let greedy = try runIds(["run", flanTiny, prompt])
        #expect(try runIds(["run", flanTiny, prompt, "--sample", "--top-k", "1", "--seed", "3"]) == greedy)
        #expect(try flint("run", flanTiny, prompt, "--sample", "--top-p", "0").status == 64)
    }

    @Test func embedGivesTheEncoderStates() throws {
        let c = try golden("t5-encoder")[0]
        let r = try flint("embed", packageRoot + "/Tests/Fixtures/models/t5-encoder", try #require(c["prompt"] as? String), "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        #expect(j["input_ids"] as? [Int] == c["input_ids"] as? [Int])
        let states = try #require(j["last_hidden_state"] as? [[Double]])
        let expected = try #require(c["encoder_last_hidden_state"] as? [[Double]])
        #expect(states.count == expected.count)
        var worst = 0.0, scale = 0.0
        for (a, b) in zip(states.joined(), expected.joined()) { worst = max(worst, abs(a - b)); scale = max(scale, abs(b)) }
        #expect(worst / scale < 5e-6, "embed vs transformers: \(worst / scale)")
    }

    @Test(arguments: ["int8", "int8-g32"])
    func exportOfQuantizedFiles(quant: String) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", flanTiny, "-o", dir + "/q.flint", "--quant", quant).status == 0)
        try FileManager.default.createDirectory(atPath: dir + "/exported", withIntermediateDirectories: true)
        let r = try flint("export", dir + "/q.flint", "-o", dir + "/exported/model.safetensors", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        // export writes the weights; the folder needs the model's config.json (and tokenizer) beside them to convert again.
        for name in ["config.json", "spiece.model"] {
            try FileManager.default.copyItem(atPath: flanTiny + "/" + name, toPath: dir + "/exported/" + name)
        }
        // The exported checkpoint holds the dequantized numbers: converted back to f32 it runs like the int8 file.
        let back = try flint("convert", dir + "/exported", "-o", dir + "/back.flint", "--quant", "f32")
        #expect(back.status == 0, "\(back.stderr)")
        let a = try flint("run", dir + "/q.flint", "reverse: red apple blue", "--json")
        let b = try flint("run", dir + "/back.flint", "reverse: red apple blue", "--json")
        #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
        #expect((a.json as? [String: Any])?["ids"] as? [Int] == (b.json as? [String: Any])?["ids"] as? [Int],
                "\(quant): the exported weights must run like the int8 file")
    }

    @Test func verifyGoldenMismatchExitsOne() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let demo = packageRoot + "/Tests/Fixtures/models/demo"
        let data = try Data(contentsOf: URL(fileURLWithPath: demo + "/golden.json"))
        var json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var cases = try #require(json["cases"] as? [[String: Any]])
        var ids = try #require(cases[0]["greedy_ids"] as? [Int])
        ids[1] = (ids[1] + 1) % 1000
        cases[0]["greedy_ids"] = ids
        json["cases"] = cases
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/golden.json"))
        let r = try flint("verify", demo, "--golden", dir + "/golden.json")
        #expect(r.status == 1, "a golden mismatch must exit 1: \(r.status) \(r.stdout) \(r.stderr)")
    }
}
