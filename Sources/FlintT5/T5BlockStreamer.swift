// The float model run one block at a time, for calibration (as GPTQ/AWQ run theirs): a block's weights are
// loaded from the source, run over every sequence of the batch, and dropped — their file-mapped pages handed back
// to the kernel, their widened copies freed — before the next block loads. Resident memory is one block, the
// output head, the embedding rows in use and the batch's activations and caches, whatever the model's size and
// whatever the source's precision (a half-precision checkpoint is widened one block at a time, never whole).
//
// The decoder runs greedily, one step for all sequences at a time; each step streams the decoder's blocks again
// (from the page cache), with every block's self-attention cache and cross-attention keys/values kept per
// sequence, so the tokens are the float model's own greedy tokens (the same as `T5ForConditionalGeneration`
// computes, up to float rounding in batched rows).
import Foundation
import FlintFormat
import FlintKernels

public final class T5BlockStreamer {
    public let config: T5Config
    let source: WeightSource
    let loader: WeightLoader
    let pool: ThreadPool?

    /// - Parameter weights: a float checkpoint (f32 used in place, f16/bf16 widened per block) or a .flint file.
    public init(weights: WeightSource, pool: ThreadPool? = .shared, isa: KernelISA = .preferred) throws {
        try isa.validate()
        config = weights.config
        try config.validate()
        guard !config.isEncoderOnly else {
            throw FlintError("\(weights.sourceDescription): an encoder-only model has no decoder to stream")
        }
        source = weights
        loader = WeightLoader(source: weights, int8Kernels: nil, isa: isa)
        self.pool = pool
    }

    // MARK: Loading and dropping

    /// Hands back the resident pages of every tensor whose name starts with `prefix` (or is `prefix`).
    func release(_ prefix: String) {
        for name in source.tensorNames where name == prefix || name.hasPrefix(prefix) {
            if let view = try? source.tensor(name) { releaseMappedPages(view.data) }
        }
    }

    /// Whether a block has its own relative-position table (T5: block 0 only; UMT5: every block), as T5Stack.
    func ownsBias(_ stack: T5StackKind, _ index: Int) -> Bool {
        index == 0 || config.relativeAttentionBiasPerLayer
    }

    func loadBlock(_ stack: T5StackKind, _ index: Int) throws -> T5Block {
        try T5Block(loader, stack: stack, index: index, config: config, hasRelativeBias: ownsBias(stack, index))
    }

