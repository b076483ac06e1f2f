// The AVX2 (+ AVX-VNNI) and NEON (+ sdot) paths against the portable Swift kernels, through the public layers the
// model uses. The contract (CFlintKernels.h): the activation quantizer and W8A8 are bit-identical to portable; the
// float-accumulating kernels differ only in summation order (and exp/tanh polynomials), within stated tolerances.
// Every C function is also checked at the C level, natively and under qemu-aarch64: Tests/CKernels/kernel_test.c.
import Foundation
import Testing
import FlintFormat
@testable import FlintKernels

@Suite struct KernelPathEqualityTests {
    static let paths: [KernelISA] = [.avx2, .neon]
    static let shapes: [(out: Int, in: Int, scheme: QuantScheme)] = [
        (64, 512, .int8Row), (40, 520, .int8Row), (24, 512, .int8Group(32)), (24, 512, .int8Group(64)),
        (19, 520, .int8Group(128)), (13, 100, .int8Group(48)), (9, 33, .int8Row), (17, 1024, .int8Row),
    ]

    @Test(arguments: paths)
    func w8a8IsBitIdenticalToPortable(_ isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        for (index, shape) in Self.shapes.enumerated() {
            let weight = QuantizedWeight(out: shape.out, in: shape.in, scheme: shape.scheme, seed: UInt64(40 + index))
            let fast = try Int8Linear(weight.view, mode: .w8a8, isa: isa)
            let portable = try Int8Linear(weight.view, mode: .w8a8, isa: .portable)
            #expect(fast.isa == isa, "\(shape): the \(isa) layer runs \(fast.isa)")
            for rows in [1, 2, 3, 7, 64] {
                var x = randomActivations(rows: rows, cols: shape.in, seed: UInt64(rows * 100 + index))
                if rows >= 3 {
                    x[shape.in + 1] = .nan  // a non-finite block: NaN outputs on both paths
                    for i in 0..<shape.in { x[2 * shape.in + i] = 0 }  // an all-zero row: scale 0
                }
                let a = run(fast, x, rows: rows, pool: pool2)
                let b = run(portable, x, rows: rows, pool: pool2)
                let differing = (0..<a.count).filter { a[$0].bitPattern != b[$0].bitPattern && !(a[$0].isNaN && b[$0].isNaN) }
                #expect(differing.isEmpty, "\(isa) \(shape) rows \(rows): \(differing.count) outputs differ, first \(differing.first.map { "\(a[$0]) vs \(b[$0])" } ?? "")")
            }
        }
    }

    @Test(arguments: paths)
    func weightOnlyWithinSummationOrderOfPortable(_ isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        for (index, shape) in Self.shapes.enumerated() {
            let weight = QuantizedWeight(out: shape.out, in: shape.in, scheme: shape.scheme, seed: UInt64(70 + index))
            let fast = try Int8Linear(weight.view, mode: .weightOnly, isa: isa)
            #expect(fast.isa == isa)
            for rows in [1, 5, 33] {
                let x = randomActivations(rows: rows, cols: shape.in, seed: UInt64(rows + 7 * index))
                let y = run(fast, x, rows: rows, pool: pool2)
                for r in 0..<rows {
                    for n in 0..<shape.out {
                        var ref = 0.0, mass = 0.0
                        for i in 0..<shape.in {
                            let t = weight.dequantized[n * shape.in + i] * Double(x[r * shape.in + i])
                            ref += t; mass += abs(t)
                        }
                        #expect(abs(Double(y[r * shape.out + n]) - ref) <= 1e-5 * mass + 1e-30,
                                "\(isa) \(shape) (\(r), \(n)): \(y[r * shape.out + n]) vs \(ref)")
                    }
                }
            }
        }
    }

    @Test(arguments: paths)
    func floatKernelsWithinTolerance(_ isa: KernelISA) {
        guard runsHere(isa) else { return }
        var random = TestRandom(seed: 11)
        // Matrix product, strided rows: within 1e-5 of Σ|x·w|.
        let (rows, n, k) = (6, 37, 100)
        let x = (0..<(rows * k)).map { _ in random.signed() }
        let w = (0..<(n * k)).map { _ in random.signed() * 0.1 }
        var y = [Float](repeating: .nan, count: rows * n)
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    MatrixMultiply.multiplyTransposed(x: xp.baseAddress!, rows: rows, w: wp.baseAddress!, outFeatures: n,
                                                      inFeatures: k, y: yp.baseAddress!, pool: pool2, isa: isa)
                }
            }
        }
        for r in 0..<rows {
            for j in 0..<n {
                var ref = 0.0, mass = 0.0
                for i in 0..<k { let t = Double(x[r * k + i]) * Double(w[j * k + i]); ref += t; mass += abs(t) }
                #expect(abs(Double(y[r * n + j]) - ref) <= 1e-5 * mass, "\(isa) xwt (\(r), \(j))")
            }
        }
        // gelu_new: 2e-6 relative + 4e-7·|x| (1 + tanh cancels for x ≪ 0); softmax: 2e-6 relative.
        var v = (0..<1027).map { i in random.signed() * (i % 5 == 0 ? 30 : 8) }
        let original = v
        v.withUnsafeMutableBufferPointer { VectorMath.geluNew($0.baseAddress!, count: $0.count, isa: isa) }
        for (i, t) in original.enumerated() {
            let d = Double(t)
            let u: Double = 0.7978845608028654 * (d + 0.044715 * d * d * d)
            let ref: Double = 0.5 * d * (1 + tanh(u))
            #expect(abs(Double(v[i]) - ref) <= 2e-6 * abs(ref) + 4e-7 * abs(d), "\(isa) gelu_new(\(t)) = \(v[i]), expected \(ref)")
        }
        v = original
        v.withUnsafeMutableBufferPointer { VectorMath.softmax($0.baseAddress!, count: $0.count, isa: isa) }
        let maxValue = Double(original.max()!)
        let total = original.reduce(0.0) { $0 + exp(Double($1) - maxValue) }
        for (i, t) in original.enumerated() {
            let ref = exp(Double(t) - maxValue) / total
            #expect(abs(Double(v[i]) - ref) <= 2e-6 * ref + 1e-12, "\(isa) softmax[\(i)]")
        }
    }
}
