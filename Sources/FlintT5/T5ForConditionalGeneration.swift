// Hugging Face's `T5ForConditionalGeneration` (and `UMT5ForConditionalGeneration`): the shared embedding, the
// encoder, the decoder with its caches, and the output head.
import Foundation
import FlintFormat
import FlintKernels

/// The output projection: `lm_head.weight`, or `shared.weight` when embeddings are tied, in which case the
/// decoder output is first multiplied by `d_model ** -0.5` (original T5; `scale_decoder_outputs`).
final class T5OutputHead {
    let projection: T5Linear
    let scale: Float

    init(_ loader: WeightLoader, embedding: T5Embedding, config: T5Config) throws {
        if config.tieWordEmbeddings {
            let shared = try loader.source.tensor("shared.weight")
            if shared.storage == .i8 {
                // A quantized head goes through the factory, so it gets the int8 kernels.
                projection = try T5Linear(loader, "shared.weight", out: config.vocabSize, in: config.dModel)
            } else {
                // The output projection is `shared.weight` itself: reuse the embedding's floats.
                projection = T5Linear(name: "shared.weight",
                                      weight: FloatLinear(weight: embedding.table!, outFeatures: config.vocabSize,
                                                          inFeatures: config.dModel, isa: loader.isa))
            }
        } else {
            projection = try T5Linear(loader, "lm_head.weight", out: config.vocabSize, in: config.dModel)
        }
        scale = config.scaleDecoderOutputs ? Float(pow(Double(config.dModel), -0.5)) : 1
    }

    /// `rows` final-normed decoder rows (scaled in place when the head is tied) to `rows × vocab` logits.
    func forward(_ x: UnsafeMutablePointer<Float>, rows: Int, into logits: UnsafeMutablePointer<Float>,
                 _ context: T5ForwardContext) {
        if scale != 1 {
            for i in 0..<(rows * projection.inFeatures) { x[i] *= scale }
        }
        projection.forward(x, rows: rows, into: logits, context)
    }
}

public final class T5ForConditionalGeneration: @unchecked Sendable {
    public let config: T5Config
    public let encoder: T5Stack
    public let decoder: T5Stack
    let embedding: T5Embedding
    let head: T5OutputHead
    let pool: ThreadPool?
    /// The kernels every layer runs.
    public let isa: KernelISA
    /// How decoding caches attention keys and values (`defaultAttentionCache`, unless the caller chose).
    public let attentionCache: AttentionCachePrecision

    /// Loads every weight (f16/bf16 widened once, here; int8 used in place or widened, see `int8Kernels`).
    /// - Parameters:
    ///   - pool: the threads the matrix kernels use; nil runs everything on the calling thread.
    ///   - int8Kernels: how int8 weights multiply (in place with that `Int8Linear` mode), or nil to expand them
    ///     to float32 at load.
    ///   - isa: the kernels every layer runs (`KernelISA.preferred` by default); a FlintError when this machine
    ///     cannot run them.
    ///   - attentionCache: the precision of the decoder's key/value caches; nil takes `defaultAttentionCache`.
    public init(weights: WeightSource, pool: ThreadPool? = .shared, int8Kernels: Int8KernelMode? = nil,
                isa: KernelISA = .preferred, attentionCache: AttentionCachePrecision? = nil) throws {
        try isa.validate()
        let config = weights.config
        try config.validate()
        guard !config.isEncoderOnly else {
            throw FlintError("\(weights.sourceDescription): an encoder-only model has no decoder; use T5EncoderModel")
        }
        // Every missing tensor in one error, before anything is loaded.
        try config.weightLayout.checkComplete(weights)
        let loader = WeightLoader(source: weights, int8Kernels: int8Kernels, isa: isa)
        self.config = config
        embedding = try T5Embedding(loader, config: config)
        encoder = try T5Stack(loader, kind: .encoder, config: config)
        decoder = try T5Stack(loader, kind: .decoder, config: config)
        head = try T5OutputHead(loader, embedding: embedding, config: config)
        self.pool = pool
        self.isa = isa
        self.attentionCache = attentionCache ?? Self.defaultAttentionCache(for: weights)
    }

    /// Binary16 caches for a model with quantized (int8 / int4) weights, whose own error is orders of magnitude
    /// above the caches' rounding and whose decoding steps read about a tenth as many cache bytes as weight bytes in
    /// float32 (flan-t5-base int4, 64 input and 64 new tokens: 7.1 of 69.6 MB) and more than half at a 512-token
    /// input; float32 for a float model, which must match transformers exactly.
    public static func defaultAttentionCache(for weights: WeightSource) -> AttentionCachePrecision {
        weights.holdsQuantizedWeights ? .f16 : .f32
    }

    public var vocabSize: Int { config.vocabSize }

    // MARK: Encoder

    /// The encoder's last hidden state (after the final layer norm) for one input.
    public func encode(_ inputIds: [Int], observer: T5BlockObserver? = nil,
                       linearObserver: T5LinearInputObserver? = nil) throws -> T5EncoderOutput {
        try encode(batch: [inputIds], observer: observer, linearObserver: linearObserver)[0]
    }

