// `flint verify`: runs a quantized model and its float reference on the same prompts and measures how close the
// quantized one stays — teacher-forced on the reference's own greedy continuation (top-1 agreement, KL), free
// running (exact match, similarity), and block by block (cosine, SNR), naming the first block that drifts.

import Foundation
import FlintFormat
import FlintKernels
import FlintT5

/// Pass/fail limits. The defaults are documented in `flint verify --help` and README.
public struct VerifyThresholds: Codable, Sendable, Equatable {
    /// Teacher-forced top-1 agreement with the reference, over all steps of all prompts.
    public var minTop1: Double = 0.95
    /// Mean KL(reference ‖ candidate) of the next-token distributions, in nats.
    public var maxMeanKL: Double = 0.05
    /// Fraction of prompts whose free-running greedy generation equals the reference's exactly.
    public var minExact: Double = 0.5
    /// Every block's output SNR against the reference's, in dB; the first block below it is named.
    public var minLayerSNR: Double = 15

    public init() {}

    enum CodingKeys: String, CodingKey {
        case minTop1 = "min_top1"
        case maxMeanKL = "max_mean_kl"
        case minExact = "min_exact"
        case minLayerSNR = "min_layer_snr_db"
    }
}

/// One block's agreement with the reference, accumulated over every prompt and position.
public struct LayerAgreement: Codable, Sendable, Equatable {
    public var name: String
    public var cosine: Double
    /// nil when the outputs are identical (infinite SNR).
    public var snrDB: Double?

    enum CodingKeys: String, CodingKey {
        case name, cosine
        case snrDB = "snr_db"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(cosine, forKey: .cosine)
        if let snrDB { try c.encode(snrDB, forKey: .snrDB) } else { try c.encodeNil(forKey: .snrDB) }
    }
}

/// Per-prompt details (for the report).
public struct PromptResult: Codable, Sendable, Equatable {
    public var prompt: String
    public var inputTokens: Int
    public var referenceIds: [Int]
    public var candidateIds: [Int]
    public var top1Agreement: Double
    public var meanKL: Double
    public var exact: Bool
    public var similarity: Double

    enum CodingKeys: String, CodingKey {
        case prompt
        case inputTokens = "input_tokens"
        case referenceIds = "reference_ids"
        case candidateIds = "candidate_ids"
        case top1Agreement = "top1_agreement"
        case meanKL = "mean_kl"
        case exact, similarity
    }
}

public struct VerifyReport: Codable, Sendable {
    public var passed: Bool
    public var prompts: Int
    public var top1Agreement: Double
    public var firstTokenAgreement: Double
    public var meanKL: Double
    public var p99KL: Double
    public var maxKL: Double
    public var exactMatch: Double
    /// Mean token-level similarity (1 − normalised edit distance) of the generations that differ; 1 when none do.
    public var similarity: Double
    public var layers: [LayerAgreement]
    /// The first block below the layer threshold, or (when all pass) the block with the lowest SNR.
    public var worstLayer: String?
    /// Whether `worstLayer` fell below the threshold (true) or is merely the weakest (false).
    public var worstLayerBelowThreshold: Bool
    public var thresholds: VerifyThresholds
    /// Which checks failed, in words.
    public var failures: [String]
    public var candidate: String
    public var reference: String
    public var details: [PromptResult]

    enum CodingKeys: String, CodingKey {
        case passed, prompts
        case top1Agreement = "top1_agreement"
        case firstTokenAgreement = "first_token_agreement"
        case meanKL = "mean_kl"
        case p99KL = "p99_kl"
        case maxKL = "max_kl"
        case exactMatch = "exact_match"
        case similarity, layers
        case worstLayer = "worst_layer"
        case worstLayerBelowThreshold = "worst_layer_below_threshold"
        case thresholds, failures, candidate, reference, details
    }
}

/// What the verifier runs on: a model and a way to turn prompts into ids.
public struct VerifyInput {
    public var prompt: String
    public var inputIds: [Int]
    public init(prompt: String, inputIds: [Int]) {
        self.prompt = prompt
        self.inputIds = inputIds
    }
}

