import Foundation
import Testing
import FlintFormat
import FlintCheckpoint
@testable import FlintT5

// The block-by-block API (used by calibration) must compute what the whole model computes: the encoder run
// block by block from the embeddings gives `encode`'s output, teacher-forced decoder blocks plus the head give
// the cached decoding logits (themselves checked against transformers' goldens in GoldenParityTests), and the
// linear-input observer sees every projection of the checkpoint under its Hugging Face name.
struct BlockForwardTests {
    let prompt = [37, 12, 99, 5, 1]
    let otherPrompt = [8, 200, 41, 1]

    @Test(arguments: ["flan-tiny", "t5-tiny"])
    func encoderBlockByBlockMatchesEncode(model name: String) throws {
        let model = try LoadedModels.shared.model(name)
        var hidden = try model.embed(prompt)
        for b in 0..<model.encoder.blockCount {
            try model.forwardBlocks(.encoder, b..<(b + 1), hidden: &hidden, sequenceLengths: [prompt.count])
        }
        let ours = model.finalLayerNorm(.encoder, hidden)
        let whole = try model.encode(prompt).hiddenStates
        #expect(maxDifference(ours, whole) <= 1e-5 * maxMagnitude(whole))
    }

    @Test(arguments: ["flan-tiny", "t5-tiny"])
    func teacherForcedDecoderBlocksMatchCachedSteps(model name: String) throws {
        let model = try LoadedModels.shared.model(name)
        let decoderIds = [0, 17, 3, 250, 9]
        let cached = try model.logits(inputIds: prompt, decoderInputIds: decoderIds)
        let encoded = try model.encode(prompt)
        // Two sequences packed: the second one must not disturb the first (attention stays within a sequence).
        let otherEncoded = try model.encode(otherPrompt)
        let otherDecoderIds = [0, 5, 5]
        var hidden = try model.embed(decoderIds) + model.embed(otherDecoderIds)
        try model.forwardBlocks(.decoder, hidden: &hidden, sequenceLengths: [decoderIds.count, otherDecoderIds.count],
                                encoderOutputs: [encoded, otherEncoded])
        let logits = model.headLogits(model.finalLayerNorm(.decoder, hidden))
        let vocab = model.config.vocabSize
        for (i, step) in cached.enumerated() {
            let row = Array(logits[(i * vocab)..<((i + 1) * vocab)])
            #expect(maxDifference(row, step) <= 1e-4 * maxMagnitude(step), "\(name) position \(i)")
        }
        let otherCached = try model.logits(inputIds: otherPrompt, decoderInputIds: otherDecoderIds)
        for (i, step) in otherCached.enumerated() {
            let r = decoderIds.count + i
            let row = Array(logits[(r * vocab)..<((r + 1) * vocab)])
            #expect(maxDifference(row, step) <= 1e-4 * maxMagnitude(step), "\(name) second sequence, position \(i)")
        }
    }

    @Test func linearObserverSeesEveryProjection() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        let config = model.config
        var seen: [String: Int] = [:]
        let observer: T5LinearInputObserver = { name, input, rows in
            seen[name, default: 0] += rows
            #expect(input.count % rows == 0)
        }
        let encoded = try model.encode(prompt, linearObserver: observer)
        var hidden = try model.embed([0, 4])
        try model.forwardBlocks(.decoder, hidden: &hidden, sequenceLengths: [2], encoderOutputs: [encoded],
                                linearObserver: observer)
        _ = model.headLogits(model.finalLayerNorm(.decoder, hidden), linearObserver: observer)
        var expected: Set<String> = ["lm_head.weight"]
        for (stack, count) in [("encoder", config.numEncoderLayers), ("decoder", config.numDecoderLayers)] {
            for b in 0..<count {
                let p = "\(stack).block.\(b).layer"
                for m in ["q", "k", "v", "o"] { expected.insert("\(p).0.SelfAttention.\(m).weight") }
                let ff = stack == "encoder" ? 1 : 2
                if stack == "decoder" { for m in ["q", "k", "v", "o"] { expected.insert("\(p).1.EncDecAttention.\(m).weight") } }
                for m in ["wi_0", "wi_1", "wo"] { expected.insert("\(p).\(ff).DenseReluDense.\(m).weight") }
            }
        }
        #expect(Set(seen.keys) == expected)
        #expect(seen["encoder.block.0.layer.0.SelfAttention.q.weight"] == prompt.count)
        #expect(seen["decoder.block.0.layer.1.EncDecAttention.k.weight"] == prompt.count)
        #expect(seen["decoder.block.0.layer.2.DenseReluDense.wo.weight"] == 2)
    }

    @Test func badBlockInputsAreErrors() throws {
        let model = try LoadedModels.shared.model("flan-tiny")
        var hidden = try model.embed(prompt)
        #expect(throws: FlintError.self) { try model.forwardBlocks(.encoder, hidden: &hidden, sequenceLengths: [2]) }
        #expect(throws: FlintError.self) {
            try model.forwardBlocks(.encoder, 0..<99, hidden: &hidden, sequenceLengths: [prompt.count])
        }
        #expect(throws: FlintError.self) {  // a decoder block needs the encoder output of every sequence
            try model.forwardBlocks(.decoder, hidden: &hidden, sequenceLengths: [prompt.count])
        }
        #expect(throws: FlintError.self) { try model.embed([model.config.vocabSize]) }
    }
}

func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

func maxMagnitude(_ a: [Float]) -> Float { a.map { abs($0) }.max() ?? 0 }
