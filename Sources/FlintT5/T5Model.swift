// The T5 model in float32, block by block as Hugging Face transformers' `modeling_t5.py` defines it:
// RMS layer norm, unscaled attention with a learned relative-position bias shared by all blocks of a stack,
// ReLU or gated-GELU feed-forward, pre-norm residual blocks, a final norm per stack, and the output head
// (rescaled by d_model^-0.5 for original tied T5). Weights are looked up under their Hugging Face names.
import Foundation
import FlintFormat
import FlintKernels

// MARK: - Observation

/// Which stack a block belongs to.
public enum T5StackKind: String, Sendable {
    case encoder, decoder
}

/// Called after every block with that block's output (before the stack's final layer norm): `rows × dModel`
/// floats, row-major. Encoder: one row per input token. Decoder: one row per beam for the token just processed.
/// The buffer is only valid during the call.
public typealias T5BlockObserver = (_ stack: T5StackKind, _ block: Int, _ hidden: UnsafeBufferPointer<Float>,
                                    _ rows: Int) -> Void

// MARK: - Relative position buckets

/// Hugging Face's `T5Attention._relative_position_bucket` for one relative position `key - query`.
public struct RelativePositionBucket: Sendable, Equatable {
    public let numBuckets: Int
    public let maxDistance: Int
    /// Encoder attention is bidirectional (half the buckets for keys after the query); decoder self-attention
    /// is causal.
    public let bidirectional: Bool

    public init(numBuckets: Int, maxDistance: Int, bidirectional: Bool) {
        self.numBuckets = numBuckets
        self.maxDistance = maxDistance
        self.bidirectional = bidirectional
    }

    /// The bucket of `relativePosition = keyPosition - queryPosition`.
    public func bucket(relativePosition: Int) -> Int {
        var buckets = numBuckets
        var bucket = 0
        var distance: Int
        if bidirectional {
            buckets /= 2
            if relativePosition > 0 { bucket += buckets }
            distance = abs(relativePosition)
        } else {
            distance = -min(relativePosition, 0)
        }
        let maxExact = buckets / 2
        if distance < maxExact {
            return bucket + distance
        }
        // The logarithmic half, computed in float32 like torch (the denominator is a Python double, cast to
        // float32 when it meets the float32 tensor) and truncated toward zero by `.to(torch.long)`.
        let logRatio = logf(Float(distance) / Float(maxExact))
        let scaled = logRatio / Float(log(Double(maxDistance) / Double(maxExact))) * Float(buckets - maxExact)
        let large = maxExact + Int(scaled)
        return bucket + min(large, buckets - 1)
    }
}

/// The learned bias table `relative_attention_bias.weight` `[numBuckets, numHeads]` of a stack's block 0.
struct RelativePositionBias {
    let table: [Float]
    let numHeads: Int
    let bucketing: RelativePositionBucket

    /// The bias depends only on `key - query`, so it is stored per relative position rather than per
    /// (query, key) pair, which keeps long inputs at O(length) memory: writes `bias[h, r]` for
    /// `r = relative - lowest` with `relative` in `lowest...highest`, a buffer of
    /// `numHeads × (highest - lowest + 1)` floats.
    func fill(_ bias: UnsafeMutablePointer<Float>, lowest: Int, highest: Int) {
        let width = highest - lowest + 1
        for r in 0..<width {
            let bucket = bucketing.bucket(relativePosition: lowest + r)
            for h in 0..<numHeads {
                bias[h * width + r] = table[bucket * numHeads + h]
            }
        }
    }
}

// MARK: - Weight lookup

/// Loads tensors from a WeightSource by Hugging Face name, checking each shape against the configuration.
struct WeightLoader {
    let source: WeightSource
    /// How int8 weights multiply (nil: expanded to float32 at load).
    let int8Kernels: Int8KernelMode?
    /// The kernels every layer runs.
    let isa: KernelISA
    /// One activation scratch for all int8 layers of the model: its layers run one after another.
    let int8Scratch = Int8Scratch()

    func linear(_ name: String, out: Int, in inFeatures: Int) throws -> LinearWeight {
        try LinearFactory.make(source.tensor(name), expectedShape: [out, inFeatures], int8Kernels: int8Kernels,
                               int8Scratch: int8Scratch, isa: isa)
    }

    func vector(_ name: String, count: Int) throws -> [Float] {
        let view = try source.tensor(name)
        guard view.shape == [count] else {
            throw FlintError("tensor \(name) in \(source.sourceDescription): expected shape [\(count)], found \(view.shape)")
        }
        return try TensorConversion.floatArray(view)
    }

    func matrix(_ name: String, rows: Int, cols: Int) throws -> FloatStorage {
        let view = try source.tensor(name)
        guard view.shape == [rows, cols] else {
            throw FlintError("tensor \(name) in \(source.sourceDescription): expected shape [\(rows), \(cols)], found \(view.shape)")
        }
        return try TensorConversion.floatStorage(view)
    }
}

