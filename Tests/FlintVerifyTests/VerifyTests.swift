import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintQuant
import FlintTokenizer
import FlintVerify

func fixture(_ name: String) -> String { packageRoot + "/Tests/Fixtures/models/" + name }

/// The demo model's own task: reversing word lists (it was trained on these).
let demoPrompts = ["reverse: red apple blue", "reverse: one two three four", "reverse: cat dog",
                   "reverse: green house small river", "reverse: sun moon star sky water",
                   "reverse: book tree"]

func inputs(_ folder: HFModelFolder, _ prompts: [String]) throws -> [VerifyInput] {
    let tokenizer = try T5Tokenizer(modelBytes: folder.tokenizerModel!)
    return prompts.map { VerifyInput(prompt: $0, inputIds: tokenizer.encode($0)) }
}

/// Wraps a weight source and replaces one tensor's values with heavy noise: a stand-in for a broken layer.
final class DamagedWeights: WeightSource, @unchecked Sendable {
    let base: WeightSource
    let damaged: String
    private let buffer: UnsafeMutableBufferPointer<Float>
    init(_ base: WeightSource, damaging name: String) throws {
        self.base = base
        damaged = name
        let original = try TensorDecoding.floats(try base.tensor(name))
        let scale = original.map { abs($0) }.max() ?? 1
        // Deterministic noise of several times the largest weight: the block's output no longer resembles the
        // reference's, as with a broken quantization.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        buffer = .allocate(capacity: original.count)
        for i in original.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let unit = Float(state >> 40) / Float(1 << 24) * 2 - 1
            buffer[i] = original[i] + 4 * scale * unit
        }
    }
    deinit { buffer.deallocate() }
    var config: T5Config { base.config }
    var tensorNames: [String] { base.tensorNames }
    var tokenizerModel: [UInt8]? { base.tokenizerModel }
    var sourceDescription: String { base.sourceDescription + " (damaged)" }
    func tensor(_ name: String) throws -> TensorView {
        guard name == damaged else { return try base.tensor(name) }
        let view = try base.tensor(name)
        return TensorView(name: name, storage: .f32, shape: view.shape, data: UnsafeRawBufferPointer(buffer), owner: self)
    }
}

@Suite struct VerifyTests {
    @Test func int8DemoPassesAndNamesTheWeakestBlock() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = try HFModelFolder(path: fixture("demo"))
        _ = try Converter.convert(folder, output: dir + "/int8.flint", options: ConvertOptions())
        let candidate = try FlintFile(path: dir + "/int8.flint")
        let report = try Verifier.verify(candidate: candidate, reference: folder, inputs: try inputs(folder, demoPrompts),
                                         maxNewTokens: 12, thresholds: VerifyThresholds())
        #expect(report.passed, "\(report.failures)")
        #expect(report.top1Agreement >= 0.95)
        #expect(report.layers.count == 4)
        #expect(report.worstLayer != nil && !report.worstLayerBelowThreshold)
        #expect(report.layers.allSatisfy { ($0.snrDB ?? 100) > 15 && $0.cosine > 0.99 })
        // The float32 conversion of the same model is exact.
        _ = try Converter.convert(folder, output: dir + "/f32.flint", options: ConvertOptions(quant: .float(.f32)))
        let exact = try Verifier.verify(candidate: try FlintFile(path: dir + "/f32.flint"), reference: folder,
                                        inputs: try inputs(folder, demoPrompts), maxNewTokens: 12, thresholds: VerifyThresholds())
        #expect(exact.passed && exact.top1Agreement == 1 && exact.exactMatch == 1 && exact.maxKL < 1e-9)
        #expect(exact.layers.allSatisfy { $0.snrDB == nil })
    }

    /// Issue 4's faithfulness bar: on the trained fixture, int8 generations agree with the float engine on at least
    /// 95 % of teacher-forced tokens, with either int8 kernel.
    @Test(arguments: [Int8KernelMode.weightOnly, .w8a8], ["int8", "int8-g32", "int8-g64"])
    func int8KernelsStayFaithful(mode: Int8KernelMode, scheme: String) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = try HFModelFolder(path: fixture("demo"))
        _ = try Converter.convert(folder, output: dir + "/q.flint", options: ConvertOptions(quant: try QuantRequest(cliName: scheme)))
        let report = try Verifier.verify(candidate: try FlintFile(path: dir + "/q.flint"), reference: folder,
                                         inputs: try inputs(folder, demoPrompts), maxNewTokens: 12,
                                         thresholds: VerifyThresholds(), int8Kernels: mode)
        #expect(report.top1Agreement >= 0.95, "\(mode) \(scheme): top-1 \(report.top1Agreement)")
    }

    @Test func damagedBlockFailsAndIsNamed() throws {
        let folder = try HFModelFolder(path: fixture("demo"))
        let damaged = try DamagedWeights(folder, damaging: "encoder.block.1.layer.0.SelfAttention.o.weight")
        let report = try Verifier.verify(candidate: damaged, reference: folder, inputs: try inputs(folder, demoPrompts),
                                         maxNewTokens: 12, thresholds: VerifyThresholds())
        #expect(!report.passed)
        #expect(report.worstLayer == "encoder.block.1")
        #expect(report.worstLayerBelowThreshold)
        // Blocks before the damage are untouched.
        #expect(report.layers[0].snrDB == nil)
        let decoderDamage = try DamagedWeights(folder, damaging: "decoder.block.1.layer.2.DenseReluDense.wi_0.weight")
        let r2 = try Verifier.verify(candidate: decoderDamage, reference: folder, inputs: try inputs(folder, demoPrompts),
                                     maxNewTokens: 12, thresholds: VerifyThresholds())
        #expect(!r2.passed)
        #expect(r2.worstLayer == "decoder.block.1")
    }

    @Test func mismatchedModelsAreAnError() throws {
        let demo = try HFModelFolder(path: fixture("demo"))
        let other = try HFModelFolder(path: fixture("flan-tiny"))
        #expect(throws: FlintError.self) {
            _ = try Verifier.verify(candidate: other, reference: demo, inputs: [VerifyInput(prompt: "x", inputIds: [5, 1])],
                                    maxNewTokens: 4, thresholds: VerifyThresholds())
        }
    }

    @Test(arguments: ["demo", "flan-tiny", "t5-tiny"])
    func goldenModeMatchesTransformers(model: String) throws {
        let folder = try HFModelFolder(path: fixture(model))
        let report = try GoldenVerifier.verify(weights: folder, goldenPath: fixture(model) + "/golden.json")
        #expect(report.passed, "\(report.failures)")
        #expect(report.maxFirstLogitsRelativeDiff < 1e-4)
        #expect(report.cases.allSatisfy { $0.greedyMatches == true && $0.tokenizerMatches == true })
    }

    @Test func measuresAreRight() {
        #expect(Verifier.similarity([1, 2, 3], [1, 2, 3]) == 1)
        #expect(Verifier.similarity([1, 2, 3, 4], [1, 2, 4]) == 0.75)
        #expect(Verifier.similarity([], [5]) == 0)
        #expect(Verifier.klDivergence(reference: [1, 2, 3], candidate: [1, 2, 3]) < 1e-12)
        // KL of softmax([0, 0]) vs softmax([0, ln 3]) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75).
        let kl = Verifier.klDivergence(reference: [0, 0], candidate: [0, Float(log(3.0))])
        #expect(abs(kl - (0.5 * log(2.0) + 0.5 * log(2.0 / 3.0))) < 1e-6)
        #expect(Verifier.percentile([1, 2, 3, 4, 100], 0.99) == 100)
    }
}
