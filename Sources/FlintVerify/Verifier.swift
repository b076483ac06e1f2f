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
    /// Fraction of prompts whose free-running greedy generation may differ from the reference's: the check fails
    /// when the changed fraction is AT or above it, so the default 0.1 fails a model that changed one prompt in
    /// ten (or more). 0 would fail any change; use 1.01 to switch the check off.
    public var maxChanged: Double = 0.1
    /// Every block's output SNR against the reference's, in dB; the first block below it is named.
    public var minLayerSNR: Double = 15

    public init() {}

    enum CodingKeys: String, CodingKey {
        case minTop1 = "min_top1"
        case maxMeanKL = "max_mean_kl"
        case maxChanged = "max_changed"
        case minLayerSNR = "min_layer_snr_db"
    }
}

/// One block's agreement with the reference, accumulated over every prompt and position.
public struct LayerAgreement: Codable, Sendable, Equatable {
    public var name: String
    public var cosine: Double
    /// nil when the outputs are identical (infinite SNR).
    public var snrDB: Double?
    /// The SNR of the noise this block added itself (its output's noise minus its input's), in dB; nil when it
    /// added none.
    public var ownSNR: Double?

    public init(name: String, cosine: Double, snrDB: Double?, ownSNR: Double? = nil) {
        self.name = name
        self.cosine = cosine
        self.snrDB = snrDB
        self.ownSNR = ownSNR
    }

    enum CodingKeys: String, CodingKey {
        case name, cosine
        case snrDB = "snr_db"
        case ownSNR = "own_snr_db"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(cosine, forKey: .cosine)
        if let snrDB { try c.encode(snrDB, forKey: .snrDB) } else { try c.encodeNil(forKey: .snrDB) }
        if let ownSNR { try c.encode(ownSNR, forKey: .ownSNR) } else { try c.encodeNil(forKey: .ownSNR) }
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

/// The output head measured as a layer: the candidate's final norm and head against the reference's, both fed the
/// reference's last decoder hidden state, so this is the head's own error and not upstream drift.
public struct HeadAgreement: Codable, Sendable, Equatable {
    public var name: String
    /// SNR of the candidate head's logits against the reference head's, in dB; nil when identical.
    public var logitsSNR: Double?
    /// Mean KL(reference head ‖ candidate head) over every teacher-forced step, in nats.
    public var meanKL: Double
    public var top1Agreement: Double

    enum CodingKeys: String, CodingKey {
        case name
        case logitsSNR = "logits_snr_db"
        case meanKL = "mean_kl"
        case top1Agreement = "top1_agreement"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        if let logitsSNR { try c.encode(logitsSNR, forKey: .logitsSNR) } else { try c.encodeNil(forKey: .logitsSNR) }
        try c.encode(meanKL, forKey: .meanKL)
        try c.encode(top1Agreement, forKey: .top1Agreement)
    }
}

/// The largest activation a block's output (the residual stream) reached in the float reference, over every
/// prompt and position: the outlier channels that make int8 hard.
public struct ActivationPeak: Codable, Sendable, Equatable {
    public var name: String
    public var maxAbs: Double
    /// The channel (hidden-state index) holding the largest value.
    public var channel: Int
    /// Largest channel's |max| divided by the median channel's |max|: ≫ 10 means a few outlier channels.
    public var outlierRatio: Double

    enum CodingKeys: String, CodingKey {
        case name
        case maxAbs = "max_abs"
        case channel
        case outlierRatio = "outlier_ratio"
    }
}

/// Which part of the model is named as the one that loses the quality, and by which rule.
public struct Culprit: Codable, Sendable, Equatable {
    /// A block (`encoder.block.N`, `decoder.block.N`) or `lm_head`.
    public var name: String
    /// `sensitivity` (largest mean KL when only that part is the candidate's) or `own-noise` (the block that
    /// added the most noise itself; lm_head when its own KL is at least half the whole model's).
    public var rule: String
    /// The measure behind the choice, in words.
    public var reason: String
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
    /// The output head on the reference's own hidden states.
    public var head: HeadAgreement?
    /// Per block (and lm_head): the quality lost when only that part is the candidate's. nil when not run.
    public var sensitivity: [ComponentSensitivity]?
    /// Where the drift starts (nil when the candidate is exact).
    public var culprit: Culprit?
    /// Residual-stream peaks of the float reference, per block.
    public var activations: [ActivationPeak]
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
        case head, sensitivity
        case culprit, activations
        case thresholds, failures, candidate, reference, details
    }

