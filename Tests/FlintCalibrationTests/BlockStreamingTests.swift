import Foundation
import Testing
import FlintCalibration
import FlintCheckpoint
import FlintFormat
import FlintT5

/// The cases of a fixture's transformers golden (Tools/make_model_golden.py).
private func goldenCases(_ name: String) throws -> [[String: Any]] {
    let path = model(name) + "/golden.json"
    let data = try #require(FileManager.default.contents(atPath: path), "\(path) missing")
    let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    return try #require(json["cases"] as? [[String: Any]])
}

private func ints(_ value: Any?) -> [Int] { (value as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.intValue } }
private func floats(_ value: Any?) -> [Float] {
    (value as? [Any] ?? []).flatMap { row in (row as? [Any] ?? [row]).compactMap { ($0 as? NSNumber)?.floatValue } }
}

/// Calibration runs the float model one block at a time (T5BlockStreamer); what it computes must be what
/// transformers computes: the encoder's last hidden state and the greedy ids of every golden case, with all
/// cases in one batch — for a gated FLAN model, an original-T5 ReLU model with a tied head (scaled by
/// d_model^-0.5), a bf16 checkpoint (widened per block), a long input and UMT5 (a bias table per block).
@Suite struct BlockStreamingTests {
    @Test(arguments: ["flan-tiny", "t5-tiny", "flan-tiny-bf16", "flan-long", "demo", "umt5-tiny"])
    func streamedEncoderAndGreedyIdsMatchTransformers(name: String) throws {
        let folder = try HFModelFolder(path: model(name))
        let cases = try goldenCases(name)
        let streamer = try T5BlockStreamer(weights: folder, pool: nil)
        let inputs = cases.map { ints($0["input_ids"]) }
        var blocksSeen: [Int] = []
        let encoded = try streamer.encode(inputs) { done, _ in blocksSeen.append(done) }
        #expect(blocksSeen == Array(1...folder.config.numEncoderLayers))
        for (i, c) in cases.enumerated() {
            let golden = floats(c["encoder_last_hidden_state"])
            let scale = golden.map { abs($0) }.max() ?? 1
            let diff = zip(encoded[i].hiddenStates, golden).map { abs($0 - $1) }.max() ?? .infinity
            #expect(encoded[i].hiddenStates.count == golden.count)
            #expect(diff <= 5e-6 * scale, "\(name) case \(i): encoder differs by \(diff) (scale \(scale))")
        }
        let generated = try streamer.greedy(encoded, maxNewTokens: 20)
        for (i, c) in cases.enumerated() {
            let golden = Array(ints(c["greedy_ids"]).dropFirst())  // transformers' ids start with the start token
            #expect(generated[i] == golden, "\(name) case \(i)")
        }
    }

    /// With a generation config's decoder start token or eos list (what calibration and verify's reference follow
    /// for such a model): transformers' greedy ids for those settings (Tests/Fixtures/generation, every prompt).
    @Test(arguments: ["flan-tiny", "t5-tiny"])
    func streamedGreedyFollowsTheGenerationConfigsSpecialIds(name: String) throws {
        let url = URL(fileURLWithPath: model(name)).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("generation/\(name).json")
        let golden = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let settings = try #require(golden["settings"] as? [String: [String: Any]])
        let cases = try #require(golden["cases"] as? [[String: Any]])
        let folder = try HFModelFolder(path: model(name))
        let streamer = try T5BlockStreamer(weights: folder, pool: nil)
        let encoded = try streamer.encode(cases.map { ints($0["input_ids"]) })
        var differ = 0
        for setting in ["decoder_start_greedy", "eos_list_greedy"] {
            let s = try #require(settings[setting])
            let start = s["decoder_start_token_id"] as? Int
            let generated = try streamer.greedy(encoded, maxNewTokens: 20, startToken: start,
                                                endTokens: s["eos_token_id"] as? [Int])
            for (i, c) in cases.enumerated() {
                let results = try #require(c["results"] as? [String: [String: Any]])
                let expected = try #require((results[setting]?["sequences"] as? [[Int]])?.first)
                #expect(expected.first == start ?? folder.config.decoderStartTokenId)
                #expect(generated[i] == Array(expected.dropFirst()), "\(name) \(setting) case \(i)")
                if expected != (results["plain"]?["sequences"] as? [[Int]])?.first { differ += 1 }
            }
        }
        #expect(differ > 0, "the settings should change some output")
    }

