// The high-level API (`import Flint` alone): FlintModel against the outputs Hugging Face transformers produced
// (the fixtures' golden.json), int8 files kept int8, .flint.zst, streaming, batches, embeddings.
import Flint
import Foundation
import TestSupport
import Testing

/// A fixture's golden.json cases (written by Tools/make_model_golden.py with transformers).
private func goldenCases(_ model: String) throws -> [[String: Any]] {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixturePath("models/\(model)/golden.json")))
    let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    return try #require(root["cases"] as? [[String: Any]])
}

private let demoURL = URL(fileURLWithPath: fixturePath("models/demo"))
/// transformers' greedy generations are at most 20 new tokens (golden.json "generation").
private let goldenOptions = GenerationOptions(maxNewTokens: 20)

/// Converts the demo model to an int8 .flint file (data-free, as `flint convert --no-calibration` does).
private func demoInt8(in dir: String) throws -> String {
    let path = dir + "/demo-int8.flint"
    _ = try Converter.convert(source: demoURL.path, output: path, options: ConvertOptions(quant: .int8(.int8Row)))
    return path
}

@Suite struct FlintModelTests {
    @Test func generatesWhatTransformersGenerates() throws {
        let model = try FlintModel(contentsOf: demoURL)
        let cases = try goldenCases("demo")
        for c in cases {
            let prompt = try #require(c["prompt"] as? String)
            #expect(model.tokenize(prompt) == c["input_ids"] as? [Int], "\(prompt)")
            let expected = try #require(c["greedy_text"] as? String)
            #expect(try model.generate(prompt, options: goldenOptions) == expected, "\(prompt)")
        }
        // All prompts at once, in batches of 3: the same texts, in prompt order.
        let prompts = try cases.map { try #require($0["prompt"] as? String) }
        let texts = try model.generate(prompts, options: goldenOptions, batchSize: 3)
        #expect(texts == cases.map { $0["greedy_text"] as? String })
        let completions = try model.completions(prompts, options: goldenOptions)
        for (completion, c) in zip(completions, cases) {
            #expect([0] + completion.ids == c["greedy_ids"] as? [Int], "\(completion.prompt)")
            #expect(completion.inputIds == c["input_ids"] as? [Int])
        }
    }

    @Test func beamSearchMatchesTransformers() throws {
        let model = try FlintModel(contentsOf: demoURL)
        let beam = GenerationOptions(maxNewTokens: 20, strategy: .beamSearch(BeamSearchOptions(numBeams: 4)))
        for c in try goldenCases("demo") {
            let prompt = try #require(c["prompt"] as? String)
            let completion = try model.completions([prompt], options: beam)[0]
            #expect([0] + completion.ids == c["beam4_ids"] as? [Int], "\(prompt)")
        }
    }

    @Test func streamedPiecesJoinToTheGeneratedText() async throws {
        let model = try FlintModel(contentsOf: demoURL)
        for c in try goldenCases("demo") {
            let prompt = try #require(c["prompt"] as? String)
            var pieces: [String] = []
            for try await piece in model.stream(prompt, options: goldenOptions) { pieces.append(piece) }
            #expect(pieces.joined() == c["greedy_text"] as? String, "\(prompt): \(pieces)")
            #expect(!pieces.contains(""), "no empty pieces")
            // Words arrive as they are completed: a multi-word answer comes in more than one piece.
            if let text = c["greedy_text"] as? String, text.split(separator: " ").count > 1 {
                #expect(pieces.count > 1, "\(prompt): \(pieces)")
            }
        }
    }

    @Test func streamReportsErrors() async throws {
        let model = try FlintModel(contentsOf: demoURL)
        await #expect(throws: FlintError.self) {
            for try await _ in model.stream("reverse: a b", options: GenerationOptions(maxNewTokens: 0)) {}
        }
    }

    /// An int8 .flint file is run with its int8 weights in place (auto → weight-only for a data-free file),
    /// and answers like the float model on the demo prompts; widening it to float32 gives the same answers.
    @Test func int8FileKeepsInt8AndGivesTheDemoAnswers() throws {
        let dir = scratch("flint-model")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try demoInt8(in: dir)
        let model = try FlintModel(contentsOf: URL(fileURLWithPath: path))
        #expect(model.int8Kernels == .weightOnly)
        #expect(model.weights is FlintFile)
        let widened = try FlintModel(contentsOf: URL(fileURLWithPath: path), options: .init(kernels: .dequantized))
        #expect(widened.int8Kernels == nil)
        let w8a8 = try FlintModel(contentsOf: URL(fileURLWithPath: path), options: .init(kernels: .w8a8, threads: 2))
        #expect(w8a8.int8Kernels == .w8a8 && w8a8.pool.threadCount == 2)
        let reverse = try goldenCases("demo").filter { ($0["prompt"] as? String)?.hasPrefix("reverse:") == true }
        #expect(reverse.count >= 3)
        for c in reverse {
            let prompt = try #require(c["prompt"] as? String)
            let expected = c["greedy_text"] as? String
            #expect(try model.generate(prompt, options: goldenOptions) == expected, "\(prompt)")
            #expect(try widened.generate(prompt, options: goldenOptions) == expected, "\(prompt)")
        }
    }