// MARK: - Blocks

/// RMS norm: `weight · x / sqrt(mean(x²) + eps)`, no mean subtraction, no bias.
struct T5LayerNorm {
    let weight: [Float]
    let epsilon: Float

    init(_ loader: WeightLoader, _ name: String, dModel: Int, epsilon: Double) throws {
        weight = try loader.vector(name, count: dModel)
        self.epsilon = Float(epsilon)
    }

    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let d = weight.count
        weight.withUnsafeBufferPointer { w in
            for r in 0..<rows {
                let row = x + r * d
                let variance = dot(row, row, count: d) / Float(d)
                let inverse = 1 / (variance + epsilon).squareRoot()
                let out = y + r * d
                for i in 0..<d { out[i] = w[i] * (row[i] * inverse) }
            }
        }
    }
}

/// Multi-head attention without score scaling. Self-attention adds the stack's position bias; cross-attention
/// (`EncDecAttention`) attends over the encoder output with no bias.
final class T5Attention {
    let q: LinearWeight, k: LinearWeight, v: LinearWeight, o: LinearWeight
    let numHeads: Int
    let dKV: Int
    let isa: KernelISA
    var innerDim: Int { numHeads * dKV }

    init(_ loader: WeightLoader, prefix: String, config: T5Config) throws {
        let inner = config.innerDim, d = config.dModel
        q = try loader.linear("\(prefix).q.weight", out: inner, in: d)
        k = try loader.linear("\(prefix).k.weight", out: inner, in: d)
        v = try loader.linear("\(prefix).v.weight", out: inner, in: d)
        o = try loader.linear("\(prefix).o.weight", out: d, in: inner)
        numHeads = config.numHeads
        dKV = config.dKV
        isa = loader.isa
    }

    /// Attention of `queryCount` query rows of one head over `keyCount` keys. `queries`, `keys`, `values` and
    /// `context` point at the head's first column; their rows are `innerDim` apart. Query row i adds
    /// `bias[i * biasRowStride + j]` to its score for key j (no bias when nil); the stride may be negative.
    /// `scores` is scratch of `keyCount` floats.
    /// Bidirectional self-attention of one head over a whole input (the encoder), as two matrix products so the
    /// float GEMM kernel does the work: `S = Q·Kᵀ + bias`, row softmax, `context = S·V`. Query i and key j take
    /// `bias[j - i]` (the head's relative-position bias, centred on position 0). The scratch buffers hold
    /// `length × dKV` (twice) and `length × length` floats.
    static func attendHeadAsMatrices(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                                     values: UnsafePointer<Float>, length: Int, stride: Int, dKV: Int,
                                     bias: UnsafePointer<Float>, keyScratch: UnsafeMutablePointer<Float>,
                                     valueScratch: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>,
                                     context: UnsafeMutablePointer<Float>, isa: KernelISA) {
        for j in 0..<length {
            (keyScratch + j * dKV).update(from: keys + j * stride, count: dKV)
            for c in 0..<dKV { valueScratch[c * length + j] = values[j * stride + c] }
        }
        MatrixMultiply.multiplyTransposed(x: queries, rows: length, xStride: stride, w: keyScratch,
                                          outFeatures: length, inFeatures: dKV, y: scores, pool: nil, isa: isa)
        for i in 0..<length {
            let row = scores + i * length
            let biasRow = bias - i
            for j in 0..<length { row[j] += biasRow[j] }
            VectorMath.softmax(row, count: length, isa: isa)
        }
        MatrixMultiply.multiplyTransposed(x: scores, rows: length, w: valueScratch, outFeatures: dKV,
                                          inFeatures: length, y: context, yStride: stride, pool: nil, isa: isa)
    }

    static func attendHead(queries: UnsafePointer<Float>, queryCount: Int, keys: UnsafePointer<Float>,
                           values: UnsafePointer<Float>, keyCount: Int, stride: Int, dKV: Int,
                           bias: UnsafePointer<Float>?, biasRowStride: Int = 0, scores: UnsafeMutablePointer<Float>,
                           context: UnsafeMutablePointer<Float>, isa: KernelISA) {
        VectorMath.attend(queries: queries, queryCount: queryCount, keys: keys, values: values, keyCount: keyCount,
                          stride: stride, dKV: dKV, bias: bias, biasRowStride: biasRowStride, scores: scores,
                          context: context, isa: isa)
    }
}

/// `wo(act(wi(x)))` (original T5, ReLU) or `wo(act(wi_0(x)) · wi_1(x))` (gated, T5 v1.1 / FLAN-T5).
final class T5FeedForward {
    let wi: LinearWeight        // `wi` or `wi_0`
    let wiGate: LinearWeight?   // `wi_1` for gated variants
    let wo: LinearWeight
    let activation: FeedForwardActivation
    let isa: KernelISA