    /// Several inputs in one encoder pass (see `runEncoder`): one output per input, the same numbers as
    /// encoding each alone up to float rounding.
    public func encode(batch inputs: [[Int]], observer: T5BlockObserver? = nil,
                       linearObserver: T5LinearInputObserver? = nil) throws -> [T5EncoderOutput] {
        try runEncoder(encoder, embedding: embedding, inputs: inputs,
                       T5ForwardContext(pool: pool, linearObserver: linearObserver, blockObserver: observer))
    }

    // MARK: Decoder

    /// An empty decoding batch; add sequences with `addSequences`.
    public func makeDecoderState() -> T5DecoderState { T5DecoderState(config: config) }

    /// The cross-attention keys and values of every decoder block for one encoder output (computed once per
    /// request, shared by its beams).
    public func crossAttentionCache(_ encoderOutput: T5EncoderOutput,
                                    linearObserver: T5LinearInputObserver? = nil) throws -> T5CrossAttentionCache {
        guard encoderOutput.dModel == config.dModel, encoderOutput.length > 0 else {
            throw FlintError("decoder: encoder output has d_model \(encoderOutput.dModel) and \(encoderOutput.length) rows; expected d_model \(config.dModel) and at least one row")
        }
        let context = T5ForwardContext(pool: pool, linearObserver: linearObserver)
        let length = encoderOutput.length, inner = config.innerDim
        let cache = T5CrossAttentionCache(encoderLength: length, layers: decoder.blocks.count,
                                          numHeads: config.numHeads, dKV: config.dKV, precision: attentionCache)
        // Every block's keys and values project the same encoder output: one quantization of it serves a group of
        // blocks, whose position-major projections (at most ~4 MB of them at a time: 10 of flan-t5-base's 12 blocks
        // at 64 tokens, one at 512) are then stored head-major. The float32 scratch is fresh memory per request, so
        // its size is paid in page faults and peak RSS: with a 32 MB budget flan-t5-base at 512 tokens peaked at
        // 339 MB (bound 1.15 × file + 64 MB = 354 MB), with 4 MB at 310 MB, and its time to first token at 1 thread
        // was 400-414 ms vs 393-408 ms (5 alternating rounds; 2 threads and 64 tokens unchanged within the noise).
        let perBlock = 2 * length * inner * MemoryLayout<Float>.size
        let blocksPerGroup = max(1, min(decoder.blocks.count, (4 << 20) / max(1, perBlock)))
        let keys = (0..<blocksPerGroup).map { _ in FloatStorage(uninitializedCount: length * inner) }
        let values = (0..<blocksPerGroup).map { _ in FloatStorage(uninitializedCount: length * inner) }
        for first in stride(from: 0, to: decoder.blocks.count, by: blocksPerGroup) {
            let blocks = decoder.blocks[first..<min(decoder.blocks.count, first + blocksPerGroup)]
            let linears = blocks.flatMap { [$0.crossAttention!.k, $0.crossAttention!.v] }
            let outputs = zip(keys, values).prefix(blocks.count).flatMap { [$0.mutablePointer, $1.mutablePointer] }
            encoderOutput.hiddenStates.withUnsafeBufferPointer { encoded in
                T5Linear.forward(linears, sharingInput: encoded.baseAddress!, rows: length, into: outputs, context)
            }
            for i in 0..<blocks.count {
                cache.store(layer: first + i, keys: keys[i].pointer, values: values[i].pointer, isa: isa)
            }
        }
        return cache
    }

    /// Adds `rows` sequences (a request's beams, or 1) decoding against `cross` to the batch, each at most
    /// `maxLength` decoder positions (the start token included), starting at position 0. Returns their rows.
    @discardableResult
    public func addSequences(to state: T5DecoderState, cross: T5CrossAttentionCache, rows: Int = 1,
                             maxLength: Int) throws -> Range<Int> {
        guard rows >= 1, maxLength >= 1 else {
            throw FlintError("decoder: need at least one row and one position, got rows \(rows), maxLength \(maxLength)")
        }
        guard state.config == config, cross.keys.count == decoder.blocks.count else {
            throw FlintError("decoder: this state or cross-attention cache belongs to another model")
        }
        return state.append(cross, count: rows, maxLength: maxLength)
    }

    /// Prepares decoding of `beams` sequences of at most `maxLength` decoder positions (the start token
    /// included) against one encoder output: computes every block's cross-attention keys and values once.
    public func startDecoding(_ encoderOutput: T5EncoderOutput, beams: Int = 1, maxLength: Int) throws -> T5DecoderState {
        try startDecoding(encoderOutput, beams: beams, maxLength: maxLength,
                          initialCapacity: T5DecoderState.defaultInitialCapacity)
    }

