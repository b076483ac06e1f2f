import Foundation
import Testing
import TestSupport

// `flint run` generation: the model's generation_config.json (stored by convert, read from a folder), and the
// option flags, against transformers 4.57.6's generate() (Tests/Fixtures/generation/*.json, written by
// Tools/make_generation_golden.py).

private func generationGolden(_ model: String) throws -> [String: Any] {
    let url = URL(fileURLWithPath: packageRoot + "/Tests/Fixtures/generation/\(model).json")
    return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
}

/// The JSON lines of a `run --json`.
private func runLines(_ args: [String]) throws -> [[String: Any]] {
    let r = try flint(arguments: args)
    #expect(r.status == 0, "\(args): \(r.stderr)")
    return try r.stdout.split(separator: "\n").map {
        try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
    }
}

private func copyModel(_ name: String, to dir: String) throws -> String {
    let fm = FileManager.default
    let folder = dir + "/" + name
    try fm.copyItem(atPath: packageRoot + "/Tests/Fixtures/models/" + name, toPath: folder)
    try? fm.removeItem(atPath: folder + "/golden.json")
    return folder
}

/// A copy of `model` in `dir` with `config` as its generation_config.json, and its float32 conversion (convert must
/// succeed).
private func folderWithGenerationConfig(_ model: String, _ config: Any, in dir: String) throws -> (folder: String, file: String, convert: CLIResult) {
    let folder = try copyModel(model, to: dir)
    try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: folder + "/generation_config.json"))
    let file = dir + "/m.flint"
    let c = try flint("convert", folder, "-o", file, "--quant", "f32", "--no-calibration")
    #expect(c.status == 0, "\(c.stderr)")
    return (folder, file, c)
}

/// `flint run` with no flags, from the file and from the folder, gives every case's ids (transformers', the decoder
/// start token first). Returns the JSON lines of each source.
private func expectGoldenRuns(_ cases: [[String: Any]], file: String, folder: String, model: String) throws -> [[[String: Any]]] {
    let prompts = cases.compactMap { $0["prompt"] as? String }
    return try [file, folder].map { source in
        let lines = try runLines(["run", source] + prompts + ["--json"])
        #expect(lines.count == cases.count)
        for (line, c) in zip(lines, cases) {
            let expected = try #require(c["ids"] as? [Int])
            #expect(line["ids"] as? [Int] == Array(expected.dropFirst()), "\(model) \(source == file ? "file" : "folder"): \(c["prompt"] ?? "")")
        }
        return lines
    }
}

@Suite struct GenerationCLITests {
    /// A folder whose generation_config.json asks for 4 beams, 12 new tokens and no_repeat_ngram_size 2:
    /// `flint run` with no flags gives `model.generate(**inputs)`'s ids, from the folder and from the converted file.
    @Test(arguments: ["flan-tiny", "t5-tiny"])
    func generationConfigIsFollowedWithNoFlags(model: String) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let golden = try generationGolden(model)
        let (folder, out, _) = try folderWithGenerationConfig(model, try #require(golden["generation_config_json"]), in: dir)
        let cases = try #require(golden["generation_config_cases"] as? [[String: Any]])
        let prompts = cases.compactMap { $0["prompt"] as? String }
        for lines in try expectGoldenRuns(cases, file: out, folder: folder, model: model) {
            #expect(lines.allSatisfy { $0["score"] is Double }, "beam search from the generation config reports its score")
        }
        // A flag overrides its setting: --beams 1 is greedy (no score), --max-tokens 3 stops after 3 tokens.
        let greedy = try runLines(["run", out, prompts[0], "--json", "--beams", "1", "--max-tokens", "3"])
        #expect(greedy.first?["score"] == nil)
        #expect((greedy.first?["ids"] as? [Int])?.count ?? 0 <= 3)
    }

