// A projection with its Hugging Face weight name, and what every forward pass carries along (threads,
// observers), so calibration can watch each linear layer's input without a second copy of the model code.
import FlintKernels

/// Called with the input of a linear layer just before it multiplies: `rows × inFeatures` floats, row-major.
/// `weightName` is the Hugging Face name of the layer's weight (`encoder.block.0.layer.1.DenseReluDense.wo.weight`,
/// `lm_head.weight`, ...). Several rows may belong to different sequences of a batch. Valid only during the call.
public typealias T5LinearInputObserver = (_ weightName: String, _ input: UnsafeBufferPointer<Float>, _ rows: Int) -> Void

/// Which stack a block belongs to.
public enum T5StackKind: String, Sendable {
    case encoder, decoder
}

/// Called after every block with that block's output (before the stack's final layer norm): `rows × dModel`
/// floats, row-major. Encoder: one row per input token (all inputs of a batch, one after another). Decoder: one
/// row per sequence of the batch for the token just processed. The buffer is only valid during the call.
public typealias T5BlockObserver = (_ stack: T5StackKind, _ block: Int, _ hidden: UnsafeBufferPointer<Float>,
                                    _ rows: Int) -> Void

/// What one forward pass passes down to every block.
struct T5ForwardContext {
    let pool: ThreadPool?
    var linearObserver: T5LinearInputObserver? = nil
    var blockObserver: T5BlockObserver? = nil
}

/// `y = x · Wᵀ` for the weight stored under `name`.
struct T5Linear {
    let name: String
    let weight: LinearWeight

    init(_ loader: WeightLoader, _ name: String, out: Int, in inFeatures: Int) throws {
        self.name = name
        weight = try loader.linear(name, out: out, in: inFeatures)
    }

    init(name: String, weight: LinearWeight) {
        self.name = name
        self.weight = weight
    }

    var inFeatures: Int { weight.inFeatures }
    var outFeatures: Int { weight.outFeatures }

    func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext) {
        context.linearObserver?(name, UnsafeBufferPointer(start: x, count: rows * weight.inFeatures), rows)
        weight.forward(x, rows: rows, into: y, pool: context.pool)
    }

    /// `outputs[i] = x · linears[i].Wᵀ` for projections of the same input (q/k/v, wi_0/wi_1, the cross-attention
    /// keys and values of every block): W8A8 int8 layers quantize x once between them (`Int8Linear.forward(_:
    /// sharingInput:...)`, the same numbers as one call each). The observer still sees each layer's input.
    static func forward(_ linears: [T5Linear], sharingInput x: UnsafePointer<Float>, rows: Int,
                        into outputs: [UnsafeMutablePointer<Float>], _ context: T5ForwardContext) {
        if let observer = context.linearObserver {
            for linear in linears {
                observer(linear.name, UnsafeBufferPointer(start: x, count: rows * linear.inFeatures), rows)
            }
        }
        Int8Linear.forward(linears.map(\.weight), sharingInput: x, rows: rows, into: outputs, pool: context.pool)
    }
}

extension T5ForwardContext {
    /// Runs `body` over `0..<count` in contiguous chunks, split over the pool when each thread gets at least
    /// `minimumPerThread` items: the element-wise passes between the matrix products (layer norms, residual adds,
    /// the feed-forward activation) were serial stretches of every block at 2 threads.
    func forChunks(_ count: Int, minimumPerThread: Int, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        if let pool { pool.parallelFor(count, minimumPerThread: max(1, minimumPerThread), body) } else { body(0..<count) }
    }
}
