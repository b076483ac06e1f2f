import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintQuant
import FlintT5
import FlintTokenizer
import FlintVerify

private func goldenCases(_ name: String) throws -> [[String: Any]] {
    let path = model(name) + "/golden.json"
    let data = try #require(FileManager.default.contents(atPath: path), "\(path) missing")
    let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    return try #require(json["cases"] as? [[String: Any]])
}

private func ints(_ value: Any?) -> [Int] { (value as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.intValue } }
private func rows(_ value: Any?) -> [[Float]] {
    (value as? [Any] ?? []).map { row in (row as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.floatValue } }
}

/// The largest |a - b| over the largest |b|.
private func relativeDiff(_ a: ArraySlice<Float>, _ b: [Float]) -> Float {
    let scale = b.map { abs($0) }.max() ?? 1
    return (zip(a, b).map { abs($0 - $1) }.max() ?? .infinity) / max(scale, 1e-30)
}

/// `flint verify` runs its float reference block by block over every prompt at once (T5BlockStreamer, decoder
/// teacher-forced with the causal mask): its logits must be transformers' — and the whole model's, step by step
/// through the cache, as verify computed them before — for a gated FLAN model, an original-T5 model with a tied
/// scaled head, a bf16 checkpoint widened per block, UMT5 and the trained demo model.
@Suite struct TeacherForcedStreamingTests {
    @Test(arguments: ["flan-tiny", "t5-tiny", "flan-tiny-bf16", "umt5-tiny", "demo"])
    func teacherForcedLogitsMatchTransformersAndTheWholeModel(name: String) throws {
        let folder = try HFModelFolder(path: model(name))
        let cases = try goldenCases(name)
        let inputs = cases.map { ints($0["input_ids"]) }
        let scripts = cases.map { Array(ints($0["greedy_ids"]).dropLast()) }   // start token + all but the last
        let streamer = try T5BlockStreamer(weights: folder, pool: nil)
        var seen: [Int] = []
        let logits = try streamer.teacherForced(try streamer.encode(inputs), decoderInputs: scripts,
                                                observer: { stack, block, _, rows in
            #expect(stack == .decoder && rows == scripts.map(\.count).reduce(0, +))
            seen.append(block)
        })
        #expect(seen == Array(0..<folder.config.numDecoderLayers))
        let vocab = folder.config.vocabSize
        #expect(logits.count == scripts.map(\.count).reduce(0, +) * vocab)
        let whole = try T5ForConditionalGeneration(weights: folder, pool: nil)
        var row = 0
        for (i, c) in cases.enumerated() {
            // Every case has transformers' first-step logits; some also the first greedy steps' (step_logits).
            let steps = rows(c["step_logits"])
            let first = (c["first_logits"] as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.floatValue }
            let golden = steps.isEmpty ? [first] : steps
            #expect(golden[0].count == folder.config.vocabSize)
            let stepwise = try whole.logits(inputIds: inputs[i], decoderInputIds: scripts[i])
            for step in 0..<scripts[i].count {
                let streamed = logits[((row + step) * vocab)..<((row + step + 1) * vocab)]
                if step < golden.count {
                    let rel = relativeDiff(streamed, golden[step])
                    #expect(rel < 1e-4, "\(name) case \(i) step \(step): \(rel) from transformers")
                }
                let rel = relativeDiff(streamed, stepwise[step])
                #expect(rel < 1e-5, "\(name) case \(i) step \(step): \(rel) from the whole model")
            }
            row += scripts[i].count
        }
    }

    /// Running blocks 0..<k and then k..<n is running 0..<n: a pass that starts past block 0 loads block 0's
    /// bias table alone (T5 shares it), bit for bit the same numbers.
    @Test(arguments: ["flan-tiny", "umt5-tiny"])
    func blocksRunInTwoPartsAsInOne(name: String) throws {
        let folder = try HFModelFolder(path: model(name))
        let cases = try goldenCases(name)
        let inputs = cases.map { ints($0["input_ids"]) }, scripts = cases.map { Array(ints($0["greedy_ids"]).dropLast()) }
        let streamer = try T5BlockStreamer(weights: folder, pool: nil)
        let c = folder.config
        for (stack, count, seqs) in [(T5StackKind.encoder, c.numEncoderLayers, inputs), (.decoder, c.numDecoderLayers, scripts)] {
            let encoded = stack == .decoder ? try streamer.encode(inputs) : []
            let lengths = seqs.map(\.count)
            var once = try streamer.embedded(seqs)
            var twice = once
            try streamer.runBlocks(stack, 0..<count, hidden: &once, lengths: lengths, encoded: encoded)
            try streamer.runBlocks(stack, 0..<1, hidden: &twice, lengths: lengths, encoded: encoded)
            try streamer.runBlocks(stack, 1..<count, hidden: &twice, lengths: lengths, encoded: encoded)
            #expect(once == twice, "\(name) \(stack)")
        }
        var hidden = try streamer.embedded(inputs)
        #expect(throws: FlintError.self) {
            try streamer.runBlocks(.encoder, 0..<(c.numEncoderLayers + 1), hidden: &hidden, lengths: inputs.map(\.count))
        }
        #expect(throws: FlintError.self) {
            try streamer.runBlocks(.decoder, 0..<1, hidden: &hidden, lengths: inputs.map(\.count), encoded: [])
        }
    }

    /// The verify report on the streamed reference is the report on the whole model's: the same greedy scripts,
    /// and the candidate's teacher-forced top-1 and KL as the whole-model scorer (step by step through the
    /// cache) computes them, up to float rounding.
    @Test func verifyScoresAsTheWholeModelReferenceDid() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = try HFModelFolder(path: model("demo"))
        _ = try Converter.convert(folder, output: dir + "/int8.flint",
                                  options: ConvertOptions(quant: try QuantRequest(cliName: "int8-g32")))
        let candidate = try FlintFile(path: dir + "/int8.flint")
        let tokenizer = try T5Tokenizer(modelBytes: folder.tokenizerModel!)
        let prompts = ["reverse: red apple blue", "reverse: one two three four", "reverse: cat dog",
                       "reverse: green house small river", "reverse: sun moon star sky water"]
        let inputs = prompts.map { VerifyInput(prompt: $0, inputIds: tokenizer.encode($0)) }
        let report = try Verifier.verify(candidate: candidate, reference: folder, inputs: inputs, maxNewTokens: 12,
                                         thresholds: VerifyThresholds(), pool: nil, sensitivity: .never)
        let scripts = try Sensitivity.scripts(reference: folder, inputs: inputs, maxNewTokens: 12, pool: nil)
        for (detail, script) in zip(report.details, scripts) {
            #expect([folder.config.decoderStartTokenId] + detail.referenceIds.dropLast() == script.decoderInputIds)
        }
        let whole = try Sensitivity.score(candidate, scripts: scripts, pool: nil)
        #expect(whole.steps == report.details.map(\.referenceIds.count).reduce(0, +))
        #expect(abs(whole.top1Agreement - report.top1Agreement) <= 1.0 / Double(whole.steps) + 1e-12)
        #expect(abs(whole.meanKL - report.meanKL) <= 1e-3 * whole.meanKL + 1e-7, "\(whole.meanKL) vs \(report.meanKL)")
        #expect(report.meanKL > 0)
    }
}

