// `flint verify --golden`: checks Flint's float engine against outputs Hugging Face transformers produced for
// the same model (the golden.json files the Tools scripts write), so a user can prove parity on their model.

import Foundation
import FlintFormat
import FlintKernels
import FlintT5
import FlintTokenizer

public struct GoldenCaseResult: Codable, Sendable {
    public var prompt: String
    public var tokenizerMatches: Bool?
    /// max |flint − transformers| / max |transformers| over the first decoder step's logits.
    public var firstLogitsRelativeDiff: Double?
    public var greedyMatches: Bool?
    public var beamMatches: Bool?

    enum CodingKeys: String, CodingKey {
        case prompt
        case tokenizerMatches = "tokenizer_matches"
        case firstLogitsRelativeDiff = "first_logits_relative_diff"
        case greedyMatches = "greedy_matches"
        case beamMatches = "beam4_matches"
    }
}

public struct GoldenReport: Codable, Sendable {
    public var passed: Bool
    public var golden: String
    public var model: String
    public var cases: [GoldenCaseResult]
    public var maxFirstLogitsRelativeDiff: Double
    public var tolerance: Double
    public var failures: [String]

    enum CodingKeys: String, CodingKey {
        case passed, golden, model, cases
        case maxFirstLogitsRelativeDiff = "max_first_logits_relative_diff"
        case tolerance, failures
    }
}

public enum GoldenVerifier {
    struct GoldenFile: Decodable {
        struct Case: Decodable {
            var prompt: String
            var input_ids: [Int]
            var first_logits: [Float]?
            var greedy_ids: [Int]?
            var beam4_ids: [Int]?
        }
        var cases: [Case]
        var generation: Generation?
        struct Generation: Decodable {
            struct Common: Decodable { var max_new_tokens: Int? }
            struct Beam: Decodable { var num_beams: Int?; var length_penalty: Float?; var early_stopping: Bool?; var max_new_tokens: Int? }
            var common: Common?
            var beam4: Beam?
        }
    }

    /// Runs every case of the golden file at `path` on `weights` (float engine) and compares.
    public static func verify(weights: WeightSource, goldenPath path: String, tolerance: Double = 1e-4,
                              pool: ThreadPool? = .shared, progress: ((Int, Int) -> Void)? = nil) throws -> GoldenReport {
        guard let data = FileManager.default.contents(atPath: path) else { throw FlintError("\(path): cannot read the golden file") }
        let golden: GoldenFile
        do { golden = try JSONDecoder().decode(GoldenFile.self, from: data) } catch {
            throw FlintError("\(path): not a golden file (expected {\"cases\": [{\"prompt\", \"input_ids\", \"first_logits\", \"greedy_ids\"}, …]}): \(error)")
        }
        let model = try T5ForConditionalGeneration(weights: weights, pool: pool)
        let tokenizer = try T5Tokenizer.load(from: weights)
        let maxNew = golden.generation?.common?.max_new_tokens ?? 20
        var results: [GoldenCaseResult] = []
        var failures: [String] = []
        var worst = 0.0
        for (i, c) in golden.cases.enumerated() {
            var r = GoldenCaseResult(prompt: c.prompt)
            let label = "case \(i) (\(c.prompt.prefix(40).debugDescription))"
            if let tokenizer {
                r.tokenizerMatches = tokenizer.encode(c.prompt) == c.input_ids
                if r.tokenizerMatches == false { failures.append("\(label): token ids differ from transformers'") }
            }
            guard c.input_ids.allSatisfy({ $0 >= 0 && $0 < weights.config.vocabSize }) else {
                throw FlintError("\(path): \(label) has input ids outside the model's vocabulary (\(weights.config.vocabSize))")
            }
            if let expected = c.first_logits {
                guard expected.count == weights.config.vocabSize else {
                    throw FlintError("\(path): \(label): first_logits has \(expected.count) values, the model's vocabulary is \(weights.config.vocabSize)")
                }
                let got = try model.logits(inputIds: c.input_ids, decoderInputIds: [weights.config.decoderStartTokenId])[0]
                let scale = Double(expected.map { abs($0) }.max() ?? 1)
                var diff = 0.0
                for j in 0..<expected.count { diff = max(diff, Double(abs(got[j] - expected[j]))) }
                let rel = diff / max(scale, 1e-12)
                r.firstLogitsRelativeDiff = rel
                worst = max(worst, rel)
                if rel > tolerance { failures.append(String(format: "%@: first-step logits differ by %.2e relative (tolerance %.0e)", label, rel, tolerance)) }
            }
            if let expected = c.greedy_ids {
                let got = try model.generate(inputIds: c.input_ids, options: GenerationOptions(maxNewTokens: maxNew, strategy: .greedy))
                r.greedyMatches = got.sequence == expected
                if r.greedyMatches == false { failures.append("\(label): greedy ids \(got.sequence) ≠ transformers' \(expected)") }
            }
            if let expected = c.beam4_ids, let beam = golden.generation?.beam4 {
                let options = BeamSearchOptions(numBeams: beam.num_beams ?? 4, lengthPenalty: beam.length_penalty ?? 1,
                                                earlyStopping: beam.early_stopping ?? false)
                let got = try model.generate(inputIds: c.input_ids,
                                             options: GenerationOptions(maxNewTokens: beam.max_new_tokens ?? maxNew, strategy: .beamSearch(options)))
                r.beamMatches = got.sequence == expected
                if r.beamMatches == false { failures.append("\(label): beam-4 ids \(got.sequence) ≠ transformers' \(expected)") }
            }
            results.append(r)
            progress?(i + 1, golden.cases.count)
        }
        return GoldenReport(passed: failures.isEmpty, golden: path, model: weights.sourceDescription, cases: results,
                            maxFirstLogitsRelativeDiff: worst, tolerance: tolerance, failures: failures)
    }
}
