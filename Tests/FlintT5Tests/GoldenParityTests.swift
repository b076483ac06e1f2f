import Foundation
import Testing
import FlintFormat
import FlintCheckpoint
import FlintKernels
@testable import FlintT5

// Parity with Hugging Face transformers 4.57.6 (float32, CPU), from golden files written by
// Tools/make_model_golden.py: encoder outputs and first-step logits within 1e-4 of the golden values' scale,
// greedy / beam-4 / beam-4-early-stopping ids identical.

let fixturesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/models")

struct GoldenCase {
    let prompt: String
    let inputIds: [Int]
    let encoderHidden: [[Double]]
    let firstLogits: [Double]?
    let greedyIds: [Int]?
    let beam4Ids: [Int]?
    let beam4EarlyStoppingIds: [Int]?
    let stepLogits: [[Double]]?
}

func loadGolden(_ model: String) throws -> (json: [String: Any], cases: [GoldenCase]) {
    let url = fixturesDirectory.appendingPathComponent(model).appendingPathComponent("golden.json")
    let data = try Data(contentsOf: url)
    let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let rawCases = try #require(json["cases"] as? [[String: Any]])
    let cases = try rawCases.map { c in
        GoldenCase(prompt: c["prompt"] as? String ?? "",
                   inputIds: try #require(c["input_ids"] as? [Int]),
                   encoderHidden: try #require(c["encoder_last_hidden_state"] as? [[Double]]),
                   firstLogits: c["first_logits"] as? [Double],
                   greedyIds: c["greedy_ids"] as? [Int],
                   beam4Ids: c["beam4_ids"] as? [Int],
                   beam4EarlyStoppingIds: c["beam4_es_ids"] as? [Int],
                   stepLogits: c["step_logits"] as? [[Double]])
    }
    return (json, cases)
}

/// max |ours - golden| / max |golden|.
func relativeError(_ ours: [Float], _ golden: [Double]) -> Double {
    precondition(ours.count == golden.count, "length \(ours.count) vs golden \(golden.count)")
    var worst = 0.0, scale = 0.0
    for (a, b) in zip(ours, golden) {
        worst = max(worst, abs(Double(a) - b))
        scale = max(scale, abs(b))
    }
    return worst / max(scale, 1e-30)
}

let tolerance = 1e-4

/// One model per fixture folder, loaded once: the tests of one model share it.
final class LoadedModels: @unchecked Sendable {
    static let shared = LoadedModels()
    private var models: [String: T5ForConditionalGeneration] = [:]
    private let lock = NSLock()
    let pool = ThreadPool(threads: 2)

    func model(_ name: String) throws -> T5ForConditionalGeneration {
        lock.lock(); defer { lock.unlock() }
        if let model = models[name] { return model }
        let folder = try HFModelFolder(path: fixturesDirectory.appendingPathComponent(name).path)
        let model = try T5ForConditionalGeneration(weights: folder, pool: pool)
        models[name] = model
        return model
    }
}

let encoderDecoderFixtures = ["flan-tiny", "flan-tiny-sharded", "t5-tiny", "t5-vocab32k", "demo"]

func fixtureExists(_ name: String) -> Bool {
    FileManager.default.fileExists(atPath: fixturesDirectory.appendingPathComponent(name).appendingPathComponent("golden.json").path)
}