    /// Embedding rows of `ids` (`ids.count × dModel`), read from `shared.weight` row by row.
    func embed(_ ids: [Int], into out: UnsafeMutablePointer<Float>) throws {
        let view = try source.tensor("shared.weight")
        let d = config.dModel
        guard view.shape == [config.vocabSize, d] else {
            throw FlintError("tensor shared.weight in \(source.sourceDescription): expected shape [\(config.vocabSize), \(d)], found \(view.shape)")
        }
        if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw FlintError("calibration: token id \(bad) is outside the vocabulary (0..<\(config.vocabSize))")
        }
        if view.scheme == .none, view.storage == .f32 || view.storage == .f16 || view.storage == .bf16 {
            let rowBytes = d * view.storage.byteSize
            guard view.data.count == config.vocabSize * rowBytes else {
                throw FlintError("tensor shared.weight in \(source.sourceDescription): \(view.data.count) bytes, expected \(config.vocabSize * rowBytes)")
            }
            for (r, id) in ids.enumerated() {
                let bytes = UnsafeRawBufferPointer(rebasing: view.data[(id * rowBytes)..<((id + 1) * rowBytes)])
                if view.storage == .f32 {
                    UnsafeMutableRawPointer(out + r * d).copyMemory(from: bytes.baseAddress!, byteCount: rowBytes)
                } else {
                    let row = TensorView(name: "shared.weight[\(id)]", storage: view.storage, shape: [d], data: bytes,
                                         owner: view.owner)
                    let widened = try TensorConversion.floatStorage(row)
                    withExtendedLifetime(widened) { (out + r * d).update(from: widened.pointer, count: d) }
                }
            }
        } else {
            let table = try TensorConversion.floatStorage(view)
            for (r, id) in ids.enumerated() { (out + r * d).update(from: table.pointer + id * d, count: d) }
        }
    }

    // MARK: Encoder

    /// Encodes every input (packed in one batch) block by block: the encoder's final-normed output per input.
    /// `progress(done, total)` after each block.
    public func encode(_ inputs: [[Int]], linearObserver: T5LinearInputObserver? = nil,
                       progress: ((Int, Int) -> Void)? = nil) throws -> [T5EncoderOutput] {
        guard !inputs.isEmpty, inputs.allSatisfy({ !$0.isEmpty }) else {
            throw FlintError("calibration: every input needs at least one token")
        }
        let d = config.dModel
        let rows = inputs.reduce(0) { $0 + $1.count }
        let work = T5Workspace(rows: rows, config: config)
        try embed(inputs.flatMap { $0 }, into: work.hidden.mutablePointer)
        release("shared.weight")
        let context = T5ForwardContext(pool: pool, linearObserver: linearObserver)
        let ranges = segments(inputs.map(\.count))
        let longest = inputs.map(\.count).max()!
        var bias: SequenceBias? = nil
        let count = config.numEncoderLayers
        for index in 0..<count {
            let block = try loadBlock(.encoder, index)
            if let table = block.selfAttention.relativeBias { bias = SequenceBias(table, longest: longest) }
            guard let bias else { throw FlintError("encoder block 0 has no relative_attention_bias") }
            let pass = T5SequencePass(segments: ranges, causal: false,
                                      biases: Array(repeating: bias, count: index + 1), encoderStates: [])
            block.forward(work, rows: rows, layer: index, pass: pass, context)
            release("encoder.block.\(index).")
            progress?(index + 1, count)
        }
        let norm = try T5LayerNorm(loader, "encoder.final_layer_norm.weight", dModel: d, epsilon: config.layerNormEpsilon)
        norm.forward(work.hidden.pointer, rows: rows, into: work.normed.mutablePointer)
        let normed = UnsafeBufferPointer(start: work.normed.pointer, count: rows * d)
        return ranges.map { range in
            T5EncoderOutput(hiddenStates: Array(normed[(range.lowerBound * d)..<(range.upperBound * d)]),
                            length: range.count, dModel: d)
        }
    }

    // MARK: Decoder

    /// Greedy generation for every encoder output together, at most `maxNewTokens` tokens each (a sequence
    /// stops at EOS, which is included). Returns the generated ids per input (the start token excluded).
    /// `progress(done, total)` after each decoder block of each step (total assumes every step runs).
    public func greedy(_ encoded: [T5EncoderOutput], maxNewTokens: Int, linearObserver: T5LinearInputObserver? = nil,
                       progress: ((Int, Int) -> Void)? = nil) throws -> [[Int]] {
        guard maxNewTokens >= 1, !encoded.isEmpty,
              encoded.allSatisfy({ $0.dModel == config.dModel && $0.length > 0 }) else {
            throw FlintError("calibration decoder: need encoder outputs of d_model \(config.dModel) and at least one new token")
        }
        let inner = config.innerDim, layers = config.numDecoderLayers
        let caches = encoded.map { e in
            T5CrossAttentionCache(encoderLength: e.length,
                                  keys: (0..<layers).map { _ in FloatStorage(count: e.length * inner) },
                                  values: (0..<layers).map { _ in FloatStorage(count: e.length * inner) })
        }
        let state = T5DecoderState(config: config, initialCapacity: maxNewTokens)
        for cache in caches { _ = state.append(cache, count: 1, maxLength: maxNewTokens) }
        // The head stays loaded for the whole generation (it is needed after every step).
        let headName = config.weightLayout.outputProjection
        let head = try T5Linear(loader, headName, out: config.vocabSize, in: config.dModel)
        let headScale: Float = config.scaleDecoderOutputs ? Float(pow(Double(config.dModel), -0.5)) : 1
        let finalNorm = try T5LayerNorm(loader, "decoder.final_layer_norm.weight", dModel: config.dModel,
                                        epsilon: config.layerNormEpsilon)
        let context = T5ForwardContext(pool: pool, linearObserver: linearObserver)
        var generated = [[Int]](repeating: [], count: encoded.count)
        var active = Array(encoded.indices)  // row r of the state decodes input active[r]
        var tokens = [Int](repeating: config.decoderStartTokenId, count: encoded.count)
        var done = 0
        let total = maxNewTokens * layers
        for step in 0..<maxNewTokens {
            try state.prepareStep()
            let work = state.workspace, rows = state.rowCount
            try embed(tokens, into: work.hidden.mutablePointer)
            var bias: StepBias? = nil
            for index in 0..<layers {
                let block = try loadBlock(.decoder, index)
                if step == 0, let cross = block.crossAttention {
                    for (e, cache) in zip(encoded, caches) {
                        e.hiddenStates.withUnsafeBufferPointer { x in
                            cross.k.forward(x.baseAddress!, rows: e.length, into: cache.keys[index].mutablePointer, context)
                            cross.v.forward(x.baseAddress!, rows: e.length, into: cache.values[index].mutablePointer, context)
                        }
                    }
                }
                // Block 0's table serves every block without its own (T5); each table is filled for this step.
                if let table = block.selfAttention.relativeBias { bias = StepBias(table, state: state, buffer: 0) }
                guard let bias else { throw FlintError("decoder block 0 has no relative_attention_bias") }
                let pass = T5StepPass(biases: Array(repeating: bias, count: index + 1), state: state)
                block.forward(work, rows: rows, layer: index, pass: pass, context)
                release("decoder.block.\(index).")
                done += 1
                progress?(done, total)
            }
            finalNorm.forward(work.hidden.pointer, rows: rows, into: work.normed.mutablePointer)
            if headScale != 1 {
                for i in 0..<(rows * config.dModel) { work.normed.mutablePointer[i] *= headScale }
            }
            let logits = FloatStorage(count: rows * config.vocabSize)
            head.forward(work.normed.pointer, rows: rows, into: logits.mutablePointer, context)
            state.advance()
            var finished: [Int] = []
            for r in 0..<rows {
                let row = logits.pointer + r * config.vocabSize
                var best = 0
                for j in 1..<config.vocabSize where row[j] > row[best] { best = j }
                generated[active[r]].append(best)
                tokens[r] = best
                if best == config.eosTokenId { finished.append(r) }
            }
            if !finished.isEmpty {
                try state.removeRows(finished)
                let gone = Set(finished)
                active = active.enumerated().filter { !gone.contains($0.offset) }.map(\.element)
                tokens = tokens.prefix(rows).enumerated().filter { !gone.contains($0.offset) }.map(\.element)
            }
            if active.isEmpty { break }
        }
        release(headName)
        progress?(total, total)
        return generated
    }
}

extension T5SequencePass {
    /// A pass with the given per-block biases (block l uses `biases[l]`).
    init(segments: [Range<Int>], causal: Bool, biases: [SequenceBias], encoderStates: [T5EncoderOutput]) {
        self.segments = segments
        self.causal = causal
        self.biases = biases
        self.encoderStates = encoderStates
    }
}

extension T5StepPass {
    /// A step with the given per-block biases (block l uses `biases[l]`).
    init(biases: [StepBias], state: T5DecoderState) {
        self.state = state
        self.biases = biases
    }
}
