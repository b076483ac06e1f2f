import Foundation
import Testing
import FlintKernels
@testable import FlintT5

/// Temperature, top-k and top-p on a four-token distribution, with HF's meaning (TemperatureLogitsWarper,
/// TopKLogitsWarper, TopPLogitsWarper: tokens are dropped in ascending order while the cumulative probability
/// stays ≤ 1 − top_p). Removed tokens must never be drawn; kept ones with the renormalized probabilities, checked
/// over 20 000 seeded draws (binomial σ ≤ 0.0035, bound 0.015 ≈ 4σ).
struct SamplingSemanticsTests {
    static let probabilities: [Double] = [0.5, 0.3, 0.15, 0.05]

    func frequencies(_ options: SamplingOptions, draws: Int = 20_000) -> [Double] {
        var sampler = TokenSampler(options: options, vocabSize: 4)
        let logits = Self.probabilities.map { Float(log($0)) }
        var counts = [Int](repeating: 0, count: 4)
        logits.withUnsafeBufferPointer { buffer in
            for _ in 0..<draws { counts[sampler.sample(buffer)] += 1 }
        }
        return counts.map { Double($0) / Double(draws) }
    }

    func check(_ got: [Double], _ expected: [Double], _ label: String) {
        for i in 0..<4 {
            if expected[i] == 0 {
                #expect(got[i] == 0, "\(label): token \(i) was removed but drawn (\(got[i]))")
            } else {
                #expect(abs(got[i] - expected[i]) < 0.015, "\(label): token \(i) drawn \(got[i]), expected \(expected[i])")
            }
        }
    }

    @Test func plainSamplingFollowsTheDistribution() {
        check(frequencies(SamplingOptions(seed: 1)), Self.probabilities, "T=1")
    }

    @Test func temperatureSharpensAndFlattens() {
        for t in [0.5, 2.0] {
            let scaled = Self.probabilities.map { pow($0, 1 / t) }
            let total = scaled.reduce(0, +)
            check(frequencies(SamplingOptions(temperature: Float(t), seed: 2)), scaled.map { $0 / total }, "T=\(t)")
        }
    }

    @Test func topKKeepsTheKMostLikely() {
        check(frequencies(SamplingOptions(topK: 2, seed: 3)), [0.625, 0.375, 0, 0], "top-k 2")
        check(frequencies(SamplingOptions(topK: 3, seed: 4)), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], "top-k 3")
    }

    @Test func topPDropsTheUnlikelyTail() {
        // 1 − 0.7 = 0.3: 0.05 and 0.05 + 0.15 = 0.2 are ≤ 0.3 (dropped), 0.5 is not: {0.5, 0.3} remain.
        check(frequencies(SamplingOptions(topP: 0.7, seed: 5)), [0.625, 0.375, 0, 0], "top-p 0.7")
        // 1 − 0.9 = 0.1: only 0.05 is dropped.
        check(frequencies(SamplingOptions(topP: 0.9, seed: 6)), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], "top-p 0.9")
        // A tiny top-p still keeps the most likely token.
        check(frequencies(SamplingOptions(topP: 0.01, seed: 7)), [1, 0, 0, 0], "top-p 0.01")
    }

    @Test func temperatureAppliesBeforeTopP() {
        // T = 0.5 squares the probabilities: 0.25, 0.09, 0.0225, 0.0025 over 0.365 → 0.685, 0.247, 0.062, 0.007.
        // top-p 0.9 (drop while cumulative ≤ 0.1): 0.007 and 0.068 go; {0.685, 0.247} remain.
        let p = [0.25, 0.09] .map { $0 / 0.34 }
        check(frequencies(SamplingOptions(temperature: 0.5, topP: 0.9, seed: 8)), [p[0], p[1], 0, 0], "T=0.5 then top-p 0.9")
    }
}

/// Two threads generating with models that share one ThreadPool get the same tokens as transformers.
@Test func twoThreadsGenerateWithOneSharedPool() throws {
    let (_, cases) = try loadGolden("flan-tiny")
    let model = try LoadedModels.shared.model("flan-tiny")
    let other = try LoadedModels.shared.model("t5-tiny")
    let (_, otherCases) = try loadGolden("t5-tiny")
    let results = NSMutableArray(array: [NSNull(), NSNull()])
    let lock = NSLock()
    DispatchQueue.concurrentPerform(iterations: 2) { i in
        let (m, golden) = i == 0 ? (model, cases) : (other, otherCases)
        let ok = golden.allSatisfy { c in
            (try? m.generate(inputIds: c.inputIds, options: GenerationOptions(maxNewTokens: 20)).sequence) == c.greedyIds
        }
        lock.lock(); results[i] = ok; lock.unlock()
    }
    #expect(results[0] as? Bool == true, "flan-tiny greedy on a shared pool")
    #expect(results[1] as? Bool == true, "t5-tiny greedy on a shared pool")
}
