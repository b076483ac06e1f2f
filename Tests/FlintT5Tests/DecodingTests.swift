import Foundation
import Testing
import FlintFormat
import FlintCheckpoint
import FlintKernels
@testable import FlintT5

struct DecodingTests {
    let prompt = [37, 12, 99, 5, 1]

    @Test func samplingIsDeterministicPerSeed() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        func run(seed: UInt64) throws -> [Int] {
            try model.generate(inputIds: prompt, options: GenerationOptions(maxNewTokens: 12, strategy: .sampling(
                SamplingOptions(temperature: 1.5, topK: 50, topP: 0.95, seed: seed)))).sequence
        }
        let first = try run(seed: 7)
        #expect(try run(seed: 7) == first)
        #expect(first.first == model.config.decoderStartTokenId)
        // Different seeds give different streams (checked over a few seeds, so one coincidence cannot fail it).
        let others = try (8...11).map { try run(seed: $0) }
        #expect(others.contains { $0 != first })
    }

    @Test func topKOneIsGreedy() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        let greedy = try model.generate(inputIds: prompt, options: GenerationOptions(maxNewTokens: 15))
        let sampled = try model.generate(inputIds: prompt, options: GenerationOptions(maxNewTokens: 15, strategy: .sampling(
            SamplingOptions(temperature: 0.7, topK: 1, seed: 3))))
        #expect(sampled.sequence == greedy.sequence)
    }

    @Test func oneBeamIsGreedy() throws {
        let model = try LoadedModels.shared.model("t5-tiny")
        let greedy = try model.generate(inputIds: prompt, options: GenerationOptions(maxNewTokens: 10))
        let beam = try model.generate(inputIds: prompt, options: GenerationOptions(
            maxNewTokens: 10, strategy: .beamSearch(BeamSearchOptions(numBeams: 1))))
        #expect(beam.sequence == greedy.sequence)
    }

    @Test func floatLengthPenaltyMeansItsDecimal() {
        // transformers computes length ** 0.6 with the double 0.6, not with Float(0.6) widened.
        #expect(BeamSearchOptions(numBeams: 4, lengthPenalty: Float(0.6)).lengthPenalty == 0.6)
        #expect(BeamSearchOptions(numBeams: 4, lengthPenalty: Float(1)).lengthPenalty == 1.0)
    }

    @Test func maxNewTokensBoundsTheOutput() throws {
        let model = try LoadedModels.shared.model("t5-tiny")
        for strategy in [DecodingStrategy.greedy, .beamSearch(BeamSearchOptions(numBeams: 3)),
                         .sampling(SamplingOptions(seed: 1))] {
            let result = try model.generate(inputIds: prompt, options: GenerationOptions(maxNewTokens: 3, strategy: strategy))
            #expect(result.sequence.count <= 4)
            #expect(result.sequence.first == 0)
        }
    }

    @Test func blockObserverSeesEveryBlock() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        var seen: [String] = []
        _ = try model.logits(inputIds: prompt, decoderInputIds: [0, 5]) { stack, block, hidden, rows in
            seen.append("\(stack.rawValue)\(block):\(rows)x\(hidden.count / rows)")
        }
        let d = model.config.dModel
        #expect(seen == ["encoder0:5x\(d)", "encoder1:5x\(d)", "decoder0:1x\(d)", "decoder1:1x\(d)",
                         "decoder0:1x\(d)", "decoder1:1x\(d)"])
    }

    @Test func badInputsAreErrors() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        #expect(throws: FlintError.self) { try model.encode([]) }
        #expect(throws: FlintError.self) { try model.encode([1, model.config.vocabSize]) }
        #expect(throws: FlintError.self) { try model.generate(inputIds: prompt, options: GenerationOptions(maxNewTokens: 0)) }
        #expect(throws: FlintError.self) {
            try model.generate(inputIds: prompt, options: GenerationOptions(strategy: .sampling(SamplingOptions(temperature: 0))))
        }
        let state = try model.startDecoding(try model.encode(prompt), maxLength: 1)
        _ = try model.decodeStep(state, tokens: [0])
        #expect(throws: FlintError.self) { try model.decodeStep(state, tokens: [0]) }  // out of positions
    }
}

struct DecoderCacheTests {
    /// A cache that starts with room for 3 positions and grows (3 → 6 → 12 → 24) must give bit-identical logits
    /// to one allocated for everything up front, including after beam reorders.
    @Test func growingCacheKeepsEverything() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        let encoded = try model.encode([37, 12, 99, 5, 1])
        let small = try model.startDecoding(encoded, beams: 2, maxLength: 20, initialCapacity: 3)
        let large = try model.startDecoding(encoded, beams: 2, maxLength: 20, initialCapacity: 256)
        var tokens = [0, 0]
        for step in 0..<20 {
            let a = Array(try model.decodeStep(small, tokens: tokens))
            let b = Array(try model.decodeStep(large, tokens: tokens))
            #expect(a == b, "step \(step)")
            let reorder = step % 3 == 1 ? [1, 0] : (step % 3 == 2 ? [0, 0] : [0, 1])
            try small.reorderBeams(reorder)
            try large.reorderBeams(reorder)
            tokens = [(step * 7 + 3) % 1000, (step * 13 + 5) % 1000]
        }
        #expect(throws: FlintError.self) { try model.decodeStep(small, tokens: tokens) }
    }
}