    init(_ loader: WeightLoader, prefix: String, config: T5Config) throws {
        let d = config.dModel, ff = config.dFF
        if config.isGatedFFN {
            wi = try loader.linear("\(prefix).wi_0.weight", out: ff, in: d)
            wiGate = try loader.linear("\(prefix).wi_1.weight", out: ff, in: d)
        } else {
            wi = try loader.linear("\(prefix).wi.weight", out: ff, in: d)
            wiGate = nil
        }
        wo = try loader.linear("\(prefix).wo.weight", out: d, in: ff)
        activation = config.activation
        isa = loader.isa
    }

    /// `x` is `rows × dModel`; `inner` and `gate` are scratch `rows × dFF`; the result goes to `y`.
    func forward(_ x: UnsafePointer<Float>, rows: Int, inner: UnsafeMutablePointer<Float>,
                 gate: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        wi.forward(x, rows: rows, into: inner, pool: pool)
        let count = rows * wi.outFeatures
        applyActivation(inner, count: count)
        if let wiGate {
            wiGate.forward(x, rows: rows, into: gate, pool: pool)
            for i in 0..<count { inner[i] *= gate[i] }
        }
        wo.forward(inner, rows: rows, into: y, pool: pool)
    }

    private func applyActivation(_ values: UnsafeMutablePointer<Float>, count: Int) {
        switch activation {
        case .relu:
            for i in 0..<count { values[i] = max(values[i], 0) }
        case .geluNew:
            // HF NewGELUActivation: 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).
            VectorMath.geluNew(values, count: count, isa: isa)
        case .gelu:
            let invSqrt2 = Float(1 / 2.0.squareRoot())
            for i in 0..<count {
                let x = values[i]
                values[i] = 0.5 * x * (1 + erff(x * invSqrt2))
            }
        }
    }
}

/// One block: self-attention, (decoder) cross-attention, feed-forward, each pre-normed with a residual add.
final class T5Block {
    let selfAttentionNorm: T5LayerNorm
    let selfAttention: T5Attention
    let crossAttentionNorm: T5LayerNorm?
    let crossAttention: T5Attention?
    let feedForwardNorm: T5LayerNorm
    let feedForward: T5FeedForward

    init(_ loader: WeightLoader, stack: T5StackKind, index: Int, config: T5Config) throws {
        let p = "\(stack.rawValue).block.\(index).layer"
        let eps = config.layerNormEpsilon, d = config.dModel
        selfAttentionNorm = try T5LayerNorm(loader, "\(p).0.layer_norm.weight", dModel: d, epsilon: eps)
        selfAttention = try T5Attention(loader, prefix: "\(p).0.SelfAttention", config: config)
        let ffLayer: Int
        if stack == .decoder {
            crossAttentionNorm = try T5LayerNorm(loader, "\(p).1.layer_norm.weight", dModel: d, epsilon: eps)
            crossAttention = try T5Attention(loader, prefix: "\(p).1.EncDecAttention", config: config)
            ffLayer = 2
        } else {
            crossAttentionNorm = nil
            crossAttention = nil
            ffLayer = 1
        }
        feedForwardNorm = try T5LayerNorm(loader, "\(p).\(ffLayer).layer_norm.weight", dModel: d, epsilon: eps)
        feedForward = try T5FeedForward(loader, prefix: "\(p).\(ffLayer).DenseReluDense", config: config)
    }
}

/// Scratch buffers for running `rows` rows through a stack, allocated once (per input or per decoding request).
final class T5Workspace {
    let rows: Int
    let hidden: FloatStorage, normed: FloatStorage, sublayerOutput: FloatStorage
    let queries: FloatStorage, keys: FloatStorage, values: FloatStorage, context: FloatStorage
    let ffInner: FloatStorage, ffGate: FloatStorage

    init(rows: Int, config: T5Config) {
        self.rows = rows
        let d = rows * config.dModel, inner = rows * config.innerDim, ff = rows * config.dFF
        hidden = FloatStorage(count: d); normed = FloatStorage(count: d); sublayerOutput = FloatStorage(count: d)
        queries = FloatStorage(count: inner); keys = FloatStorage(count: inner)
        values = FloatStorage(count: inner); context = FloatStorage(count: inner)
        ffInner = FloatStorage(count: ff); ffGate = FloatStorage(count: ff)
    }

    /// `hidden += sublayerOutput`.
    func addSublayerOutput(rows: Int, dModel: Int) {
        addScaled(sublayerOutput.pointer, scale: 1, into: hidden.mutablePointer, count: rows * dModel)
    }
}

/// The encoder or the decoder: token embedding (shared), blocks, final norm.
public final class T5Stack {
    public let kind: T5StackKind
    let blocks: [T5Block]
    let finalLayerNorm: T5LayerNorm
    let positionBias: RelativePositionBias
    let config: T5Config

