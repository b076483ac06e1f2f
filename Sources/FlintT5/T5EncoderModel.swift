// Hugging Face's `T5EncoderModel`: the encoder stack alone (sentence embeddings). Also usable on an
// encoder-decoder checkpoint (the decoder is then not loaded).
import FlintFormat
import FlintKernels

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
        // Every missing tensor in one error, before anything is loaded.
        try config.weightLayout.checkComplete(weights, stacks: [.encoder])
        let loader = WeightLoader(source: weights, int8Kernels: int8Kernels, isa: isa)
        self.config = config
        embedding = try T5Embedding(loader, config: config)
        encoder = try T5Stack(loader, kind: .encoder, config: config)
        self.pool = pool
        self.isa = isa
    }

    /// The encoder's last hidden state (after the final layer norm) for one input.
    public func encode(_ inputIds: [Int], observer: T5BlockObserver? = nil,
                       linearObserver: T5LinearInputObserver? = nil) throws -> T5EncoderOutput {
        try encode(batch: [inputIds], observer: observer, linearObserver: linearObserver)[0]
    }

    /// Several inputs in one encoder pass: one output per input.
    public func encode(batch inputs: [[Int]], observer: T5BlockObserver? = nil,
                       linearObserver: T5LinearInputObserver? = nil) throws -> [T5EncoderOutput] {
        try runEncoder(encoder, embedding: embedding, inputs: inputs,
                       T5ForwardContext(pool: pool, linearObserver: linearObserver, blockObserver: observer))
    }

    /// The embedding rows of token ids (the input of encoder block 0).
    public func embed(_ ids: [Int]) throws -> [Float] { try embedRows(embedding, ids) }

    /// Runs encoder blocks over packed whole sequences in place; see `T5ForConditionalGeneration.forwardBlocks`.
    public func forwardBlocks(_ blocks: Range<Int>? = nil, hidden: inout [Float], sequenceLengths: [Int],
                              linearObserver: T5LinearInputObserver? = nil) throws {
        try encoder.forwardSequences(&hidden, sequenceLengths: sequenceLengths, encoderOutputs: [], blocks: blocks,
                                     T5ForwardContext(pool: pool, linearObserver: linearObserver))
    }

    /// The encoder's final layer norm over `rows × dModel` hidden rows.
    public func finalLayerNorm(_ hidden: [Float]) -> [Float] { encoder.finalNorm(hidden) }
}
