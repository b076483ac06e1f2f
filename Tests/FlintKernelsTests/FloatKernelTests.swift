import Foundation
import Testing
@testable import FlintKernels

/// The AVX-512 float paths (chosen at run time) against the portable Swift loops, which the T5 golden tests
/// hold to transformers' outputs.
@Suite(.serialized) struct FloatKernelTests {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 500 - 2
        }
    }

    func withPortable<T>(_ body: () -> T) -> T {
        let saved = MatrixMultiply.useNativeFloatKernels
        MatrixMultiply.useNativeFloatKernels = false
        defer { MatrixMultiply.useNativeFloatKernels = saved }
        return body()
    }

    @Test(arguments: [(1, 37, 40), (3, 64, 768), (5, 70, 33), (7, 9, 1024), (16, 130, 17)])
    func matrixProductMatchesPortable(shape: (Int, Int, Int)) {
        let (rows, n, k) = shape
        let x = random(rows * k, seed: 1), w = random(n * k, seed: 2)
        func product() -> [Float] {
            var y = [Float](repeating: .nan, count: rows * n)
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                MatrixMultiply.multiplyTransposed(x: xp.baseAddress!, rows: rows, w: wp.baseAddress!, outFeatures: n,
                                                  inFeatures: k, y: yp.baseAddress!, pool: ThreadPool(threads: 2))
            } } }
            return y
        }
        let native = product(), portable = withPortable(product)
        for i in 0..<native.count {
            #expect(abs(native[i] - portable[i]) <= 1e-5 * Float(k), "element \(i): \(native[i]) vs \(portable[i])")
        }
    }

    @Test func geluAndSoftmaxMatchPortable() {
        for count in [1, 15, 16, 17, 100, 2048] {
            let x = random(count, seed: UInt64(count)).map { $0 * 4 }
            var a = x, b = x
            a.withUnsafeMutableBufferPointer { VectorMath.geluNew($0.baseAddress!, count: count) }
            withPortable { b.withUnsafeMutableBufferPointer { VectorMath.geluNew($0.baseAddress!, count: count) } }
            for i in 0..<count { #expect(abs(a[i] - b[i]) <= 1e-6 * max(1, abs(b[i])), "gelu \(x[i]): \(a[i]) vs \(b[i])") }
            var c = x, d = x
            c.withUnsafeMutableBufferPointer { VectorMath.softmax($0.baseAddress!, count: count) }
            withPortable { d.withUnsafeMutableBufferPointer { VectorMath.softmax($0.baseAddress!, count: count) } }
            for i in 0..<count { #expect(abs(c[i] - d[i]) <= 1e-5 * d[i] + 1e-9, "softmax \(i): \(c[i]) vs \(d[i])") }
            #expect(abs(c.reduce(0, +) - 1) < 1e-5)
        }
        // Large magnitudes: no overflow, saturates like tanh.
        var big: [Float] = [-100, -20, 20, 100]
        big.withUnsafeMutableBufferPointer { VectorMath.geluNew($0.baseAddress!, count: 4) }
        #expect(big == [-0, -0, 20, 100] || (abs(big[0]) < 1e-6 && abs(big[1]) < 1e-6 && big[2] == 20 && big[3] == 100))
    }
}
