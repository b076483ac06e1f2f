// `T5Stack`: the encoder or the decoder, a list of blocks and a final layer norm. The relative-position bias
// tables live in the blocks' self-attention (`block.0` only for T5, every block for UMT5).
import FlintFormat
import FlintKernels

public final class T5Stack {
    public let kind: T5StackKind
    let blocks: [T5Block]
    let finalLayerNorm: T5LayerNorm
    let config: T5Config
    /// The distinct bias tables of the stack, and which one block i uses (T5: block 0's for all).
    let relativeBiasTables: [RelativePositionBias]
    let biasTableOfBlock: [Int]

    init(_ loader: WeightLoader, kind: T5StackKind, config: T5Config) throws {
        self.kind = kind
        self.config = config
        let count = kind == .encoder ? config.numEncoderLayers : config.numDecoderLayers
        blocks = try (0..<count).map { i in
            try T5Block(loader, stack: kind, index: i, config: config, hasRelativeBias: i == 0 || config.relativeAttentionBiasPerLayer)
        }
        finalLayerNorm = try T5LayerNorm(loader, "\(kind.rawValue).final_layer_norm.weight", dModel: config.dModel,
                                         epsilon: config.layerNormEpsilon)
        var tables: [RelativePositionBias] = [], tableOfBlock: [Int] = []
        for block in blocks {
            if let own = block.selfAttention.relativeBias {
                tables.append(own)
            }
            tableOfBlock.append(tables.count - 1)  // a block without a table reuses the last one (block 0's)
        }
        relativeBiasTables = tables
        biasTableOfBlock = tableOfBlock
    }

    public var blockCount: Int { blocks.count }

    /// Runs `rows` rows of `work.hidden` through blocks `range` (every block by default), in place; the final
    /// layer norm is the caller's.
    func forward<Pass: T5AttentionPass>(_ work: T5Workspace, rows: Int, pass: Pass, blocks range: Range<Int>? = nil,
                                        _ context: T5ForwardContext) {
        for l in range ?? blocks.indices {
            blocks[l].forward(work, rows: rows, layer: l, pass: pass, context)
            context.blockObserver?(kind, l, UnsafeBufferPointer(start: work.hidden.pointer, count: rows * config.dModel), rows)
        }
    }

    /// Runs packed whole sequences (`hidden`: `sum(lengths) × dModel`, the residual stream) through one block
    /// or all of them, in place. Decoder sequences are teacher-forced (causal) and cross-attend over
    /// `encoderOutputs[s]`, one per sequence.
    func forwardSequences(_ hidden: inout [Float], sequenceLengths: [Int], encoderOutputs: [T5EncoderOutput],
                          blocks range: Range<Int>?, _ context: T5ForwardContext) throws {
        let d = config.dModel
        guard !sequenceLengths.isEmpty, sequenceLengths.allSatisfy({ $0 > 0 }) else {
            throw FlintError("\(kind.rawValue) block: sequence lengths \(sequenceLengths) must be positive, at least one")
        }
        let rows = sequenceLengths.reduce(0, +)
        guard hidden.count == rows * d else {
            throw FlintError("\(kind.rawValue) block: \(hidden.count) floats for \(rows) rows of d_model \(d)")
        }
        if kind == .decoder {
            guard encoderOutputs.count == sequenceLengths.count,
                  encoderOutputs.allSatisfy({ $0.dModel == d && $0.length > 0 }) else {
                throw FlintError("decoder block: need one encoder output of d_model \(d) per sequence, got \(encoderOutputs.count) for \(sequenceLengths.count)")
            }
        }
        if let range, !(range.lowerBound >= 0 && range.upperBound <= blocks.count) {
            throw FlintError("\(kind.rawValue) block \(range): the stack has blocks 0..<\(blocks.count)")
        }
        let work = T5Workspace(rows: rows, config: config)
        hidden.withUnsafeBufferPointer { work.hidden.mutablePointer.update(from: $0.baseAddress!, count: rows * d) }
        let pass = T5SequencePass(stack: self, segments: segments(sequenceLengths), encoderStates: encoderOutputs)
        forward(work, rows: rows, pass: pass, blocks: range, context)
        hidden = Array(UnsafeBufferPointer(start: work.hidden.pointer, count: rows * d))
    }

    /// The final layer norm of `rows` rows.
    func finalNorm(_ hidden: [Float]) -> [Float] {
        let rows = hidden.count / config.dModel
        var out = [Float](repeating: 0, count: hidden.count)
        hidden.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { finalLayerNorm.forward(x.baseAddress!, rows: rows, into: $0.baseAddress!) }
        }
        return out
    }
}

/// Consecutive row ranges of sequences of these lengths.
func segments(_ lengths: [Int]) -> [Range<Int>] {
    var start = 0
    return lengths.map { length in
        defer { start += length }
        return start..<(start + length)
    }
}