struct GoldenParityTests {
    @Test(arguments: encoderDecoderFixtures)
    func encoderOutputsAndFirstLogits(model name: String) throws {
        try #require(fixtureExists(name), "missing fixture \(name)")
        let model = try LoadedModels.shared.model(name)
        let (_, cases) = try loadGolden(name)
        #expect(!cases.isEmpty)
        for golden in cases {
            let encoded = try model.encode(golden.inputIds)
            #expect(encoded.length == golden.encoderHidden.count)
            let encoderError = relativeError(encoded.hiddenStates, golden.encoderHidden.flatMap { $0 })
            #expect(encoderError < tolerance, "\(name) \"\(golden.prompt)\": encoder relative error \(encoderError)")

            let firstLogits = try #require(golden.firstLogits)
            let state = try model.startDecoding(encoded, maxLength: 4)
            let logits = Array(try model.decodeStep(state, tokens: [model.config.decoderStartTokenId]))
            let logitError = relativeError(logits, firstLogits)
            #expect(logitError < tolerance, "\(name) \"\(golden.prompt)\": first logits relative error \(logitError)")

            // Later steps through the KV cache (flan-tiny keeps the raw logits of the first greedy steps).
            if let steps = golden.stepLogits, let greedy = golden.greedyIds {
                let cached = try model.logits(inputIds: golden.inputIds, decoderInputIds: Array(greedy.prefix(steps.count)))
                for (i, step) in steps.enumerated() {
                    let error = relativeError(cached[i], step)
                    #expect(error < tolerance, "\(name) \"\(golden.prompt)\": step \(i) logits relative error \(error)")
                }
            }
        }
    }

    @Test(arguments: encoderDecoderFixtures)
    func greedyAndBeamSearchIds(model name: String) throws {
        try #require(fixtureExists(name), "missing fixture \(name)")
        let model = try LoadedModels.shared.model(name)
        let (json, cases) = try loadGolden(name)
        let generation = try #require(json["generation"] as? [String: Any])
        let beam4 = try #require(generation["beam4"] as? [String: Any])
        let beam4ES = try #require(generation["beam4_es"] as? [String: Any])
        let maxNewTokens = try #require(beam4["max_new_tokens"] as? Int)
        let greedyOptions = GenerationOptions(maxNewTokens: maxNewTokens, strategy: .greedy)
        let beamOptions = GenerationOptions(maxNewTokens: maxNewTokens, strategy: .beamSearch(BeamSearchOptions(
            numBeams: try #require(beam4["num_beams"] as? Int),
            lengthPenalty: try #require(beam4["length_penalty"] as? Double),
            earlyStopping: try #require(beam4["early_stopping"] as? Bool))))
        let beamESOptions = GenerationOptions(maxNewTokens: maxNewTokens, strategy: .beamSearch(BeamSearchOptions(
            numBeams: try #require(beam4ES["num_beams"] as? Int),
            lengthPenalty: try #require(beam4ES["length_penalty"] as? Double),
            earlyStopping: try #require(beam4ES["early_stopping"] as? Bool))))
        for golden in cases {
            var streamed: [Int] = []
            let greedy = try model.generate(inputIds: golden.inputIds, options: greedyOptions) { streamed.append($0) }
            #expect(greedy.sequence == golden.greedyIds, "\(name) \"\(golden.prompt)\": greedy")
            #expect(streamed == greedy.generatedIds)
            let beam = try model.generate(inputIds: golden.inputIds, options: beamOptions)
            #expect(beam.sequence == golden.beam4Ids, "\(name) \"\(golden.prompt)\": beam 4")
            let beamES = try model.generate(inputIds: golden.inputIds, options: beamESOptions)
            #expect(beamES.sequence == golden.beam4EarlyStoppingIds, "\(name) \"\(golden.prompt)\": beam 4, early stopping")
        }
    }

    @Test func encoderOnlyModel() throws {
        try #require(fixtureExists("t5-encoder"), "missing fixture t5-encoder")
        let folder = try HFModelFolder(path: fixturesDirectory.appendingPathComponent("t5-encoder").path)
        let model = try T5EncoderModel(weights: folder, pool: LoadedModels.shared.pool)
        let (_, cases) = try loadGolden("t5-encoder")
        #expect(!cases.isEmpty)
        for golden in cases {
            let encoded = try model.encode(golden.inputIds)
            let error = relativeError(encoded.hiddenStates, golden.encoderHidden.flatMap { $0 })
            #expect(error < tolerance, "t5-encoder \"\(golden.prompt)\": relative error \(error)")
        }
    }
}