/// The streamed sensitivity pass: starting each block's hybrid from the reference's recorded residual stream at
/// that block gives exactly what running the hybrid from the embedding gives, and the damaged block costs most.
@Suite struct StreamedSensitivityTests {
    @Test func hybridsStartedAtTheirBlockEqualWholeRuns() throws {
        let folder = try HFModelFolder(path: model("demo"))
        let damagedName = "decoder.block.1.layer.2.DenseReluDense.wi_0.weight"
        let view = try folder.tensor(damagedName)
        var noisy = try TensorConversion.floatArray(view)
        for i in noisy.indices { noisy[i] += Float(i % 7) * 0.05 - 0.15 }
        let candidate = try OneTensorReplaced(folder, damagedName, noisy)
        let tokenizer = try T5Tokenizer(modelBytes: folder.tokenizerModel!)
        let inputs = ["reverse: red apple blue", "reverse: cat dog", "reverse: sun moon star sky water"]
            .map { VerifyInput(prompt: $0, inputIds: tokenizer.encode($0)) }
        let streamer = try T5BlockStreamer(weights: folder, pool: nil)
        let c = folder.config
        var recorded = [[Float]](repeating: [], count: c.numEncoderLayers + c.numDecoderLayers)
        let observer: T5BlockObserver = { stack, block, hidden, _ in
            recorded[stack == .encoder ? block : c.numEncoderLayers + block] = Array(hidden)
        }
        let encoded = try streamer.encode(inputs.map(\.inputIds), observer: observer)
        let generated = try streamer.greedy(encoded, maxNewTokens: 8)
        let decoderInputs = generated.map { [c.decoderStartTokenId] + $0.dropLast() }
        let logits = try streamer.teacherForced(encoded, decoderInputs: decoderInputs, observer: observer)
        var row = 0
        let scripts = inputs.indices.map { i -> TeacherScript in
            let rows = (0..<decoderInputs[i].count).map { s in
                Array(logits[((row + s) * c.vocabSize)..<((row + s + 1) * c.vocabSize)])
            }
            row += decoderInputs[i].count
            return TeacherScript(inputIds: inputs[i].inputIds, decoderInputIds: decoderInputs[i], referenceLogits: rows)
        }
        let components = Sensitivity.blockComponents(candidate)
        let fromStart = try Sensitivity.measureStreamed(reference: folder, candidate: candidate, components: components,
                                                        scripts: scripts, pool: nil, int8Kernels: nil)
        let resumed = try Sensitivity.measureStreamed(reference: folder, candidate: candidate, components: components,
                                                      scripts: scripts, blockOutputs: recorded, pool: nil, int8Kernels: nil)
        #expect(fromStart == resumed)
        let top = try #require(resumed.max { $0.meanKL < $1.meanKL })
        #expect(top.name == "decoder.block.1" && top.meanKL > 0)
        #expect(resumed.filter { $0.name != "decoder.block.1" }.allSatisfy { $0.identical && $0.meanKL == 0 })
        #expect(Sensitivity.blockOf(SensitivityComponent(name: "x", tensors: ["encoder.block.1.a", "decoder.block.1.b"]), c) == nil)
    }
}

/// A weight source with one tensor's values replaced (float32).
private final class OneTensorReplaced: WeightSource, @unchecked Sendable {
    let base: WeightSource
    let name: String
    private let values: UnsafeMutableBufferPointer<Float>
    init(_ base: WeightSource, _ name: String, _ values: [Float]) throws {
        self.base = base
        self.name = name
        self.values = .allocate(capacity: values.count)
        _ = self.values.initialize(from: values)
    }
    deinit { values.deallocate() }
    var config: T5Config { base.config }
    var tensorNames: [String] { base.tensorNames }
    var tokenizerModel: [UInt8]? { base.tokenizerModel }
    var sourceDescription: String { base.sourceDescription + " (one tensor replaced)" }
    func tensor(_ n: String) throws -> TensorView {
        guard n == name else { return try base.tensor(n) }
        let shape = try base.tensor(n).shape
        return TensorView(name: n, storage: .f32, shape: shape, data: UnsafeRawBufferPointer(values), owner: self)
    }
}