    init(_ loader: WeightLoader, kind: T5StackKind, config: T5Config) throws {
        self.kind = kind
        self.config = config
        let count = kind == .encoder ? config.numEncoderLayers : config.numDecoderLayers
        blocks = try (0..<count).map { try T5Block(loader, stack: kind, index: $0, config: config) }
        finalLayerNorm = try T5LayerNorm(loader, "\(kind.rawValue).final_layer_norm.weight", dModel: config.dModel,
                                         epsilon: config.layerNormEpsilon)
        // Only block 0 carries the table; every block of the stack reuses it.
        let tableName = "\(kind.rawValue).block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        let table = try loader.matrix(tableName, rows: config.relativeAttentionNumBuckets, cols: config.numHeads)
        positionBias = RelativePositionBias(
            table: Array(table.buffer), numHeads: config.numHeads,
            bucketing: RelativePositionBucket(numBuckets: config.relativeAttentionNumBuckets,
                                              maxDistance: config.relativeAttentionMaxDistance,
                                              bidirectional: kind == .encoder))
    }

    public var blockCount: Int { blocks.count }
}

/// The token embedding `shared.weight` `[vocab, dModel]`.
final class T5Embedding {
    /// Float rows (the table itself when stored as aligned float32), or nil when rows come from `int8Table`.
    let table: FloatStorage?
    /// An int8 `shared.weight` used in place from the mapped file when the model runs on int8 kernels: one row
    /// is dequantized per token instead of expanding the whole (vocab × d_model) table to float32 at load.
    let int8Table: Int8Embedding?
    let vocabSize: Int
    let dModel: Int

    init(_ loader: WeightLoader, config: T5Config) throws {
        let view = try loader.source.tensor("shared.weight")
        guard view.shape == [config.vocabSize, config.dModel] else {
            throw FlintError("tensor shared.weight in \(loader.source.sourceDescription): expected shape [\(config.vocabSize), \(config.dModel)], found \(view.shape)")
        }
        if view.storage == .i8, loader.int8Kernels != nil {
            int8Table = try Int8Embedding(view)
            table = nil
        } else {
            table = try TensorConversion.floatStorage(view)
            int8Table = nil
        }
        vocabSize = config.vocabSize
        dModel = config.dModel
    }

    func lookup(_ ids: [Int], into out: UnsafeMutablePointer<Float>) {
        for (r, id) in ids.enumerated() {
            if let table {
                (out + r * dModel).update(from: table.pointer + id * dModel, count: dModel)
            } else {
                // Ids were range-checked by the callers; the table's shape was checked at load.
                try! int8Table!.dequantizeRow(id, into: out + r * dModel)
            }
        }
    }
}

/// The encoder's last hidden state for one input: `length × dModel` floats, row-major.
public struct T5EncoderOutput: Sendable {
    public let hiddenStates: [Float]
    public let length: Int
    public let dModel: Int

    public init(hiddenStates: [Float], length: Int, dModel: Int) {
        precondition(hiddenStates.count == length * dModel, "T5EncoderOutput: \(hiddenStates.count) floats for \(length) × \(dModel)")
        self.hiddenStates = hiddenStates
        self.length = length
        self.dModel = dModel
    }

    /// Row `i` (the hidden state of input token `i`).
    public func row(_ i: Int) -> ArraySlice<Float> { hiddenStates[(i * dModel)..<((i + 1) * dModel)] }

    /// The mean over tokens (a sentence embedding).
    public var meanOverTokens: [Float] {
        var mean = [Float](repeating: 0, count: dModel)
        for i in 0..<length { for c in 0..<dModel { mean[c] += hiddenStates[i * dModel + c] } }
        return mean.map { $0 / Float(max(length, 1)) }
    }
}

// MARK: - Encoder