/// Binary16 attention caches (`AttentionCachePrecision.f16`, the default for int8 / int4 models).
struct HalfAttentionCacheTests {
    let prompt = [37, 12, 99, 5, 1]

    @Test func theDefaultFollowsTheWeights() throws {
        let float = try HFModelFolder(path: fixturesDirectory.appendingPathComponent("flan-tiny").path)
        #expect(T5ForConditionalGeneration.defaultAttentionCache(for: float) == .f32)
        let int8 = try FlintFile(path: fixturesDirectory.deletingLastPathComponent()
            .appendingPathComponent("format-golden/flan-tiny.v1-r4.flint").path)
        #expect(int8.holdsQuantizedWeights)
        #expect(T5ForConditionalGeneration.defaultAttentionCache(for: int8) == .f16)
        #expect(try T5ForConditionalGeneration(weights: int8, pool: nil).attentionCache == .f16)
        #expect(try T5ForConditionalGeneration(weights: int8, pool: nil, attentionCache: .f32).attentionCache == .f32)
        #expect(try LoadedModels.shared.model("flan-tiny").attentionCache == .f32)
    }

    /// Every path's store gives the same binary16 bits (the portable C conversion's), and reading them back
    /// gives the nearest half of each float.
    @Test(arguments: KernelISA.allCases)
    func everyPathStoresTheSameHalves(isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        var values: [Float] = [0, -0, 1, -1, 65504, 70000, -1e30, .infinity, 6.1e-5, 3e-8, 1.0004883, 2047.5]
        var state: UInt64 = 7
        for _ in 0..<501 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let random = Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32))
            values.append(random.isNaN ? 1 : random)
        }
        func stored(_ isa: KernelISA) -> [Float] {
            let storage = AttentionCacheStorage(count: values.count, precision: .f16)
            values.withUnsafeBufferPointer { storage.rows(at: 0).store($0.baseAddress!, count: values.count, isa: isa) }
            return storage.rows(at: 0).floats(count: values.count)
        }
        let portable = stored(.portable), mine = stored(isa)
        #expect(portable.map(\.bitPattern) == mine.map(\.bitPattern))
        for (x, h) in zip(values, portable) {
            let expected = Float(Float16(max(-65504, min(65504, x))))
            #expect(h.bitPattern == expected.bitPattern, "\(x) stored as \(h), expected \(expected)")
        }
    }

    /// A float model decoding with binary16 caches: logits near the float32 caches' (tiny random weights, so
    /// the half rounding shows), not identical to them; growing and beam reorders keep every cached half.
    @Test(arguments: KernelISA.allCases)
    func halfCachesDecodeLikeFloatCaches(isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let folder = try HFModelFolder(path: fixturesDirectory.appendingPathComponent("flan-tiny").path)
        let exact = try T5ForConditionalGeneration(weights: folder, pool: nil, isa: isa)
        let half = try T5ForConditionalGeneration(weights: folder, pool: nil, isa: isa, attentionCache: .f16)
        #expect(half.attentionCache == .f16)
        let encoded = try exact.encode(prompt)
        let reference = try exact.startDecoding(encoded, beams: 2, maxLength: 20, initialCapacity: 256)
        let small = try half.startDecoding(encoded, beams: 2, maxLength: 20, initialCapacity: 3)
        let large = try half.startDecoding(encoded, beams: 2, maxLength: 20, initialCapacity: 256)
        var tokens = [0, 0]
        var largest = 0.0
        for step in 0..<20 {
            let a = Array(try half.decodeStep(small, tokens: tokens))
            let b = Array(try half.decodeStep(large, tokens: tokens))
            let r = Array(try exact.decodeStep(reference, tokens: tokens))
            #expect(a == b, "step \(step)")
            let error = try relativeError(b, r.map(Double.init))
            largest = max(largest, error)
            #expect(error < 1e-2, "step \(step): half caches vs float32 caches \(error)")
            let reorder = step % 3 == 1 ? [1, 0] : (step % 3 == 2 ? [0, 0] : [0, 1])
            for state in [small, large, reference] { try state.reorderBeams(reorder) }
            tokens = [(step * 7 + 3) % 1000, (step * 13 + 5) % 1000]
        }
        #expect(largest > 0, "binary16 caches gave exactly the float32 logits: are they half at all?")
        // Greedy ids of the two agree on this prompt.
        let options = GenerationOptions(maxNewTokens: 12)
        #expect(try half.generate(inputIds: prompt, options: options).sequence
                == exact.generate(inputIds: prompt, options: options).sequence)
    }
}