    /// A generation_config.json whose decoder_start_token_id and eos_token_id list differ from config.json's:
    /// transformers generates with them, and so does `flint run`, from the folder and from the converted file (which
    /// stores them and lists the feature older readers must not ignore).
    @Test(arguments: ["flan-tiny", "t5-tiny"])
    func generationConfigSpecialIdsAreFollowed(model: String) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let golden = try generationGolden(model)
        let special = try #require(golden["special_ids_config_json"] as? [String: Any])
        let (folder, out, c) = try folderWithGenerationConfig(model, special, in: dir)
        #expect(!c.stderr.contains("eos_token_id") && !c.stderr.contains("decoder_start_token_id"), "no longer ignored: \(c.stderr)")
        let metadata = try flintMetadata(out)
        let generation = try #require(metadata["generation"] as? [String: Any])
        #expect(generation["eos_token_id"] as? [Int] == special["eos_token_id"] as? [Int])
        #expect(generation["decoder_start_token_id"] as? Int == special["decoder_start_token_id"] as? Int)
        #expect((metadata["required_features"] as? [String])?.contains("generation-special-ids") == true)
        // inspect shows them (text and JSON).
        let eosList = try #require(special["eos_token_id"] as? [Int])
        let text = try flint("inspect", out)
        #expect(text.stdout.contains("eos_token_id [\(eosList.map(String.init).joined(separator: ","))]"), "\(text.stdout.prefix(600))")
        #expect(text.stdout.contains("features   generation-special-ids"))
        let inspected = try #require(try JSONSerialization.jsonObject(with: Data(try flint("inspect", out, "--json").stdout.utf8)) as? [String: Any])
        #expect((inspected["generation"] as? [String: Any])?["eos_token_id"] as? [Int] == eosList)
        #expect(inspected["required_features"] as? [String] == ["generation-special-ids"])
        _ = try expectGoldenRuns(try #require(golden["special_ids_config_cases"] as? [[String: Any]]), file: out, folder: folder,
                                 model: model)
    }

    /// Each flag against transformers' ids for the same setting (t5-tiny and demo, every golden prompt).
    @Test(arguments: ["t5-tiny", "demo"])
    func flagsGiveTransformersIds(model: String) throws {
        let golden = try generationGolden(model)
        let folder = packageRoot + "/Tests/Fixtures/models/" + model
        let settings = try #require(golden["settings"] as? [String: [String: Any]])
        let suppress = try #require(settings["suppress_tokens"]?["suppress_tokens"] as? [Int])
        let badWords = try #require(golden["bad_words_text"] as? [String])
        let stops = try #require(settings["stop_strings"]?["stop_strings"] as? [String])
        let flags: [String: [String]] = [
            "no_repeat_ngram_2": ["--no-repeat-ngram", "2"],
            "no_repeat_ngram_3_beam4": ["--no-repeat-ngram", "3", "--beams", "4"],
            "repetition_penalty_1.5": ["--repetition-penalty", "1.5"],
            "repetition_penalty_1.3_beam3": ["--repetition-penalty", "1.3", "--beams", "3"],
            "min_new_tokens_8": ["--min-tokens", "8"],
            "suppress_tokens": ["--suppress-tokens", suppress.map(String.init).joined(separator: ",")],
            "bad_words_text": badWords.flatMap { ["--bad-words", $0] },
            "num_return_3_beam4": ["--beams", "4", "--num-return", "3"],
            "num_return_5_beam5_lp0.6_es": ["--beams", "5", "--num-return", "5", "--length-penalty", "0.6", "--early-stopping"],
            "decoder_prefix": ["--decoder-prefix", "blue apple"],
            "stop_strings": stops.flatMap { ["--stop", $0] },
            "decoder_prefix_beam4": ["--decoder-prefix", "blue apple", "--beams", "4", "--min-tokens", "2"],
        ]
        let cases = try #require(golden["cases"] as? [[String: Any]])
        let prompts = cases.compactMap { $0["prompt"] as? String }
        for (setting, extra) in flags.sorted(by: { $0.key < $1.key }) {
            let lines = try runLines(["run", folder] + prompts + ["--json", "--max-tokens", "20"] + extra)
            #expect(lines.count == cases.count, "\(setting)")
            for (line, c) in zip(lines, cases) {
                let results = try #require(c["results"] as? [String: [String: Any]])
                let expected = try #require(results[setting]?["sequences"] as? [[Int]], "\(setting)")
                if expected.count > 1 {
                    let sequences = try #require(line["sequences"] as? [[String: Any]], "\(setting): n-best in --json")
                    #expect(sequences.map { $0["ids"] as? [Int] ?? [] } == expected.map { Array($0.dropFirst()) }, "\(model) \(setting)")
                    let scores = try #require(results[setting]?["scores"] as? [Double])
                    for (s, e) in zip(sequences, scores) {
                        #expect(abs((s["score"] as? Double ?? .nan) - e) < 5e-5, "\(model) \(setting): score")
                    }
                } else {
                    #expect(line["ids"] as? [Int] == Array(expected[0].dropFirst()), "\(model) \(setting): \(c["prompt"] ?? "")")
                }
            }
        }
    }

    /// Sampling without --seed is random, and --json says which seed was used: rerunning with it repeats the text.
    @Test func samplingWithoutSeedIsRandomAndReportsItsSeed() throws {
        let args = ["run", flanTiny, "reverse: red apple blue", "--sample", "--json", "--max-tokens", "12"]
        let a = try #require(try runLines(args).first), b = try #require(try runLines(args).first)
        let seedA = try #require(a["seed"] as? UInt64), seedB = try #require(b["seed"] as? UInt64)
        #expect(seedA != seedB)
        let again = try #require(try runLines(args + ["--seed", String(seedA)]).first)
        #expect(again["ids"] as? [Int] == a["ids"] as? [Int])
        #expect(again["seed"] as? UInt64 == seedA)
    }

    @Test func badFlagCombinationsAreRejected() throws {
        for bad in [["--num-return", "3"], ["--num-return", "3", "--beams", "2"], ["--repetition-penalty", "0"],
                    ["--no-repeat-ngram", "-1"], ["--suppress-tokens", "a,b"], ["--min-tokens", "-2"], ["--bad-words", ""],
                    ["--stop", "x", "--beams", "2"]] {
            let r = try flint(arguments: ["run", flanTiny, "x"] + bad)
            #expect(r.status != 0, "\(bad) must fail")
            #expect(!r.stderr.isEmpty)
        }
        let help = try flint("run", "--help")
        for flag in ["--min-tokens", "--no-repeat-ngram", "--repetition-penalty", "--num-return", "--bad-words",
                     "--suppress-tokens", "--decoder-prefix", "--stop"] {
            #expect(help.stdout.contains(flag), "\(flag) in --help")
        }
        #expect(help.stdout.contains("--decoder-prefix \"Hallo\""))
    }
}