/// Runs token ids through the encoder stack; shared by the encoder-decoder model and the encoder-only model.
func runEncoder(_ stack: T5Stack, embedding: T5Embedding, inputIds: [Int], pool: ThreadPool?,
                observer: T5BlockObserver?) throws -> T5EncoderOutput {
    let config = stack.config
    guard !inputIds.isEmpty else { throw FlintError("encoder input: no token ids (at least one is needed)") }
    if let bad = inputIds.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
        throw FlintError("encoder input: token id \(bad) is outside the vocabulary (0..<\(config.vocabSize))")
    }
    let length = inputIds.count, d = config.dModel, heads = config.numHeads, dKV = config.dKV
    let inner = config.innerDim
    let work = T5Workspace(rows: length, config: config)
    embedding.lookup(inputIds, into: work.hidden.mutablePointer)
    // Bias per relative position -(length-1)...(length-1); query i, key j reads entry j - i + length - 1.
    let biasWidth = 2 * length - 1
    let bias = FloatStorage(count: heads * biasWidth)
    stack.positionBias.fill(bias.mutablePointer, lowest: -(length - 1), highest: length - 1)

    for (index, block) in stack.blocks.enumerated() {
        let attention = block.selfAttention
        block.selfAttentionNorm.apply(work.hidden.pointer, rows: length, into: work.normed.mutablePointer)
        attention.q.forward(work.normed.pointer, rows: length, into: work.queries.mutablePointer, pool: pool)
        attention.k.forward(work.normed.pointer, rows: length, into: work.keys.mutablePointer, pool: pool)
        attention.v.forward(work.normed.pointer, rows: length, into: work.values.mutablePointer, pool: pool)
        let forHeads: (Range<Int>) -> Void = { headRange in
            // Per thread: one head's keys and transposed values made contiguous, and its score matrix.
            let keys = UnsafeMutablePointer<Float>.allocate(capacity: length * dKV)
            let valuesT = UnsafeMutablePointer<Float>.allocate(capacity: length * dKV)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: length * length)
            defer { keys.deallocate(); valuesT.deallocate(); scores.deallocate() }
            for h in headRange {
                T5Attention.attendHeadAsMatrices(
                    queries: work.queries.pointer + h * dKV, keys: work.keys.pointer + h * dKV,
                    values: work.values.pointer + h * dKV, length: length, stride: inner, dKV: dKV,
                    bias: bias.pointer + h * biasWidth + (length - 1),
                    keyScratch: keys, valueScratch: valuesT, scores: scores,
                    context: work.context.mutablePointer + h * dKV, isa: attention.isa)
            }
        }
        if let pool { pool.parallelFor(heads, forHeads) } else { forHeads(0..<heads) }
        attention.o.forward(work.context.pointer, rows: length, into: work.sublayerOutput.mutablePointer, pool: pool)
        work.addSublayerOutput(rows: length, dModel: d)

        block.feedForwardNorm.apply(work.hidden.pointer, rows: length, into: work.normed.mutablePointer)
        block.feedForward.forward(work.normed.pointer, rows: length, inner: work.ffInner.mutablePointer,
                                  gate: work.ffGate.mutablePointer, into: work.sublayerOutput.mutablePointer, pool: pool)
        work.addSublayerOutput(rows: length, dModel: d)
        observer?(.encoder, index, UnsafeBufferPointer(start: work.hidden.pointer, count: length * d), length)
    }
    stack.finalLayerNorm.apply(work.hidden.pointer, rows: length, into: work.normed.mutablePointer)
    return T5EncoderOutput(hiddenStates: Array(UnsafeBufferPointer(start: work.normed.pointer, count: length * d)),
                           length: length, dModel: d)
}

// MARK: - Encoder-only model

/// Hugging Face's `T5EncoderModel`: the encoder stack alone (sentence embeddings). Also usable on an
/// encoder-decoder checkpoint (the decoder is then not loaded).
public final class T5EncoderModel: @unchecked Sendable {
    public let config: T5Config
    public let encoder: T5Stack
    let embedding: T5Embedding
    let pool: ThreadPool?
    /// The kernels every layer runs.
    public let isa: KernelISA

    /// - Parameters:
    ///   - pool: the threads the matrix kernels use; nil runs everything on the calling thread.
    ///   - int8Kernels: how int8 weights multiply (in place with that `Int8Linear` mode), or nil to expand them
    ///     to float32 at load.
    ///   - isa: the kernels every layer runs (`KernelISA.preferred` by default); a FlintError when this machine
    ///     cannot run them.
    public init(weights: WeightSource, pool: ThreadPool? = .shared, int8Kernels: Int8KernelMode? = nil,
                isa: KernelISA = .preferred) throws {
        try isa.validate()
        let config = weights.config
        try config.validate()
        let loader = WeightLoader(source: weights, int8Kernels: int8Kernels, isa: isa)
        self.config = config
        embedding = try T5Embedding(loader, config: config)
        encoder = try T5Stack(loader, kind: .encoder, config: config)
        self.pool = pool
        self.isa = isa
    }

    /// The encoder's last hidden state (after the final layer norm) for one input.
    public func encode(_ inputIds: [Int], observer: T5BlockObserver? = nil) throws -> T5EncoderOutput {
        try runEncoder(encoder, embedding: embedding, inputIds: inputIds, pool: pool, observer: observer)
    }
}

// MARK: - Encoder-decoder model

/// Hugging Face's `T5ForConditionalGeneration`: encoder, decoder with KV cache, output head.
public final class T5ForConditionalGeneration: @unchecked Sendable {
    public let config: T5Config
    public let encoder: T5Stack
    public let decoder: T5Stack
    let embedding: T5Embedding
    let lmHead: LinearWeight
    /// `dModel ** -0.5` for original tied T5, 1 otherwise.
    let outputScale: Float
    let pool: ThreadPool?
    /// The kernels every layer runs.
    public let isa: KernelISA