public enum Verifier {
    /// Refuses to score two models that are not the same model: an architecture or vocabulary mismatch is an
    /// error, not a low score.
    public static func checkComparable(candidate: WeightSource, reference: WeightSource) throws {
        let a = candidate.config, b = reference.config
        var diffs: [String] = []
        func cmp<T: Equatable>(_ x: T, _ y: T, _ name: String) { if x != y { diffs.append("\(name) \(x) vs \(y)") } }
        cmp(a.architecture, b.architecture, "architecture")
        cmp(a.dModel, b.dModel, "d_model"); cmp(a.dKV, b.dKV, "d_kv"); cmp(a.dFF, b.dFF, "d_ff")
        cmp(a.numHeads, b.numHeads, "num_heads")
        cmp(a.numEncoderLayers, b.numEncoderLayers, "num_encoder_layers")
        cmp(a.numDecoderLayers, b.numDecoderLayers, "num_decoder_layers")
        cmp(a.vocabSize, b.vocabSize, "vocab_size")
        cmp(a.activation, b.activation, "activation"); cmp(a.isGatedFFN, b.isGatedFFN, "gated_ffn")
        cmp(a.tieWordEmbeddings, b.tieWordEmbeddings, "tie_word_embeddings")
        cmp(a.relativeAttentionNumBuckets, b.relativeAttentionNumBuckets, "relative_attention_num_buckets")
        if !diffs.isEmpty {
            throw FlintError("\(candidate.sourceDescription) and \(reference.sourceDescription) are not the same model: "
                             + diffs.joined(separator: ", "))
        }
        if let ta = candidate.tokenizerModel, let tb = reference.tokenizerModel, ta != tb {
            throw FlintError("\(candidate.sourceDescription) and \(reference.sourceDescription) have different tokenizers (spiece.model differs)")
        }
    }

    /// Compares `candidate` with `reference` on `inputs`. `progress(done, total)` after each prompt.
    public static func verify(candidate: WeightSource, reference: WeightSource, inputs: [VerifyInput],
                              maxNewTokens: Int, thresholds: VerifyThresholds, pool: ThreadPool? = .shared,
                              int8Kernels: Int8KernelMode? = .weightOnly,
                              progress: ((Int, Int) -> Void)? = nil) throws -> VerifyReport {
        try checkComparable(candidate: candidate, reference: reference)
        guard !inputs.isEmpty else { throw FlintError("verify: no prompts") }
        guard !candidate.config.isEncoderOnly else {
            throw FlintError("\(candidate.sourceDescription): encoder-only models have no generation to verify; compare with flint embed")
        }
        // Int8 weights run on the int8 kernels, as `flint run` would run them.
        let ref = try T5ForConditionalGeneration(weights: reference, pool: pool, int8Kernels: int8Kernels)
        let cand = try T5ForConditionalGeneration(weights: candidate, pool: pool, int8Kernels: int8Kernels)
        let layers = LayerComparison(encoderBlocks: ref.config.numEncoderLayers, decoderBlocks: ref.config.numDecoderLayers)
        var kls: [Double] = []
        var top1Hits = 0, steps = 0, firstHits = 0
        var exact = 0
        var differingSimilarity: [Double] = []
        var details: [PromptResult] = []
        let greedy = GenerationOptions(maxNewTokens: maxNewTokens, strategy: .greedy)

        for (i, input) in inputs.enumerated() {
            // The reference's greedy continuation is the script both models are scored on.
            let refGen = try ref.generate(inputIds: input.inputIds, options: greedy)
            let script = Array(refGen.sequence.dropLast())   // decoder inputs: start + all but the last token
            var recorder = layers.recorder()
            let refLogits = try ref.logits(inputIds: input.inputIds, decoderInputIds: script) { stack, block, hidden, _ in
                recorder.record(stack, block, hidden)
            }
            var comparer = layers.comparer(recorder)
            let candLogits = try cand.logits(inputIds: input.inputIds, decoderInputIds: script) { stack, block, hidden, _ in
                comparer.compare(stack, block, hidden)
            }
            layers.add(comparer)
            var promptHits = 0
            var promptKL = 0.0
            for step in 0..<script.count {
                let r = refLogits[step], c = candLogits[step]
                let hit = argmax(r) == argmax(c)
                if hit { top1Hits += 1; promptHits += 1 }
                if step == 0 && hit { firstHits += 1 }
                let kl = klDivergence(reference: r, candidate: c)
                kls.append(kl)
                promptKL += kl
            }
            steps += script.count
            let candGen = try cand.generate(inputIds: input.inputIds, options: greedy)
            let refIds = refGen.generatedIds, candIds = candGen.generatedIds
            let same = refIds == candIds
            let sim = similarity(refIds, candIds)
            if same { exact += 1 } else { differingSimilarity.append(sim) }
            details.append(PromptResult(prompt: input.prompt, inputTokens: input.inputIds.count, referenceIds: refIds,
                                        candidateIds: candIds, top1Agreement: Double(promptHits) / Double(max(1, script.count)),
                                        meanKL: promptKL / Double(max(1, script.count)), exact: same, similarity: sim))
            progress?(i + 1, inputs.count)
        }

        let layerResults = layers.results()
        var report = VerifyReport(
            passed: false, prompts: inputs.count,
            top1Agreement: Double(top1Hits) / Double(max(1, steps)),
            firstTokenAgreement: Double(firstHits) / Double(inputs.count),
            meanKL: kls.isEmpty ? 0 : kls.reduce(0, +) / Double(kls.count),
            p99KL: percentile(kls, 0.99), maxKL: kls.max() ?? 0,
            exactMatch: Double(exact) / Double(inputs.count),
            similarity: differingSimilarity.isEmpty ? 1 : differingSimilarity.reduce(0, +) / Double(differingSimilarity.count),
            layers: layerResults, worstLayer: nil, worstLayerBelowThreshold: false, thresholds: thresholds,
            failures: [], candidate: candidate.sourceDescription, reference: reference.sourceDescription, details: details)
        judge(&report)
        return report
    }

