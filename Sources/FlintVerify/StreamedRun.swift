// How `flint verify` runs its models: block by block over every prompt at once (T5BlockStreamer), never the
// whole model resident. Each block is loaded, run over all prompts' rows, and dropped (mapped pages handed back,
// widened f16/bf16 copies freed) before the next, so a float reference of any size — flan-t5-xl's 11.4 GB of
// float32, xxl's 22 GB of bf16 — needs one block's weights, the output head and the prompts' activations in
// memory, not the checkpoint.
//
// The reference and the candidate run the same code, in the same order, on the same rows: identical weights give
// bit-identical numbers, so an unquantized candidate scores exactly (KL 0, no SNR).
//
//   encoder   every prompt through block i, then block i+1, …; the final norm.
//   greedy    the reference's own continuation (batched greedy; a step streams the decoder's blocks again, from
//             the page cache) — the script both models are teacher-forced on.
//   decoder   teacher-forced on the script: all positions of all prompts at once, with the causal mask, block by
//             block; then the final norm and the head (loaded for that pass alone).
//
// Resident memory beyond one block: per block the packed block outputs of the reference (for the per-block
// comparison: (encoder tokens + decoder positions) × d_model floats per block), the logits of every
// teacher-forced position of both models (positions × vocab floats each) and the output head of both models
// (for the head probe).

import Foundation
import FlintFormat
import FlintKernels
import FlintT5

/// One model's run over every prompt: encoder outputs, its greedy continuations, and (when a script is given or
/// made) its teacher-forced logits on the script.
struct StreamedRun {
    var encoded: [T5EncoderOutput]
    /// Greedy ids per prompt, the decoder start token excluded (EOS included when reached).
    var generated: [[Int]]
    /// `sum(script lengths) × vocab` logits, prompt after prompt.
    var logits: [Float]
    let vocab: Int

    /// Logits of prompt `row`'s packed position (`offset + step`).
    func logitsRow(_ row: Int) -> [Float] { Array(logits[(row * vocab)..<((row + 1) * vocab)]) }
}

/// The verify pass as a sequence of block runs, counted for progress.
struct StreamedVerifyPlan {
    let config: T5Config
    let maxNewTokens: Int

    /// Block runs of one model: encoder, greedy (every step streams the decoder), teacher-forced decoder.
    var blocksPerModel: Int {
        config.numEncoderLayers + maxNewTokens * config.numDecoderLayers + config.numDecoderLayers
    }
}

extension T5BlockStreamer {
    /// Encodes `inputs`, decodes greedily (with the decoder start and eos tokens of `specialIds`, the generation
    /// settings `flint run` follows, where it names them) and — with `script` nil — makes the teacher-forcing script
    /// from this model's own continuation (start token + all but the last generated token); then the teacher-forced
    /// logits on the script. `observer` sees every block's output of the encoder pass and of the teacher-forced
    /// decoder pass (all rows), not of the greedy steps.
    func verifyRun(_ inputs: [[Int]], maxNewTokens: Int, script: [[Int]]?, specialIds: GenerationDefaults?,
                   observer: T5BlockObserver?, progress: ((Int) -> Void)?) throws -> (run: StreamedRun, script: [[Int]]) {
        var done = 0
        func tick(_ n: Int) { done += n; progress?(done) }
        let encoded = try encode(inputs, observer: observer, progress: { _, _ in tick(1) })
        var last = 0
        let start = specialIds?.decoderStartTokenId ?? config.decoderStartTokenId
        let generated = try greedy(encoded, maxNewTokens: maxNewTokens, startToken: start, endTokens: specialIds?.eosTokenIds,
                                   progress: { d, _ in tick(d - last); last = d })
        let decoderInputs = script ?? generated.map { [start] + $0.dropLast() }
        let logits = try teacherForced(encoded, decoderInputs: decoderInputs, observer: observer, progress: { _, _ in tick(1) })
        return (StreamedRun(encoded: encoded, generated: generated, logits: logits, vocab: config.vocabSize), decoderInputs)
    }
}