    /// Every linear layer's input, streamed, is what the whole model feeds that layer while it generates
    /// greedily (rows and per-channel maxima) — the output head's input included, which greedy ids alone cannot
    /// check (the tied head's d_model^-0.5 scale does not change an argmax).
    @Test(arguments: ["t5-tiny", "flan-tiny", "umt5-tiny"])
    func streamedLayerInputsEqualTheWholeModels(name: String) throws {
        let folder = try HFModelFolder(path: model(name))
        let inputs = try goldenCases(name).map { ints($0["input_ids"]) }
        final class Maxima: @unchecked Sendable {
            var rows: [String: Int] = [:], absMax: [String: [Float]] = [:]
            func add(_ name: String, _ x: UnsafeBufferPointer<Float>, _ rows: Int) {
                let channels = x.count / rows
                var m = absMax[name] ?? [Float](repeating: 0, count: channels)
                for i in 0..<x.count { m[i % channels] = max(m[i % channels], abs(x[i])) }
                absMax[name] = m
                self.rows[name, default: 0] += rows
            }
        }
        let whole = Maxima(), streamed = Maxima()
        let reference = try T5ForConditionalGeneration(weights: folder, pool: nil)
        for ids in inputs {
            let encoded = try reference.encode(ids, linearObserver: whole.add)
            let cross = try reference.crossAttentionCache(encoded, linearObserver: whole.add)
            let state = reference.makeDecoderState()
            try reference.addSequences(to: state, cross: cross, rows: 1, maxLength: 10)
            var token = folder.config.decoderStartTokenId
            for _ in 0..<10 {
                let logits = try reference.decodeStep(state, tokens: [token], linearObserver: whole.add)
                token = logits.indices.max { logits[$0] < logits[$1] }!
                if token == folder.config.eosTokenId { break }
            }
        }
        let streamer = try T5BlockStreamer(weights: folder, pool: nil)
        _ = try streamer.greedy(try streamer.encode(inputs, linearObserver: streamed.add), maxNewTokens: 10,
                                linearObserver: streamed.add)
        #expect(whole.rows == streamed.rows)
        #expect(streamed.rows.keys.contains(folder.config.tieWordEmbeddings ? "shared.weight" : "lm_head.weight"))
        for (layer, a) in whole.absMax {
            let b = try #require(streamed.absMax[layer])
            let scale = a.max() ?? 1
            let diff = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
            #expect(diff <= 1e-5 * scale, "\(name) \(layer): per-channel maxima differ by \(diff) (scale \(scale))")
        }
    }

    /// Prompts split into chunks (a tiny activation budget: one prompt per chunk) give the same statistics as
    /// one batch, up to float rounding; the budget really splits them.
    @Test func chunkedCalibrationGivesTheSameStatistics() throws {
        let folder = try HFModelFolder(path: model("demo"))
        let prompts = Array(reversePrompts.prefix(5))
        let whole = try Calibrator.calibrate(weights: folder, prompts: prompts, promptSource: "test",
                                             options: CalibrationOptions(maxNewTokens: 8), pool: nil)
        var chunkedProgress: [String] = []
        let chunked = try Calibrator.calibrate(weights: folder, prompts: prompts, promptSource: "test",
                                               options: CalibrationOptions(maxNewTokens: 8, maxActivationBytes: 1),
                                               pool: nil) { _, _, what in chunkedProgress.append(what) }
        #expect(chunkedProgress.contains { $0.contains("prompts 5-5 of 5") })
        #expect(Set(whole.layers.keys) == Set(chunked.layers.keys))
        for (layer, a) in whole.layers {
            let b = try #require(chunked.layers[layer])
            #expect(a.rows == b.rows, "\(layer)")
            let scale = a.largest
            let diff = zip(a.absMax, b.absMax).map { abs($0 - $1) }.max() ?? 0
            #expect(diff <= 1e-5 * scale, "\(layer): abs-max differs by \(diff)")
        }
    }
}