    /// Applies the thresholds: fills `failures`, `passed` and `worstLayer`.
    public static func judge(_ report: inout VerifyReport) {
        let t = report.thresholds
        var failures: [String] = []
        if report.top1Agreement < t.minTop1 {
            failures.append(String(format: "top-1 agreement %.4f < %.4f", report.top1Agreement, t.minTop1))
        }
        if report.meanKL > t.maxMeanKL {
            failures.append(String(format: "mean KL %.5f > %.5f", report.meanKL, t.maxMeanKL))
        }
        if report.exactMatch < t.minExact {
            failures.append(String(format: "exact match %.3f < %.3f", report.exactMatch, t.minExact))
        }
        if let first = report.layers.first(where: { ($0.snrDB ?? .infinity) < t.minLayerSNR }) {
            report.worstLayer = first.name
            report.worstLayerBelowThreshold = true
            failures.append(String(format: "%@ output SNR %.1f dB < %.1f dB (first block to drift)", first.name, first.snrDB ?? 0, t.minLayerSNR))
        } else {
            report.worstLayer = report.layers.min { ($0.snrDB ?? .infinity) < ($1.snrDB ?? .infinity) }?.name
            report.worstLayerBelowThreshold = false
        }
        report.failures = failures
        report.passed = failures.isEmpty
    }

    // MARK: Measures

    public static func argmax(_ x: [Float]) -> Int {
        var best = 0
        for i in 1..<x.count where x[i] > x[best] { best = i }
        return best
    }

    /// KL(P‖Q) of the softmax distributions of two logit vectors, in nats, computed in Double.
    public static func klDivergence(reference r: [Float], candidate c: [Float]) -> Double {
        let lr = logSoftmax(r), lc = logSoftmax(c)
        var kl = 0.0
        for i in 0..<lr.count {
            let p = exp(lr[i])
            if p > 0 { kl += p * (lr[i] - lc[i]) }
        }
        return max(0, kl)
    }