    /// Loads every weight (f16/bf16 widened once, here; int8 used in place or widened, see `int8Kernels`).
    /// - Parameters:
    ///   - pool: the threads the matrix kernels use; nil runs everything on the calling thread.
    ///   - int8Kernels: how int8 weights multiply (in place with that `Int8Linear` mode), or nil to expand them
    ///     to float32 at load.
    ///   - isa: the kernels every layer runs (`KernelISA.preferred` by default); a FlintError when this machine
    ///     cannot run them.
    public init(weights: WeightSource, pool: ThreadPool? = .shared, int8Kernels: Int8KernelMode? = nil,
                isa: KernelISA = .preferred) throws {
        try isa.validate()
        let config = weights.config
        try config.validate()
        guard !config.isEncoderOnly else {
            throw FlintError("\(weights.sourceDescription): an encoder-only model has no decoder; use T5EncoderModel")
        }
        let loader = WeightLoader(source: weights, int8Kernels: int8Kernels, isa: isa)
        self.config = config
        embedding = try T5Embedding(loader, config: config)
        encoder = try T5Stack(loader, kind: .encoder, config: config)
        decoder = try T5Stack(loader, kind: .decoder, config: config)
        if config.tieWordEmbeddings {
            let shared = try weights.tensor("shared.weight")
            if shared.storage == .i8 {
                // A quantized head goes through the factory, so it gets the int8 kernels.
                lmHead = try LinearFactory.make(shared, expectedShape: [config.vocabSize, config.dModel],
                                                int8Kernels: int8Kernels, int8Scratch: loader.int8Scratch, isa: isa)
            } else {
                // The output projection is `shared.weight` itself: reuse the embedding's floats.
                lmHead = FloatLinear(weight: embedding.table!, outFeatures: config.vocabSize, inFeatures: config.dModel,
                                     isa: isa)
            }
        } else {
            lmHead = try loader.linear("lm_head.weight", out: config.vocabSize, in: config.dModel)
        }
        outputScale = config.scaleDecoderOutputs ? Float(pow(Double(config.dModel), -0.5)) : 1
        self.pool = pool
        self.isa = isa
    }

    public var vocabSize: Int { config.vocabSize }

    /// The encoder's last hidden state (after the final layer norm) for one input.
    public func encode(_ inputIds: [Int], observer: T5BlockObserver? = nil) throws -> T5EncoderOutput {
        try runEncoder(encoder, embedding: embedding, inputIds: inputIds, pool: pool, observer: observer)
    }

    /// Prepares decoding of `beams` sequences of at most `maxLength` decoder positions (the start token
    /// included) against one encoder output: computes every block's cross-attention keys and values once and
    /// allocates the caches and scratch buffers for the whole request.
    public func startDecoding(_ encoderOutput: T5EncoderOutput, beams: Int = 1, maxLength: Int) throws -> T5DecoderState {
        try startDecoding(encoderOutput, beams: beams, maxLength: maxLength, initialCapacity: T5DecoderState.initialCapacity)
    }

    /// `initialCapacity`: positions allocated up front (tests use a small one to exercise growing).
    func startDecoding(_ encoderOutput: T5EncoderOutput, beams: Int, maxLength: Int,
                       initialCapacity: Int) throws -> T5DecoderState {
        guard encoderOutput.dModel == config.dModel, encoderOutput.length > 0 else {
            throw FlintError("decoder: encoder output has d_model \(encoderOutput.dModel) and \(encoderOutput.length) rows; expected d_model \(config.dModel) and at least one row")
        }
        guard beams >= 1, maxLength >= 1 else {
            throw FlintError("decoder: need at least one beam and one position, got beams \(beams), maxLength \(maxLength)")
        }
        let state = T5DecoderState(config: config, beams: beams, maxLength: maxLength,
                                   encoderLength: encoderOutput.length, initialCapacity: max(1, initialCapacity))
        encoderOutput.hiddenStates.withUnsafeBufferPointer { encoded in
            for (l, block) in decoder.blocks.enumerated() {
                let cross = block.crossAttention!
                cross.k.forward(encoded.baseAddress!, rows: encoderOutput.length, into: state.crossKeys[l].mutablePointer, pool: pool)
                cross.v.forward(encoded.baseAddress!, rows: encoderOutput.length, into: state.crossValues[l].mutablePointer, pool: pool)
            }
        }
        return state
    }