    /// The fraction of prompts whose greedy generation differs from the reference's.
    public var changedFraction: Double { 1 - exactMatch }

    /// Every key is always written (null when absent), so scripts see a stable shape.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(passed, forKey: .passed)
        try c.encode(prompts, forKey: .prompts)
        try c.encode(top1Agreement, forKey: .top1Agreement)
        try c.encode(firstTokenAgreement, forKey: .firstTokenAgreement)
        try c.encode(meanKL, forKey: .meanKL)
        try c.encode(p99KL, forKey: .p99KL)
        try c.encode(maxKL, forKey: .maxKL)
        try c.encode(exactMatch, forKey: .exactMatch)
        try c.encode(similarity, forKey: .similarity)
        try c.encode(layers, forKey: .layers)
        if let worstLayer { try c.encode(worstLayer, forKey: .worstLayer) } else { try c.encodeNil(forKey: .worstLayer) }
        try c.encode(worstLayerBelowThreshold, forKey: .worstLayerBelowThreshold)
        if let head { try c.encode(head, forKey: .head) } else { try c.encodeNil(forKey: .head) }
        if let sensitivity { try c.encode(sensitivity, forKey: .sensitivity) } else { try c.encodeNil(forKey: .sensitivity) }
        if let culprit { try c.encode(culprit, forKey: .culprit) } else { try c.encodeNil(forKey: .culprit) }
        try c.encode(activations, forKey: .activations)
        try c.encode(thresholds, forKey: .thresholds)
        try c.encode(failures, forKey: .failures)
        try c.encode(candidate, forKey: .candidate)
        try c.encode(reference, forKey: .reference)
        try c.encode(details, forKey: .details)
    }
}

/// When `verify` runs the per-block sensitivity pass (one teacher-forced run per block).
public enum SensitivityMode: String, Sendable, CaseIterable {
    /// Only when a check fails: that is when the culprit matters, and it costs one extra run per block.
    case auto
    case always
    case never
}

/// What the verifier runs on: a model and a way to turn prompts into ids.
public struct VerifyInput: Sendable {
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