    /// `initialCapacity`: positions allocated up front (tests use a small one to exercise growing).
    func startDecoding(_ encoderOutput: T5EncoderOutput, beams: Int, maxLength: Int,
                       initialCapacity: Int) throws -> T5DecoderState {
        guard beams >= 1, maxLength >= 1 else {
            throw FlintError("decoder: need at least one beam and one position, got beams \(beams), maxLength \(maxLength)")
        }
        let state = T5DecoderState(config: config, initialCapacity: initialCapacity)
        try addSequences(to: state, cross: try crossAttentionCache(encoderOutput), rows: beams, maxLength: maxLength)
        return state
    }

    /// Runs one decoder position for every row of the batch: `tokens[r]` is row r's newest token, at that
    /// row's position (`state.lengths[r]`, the tokens it already processed). Returns the logits
    /// `[rowCount, vocab]`, valid until the next step on this state.
    @discardableResult
    public func decodeStep(_ state: T5DecoderState, tokens: [Int], observer: T5BlockObserver? = nil,
                           linearObserver: T5LinearInputObserver? = nil) throws -> UnsafeBufferPointer<Float> {
        let rows = state.rowCount
        guard rows >= 1, tokens.count == rows else {
            throw FlintError("decoder step: \(tokens.count) tokens for \(rows) rows")
        }
        if let full = state.sequences.firstIndex(where: { $0.length >= $0.maxLength }) {
            throw FlintError("decoder step: all \(state.sequences[full].maxLength) positions of row \(full) are used")
        }
        try embedding.validate(tokens, "decoder step")
        try state.prepareStep()
        let work = state.workspace
        let context = T5ForwardContext(pool: pool, linearObserver: linearObserver, blockObserver: observer)
        embedding.forward(tokens, into: work.hidden.mutablePointer)
        decoder.forward(work, rows: rows, pass: T5StepPass(stack: decoder, state: state), context)
        decoder.finalLayerNorm.forward(work.hidden.pointer, rows: rows, into: work.normed.mutablePointer)
        head.forward(work.normed.mutablePointer, rows: rows, into: state.logits.mutablePointer, context)
        state.advance()
        return state.lastLogits
    }

    /// Teacher-forced decoding: the logits `[decoderInputIds.count][vocab]` for every position, as
    /// `model(input_ids, decoder_input_ids=…).logits` returns them (computed step by step through the cache).
    public func logits(inputIds: [Int], decoderInputIds: [Int], observer: T5BlockObserver? = nil) throws -> [[Float]] {
        let encoded = try encode(inputIds, observer: observer)
        let state = try startDecoding(encoded, beams: 1, maxLength: max(1, decoderInputIds.count))
        var result: [[Float]] = []
        for token in decoderInputIds {
            result.append(Array(try decodeStep(state, tokens: [token], observer: observer)))
        }
        return result
    }

    // MARK: Block by block (calibration)

    /// The embedding rows of token ids, the input of block 0 of either stack: `ids.count × dModel` floats.
    public func embed(_ ids: [Int]) throws -> [Float] { try embedRows(embedding, ids) }

    /// Runs blocks `blocks` (every block when nil) of a stack over whole sequences, in place: `hidden` holds
    /// the residual stream of the sequences packed one after another (`sum(sequenceLengths) × dModel`; block 0
    /// takes `embed(ids)`), and afterwards the output of the last block run (before the final layer norm).
    /// Encoder sequences attend bidirectionally within themselves. Decoder sequences are teacher-forced rows at
    /// positions 0..<length (causal self-attention) and cross-attend over `encoderOutputs[s]`, one per sequence
    /// (the encoder's final-normed output, as `encode` returns it). `linearObserver` sees every linear layer's
    /// input, under the Hugging Face name of its weight.
    public func forwardBlocks(_ stack: T5StackKind, _ blocks: Range<Int>? = nil, hidden: inout [Float],
                              sequenceLengths: [Int], encoderOutputs: [T5EncoderOutput] = [],
                              linearObserver: T5LinearInputObserver? = nil) throws {
        try (stack == .encoder ? encoder : decoder).forwardSequences(
            &hidden, sequenceLengths: sequenceLengths, encoderOutputs: encoderOutputs, blocks: blocks,
            T5ForwardContext(pool: pool, linearObserver: linearObserver))
    }

    /// A stack's final layer norm over `rows × dModel` hidden rows.
    public func finalLayerNorm(_ stack: T5StackKind, _ hidden: [Float]) -> [Float] {
        (stack == .encoder ? encoder : decoder).finalNorm(hidden)
    }

    /// The output head over final-normed decoder rows (`rows × dModel`): `rows × vocab` logits.
    public func headLogits(_ normedDecoderRows: [Float], linearObserver: T5LinearInputObserver? = nil) -> [Float] {
        let rows = normedDecoderRows.count / config.dModel
        var x = normedDecoderRows
        var logits = [Float](repeating: 0, count: rows * config.vocabSize)
        guard rows > 0 else { return [] }
        x.withUnsafeMutableBufferPointer { input in
            logits.withUnsafeMutableBufferPointer { out in
                head.forward(input.baseAddress!, rows: rows, into: out.baseAddress!,
                             T5ForwardContext(pool: pool, linearObserver: linearObserver))
            }
        }
        return logits
    }
}