extension Sensitivity {
    /// `measure`, run block by block (T5BlockStreamer) over every script at once: each hybrid is streamed like
    /// the verify reference, so memory stays bounded at any model size. `reference` must not cache whole-model
    /// copies (use `ScaledWeights.smoothedBasis(_:for:caching: false)`).
    ///
    /// `blockOutputs` (optional): the reference's output of every block (encoder blocks then decoder blocks,
    /// all scripts' rows packed, as verify records them). A hybrid whose only candidate part is block j of a stack
    /// computes what the reference computes up to block j, so with them each hybrid starts at block j from the
    /// recorded residual stream instead of at the embedding (half the block runs). The residual stream is the
    /// same in a smoothed basis (folds only rescale what a norm feeds its linears), so this holds for smoothed
    /// candidates too, up to float rounding.
    public static func measureStreamed(reference: WeightSource, candidate: WeightSource, components: [SensitivityComponent],
                                scripts: [TeacherScript], blockOutputs: [[Float]]? = nil, pool: ThreadPool?,
                                int8Kernels: Int8KernelMode?,
                                progress: ((Int, Int, String) -> Void)? = nil) throws -> [ComponentSensitivity] {
        let config = reference.config
        let encoderLengths = scripts.map(\.inputIds.count), decoderLengths = scripts.map(\.decoderInputIds.count)
        let layerCount = config.numEncoderLayers + config.numDecoderLayers
        let recorded = blockOutputs.flatMap { $0.count == layerCount && $0.allSatisfy({ !$0.isEmpty }) ? $0 : nil }
        var result: [ComponentSensitivity] = []
        for (i, component) in components.enumerated() {
            let same = try component.tensors.allSatisfy { name in
                identical(try candidate.tensor(name), try reference.tensor(name))
            }
            if same {
                result.append(ComponentSensitivity(name: component.name, meanKL: 0, top1Agreement: 1, identical: true,
                                                   tensors: component.tensors))
                progress?(i + 1, components.count, component.name)
                continue
            }
            let hybrid = HybridWeights(reference: reference, candidate: candidate,
                                       fromCandidate: Set(component.tensors), label: component.name)
            let streamer = try T5BlockStreamer(weights: hybrid, pool: pool, int8Kernels: int8Kernels)
            // Where this hybrid first differs from the reference: a block component starts there.
            var start: (stack: T5StackKind, block: Int) = (.encoder, 0)
            if recorded != nil, let block = blockOf(component, config) { start = block }
            let encoded: [T5EncoderOutput]
            if start.stack == .encoder {
                var hidden = start.block == 0 ? try streamer.embedded(scripts.map(\.inputIds)) : recorded![start.block - 1]
                try streamer.runBlocks(.encoder, start.block..<config.numEncoderLayers, hidden: &hidden, lengths: encoderLengths)
                encoded = try streamer.encoderOutputs(hidden, lengths: encoderLengths)
            } else {
                encoded = try streamer.encoderOutputs(recorded![config.numEncoderLayers - 1], lengths: encoderLengths)
            }
            let decoderStart = start.stack == .decoder ? start.block : 0
            var hidden = decoderStart == 0 ? try streamer.embedded(scripts.map(\.decoderInputIds))
                                            : recorded![config.numEncoderLayers + decoderStart - 1]
            try streamer.runBlocks(.decoder, decoderStart..<config.numDecoderLayers, hidden: &hidden,
                                   lengths: decoderLengths, encoded: encoded)
            let logits = try streamer.logits(decoderHidden: hidden)
            let vocab = config.vocabSize
            var hits = 0, steps = 0, klSum = 0.0
            for s in scripts {
                for r in s.referenceLogits {
                    let c = Array(logits[(steps * vocab)..<((steps + 1) * vocab)])
                    if Verifier.argmax(r) == Verifier.argmax(c) { hits += 1 }
                    klSum += Verifier.klDivergence(reference: r, candidate: c)
                    steps += 1
                }
            }
            result.append(ComponentSensitivity(name: component.name, meanKL: klSum / Double(max(1, steps)),
                                               top1Agreement: Double(hits) / Double(max(1, steps)),
                                               identical: false, tensors: component.tensors))
            progress?(i + 1, components.count, component.name)
        }
        return result
    }

    /// The block a component is, when all its tensors belong to one block (`encoder.block.N.` /
    /// `decoder.block.N.`); nil otherwise (the hybrid then runs from the embedding).
    public static func blockOf(_ component: SensitivityComponent, _ config: T5Config) -> (stack: T5StackKind, block: Int)? {
        for (stack, count) in [(T5StackKind.encoder, config.numEncoderLayers), (.decoder, config.numDecoderLayers)] {
            for b in 0..<count {
                let prefix = "\(stack.rawValue).block.\(b)."
                if !component.tensors.isEmpty, component.tensors.allSatisfy({ $0.hasPrefix(prefix) }) { return (stack, b) }
            }
        }
        return nil
    }
}
