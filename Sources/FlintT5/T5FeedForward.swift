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