    /// Compares `candidate` with `reference` on `inputs`. `progress(done, total)` after each prompt (and after
    /// each component of the sensitivity pass, counted on from there).
    public static func verify(candidate: WeightSource, reference: WeightSource, inputs: [VerifyInput],
                              maxNewTokens: Int, thresholds: VerifyThresholds, pool: ThreadPool? = .shared,
                              int8Kernels: Int8KernelMode? = .weightOnly, sensitivity: SensitivityMode = .auto,
                              progress: ((Int, Int) -> Void)? = nil) throws -> VerifyReport {
        try checkComparable(candidate: candidate, reference: reference)
        guard !inputs.isEmpty else { throw FlintError("verify: no prompts") }
        guard !candidate.config.isEncoderOnly else {
            throw FlintError("\(candidate.sourceDescription): encoder-only models have no generation to verify; compare with flint embed")
        }
        // Both models run block by block over every prompt at once (StreamedRun.swift), so the float reference
        // never needs to be resident whole; int8 weights run on the int8 kernels, as `flint run` runs them.
        let refStream = try T5BlockStreamer(weights: reference, pool: pool, int8Kernels: int8Kernels)
        let candStream = try T5BlockStreamer(weights: candidate, pool: pool, int8Kernels: int8Kernels)
        let config = reference.config
        let head = try HeadProbe(reference: reference, candidate: candidate, pool: pool, int8Kernels: int8Kernels)
        let layers = LayerComparison(encoderBlocks: config.numEncoderLayers, decoderBlocks: config.numDecoderLayers)
        let lastDecoderBlock = layers.index(.decoder, config.numDecoderLayers - 1)
        var peaks = ActivationPeaks(layers: layers, dModel: config.dModel)
        let sensitivityRuns = sensitivity == .never ? 0 : layers.count
        let perModel = StreamedVerifyPlan(config: config, maxNewTokens: maxNewTokens).blocksPerModel
        // Progress counts block runs; the sensitivity pass, when it runs, counts one unit per component on top.
        let totalWork = 2 * perModel + (sensitivity == .always ? sensitivityRuns : 0)
        let ids = inputs.map(\.inputIds)

        // The reference: its block outputs are kept (packed, all prompts) for the per-block comparison.
        var recorded = [[Float]](repeating: [], count: layers.count)
        // The candidate's start and eos tokens (a converted file stores its folder's): both models decode as
        // `flint run` decodes the candidate.
        let specialIds = try candidate.generationDefaults()
        let (ref, script) = try refStream.verifyRun(ids, maxNewTokens: maxNewTokens, script: nil, specialIds: specialIds,
                                                    observer: { stack, block, hidden, rows in
            recorded[layers.index(stack, block)] = Array(hidden)
            peaks.observe(stack, block, hidden, rows: rows)
        }, progress: { progress?($0, totalWork) })
        let (cand, _) = try candStream.verifyRun(ids, maxNewTokens: maxNewTokens, script: script, specialIds: specialIds,
                                                 observer: { stack, block, hidden, _ in
            let i = layers.index(stack, block)
            layers.add(i, reference: recorded[i], candidate: hidden)
        }, progress: { progress?(perModel + $0, totalWork) })

        var kls: [Double] = []
        var top1Hits = 0, steps = 0, firstHits = 0
        var exact = 0
        var differingSimilarity: [Double] = []
        var details: [PromptResult] = []
        var scripts: [TeacherScript] = []
        var headSums = LayerComparison.Sums(), headKL = 0.0, headHits = 0
        let d = config.dModel
        for (i, input) in inputs.enumerated() {
            var promptHits = 0
            var promptKL = 0.0
            var refLogits: [[Float]] = []
            for step in 0..<script[i].count {
                let row = steps + step
                let r = ref.logitsRow(row), c = cand.logitsRow(row)
                let hit = argmax(r) == argmax(c)
                if hit { top1Hits += 1; promptHits += 1 }
                if step == 0 && hit { firstHits += 1 }
                let kl = klDivergence(reference: r, candidate: c)
                kls.append(kl)
                promptKL += kl
                // The head alone, on the reference's hidden state of this step.
                let (hr, hc) = head.logits(Array(recorded[lastDecoderBlock][(row * d)..<((row + 1) * d)]))
                headSums.add(reference: hr, candidate: hc)
                headKL += klDivergence(reference: hr, candidate: hc)
                if argmax(hr) == argmax(hc) { headHits += 1 }
                if sensitivity != .never { refLogits.append(r) }
            }
            steps += script[i].count
            if sensitivity != .never {
                scripts.append(TeacherScript(inputIds: input.inputIds, decoderInputIds: script[i], referenceLogits: refLogits))
            }
            let refIds = ref.generated[i], candIds = cand.generated[i]
            let same = refIds == candIds
            let sim = similarity(refIds, candIds)
            if same { exact += 1 } else { differingSimilarity.append(sim) }
            details.append(PromptResult(prompt: input.prompt, inputTokens: input.inputIds.count, referenceIds: refIds,
                                        candidateIds: candIds, top1Agreement: Double(promptHits) / Double(max(1, script[i].count)),
                                        meanKL: promptKL / Double(max(1, script[i].count)), exact: same, similarity: sim))
        }
        // The sensitivity pass starts each block's hybrid from these; otherwise they are done with.
        if sensitivity == .never { recorded = [] }

        var layerResults = layers.results()
        for (i, own) in ownSNRs(layerResults, encoderBlocks: layers.encoderBlocks).enumerated() { layerResults[i].ownSNR = own }
        var report = VerifyReport(
            passed: false, prompts: inputs.count,
            top1Agreement: Double(top1Hits) / Double(max(1, steps)),
            firstTokenAgreement: Double(firstHits) / Double(inputs.count),
            meanKL: kls.isEmpty ? 0 : kls.reduce(0, +) / Double(kls.count),
            p99KL: percentile(kls, 0.99), maxKL: kls.max() ?? 0,
            exactMatch: Double(exact) / Double(inputs.count),
            similarity: differingSimilarity.isEmpty ? 1 : differingSimilarity.reduce(0, +) / Double(differingSimilarity.count),
            layers: layerResults, worstLayer: nil, worstLayerBelowThreshold: false,
            head: HeadAgreement(name: "lm_head", logitsSNR: headSums.snrDB, meanKL: headKL / Double(max(1, steps)),
                                top1Agreement: Double(headHits) / Double(max(1, steps))),
            sensitivity: nil, culprit: nil, activations: peaks.results(),
            thresholds: thresholds,
            failures: [], candidate: candidate.sourceDescription, reference: reference.sourceDescription, details: details)
        judge(&report)
        if sensitivity == .always || (sensitivity == .auto && !report.passed) {
            let total = 2 * perModel + sensitivityRuns
            // A smoothed candidate's folds cross blocks (encoder final norm → every cross-attention k/v,
            // decoder final norm → lm_head): its parts are mixed into the reference in the candidate's basis.
            // Each hybrid streams block by block like the reference, so the basis keeps no whole-model copies.
            var measured = try Sensitivity.measureStreamed(
                reference: try ScaledWeights.smoothedBasis(reference, for: candidate, caching: false), candidate: candidate,
                components: Sensitivity.blockComponents(candidate), scripts: scripts, blockOutputs: recorded,
                pool: pool, int8Kernels: int8Kernels) { done, _, _ in progress?(2 * perModel + done, total) }
            if let h = report.head {
                measured.append(ComponentSensitivity(name: "lm_head", meanKL: h.meanKL, top1Agreement: h.top1Agreement,
                                                     identical: h.logitsSNR == nil,
                                                     tensors: [head.headName, "decoder.final_layer_norm.weight"]))
            }
            report.sensitivity = measured
        }
        report.culprit = culprit(report)
        return report
    }