    /// Runs one decoder position for every beam: `tokens[b]` is beam b's newest token, at position
    /// `state.length` (the number of tokens already processed). Returns the logits `[beams, vocab]`, valid until
    /// the next step on this state.
    @discardableResult
    public func decodeStep(_ state: T5DecoderState, tokens: [Int], observer: T5BlockObserver? = nil) throws -> UnsafeBufferPointer<Float> {
        let beams = state.beams
        guard tokens.count == beams else {
            throw FlintError("decoder step: \(tokens.count) tokens for \(beams) beams")
        }
        guard state.length < state.maxLength else {
            throw FlintError("decoder step: all \(state.maxLength) positions of this request are used")
        }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw FlintError("decoder step: token id \(bad) is outside the vocabulary (0..<\(config.vocabSize))")
        }
        let d = config.dModel, inner = config.innerDim, dKV = config.dKV, heads = config.numHeads
        let position = state.length, keyCount = position + 1
        let work = state.workspace
        embedding.lookup(tokens, into: work.hidden.mutablePointer)
        try state.reserve(positions: keyCount)
        // Causal bias of this query position against every cached key (relative -position...0): [heads, keyCount].
        decoder.positionBias.fill(state.selfBias.mutablePointer, lowest: -position, highest: 0)
        let scores = state.scores.mutablePointer

        for (l, block) in decoder.blocks.enumerated() {
            // Self-attention over this beam's cache, the new key/value appended first.
            let attention = block.selfAttention
            block.selfAttentionNorm.apply(work.hidden.pointer, rows: beams, into: work.normed.mutablePointer)
            attention.q.forward(work.normed.pointer, rows: beams, into: work.queries.mutablePointer, pool: pool)
            attention.k.forward(work.normed.pointer, rows: beams, into: work.keys.mutablePointer, pool: pool)
            attention.v.forward(work.normed.pointer, rows: beams, into: work.values.mutablePointer, pool: pool)
            let cacheK = state.selfKeys[l].mutablePointer, cacheV = state.selfValues[l].mutablePointer
            for b in 0..<beams {
                let slot = (b * state.capacity + position) * inner
                (cacheK + slot).update(from: work.keys.pointer + b * inner, count: inner)
                (cacheV + slot).update(from: work.values.pointer + b * inner, count: inner)
                for h in 0..<heads {
                    T5Attention.attendHead(
                        queries: work.queries.pointer + b * inner + h * dKV, queryCount: 1,
                        keys: cacheK + b * state.capacity * inner + h * dKV,
                        values: cacheV + b * state.capacity * inner + h * dKV, keyCount: keyCount,
                        stride: inner, dKV: dKV, bias: state.selfBias.pointer + h * keyCount, scores: scores,
                        context: work.context.mutablePointer + b * inner + h * dKV, isa: attention.isa)
                }
            }
            attention.o.forward(work.context.pointer, rows: beams, into: work.sublayerOutput.mutablePointer, pool: pool)
            work.addSublayerOutput(rows: beams, dModel: d)

            // Cross-attention over the encoder output (keys/values computed once in startDecoding).
            let cross = block.crossAttention!
            block.crossAttentionNorm!.apply(work.hidden.pointer, rows: beams, into: work.normed.mutablePointer)
            cross.q.forward(work.normed.pointer, rows: beams, into: work.queries.mutablePointer, pool: pool)
            for b in 0..<beams {
                for h in 0..<heads {
                    T5Attention.attendHead(
                        queries: work.queries.pointer + b * inner + h * dKV, queryCount: 1,
                        keys: state.crossKeys[l].pointer + h * dKV, values: state.crossValues[l].pointer + h * dKV,
                        keyCount: state.encoderLength, stride: inner, dKV: dKV, bias: nil, scores: scores,
                        context: work.context.mutablePointer + b * inner + h * dKV, isa: cross.isa)
                }
            }
            cross.o.forward(work.context.pointer, rows: beams, into: work.sublayerOutput.mutablePointer, pool: pool)
            work.addSublayerOutput(rows: beams, dModel: d)

            block.feedForwardNorm.apply(work.hidden.pointer, rows: beams, into: work.normed.mutablePointer)
            block.feedForward.forward(work.normed.pointer, rows: beams, inner: work.ffInner.mutablePointer,
                                      gate: work.ffGate.mutablePointer, into: work.sublayerOutput.mutablePointer, pool: pool)
            work.addSublayerOutput(rows: beams, dModel: d)
            observer?(.decoder, l, UnsafeBufferPointer(start: work.hidden.pointer, count: beams * d), beams)
        }
        decoder.finalLayerNorm.apply(work.hidden.pointer, rows: beams, into: work.normed.mutablePointer)
        if outputScale != 1 {
            let normed = work.normed.mutablePointer
            for i in 0..<(beams * d) { normed[i] *= outputScale }
        }
        lmHead.forward(work.normed.pointer, rows: beams, into: state.logits.mutablePointer, pool: pool)
        state.length += 1
        return state.logits.buffer
    }

    /// Teacher-forced decoding: the logits `[decoderInputIds.count][vocab]` for every position, as
    /// `model(input_ids, decoder_input_ids=…).logits` returns them.
    public func logits(inputIds: [Int], decoderInputIds: [Int], observer: T5BlockObserver? = nil) throws -> [[Float]] {
        let encoded = try encode(inputIds, observer: observer)
        let state = try startDecoding(encoded, beams: 1, maxLength: max(1, decoderInputIds.count))
        var result: [[Float]] = []
        for token in decoderInputIds {
            result.append(Array(try decodeStep(state, tokens: [token], observer: observer)))
        }
        return result
    }
}

