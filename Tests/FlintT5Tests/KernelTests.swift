import Foundation
import Testing
import FlintFormat
import FlintKernels

/// The kernels against a plain triple loop, on shapes that exercise every tile edge (rows not a multiple of 4,
/// columns not a multiple of 4, inner sizes not a multiple of the SIMD width).
struct KernelTests {
    func naive(_ x: [Float], _ w: [Float], m: Int, n: Int, k: Int) -> [Float] {
        var y = [Float](repeating: 0, count: m * n)
        for r in 0..<m { for j in 0..<n {
            var s: Double = 0
            for i in 0..<k { s += Double(x[r * k + i]) * Double(w[j * k + i]) }
            y[r * n + j] = Float(s)
        } }
        return y
    }

    @Test(arguments: [(1, 1, 1), (1, 7, 13), (1, 130, 64), (3, 9, 17), (4, 4, 8), (5, 67, 40), (9, 70, 72), (17, 3, 100)])
    func multiplyTransposedMatchesNaive(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        var generator = TestRandom(seed: UInt64(m * 1000 + n * 10 + k))
        let x = (0..<(m * k)).map { _ in generator.nextFloat() }
        let w = (0..<(n * k)).map { _ in generator.nextFloat() }
        let expected = naive(x, w, m: m, n: n, k: k)
        for pool in [nil, ThreadPool(threads: 3)] as [ThreadPool?] {
            var y = [Float](repeating: .nan, count: m * n)
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                MatrixMultiply.multiplyTransposed(x: xp.baseAddress!, rows: m, w: wp.baseAddress!, outFeatures: n,
                                                  inFeatures: k, y: yp.baseAddress!, pool: pool)
            } } }
            let worst = zip(y, expected).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-4 * Float(k), "m \(m) n \(n) k \(k): max error \(worst)")
        }
    }

    @Test func threadPoolRunsEveryPartOnce() {
        let pool = ThreadPool(threads: 4)
        for count in [0, 1, 5, 64, 1001] {
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
            hits.initialize(repeating: 0, count: max(count, 1))
            pool.parallelFor(count, granularity: 4) { range in for i in range { hits[i] += 1 } }
            #expect((0..<count).allSatisfy { hits[$0] == 1 })
            hits.deallocate()
        }
        // A nested call from inside a job runs inline instead of deadlocking.
        var total = 0
        let lock = NSLockLike()
        pool.run { _ in pool.run { _ in lock.locked { total += 1 } } }
        #expect(total == 16)
    }

    @Test func int8RowAndGroupWeightsAreDequantized() throws {
        // 2 × 5 weight, q × scale; per-row scales and groups of 2 (last group short).
        let q: [Int8] = [1, -2, 3, -4, 5, 127, -127, 0, 64, -1]
        let x: [Float] = [1, 2, 3, 4, 5]
        for (scheme, scales) in [(QuantScheme.int8Row, [Float(0.5), 0.25]),
                                 (QuantScheme.int8Group(2), [Float(1), 2, 3, 0.5, 0.25, 4])] {
            let groups = scheme == .int8Row ? 1 : 3
            var expected = [Float](repeating: 0, count: 2)
            for r in 0..<2 { for c in 0..<5 {
                let scale = scheme == .int8Row ? scales[r] : scales[r * groups + c / 2]
                expected[r] += Float(q[r * 5 + c]) * scale * x[c]
            } }
            let y: [Float] = try q.withUnsafeBytes { bytes in try scales.withUnsafeBufferPointer { s in
                let view = TensorView(name: "w", storage: .i8, shape: [2, 5], scheme: scheme, data: bytes, scales: s, owner: nil)
                let linear = try LinearFactory.make(view, expectedShape: [2, 5])
                var y = [Float](repeating: 0, count: 2)
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                    linear.forward(xp.baseAddress!, rows: 1, into: yp.baseAddress!, pool: nil)
                } }
                return y
            } }
            #expect(y == expected, "\(scheme)")
        }
    }

    @Test func badWeightsAreNamedErrors() {
        let q: [Int8] = [1, 2, 3, 4]
        q.withUnsafeBytes { bytes in
            let view = TensorView(name: "encoder.block.0.layer.0.SelfAttention.q.weight", storage: .i8, shape: [2, 2],
                                  scheme: .int8Row, data: bytes, owner: nil)
            #expect(throws: FlintError.self) { try LinearFactory.make(view, expectedShape: [2, 2]) }  // no scales
            #expect(throws: FlintError.self) { try LinearFactory.make(view, expectedShape: [4, 1]) }  // wrong shape
            do {
                _ = try LinearFactory.make(view, expectedShape: [4, 1])
            } catch let error as FlintError {
                #expect(error.message.contains("SelfAttention.q.weight"))
            } catch {}
        }
    }
}

/// Deterministic test data without Foundation's random.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x1234_5678 }
    mutating func nextFloat() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
    }
}

final class NSLockLike: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    func locked(_ body: () -> Void) { pthread_mutex_lock(&mutex); body(); pthread_mutex_unlock(&mutex) }
}
