// The float model run one block at a time, for calibration (as GPTQ/AWQ run theirs): a block's weights are
// loaded from the source, run over every sequence of the batch, and dropped — their file-mapped pages handed back
// to the kernel — before the next block loads. A half-precision checkpoint is never widened whole, nor a block
// at a time: each linear widens a tile of W rows just before multiplying it and hands the stored pages back as
// it goes (FlintKernels.StreamedHalfLinear), so the output head costs no 526 MB float32 copy on xxl. Resident
// memory is the weight pages in use, the embedding rows in use and the batch's activations and caches, whatever
// the model's size and whatever the source's precision.
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

    /// - Parameters:
    ///   - weights: a float checkpoint (f32 used in place, f16/bf16 linears widened tile by tile as they multiply,
    ///     other f16/bf16 tensors per block) or a .flint file.
    ///   - int8Kernels: how int8 weights multiply (in place with that mode, as `flint run` runs them), or nil to
    ///     widen them to float32 one block at a time (calibration).
    public init(weights: WeightSource, pool: ThreadPool? = .shared, isa: KernelISA = .preferred,
                int8Kernels: Int8KernelMode? = nil) throws {
        try isa.validate()
        config = weights.config
        try config.validate()
        guard !config.isEncoderOnly else {
            throw FlintError("\(weights.sourceDescription): an encoder-only model has no decoder to stream")
        }
        source = weights
        // f16 / bf16 linears are widened a tile at a time at each multiply: a bf16 xxl decoder block widened
        // whole was 1 GB of float32 (and the output head 526 MB) beside everything else.
        loader = WeightLoader(source: weights, int8Kernels: int8Kernels, isa: isa, streamHalfPrecision: true)
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
    /// `observer` sees every block's output (all rows of the batch); `progress(done, total)` after each block.
    public func encode(_ inputs: [[Int]], observer: T5BlockObserver? = nil,
                       linearObserver: T5LinearInputObserver? = nil,
                       progress: ((Int, Int) -> Void)? = nil) throws -> [T5EncoderOutput] {
        guard !inputs.isEmpty, inputs.allSatisfy({ !$0.isEmpty }) else {
            throw FlintError("calibration: every input needs at least one token")
        }
        let lengths = inputs.map(\.count)
        var hidden = try embedded(inputs)
        try runBlocks(.encoder, 0..<config.numEncoderLayers, hidden: &hidden, lengths: lengths, observer: observer,
                      linearObserver: linearObserver, progress: progress)
        return try encoderOutputs(hidden, lengths: lengths)
    }

    // MARK: Whole sequences, block by block

    /// The embedding rows of several sequences packed one after another (`sum(lengths) × dModel`): block 0's
    /// input in either stack.
    public func embedded(_ sequences: [[Int]]) throws -> [Float] {
        let ids = sequences.flatMap { $0 }
        var rows = [Float](repeating: 0, count: ids.count * config.dModel)
        if !ids.isEmpty { try rows.withUnsafeMutableBufferPointer { try embed(ids, into: $0.baseAddress!) } }
        release("shared.weight")
        return rows
    }

    /// Runs blocks `blocks` of a stack over whole sequences packed in `hidden` (the residual stream,
    /// `sum(lengths) × dModel`), in place, each block loaded, run over every sequence and dropped (its pages
    /// handed back) before the next. Encoder sequences attend bidirectionally within themselves; decoder
    /// sequences are teacher-forced rows at positions 0..<length (causal) cross-attending over `encoded[s]`.
    /// `observer` sees each block's output, all rows together; `progress(done, total)` after each block.
    public func runBlocks(_ stack: T5StackKind, _ blocks: Range<Int>, hidden: inout [Float], lengths: [Int],
                          encoded: [T5EncoderOutput] = [], observer: T5BlockObserver? = nil,
                          linearObserver: T5LinearInputObserver? = nil,
                          progress: ((Int, Int) -> Void)? = nil) throws {
        let d = config.dModel
        let count = stack == .encoder ? config.numEncoderLayers : config.numDecoderLayers
        guard !lengths.isEmpty, lengths.allSatisfy({ $0 > 0 }) else {
            throw FlintError("\(stack.rawValue) blocks: sequence lengths \(lengths) must be positive, at least one")
        }
        let rows = lengths.reduce(0, +)
        guard hidden.count == rows * d else {
            throw FlintError("\(stack.rawValue) blocks: \(hidden.count) floats for \(rows) rows of d_model \(d)")
        }
        guard blocks.lowerBound >= 0, blocks.upperBound <= count else {
            throw FlintError("\(stack.rawValue) blocks \(blocks): the stack has blocks 0..<\(count)")
        }
        if stack == .decoder {
            guard encoded.count == lengths.count, encoded.allSatisfy({ $0.dModel == d && $0.length > 0 }) else {
                throw FlintError("decoder blocks: need one encoder output of d_model \(d) per sequence, got \(encoded.count) for \(lengths.count)")
            }
        }
        guard !blocks.isEmpty else { return }
        let work = T5Workspace(rows: rows, config: config)
        hidden.withUnsafeBufferPointer { work.hidden.mutablePointer.update(from: $0.baseAddress!, count: rows * d) }
        let context = T5ForwardContext(pool: pool, linearObserver: linearObserver)
        let ranges = segments(lengths)
        let longest = lengths.max()!
        // A block without its own table uses block 0's (T5): starting past block 0 loads that table alone.
        var bias: SequenceBias? = nil
        if !ownsBias(stack, blocks.lowerBound) {
            let name = "\(stack.rawValue).block.0.layer.0.SelfAttention.relative_attention_bias.weight"
            bias = SequenceBias(try RelativePositionBias(loader, name, config: config, bidirectional: stack == .encoder),
                                longest: longest)
            release(name)
        }
        for index in blocks {
            let block = try loadBlock(stack, index)
            if let table = block.selfAttention.relativeBias { bias = SequenceBias(table, longest: longest) }
            guard let bias else { throw FlintError("\(stack.rawValue) block 0 has no relative_attention_bias") }
            let pass = T5SequencePass(segments: ranges, causal: stack == .decoder,
                                      biases: Array(repeating: bias, count: index + 1), encoderStates: encoded)
            block.forward(work, rows: rows, layer: index, pass: pass, context)
            release("\(stack.rawValue).block.\(index).")
            observer?(stack, index, UnsafeBufferPointer(start: work.hidden.pointer, count: rows * d), rows)
            progress?(index - blocks.lowerBound + 1, blocks.count)
        }
        hidden = Array(UnsafeBufferPointer(start: work.hidden.pointer, count: rows * d))
    }

    /// The encoder's final layer norm over packed rows: one output per sequence.
    public func encoderOutputs(_ hidden: [Float], lengths: [Int]) throws -> [T5EncoderOutput] {
        let d = config.dModel
        let normed = try finalNorm(.encoder, hidden)
        return segments(lengths).map { range in
            T5EncoderOutput(hiddenStates: Array(normed[(range.lowerBound * d)..<(range.upperBound * d)]),
                            length: range.count, dModel: d)
        }
    }

    /// A stack's final layer norm over `rows × dModel` rows.
    public func finalNorm(_ stack: T5StackKind, _ hidden: [Float]) throws -> [Float] {
        let d = config.dModel, rows = hidden.count / d
        guard hidden.count == rows * d else { throw FlintError("\(stack.rawValue) final norm: \(hidden.count) floats are not rows of \(d)") }
        let name = "\(stack.rawValue).final_layer_norm.weight"
        let norm = try T5LayerNorm(loader, name, dModel: d, epsilon: config.layerNormEpsilon)
        var out = [Float](repeating: 0, count: hidden.count)
        if rows > 0 {
            hidden.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { norm.forward(x.baseAddress!, rows: rows, into: $0.baseAddress!) }
            }
        }
        return out
    }

    /// The decoder's final norm and the output head over decoder rows (the last block's output, `rows ×
    /// dModel`): `rows × vocab` logits. The head is loaded for this call and its pages handed back after.
    public func logits(decoderHidden hidden: [Float], linearObserver: T5LinearInputObserver? = nil) throws -> [Float] {
        var normed = try finalNorm(.decoder, hidden)
        let rows = hidden.count / config.dModel
        guard rows > 0 else { return [] }
        let headName = config.tieWordEmbeddings ? "shared.weight" : "lm_head.weight"
        let head = try T5Linear(loader, headName, out: config.vocabSize, in: config.dModel)
        if config.scaleDecoderOutputs {
            let scale = Float(pow(Double(config.dModel), -0.5))
            for i in normed.indices { normed[i] *= scale }
        }
        var logits = [Float](repeating: 0, count: rows * config.vocabSize)
        let context = T5ForwardContext(pool: pool, linearObserver: linearObserver)
        normed.withUnsafeBufferPointer { x in
            logits.withUnsafeMutableBufferPointer { head.forward(x.baseAddress!, rows: rows, into: $0.baseAddress!, context) }
        }
        release(headName)
        return logits
    }

    /// Teacher-forced logits of every decoder position of every sequence together (`model(input_ids,
    /// decoder_input_ids=…).logits`, all prompts at once), the decoder run block by block with the causal mask:
    /// `sum(decoderInputs.count) × vocab` floats, sequence after sequence. `observer` sees each decoder block's
    /// output (all rows).
    public func teacherForced(_ encoded: [T5EncoderOutput], decoderInputs: [[Int]], observer: T5BlockObserver? = nil,
                              progress: ((Int, Int) -> Void)? = nil) throws -> [Float] {
        let lengths = decoderInputs.map(\.count)
        var hidden = try embedded(decoderInputs)
        try runBlocks(.decoder, 0..<config.numDecoderLayers, hidden: &hidden, lengths: lengths, encoded: encoded,
                      observer: observer, progress: progress)
        return try logits(decoderHidden: hidden)
    }

    // MARK: Decoder

    /// Greedy generation for every encoder output together, at most `maxNewTokens` tokens each (a sequence
    /// stops at an eos, which is included). Returns the generated ids per input (the start token excluded).
    /// `startToken` and `endTokens` are the generation config's (`GenerationOptions.decoderStartTokenId`,
    /// `eosTokenIds`); nil: the model config's. `progress(done, total)` after each decoder block of each step (total
    /// assumes every step runs).
    public func greedy(_ encoded: [T5EncoderOutput], maxNewTokens: Int, startToken: Int? = nil, endTokens: [Int]? = nil,
                       linearObserver: T5LinearInputObserver? = nil,
                       progress: ((Int, Int) -> Void)? = nil) throws -> [[Int]] {
        guard maxNewTokens >= 1, !encoded.isEmpty,
              encoded.allSatisfy({ $0.dModel == config.dModel && $0.length > 0 }) else {
            throw FlintError("calibration decoder: need encoder outputs of d_model \(config.dModel) and at least one new token")
        }
        let inner = config.innerDim, layers = config.numDecoderLayers
        let caches = encoded.map { e in
            // The float reference: exact float32 caches.
            T5CrossAttentionCache(encoderLength: e.length, layers: layers, numHeads: config.numHeads, dKV: config.dKV,
                                  precision: .f32)
        }
        let encoderRows = encoded.flatMap(\.hiddenStates)
        let encoderRowCount = encoded.reduce(0) { $0 + $1.length }
        let projectedKeys = FloatStorage(uninitializedCount: encoderRowCount * inner)
        let projectedValues = FloatStorage(uninitializedCount: encoderRowCount * inner)
        let state = T5DecoderState(config: config, initialCapacity: maxNewTokens)
        for cache in caches { _ = state.append(cache, count: 1, maxLength: maxNewTokens) }
        // The head is loaded after each step's blocks and dropped again: kept for the whole generation, its
        // widened copy (xxl's bf16 lm_head: 0.5 GB of float32) would sit beside every decoder block's.
        let headName = config.weightLayout.outputProjection
        let headScale: Float = config.scaleDecoderOutputs ? Float(pow(Double(config.dModel), -0.5)) : 1
        let finalNorm = try T5LayerNorm(loader, "decoder.final_layer_norm.weight", dModel: config.dModel,
                                        epsilon: config.layerNormEpsilon)
        let context = T5ForwardContext(pool: pool, linearObserver: linearObserver)
        var generated = [[Int]](repeating: [], count: encoded.count)
        var active = Array(encoded.indices)  // row r of the state decodes input active[r]
        var tokens = [Int](repeating: startToken ?? config.decoderStartTokenId, count: encoded.count)
        let ends = Set(endTokens ?? [config.eosTokenId])
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
                    // All inputs' rows in one multiply each (a streamed half-precision weight is widened once per
                    // multiply), then split into the per-input caches.
                    encoderRows.withUnsafeBufferPointer { x in
                        cross.k.forward(x.baseAddress!, rows: encoderRowCount, into: projectedKeys.mutablePointer, context)
                        cross.v.forward(x.baseAddress!, rows: encoderRowCount, into: projectedValues.mutablePointer,
                                        context)
                    }
                    var row = 0
                    for (e, cache) in zip(encoded, caches) {
                        cache.store(layer: index, keys: projectedKeys.pointer + row * inner,
                                    values: projectedValues.pointer + row * inner, isa: .portable)
                        row += e.length
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
            do {
                let head = try T5Linear(loader, headName, out: config.vocabSize, in: config.dModel)
                head.forward(work.normed.pointer, rows: rows, into: logits.mutablePointer, context)
                release(headName)
            }
            state.advance()
            var finished: [Int] = []
            for r in 0..<rows {
                let row = logits.pointer + r * config.vocabSize
                var best = 0
                for j in 1..<config.vocabSize where row[j] > row[best] { best = j }
                generated[active[r]].append(best)
                tokens[r] = best
                if ends.contains(best) { finished.append(r) }
            }
            if !finished.isEmpty {
                try state.removeRows(finished)
                let gone = Set(finished)
                active = active.enumerated().filter { !gone.contains($0.offset) }.map(\.element)
                tokens = tokens.prefix(rows).enumerated().filter { !gone.contains($0.offset) }.map(\.element)
            }
            if active.isEmpty { break }
        }
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