/// The per-request decoder state: self-attention KV caches `[beams, capacity, innerDim]` per block,
/// cross-attention keys/values `[encoderLength, innerDim]` per block (shared by all beams), scratch buffers and
/// the logits of the last step. Allocated in `startDecoding` for up to 256 positions and doubled when a longer
/// request needs more, so a large `maxLength` costs memory only if the text really gets that long.
public final class T5DecoderState {
    public let beams: Int
    public let maxLength: Int
    public let encoderLength: Int
    /// Decoder positions already processed (the next token's position).
    public internal(set) var length = 0
    /// Positions the caches currently hold.
    private(set) var capacity = 0
    private(set) var selfKeys: [FloatStorage] = [], selfValues: [FloatStorage] = []
    let crossKeys: [FloatStorage], crossValues: [FloatStorage]
    let workspace: T5Workspace
    private(set) var selfBias = FloatStorage(count: 0)
    private(set) var scores = FloatStorage(count: 0)
    let logits: FloatStorage
    private var reorderScratch = FloatStorage(count: 0)
    let innerDim: Int
    let numHeads: Int
    let layers: Int

    static let initialCapacity = 256

    init(config: T5Config, beams: Int, maxLength: Int, encoderLength: Int, initialCapacity: Int) {
        self.beams = beams
        self.maxLength = maxLength
        self.encoderLength = encoderLength
        innerDim = config.innerDim
        numHeads = config.numHeads
        layers = config.numDecoderLayers
        crossKeys = (0..<layers).map { _ in FloatStorage(count: encoderLength * config.innerDim) }
        crossValues = (0..<layers).map { _ in FloatStorage(count: encoderLength * config.innerDim) }
        workspace = T5Workspace(rows: beams, config: config)
        logits = FloatStorage(count: beams * config.vocabSize)
        grow(to: min(maxLength, initialCapacity))
    }

    /// Makes room for `positions` cached positions (doubling), keeping what is cached.
    func reserve(positions: Int) throws {
        guard positions > capacity else { return }
        guard positions <= maxLength else {
            throw FlintError("decoder: position \(positions - 1) is beyond this request's \(maxLength) positions")
        }
        grow(to: min(maxLength, max(positions, 2 * capacity)))
    }

    private func grow(to newCapacity: Int) {
        let inner = innerDim, old = capacity
        func regrown(_ cache: FloatStorage?) -> FloatStorage {
            let bigger = FloatStorage(count: beams * newCapacity * inner)
            if let cache, length > 0 {
                for b in 0..<beams {
                    (bigger.mutablePointer + b * newCapacity * inner).update(from: cache.pointer + b * old * inner,
                                                                              count: length * inner)
                }
            }
            return bigger
        }
        selfKeys = (0..<layers).map { regrown(selfKeys.isEmpty ? nil : selfKeys[$0]) }
        selfValues = (0..<layers).map { regrown(selfValues.isEmpty ? nil : selfValues[$0]) }
        capacity = newCapacity
        selfBias = FloatStorage(count: numHeads * newCapacity)
        scores = FloatStorage(count: max(newCapacity, encoderLength))
        reorderScratch = FloatStorage(count: beams > 1 ? beams * newCapacity * inner : 0)
    }

    /// The logits of the last step, `[beams, vocab]`.
    public var lastLogits: UnsafeBufferPointer<Float> { logits.buffer }

    /// Beam search: beam `b` continues from beam `sources[b]`, so its cached keys and values become a copy of
    /// that beam's.
    public func reorderBeams(_ sources: [Int]) throws {
        guard sources.count == beams, sources.allSatisfy({ $0 >= 0 && $0 < beams }) else {
            throw FlintError("decoder: beam reorder \(sources) does not name \(beams) existing beams")
        }
        if sources.enumerated().allSatisfy({ $0.offset == $0.element }) { return }
        let rowFloats = length * innerDim, beamFloats = capacity * innerDim
        let scratch = reorderScratch.mutablePointer
        // Stash every beam some other beam copies from, then overwrite only the beams whose source changed.
        var isSource = [Bool](repeating: false, count: beams)
        for (b, source) in sources.enumerated() where source != b { isSource[source] = true }
        for cache in selfKeys + selfValues {
            let base = cache.mutablePointer
            for b in 0..<beams where isSource[b] {
                (scratch + b * beamFloats).update(from: base + b * beamFloats, count: rowFloats)
            }
            for (b, source) in sources.enumerated() where source != b {
                (base + b * beamFloats).update(from: scratch + source * beamFloats, count: rowFloats)
            }
        }
    }
}
