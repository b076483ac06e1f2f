// `T5LayerFF`'s `DenseReluDense`: `wo(act(wi(x)))` (original T5, ReLU) or `wo(act(wi_0(x)) · wi_1(x))` (gated:
// T5 v1.1, FLAN-T5, mT5, UMT5).
import Foundation
import FlintFormat
import FlintKernels

final class T5FeedForward {
    let wi: T5Linear        // `wi` or `wi_0`
    let wiGate: T5Linear?   // `wi_1` for gated variants
    let wo: T5Linear
    let activation: FeedForwardActivation
    let isa: KernelISA

    /// `prefix`: e.g. `encoder.block.0.layer.1.DenseReluDense`.
    init(_ loader: WeightLoader, prefix: String, config: T5Config) throws {
        let d = config.dModel, ff = config.dFF
        if config.isGatedFFN {
            wi = try T5Linear(loader, "\(prefix).wi_0.weight", out: ff, in: d)
            wiGate = try T5Linear(loader, "\(prefix).wi_1.weight", out: ff, in: d)
        } else {
            wi = try T5Linear(loader, "\(prefix).wi.weight", out: ff, in: d)
            wiGate = nil
        }
        wo = try T5Linear(loader, "\(prefix).wo.weight", out: d, in: ff)
        activation = config.activation
        isa = loader.isa
    }

    /// `x` is `rows × dModel`; the workspace's `ffInner` and `ffGate` are the scratch; the result goes to `y`.
    func forward(_ x: UnsafePointer<Float>, rows: Int, work: T5Workspace, into y: UnsafeMutablePointer<Float>,
                 _ context: T5ForwardContext) {
        let inner = work.ffInner.mutablePointer
        let count = rows * wi.outFeatures
        if let wiGate {
            let gate = work.ffGate.mutablePointer
            T5Linear.forward([wi, wiGate], sharingInput: x, rows: rows, into: [inner, gate], context)
            context.forChunks(count, minimumPerThread: 32768) { range in
                applyActivation(inner + range.lowerBound, count: range.count)
                for i in range { inner[i] *= gate[i] }
            }
        } else {
            wi.forward(x, rows: rows, into: inner, context)
            context.forChunks(count, minimumPerThread: 32768) { range in
                applyActivation(inner + range.lowerBound, count: range.count)
            }
        }
        wo.forward(inner, rows: rows, into: y, context)
    }

    private func applyActivation(_ values: UnsafeMutablePointer<Float>, count: Int) {
        activation.apply(values, count: count, isa: isa)
    }
}

extension FeedForwardActivation {
    /// In place, the activation as transformers' `ACT2FN` module computes it in float32. `relu` and `gelu_new`
    /// (every released T5 but UL2 / Pile-T5) have the vector kernels; the others are scalar loops, a small cost
    /// next to the `wi` / `wo` products around them.
    func apply(_ values: UnsafeMutablePointer<Float>, count: Int, isa: KernelISA) {
        switch self {
        case .relu:
            for i in 0..<count { values[i] = max(values[i], 0) }
        case .geluNew:
            // HF NewGELUActivation: 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).
            VectorMath.geluNew(values, count: count, isa: isa)
        case .gelu:
            for i in 0..<count { values[i] = Self.erfGelu(values[i]) }
        case .silu:
            // torch's silu: x·sigmoid(x); for x → −∞, e^−x overflows to inf and the quotient is −0, as in torch.
            for i in 0..<count { values[i] = values[i] / (1 + expf(-values[i])) }
        case .quickGelu:
            for i in 0..<count { values[i] = values[i] / (1 + expf(-1.702 * values[i])) }
        case .gelu10:
            for i in 0..<count { values[i] = min(max(Self.erfGelu(values[i]), -10), 10) }
        case .relu6:
            for i in 0..<count { values[i] = min(max(values[i], 0), 6) }
        case .relu2:
            for i in 0..<count { let r = max(values[i], 0); values[i] = r * r }
        case .leakyRelu:
            for i in 0..<count where values[i] < 0 { values[i] *= 0.01 }
        case .sigmoid:
            for i in 0..<count { values[i] = 1 / (1 + expf(-values[i])) }
        case .tanh:
            for i in 0..<count { values[i] = tanhf(values[i]) }
        case .mish:
            // torch's softplus returns x itself above its threshold 20 (where log1p(e^x) rounds to x anyway).
            for i in 0..<count {
                let x = values[i]
                values[i] = x * tanhf(x > 20 ? x : log1pf(expf(x)))
            }
        case .linear:
            break
        case .laplace:
            // LaplaceActivation(mu = 0.707107, sigma = 0.282095): 0.5·(1 + erf((x − mu) / (sigma·√2))).
            let mu: Float = 0.707107, scale = Float(0.282095 * 2.0.squareRoot())
            for i in 0..<count { values[i] = 0.5 * (1 + erff((values[i] - mu) / scale)) }
        }
    }

    @inline(__always) private static func erfGelu(_ x: Float) -> Float {
        0.5 * x * (1 + erff(x * Float(1 / 2.0.squareRoot())))
    }
}
