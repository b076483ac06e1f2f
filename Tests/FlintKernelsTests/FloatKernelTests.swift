import Foundation
import Testing
@testable import FlintKernels

/// Every ISA's float kernels (matrix product, gelu_new, softmax, one attention head) against float64 references
/// computed here, so the portable path is tested as much as the vector one. The ISA is chosen per call: nothing
/// process-wide is switched, so these run in parallel with every other suite.
@Suite struct FloatKernelTests {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 500 - 2
        }
    }

    static let shapes = [(1, 37, 40), (3, 64, 768), (5, 70, 33), (7, 9, 1024), (16, 130, 17), (65, 67, 64), (300, 5, 64)]

    @Test(arguments: KernelISA.allCases, shapes)
    func matrixProductMatchesFloat64Reference(isa: KernelISA, shape: (Int, Int, Int)) throws {
        guard runsHere(isa) else { return }
        let (rows, n, k) = shape
        let x = random(rows * k, seed: 1), w = random(n * k, seed: 2)
        var y = [Float](repeating: .nan, count: rows * n)
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            MatrixMultiply.multiplyTransposed(x: xp.baseAddress!, rows: rows, w: wp.baseAddress!, outFeatures: n,
                                              inFeatures: k, y: yp.baseAddress!, pool: ThreadPool(threads: 2), isa: isa)
        } } }
        var worst = 0.0
        for r in 0..<rows {
            for j in 0..<n {
                var ref = 0.0, magnitude = 0.0
                for i in 0..<k {
                    let p = Double(x[r * k + i]) * Double(w[j * k + i])
                    ref += p; magnitude += abs(p)
                }
                worst = max(worst, abs(Double(y[r * n + j]) - ref) / max(magnitude, 1e-30))
            }
        }
        // float32 summation of k products: a few ulps of Σ|x·w|.
        #expect(worst <= 1e-6, "\(isa) \(shape): worst error relative to Σ|x·w| is \(worst)")
    }

    @Test(arguments: KernelISA.allCases)
    func geluAndSoftmaxMatchFloat64Reference(isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        for count in [1, 15, 16, 17, 100, 2048] {
            let x = random(count, seed: UInt64(count)).map { $0 * 4 }
            var a = x
            a.withUnsafeMutableBufferPointer { VectorMath.geluNew($0.baseAddress!, count: count, isa: isa) }
            for i in 0..<count {
                let v = Double(x[i])
                let ref = 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
                #expect(abs(Double(a[i]) - ref) <= 1e-6 * max(1, abs(ref)), "\(isa) gelu \(x[i]): \(a[i]) vs \(ref)")
            }
            var c = x
            c.withUnsafeMutableBufferPointer { VectorMath.softmax($0.baseAddress!, count: count, isa: isa) }
            let top = x.map(Double.init).max()!
            let total = x.reduce(0.0) { $0 + exp(Double($1) - top) }
            for i in 0..<count {
                let ref = exp(Double(x[i]) - top) / total
                // A float32 sum of `count` terms: relative error grows with the count (2048 terms measured 1.1e-6).
                #expect(abs(Double(c[i]) - ref) <= (1e-6 + 1e-9 * Double(count)) * ref + 1e-12, "\(isa) softmax \(i): \(c[i]) vs \(ref)")
            }
        }
        // Large magnitudes: no overflow, saturates like tanh.
        var big: [Float] = [-100, -20, 20, 100]
        big.withUnsafeMutableBufferPointer { VectorMath.geluNew($0.baseAddress!, count: 4, isa: isa) }
        #expect(abs(big[0]) < 1e-6 && abs(big[1]) < 1e-6 && big[2] == 20 && big[3] == 100, "\(isa): \(big)")
    }

    /// One decoder attention head (`VectorMath.attend`) with head size 64 (every real T5) and 32, with and
    /// without a bias, several queries, against float64.
    @Test(arguments: KernelISA.allCases, [32, 64])
    func attendMatchesFloat64Reference(isa: KernelISA, dKV: Int) throws {
        guard runsHere(isa) else { return }
        let heads = 3, stride = heads * dKV, keyCount = 301, queryCount = 2
        let q = random(queryCount * stride, seed: 3).map { $0 * 0.5 }
        let k = random(keyCount * stride, seed: 4), v = random(keyCount * stride, seed: 5)
        let bias = random(queryCount * keyCount, seed: 6)
        for h in 0..<heads {
            for withBias in [false, true] {
                var scores = [Float](repeating: 0, count: keyCount)
                var context = [Float](repeating: .nan, count: queryCount * stride)
                q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                    bias.withUnsafeBufferPointer { bp in scores.withUnsafeMutableBufferPointer { sp in
                        context.withUnsafeMutableBufferPointer { cp in
                            VectorMath.attend(queries: qp.baseAddress! + h * dKV, queryCount: queryCount,
                                              keys: kp.baseAddress! + h * dKV, values: vp.baseAddress! + h * dKV,
                                              keyCount: keyCount, stride: stride, dKV: dKV,
                                              bias: withBias ? bp.baseAddress! : nil, biasRowStride: keyCount,
                                              scores: sp.baseAddress!, context: cp.baseAddress! + h * dKV, isa: isa)
                        }
                    } }
                } } }
                for i in 0..<queryCount {
                    var s = [Double](repeating: 0, count: keyCount)
                    for j in 0..<keyCount {
                        for c in 0..<dKV { s[j] += Double(q[i * stride + h * dKV + c]) * Double(k[j * stride + h * dKV + c]) }
                        if withBias { s[j] += Double(bias[i * keyCount + j]) }
                    }
                    let top = s.max()!
                    let p = s.map { exp($0 - top) }
                    let total = p.reduce(0, +)
                    for c in 0..<dKV {
                        var ref = 0.0, magnitude = 0.0
                        for j in 0..<keyCount {
                            ref += p[j] / total * Double(v[j * stride + h * dKV + c])
                            magnitude += p[j] / total * abs(Double(v[j * stride + h * dKV + c]))
                        }
                        let got = Double(context[i * stride + h * dKV + c])
                        #expect(abs(got - ref) <= 2e-5 * magnitude + 1e-7,
                                "\(isa) dKV \(dKV) head \(h) query \(i) col \(c) bias \(withBias): \(got) vs \(ref)")
                    }
                }
            }
        }
    }
}