    /// Per block, the SNR of the noise the block itself added: noise powers add, so the block's own
    /// noise-to-signal ratio is its output's minus its input's (`10^(−SNR/10)` each). A block's input is the
    /// block before it in the same stack; the first encoder block's is the embedding (taken as exact), the first
    /// decoder block's the encoder output (the drift that reaches it through cross-attention). nil when the
    /// block added no noise.
    static func ownSNRs(_ layers: [LayerAgreement], encoderBlocks: Int) -> [Double?] {
        func nsr(_ l: LayerAgreement) -> Double { l.snrDB.map { pow(10, -$0 / 10) } ?? 0 }
        return layers.indices.map { i in
            let input = i == 0 ? 0 : nsr(layers[i - 1])   // decoder block 0 follows the last encoder block
            let added = nsr(layers[i]) - input
            return added > 0 ? -10 * log10(added) : nil
        }
    }

    /// Names where the drift starts.
    /// - With the sensitivity pass: the block or lm_head whose candidate weights alone, in the otherwise float
    ///   reference, cost the largest mean KL (the part that, fixed alone, recovers most).
    /// - Without it: lm_head when the head's own KL (on the reference's hidden states) is at least half the whole
    ///   model's; otherwise the block that added the most noise itself (lowest own SNR, see `ownSNRs`).
    /// nil when the candidate is exact everywhere.
    public static func culprit(_ r: VerifyReport) -> Culprit? {
        if let s = r.sensitivity, let top = s.max(by: { $0.meanKL < $1.meanKL }), top.meanKL > 0 {
            let share = r.meanKL > 0 ? String(format: " (the whole model: %.3g)", r.meanKL) : ""
            return Culprit(name: top.name, rule: "sensitivity",
                           reason: String(format: "only %@ from the candidate: mean KL %.3g, top-1 %.4f%@", top.name,
                                          top.meanKL, top.top1Agreement, share))
        }
        if let h = r.head, h.meanKL > 0, h.meanKL >= 0.5 * r.meanKL {
            return Culprit(name: "lm_head", rule: "own-noise",
                           reason: String(format: "lm_head alone on the reference's hidden states: mean KL %.3g of the whole model's %.3g",
                                          h.meanKL, r.meanKL))
        }
        guard let top = r.layers.filter({ $0.ownSNR != nil }).min(by: { $0.ownSNR! < $1.ownSNR! }) else { return nil }
        return Culprit(name: top.name, rule: "own-noise",
                       reason: String(format: "the block that added the most noise itself: own SNR %.1f dB (output %@)",
                                      top.ownSNR!, top.snrDB.map { String(format: "%.1f dB", $0) } ?? "exact"))
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
        let changed = report.changedFraction
        if changed > 0 && changed >= t.maxChanged - 1e-12 {
            failures.append(String(format: "greedy output changed on %.3f of prompts (fails at ≥ %.3f)", changed, t.maxChanged))
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

    func name(_ i: Int) -> String {
        i < encoderBlocks ? T5WeightLayout.blockName(.encoder, i) : T5WeightLayout.blockName(.decoder, i - encoderBlocks)
    }

    /// Adds one block's candidate output against the reference's (the same rows, packed alike), element by
    /// element, to that block's sums.
    func add(_ i: Int, reference r: [Float], candidate c: UnsafeBufferPointer<Float>) {
        guard r.count == c.count else { return }
        var s = sums[i]
        for j in 0..<r.count {
            let a = Double(r[j]), b = Double(c[j])
            s.refSquares += a * a
            s.candSquares += b * b
            s.dot += a * b
            s.diffSquares += (a - b) * (a - b)
        }
        sums[i] = s
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

extension LayerComparison {
    var count: Int { encoderBlocks + decoderBlocks }
}

extension LayerComparison.Sums {
    mutating func add(reference r: [Float], candidate c: [Float]) {
        for j in 0..<min(r.count, c.count) {
            let a = Double(r[j]), b = Double(c[j])
            refSquares += a * a
            candSquares += b * b
            dot += a * b
            diffSquares += (a - b) * (a - b)
        }
    }

    /// nil when identical.
    var snrDB: Double? { diffSquares == 0 ? nil : 10 * log10(refSquares / diffSquares) }
}

/// Per block, the largest |value| of the reference's block outputs and the per-channel maxima behind it.
struct ActivationPeaks {
    let layers: LayerComparison
    let dModel: Int
    /// `[layer][channel]` running max |value|.
    var channelMax: [[Float]]

    init(layers: LayerComparison, dModel: Int) {
        self.layers = layers
        self.dModel = dModel
        channelMax = [[Float]](repeating: [Float](repeating: 0, count: dModel), count: layers.count)
    }

    mutating func observe(_ stack: T5StackKind, _ block: Int, _ hidden: UnsafeBufferPointer<Float>, rows: Int) {
        let i = layers.index(stack, block)
        for r in 0..<rows {
            for ch in 0..<dModel {
                let v = abs(hidden[r * dModel + ch])
                if v > channelMax[i][ch] { channelMax[i][ch] = v }
            }
        }
    }

    func results() -> [ActivationPeak] {
        channelMax.indices.map { i in
            let m = channelMax[i]
            let channel = m.indices.max { m[$0] < m[$1] } ?? 0
            let median = m.sorted()[m.count / 2]
            return ActivationPeak(name: layers.name(i), maxAbs: Double(m[channel]), channel: channel,
                                  outlierRatio: median > 0 ? Double(m[channel] / median) : 0)
        }
    }
}