    @Test func opensPackedFiles() throws {
        let dir = scratch("flint-model")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try demoInt8(in: dir)
        try FlintPacker.pack(input: path, output: path + ".zst", level: 3)
        try FileManager.default.removeItem(atPath: path)
        let model = try FlintModel(contentsOf: URL(fileURLWithPath: path + ".zst"))
        #expect(try model.generate("reverse: red apple blue", options: goldenOptions) == "blue apple red")
        #expect(FileManager.default.fileExists(atPath: FlintPacker.unpackedCachePath(for: path + ".zst")))
    }

    @Test func embedsLikeTransformersEncoder() throws {
        let model = try FlintModel(contentsOf: URL(fileURLWithPath: fixturePath("models/t5-encoder")))
        #expect(model.isEncoderOnly)
        #expect(throws: FlintError.self) { try model.generate("hello") }
        let cases = try goldenCases("t5-encoder")
        let prompts = try cases.map { try #require($0["prompt"] as? String) }
        let embeddings = try model.embed(prompts)
        #expect(embeddings.count == cases.count)
        for (embedding, c) in zip(embeddings, cases) {
            #expect(embedding.inputIds == c["input_ids"] as? [Int])
            let expected = try #require(c["encoder_last_hidden_state"] as? [[Double]])
            #expect(embedding.tokenStates.length == expected.count)
            var worst = 0.0, scale = 0.0
            for (a, b) in zip(embedding.tokenStates.hiddenStates, expected.joined()) {
                worst = max(worst, abs(Double(a) - b)); scale = max(scale, abs(b))
            }
            #expect(worst / scale < 5e-6, "embed vs transformers: \(worst / scale)")
            #expect(embedding.mean.count == model.config.dModel)
        }
        // An encoder-decoder model embeds with its encoder too (the demo's golden has its encoder states).
        let demo = try FlintModel(contentsOf: demoURL)
        let c = try goldenCases("demo")[0]
        let states = try demo.embed(try #require(c["prompt"] as? String)).tokenStates.hiddenStates
        let expected = try #require(c["encoder_last_hidden_state"] as? [[Double]]).joined()
        #expect(zip(states, expected).allSatisfy { abs(Double($0) - $1) < 1e-4 })
    }

    @Test func badSourcesAreClearErrors() throws {
        let missing = "/nonexistent/flint-model-\(UUID().uuidString)"
        #expect(throws: FlintError("\(missing): no such file or folder")) {
            try FlintModel(contentsOf: URL(fileURLWithPath: missing))
        }
        #expect(throws: FlintError.self) { try FlintModel(contentsOf: URL(string: "https://example.com/m.flint")!) }
        #expect(throws: FlintError.self) { try FlintModel(contentsOf: demoURL, options: .init(threads: 0)) }
        #expect(throws: FlintError.self) { try FlintModel(contentsOf: demoURL, options: .init(threads: 70_000)) }
        let model = try FlintModel(contentsOf: demoURL)
        #expect(throws: FlintError.self) { try model.generate(["a"], batchSize: 0) }
    }

    @Test func tokenizeAndDetokenize() throws {
        let model = try FlintModel(contentsOf: demoURL)
        let ids = model.tokenize("reverse: red apple blue")
        #expect(ids.last == model.config.eosTokenId)
        #expect(model.detokenize(ids) == "reverse: red apple blue")
        #expect(model.detokenize(ids, skipSpecialTokens: false).hasSuffix("</s>"))
        #expect(model.tokenize("red", addEOS: false).last != model.config.eosTokenId)
    }
}

@Suite struct TextStreamerTests {
    /// Pieces are handed out a whole word at a time, and they join to the decoded text, spaces kept.
    @Test func piecesAreWholeWordsThatJoinToTheText() throws {
        let model = try FlintModel(contentsOf: demoURL)
        let ids = model.tokenize("six five four three two one", addEOS: true)
        var streamer = TextStreamer(tokenizer: model.tokenizer)
        var pieces: [String] = []
        for id in ids { if let piece = streamer.add(id) { pieces.append(piece) } }
        let rest = streamer.finish()
        #expect(pieces == ["six ", "five ", "four ", "three ", "two "])
        #expect(rest == "one")
        #expect((pieces + [rest]).joined() == model.detokenize(ids))
        #expect(streamer.finish() == "", "nothing is handed out twice")
    }
}
