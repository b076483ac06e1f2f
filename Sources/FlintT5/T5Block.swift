// `T5Block`: pre-norm residual sublayers, `h += SelfAttention(norm(h))`, then in the decoder
// `h += EncDecAttention(norm(h), encoder)`, then `h += DenseReluDense(norm(h))`. One type for both stacks;
// how attention sees its keys (whole sequences, or one cached decoding step) is the pass's business.
import FlintFormat
import FlintKernels

final class T5Block {
    let selfAttentionNorm: T5LayerNorm
    let selfAttention: T5Attention
    let crossAttentionNorm: T5LayerNorm?
    let crossAttention: T5Attention?
    let feedForwardNorm: T5LayerNorm
    let feedForward: T5FeedForward

    /// `hasRelativeBias`: this block's self-attention carries its own `relative_attention_bias` table.
    init(_ loader: WeightLoader, stack: T5StackKind, index: Int, config: T5Config, hasRelativeBias: Bool) throws {
        let p = "\(stack.rawValue).block.\(index).layer"
        let eps = config.layerNormEpsilon, d = config.dModel
        selfAttentionNorm = try T5LayerNorm(loader, "\(p).0.layer_norm.weight", dModel: d, epsilon: eps)
        selfAttention = try T5Attention(loader, prefix: "\(p).0.SelfAttention", config: config,
                                        biasDirection: hasRelativeBias ? (stack == .encoder ? .bidirectional : .causal) : nil)
        let ffLayer: Int
        if stack == .decoder {
            crossAttentionNorm = try T5LayerNorm(loader, "\(p).1.layer_norm.weight", dModel: d, epsilon: eps)
            crossAttention = try T5Attention(loader, prefix: "\(p).1.EncDecAttention", config: config, biasDirection: nil)
            ffLayer = 2
        } else {
            crossAttentionNorm = nil
            crossAttention = nil
            ffLayer = 1
        }
        feedForwardNorm = try T5LayerNorm(loader, "\(p).\(ffLayer).layer_norm.weight", dModel: d, epsilon: eps)
        feedForward = try T5FeedForward(loader, prefix: "\(p).\(ffLayer).DenseReluDense", config: config)
    }

    /// Runs `rows` rows of `work.hidden` through the block, in place. `layer` is the block's index in its stack.
    func forward<Pass: T5AttentionPass>(_ work: T5Workspace, rows: Int, layer: Int, pass: Pass,
                                        _ context: T5ForwardContext) {
        let hidden = work.hidden.pointer, normed = work.normed.mutablePointer
        let output = work.sublayerOutput.mutablePointer
        selfAttentionNorm.forward(hidden, rows: rows, into: normed, pool: context.pool)
        pass.selfAttention(selfAttention, layer: layer, normed, rows: rows, work: work, into: output, context)
        work.addSublayerOutput(rows: rows, context)
        if let crossAttention, let crossAttentionNorm {
            crossAttentionNorm.forward(hidden, rows: rows, into: normed, pool: context.pool)
            pass.crossAttention(crossAttention, layer: layer, normed, rows: rows, work: work, into: output, context)
            work.addSublayerOutput(rows: rows, context)
        }
        feedForwardNorm.forward(hidden, rows: rows, into: normed, pool: context.pool)
        feedForward.forward(normed, rows: rows, work: work, into: output, context)
        work.addSublayerOutput(rows: rows, context)
    }
}

/// How a block's attention layers reach their keys and values.
protocol T5AttentionPass {
    func selfAttention(_ attention: T5Attention, layer: Int, _ x: UnsafePointer<Float>, rows: Int,
                       work: T5Workspace, into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext)
    func crossAttention(_ attention: T5Attention, layer: Int, _ x: UnsafePointer<Float>, rows: Int,
                        work: T5Workspace, into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext)
}

/// Whole sequences packed one after another: the encoder (bidirectional), or teacher-forced decoder rows
/// (causal) with cross-attention over `encoderStates[s]` for sequence s.
struct T5SequencePass: T5AttentionPass {
    let segments: [Range<Int>]
    let causal: Bool
    /// The self-attention bias of every block of the stack (blocks without a table share block 0's).
    let biases: [SequenceBias]
    let encoderStates: [T5EncoderOutput]

    init(stack: T5Stack, segments: [Range<Int>], encoderStates: [T5EncoderOutput] = []) {
        self.segments = segments
        causal = stack.kind == .decoder
        let longest = segments.map(\.count).max() ?? 1
        let tables = stack.relativeBiasTables.map { SequenceBias($0, longest: longest) }
        biases = stack.biasTableOfBlock.map { tables[$0] }
        self.encoderStates = encoderStates
    }

    func selfAttention(_ attention: T5Attention, layer: Int, _ x: UnsafePointer<Float>, rows: Int,
                       work: T5Workspace, into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext) {
        attention.forwardSequences(x, rows: rows, segments: segments, causal: causal, bias: biases[layer],
                                   work: work, into: y, context)
    }

    func crossAttention(_ attention: T5Attention, layer: Int, _ x: UnsafePointer<Float>, rows: Int,
                        work: T5Workspace, into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext) {
        attention.forwardCrossSequences(x, rows: rows, segments: segments, encoderStates: encoderStates,
                                        work: work, into: y, context)
    }
}

/// One decoding step: one new row per sequence of the batch in `state`, over its caches.
struct T5StepPass: T5AttentionPass {
    let state: T5DecoderState
    let biases: [StepBias]

    init(stack: T5Stack, state: T5DecoderState) {
        self.state = state
        let tables = stack.relativeBiasTables.enumerated().map { StepBias($0.element, state: state, buffer: $0.offset) }
        biases = stack.biasTableOfBlock.map { tables[$0] }
    }

    func selfAttention(_ attention: T5Attention, layer: Int, _ x: UnsafePointer<Float>, rows: Int,
                       work: T5Workspace, into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext) {
        attention.forwardStep(x, state: state, layer: layer, bias: biases[layer], work: work, into: y, context)
    }

    func crossAttention(_ attention: T5Attention, layer: Int, _ x: UnsafePointer<Float>, rows: Int,
                        work: T5Workspace, into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext) {
        attention.forwardCrossStep(x, state: state, layer: layer, work: work, into: y, context)
    }
}