    public static func logSoftmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max() ?? 0)
        var sum = 0.0
        for v in x { sum += exp(Double(v) - m) }
        let lse = m + log(sum)
        return x.map { Double($0) - lse }
    }

    /// 1 − Levenshtein distance / longer length (1 for two empty sequences).
    public static func similarity(_ a: [Int], _ b: [Int]) -> Double {
        if a.isEmpty && b.isEmpty { return 1 }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...max(1, a.count) where !a.isEmpty {
            cur[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        let distance = a.isEmpty ? b.count : prev[b.count]
        return 1 - Double(distance) / Double(max(a.count, b.count))
    }

    public static func percentile(_ values: [Double], _ q: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let index = Int((q * Double(sorted.count - 1)).rounded(.up))
        return sorted[min(sorted.count - 1, index)]
    }
}

/// Block-by-block comparison of hidden states: the reference's outputs are recorded, then the candidate's are
/// compared with them as they are produced; sums are accumulated over every prompt and position.
final class LayerComparison {
    struct Sums {
        var refSquares = 0.0, diffSquares = 0.0, dot = 0.0, candSquares = 0.0
    }

    let encoderBlocks: Int, decoderBlocks: Int
    private var sums: [Sums]

    init(encoderBlocks: Int, decoderBlocks: Int) {
        self.encoderBlocks = encoderBlocks
        self.decoderBlocks = decoderBlocks
        sums = [Sums](repeating: Sums(), count: encoderBlocks + decoderBlocks)
    }

    func index(_ stack: T5StackKind, _ block: Int) -> Int { stack == .encoder ? block : encoderBlocks + block }

    func name(_ i: Int) -> String { i < encoderBlocks ? "encoder.block.\(i)" : "decoder.block.\(i - encoderBlocks)" }

    struct Recorder {
        /// Per layer, the outputs in the order they were observed (encoder: once; decoder: once per step).
        var outputs: [[[Float]]]
        mutating func record(_ stack: T5StackKind, _ block: Int, _ hidden: UnsafeBufferPointer<Float>, index: Int) {
            outputs[index].append(Array(hidden))
        }
    }

    struct RecorderHandle {
        let owner: LayerComparison
        var recorder: Recorder
        mutating func record(_ stack: T5StackKind, _ block: Int, _ hidden: UnsafeBufferPointer<Float>) {
            recorder.record(stack, block, hidden, index: owner.index(stack, block))
        }
    }

    struct Comparer {
        let owner: LayerComparison
        let reference: Recorder
        var seen: [Int]
        var sums: [Sums]
        mutating func compare(_ stack: T5StackKind, _ block: Int, _ hidden: UnsafeBufferPointer<Float>) {
            let i = owner.index(stack, block)
            let k = seen[i]
            seen[i] += 1
            guard k < reference.outputs[i].count else { return }
            let r = reference.outputs[i][k]
            guard r.count == hidden.count else { return }
            var s = sums[i]
            for j in 0..<r.count {
                let a = Double(r[j]), b = Double(hidden[j])
                s.refSquares += a * a
                s.candSquares += b * b
                s.dot += a * b
                s.diffSquares += (a - b) * (a - b)
            }
            sums[i] = s
        }
    }

    func recorder() -> RecorderHandle {
        RecorderHandle(owner: self, recorder: Recorder(outputs: [[[Float]]](repeating: [], count: sums.count)))
    }

    func comparer(_ handle: RecorderHandle) -> Comparer {
        Comparer(owner: self, reference: handle.recorder, seen: [Int](repeating: 0, count: sums.count),
                 sums: [Sums](repeating: Sums(), count: sums.count))
    }

    func add(_ c: Comparer) {
        for i in sums.indices {
            sums[i].refSquares += c.sums[i].refSquares
            sums[i].diffSquares += c.sums[i].diffSquares
            sums[i].dot += c.sums[i].dot
            sums[i].candSquares += c.sums[i].candSquares
        }
    }

    func results() -> [LayerAgreement] {
        sums.indices.map { i in
            let s = sums[i]
            let cosine = s.refSquares > 0 && s.candSquares > 0 ? s.dot / (s.refSquares.squareRoot() * s.candSquares.squareRoot()) : 1
            let snr: Double? = s.diffSquares == 0 ? nil : 10 * log10(s.refSquares / s.diffSquares)
            return LayerAgreement(name: name(i), cosine: cosine, snrDB: snr)
        }
    }
}
