// Throughput of Flint's linear kernels at FLAN-T5 shapes: float32 (FloatLinear) against Int8Linear in both modes
// and every scale layout, as matrix-vector products (decode, rows 1) and matrix-matrix products (encoder,
// rows 64 / 512), all on a 2-thread ThreadPool.
//
// Each benchmark records two custom metrics (median is the figure to read):
//   weight MB/s  = bytes of the weight (values + scales) / seconds per call
//   MFLOP/s      = 2 · rows · in · out / seconds per call
// "gemv-hot" multiplies by the same weight every call (it stays in L2/L3); "gemv-cold" rotates through copies
// totalling ≥ 96 MB (3× this machine's 32 MB L3), which is what a decoder streaming every layer sees.
// "gemv-cold-1t" is gemv-cold on one thread. "stream-read" measures the memory bandwidth peak those MB/s are compared with.
#if canImport(Glibc)
import Glibc
#endif
import Benchmark
import FlintFormat
import FlintKernels

// MARK: - Shapes and variants

struct Shape {
    let model: String
    let inFeatures: Int
    let outFeatures: Int
}

let shapes: [Shape] = [
    Shape(model: "small", inFeatures: 512, outFeatures: 1024),
    Shape(model: "small", inFeatures: 1024, outFeatures: 512),
    Shape(model: "small", inFeatures: 512, outFeatures: 32128),
    Shape(model: "base", inFeatures: 768, outFeatures: 2048),
    Shape(model: "base", inFeatures: 2048, outFeatures: 768),
    Shape(model: "base", inFeatures: 768, outFeatures: 768),
]

enum Variant {
    case float32
    case int8(QuantScheme, Int8KernelMode, KernelISA)

    var name: String {
        switch self {
        case .float32: return "f32"
        case .int8(let scheme, let mode, let isa):
            return "\(scheme.name) \(mode.rawValue)\(isa == .preferred ? "" : " \(isa == .portable ? "swift" : isa.rawValue)")"
        }
    }

    func weightBytes(_ shape: Shape) -> Int {
        switch self {
        case .float32: return 4 * shape.inFeatures * shape.outFeatures
        case .int8(let scheme, _, _):
            return shape.inFeatures * shape.outFeatures + 4 * scheme.scaleCount(shape: [shape.outFeatures, shape.inFeatures])
        }
    }
}

let variants: [Variant] = {
    var list: [Variant] = [.float32]
    for scheme in [QuantScheme.int8Row, .int8Group(32), .int8Group(64), .int8Group(128)] {
        for mode in [Int8KernelMode.weightOnly, .w8a8] {
            list.append(.int8(scheme, mode, .preferred))
        }
    }
    // The AVX2 (+ AVX-VNNI) / NEON paths where this CPU has them besides the preferred one, then the portable
    // Swift kernels, to compare with the vector ones.
    for isa in KernelISA.supported where isa != .preferred && isa != .portable {
        for scheme in [QuantScheme.int8Row, .int8Group(32)] {
            for mode in [Int8KernelMode.weightOnly, .w8a8] { list.append(.int8(scheme, mode, isa)) }
        }
    }
    list.append(.int8(.int8Row, .weightOnly, .portable))
    list.append(.int8(.int8Row, .w8a8, .portable))
    list.append(.int8(.int8Group(32), .w8a8, .portable))
    return list
}()

// MARK: - Weight memory

/// Large pools of random weight values; every weight copy is a window into one, so "cold" runs can rotate through
/// ≥ 96 MB of distinct weights without allocating each copy.
final class WeightPools: @unchecked Sendable {
    static let shared = WeightPools()
    let int8Count = 160 << 20
    let floatCount = 48 << 20
    let int8: UnsafeMutablePointer<Int8>
    let floats: UnsafeMutablePointer<Float>

    init() {
        int8 = UnsafeMutableRawPointer.allocate(byteCount: int8Count, alignment: 64).bindMemory(to: Int8.self, capacity: int8Count)
        floats = UnsafeMutableRawPointer.allocate(byteCount: floatCount * 4, alignment: 64).bindMemory(to: Float.self, capacity: floatCount)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<int8Count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            int8[i] = Int8(Int(state >> 56) % 255 - 127)
        }
        for i in 0..<floatCount {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            floats[i] = Float(Int(state >> 40) & 0xFFFF) / 65536 * 0.02 + 0.001
        }
    }
}

/// The layers a benchmark multiplies by: one (hot) or several distinct copies (cold).
final class Fixture {
    let layers: [LinearWeight]
    let x: UnsafeMutablePointer<Float>
    let y: UnsafeMutablePointer<Float>
    var next = 0

    init(shape: Shape, variant: Variant, rows: Int, copies wantedCopies: Int) throws {
        let pools = WeightPools.shared
        let (n, k) = (shape.outFeatures, shape.inFeatures)
        var layers: [LinearWeight] = []
        switch variant {
        case .float32:
            let copies = max(1, min(wantedCopies, pools.floatCount / (n * k)))
            for c in 0..<copies {
                layers.append(FloatLinear(weight: FloatStorage(borrowing: pools.floats + c * n * k, count: n * k, owner: nil),
                                          outFeatures: n, inFeatures: k))
            }
        case .int8(let scheme, let mode, let isa):
            let scaleCount = scheme.scaleCount(shape: [n, k])
            let copies = max(1, min(wantedCopies, pools.int8Count / (n * k), pools.floatCount / scaleCount))
            for c in 0..<copies {
                let view = TensorView(name: "bench", storage: .i8, shape: [n, k], scheme: scheme,
                                      data: UnsafeRawBufferPointer(start: pools.int8 + c * n * k, count: n * k),
                                      scales: UnsafeBufferPointer(start: pools.floats + c * scaleCount, count: scaleCount),
                                      owner: nil)
                layers.append(try Int8Linear(view, mode: mode, isa: isa))
            }
        }
        self.layers = layers
        x = .allocate(capacity: rows * k)
        for i in 0..<(rows * k) { x[i] = Float((i * 7919) % 2001) / 1000 - 1 }
        y = .allocate(capacity: rows * n)
    }

    deinit { x.deallocate(); y.deallocate() }
}

final class FixtureBox: @unchecked Sendable { var fixture: Fixture? }

let pool = ThreadPool(threads: 2)
let singleThread = ThreadPool(threads: 1)

@inline(__always)
func nanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

let weightMBps = BenchmarkMetric.custom("weight MB/s", polarity: .prefersLarger, useScalingFactor: false)
let megaflops = BenchmarkMetric.custom("MFLOP/s", polarity: .prefersLarger, useScalingFactor: false)
let readMBps = BenchmarkMetric.custom("read MB/s", polarity: .prefersLarger, useScalingFactor: false)

// MARK: - Memory bandwidth

/// Bytes streamed by the bandwidth benchmark: 8× the L3, so the caches cannot hold it.
let streamBytes = 256 << 20

final class StreamBuffer: @unchecked Sendable {
    static let shared = StreamBuffer()
    let floats: UnsafeMutablePointer<Float>
    let count = streamBytes / 4
    init() {
        floats = UnsafeMutableRawPointer.allocate(byteCount: streamBytes, alignment: 64).bindMemory(to: Float.self, capacity: streamBytes / 4)
        for i in 0..<count { floats[i] = Float(i & 1023) }
    }
}

/// Sums a range with four independent vector accumulators (a pure streaming read).
func streamSum(_ p: UnsafePointer<Float>, _ range: Range<Int>) -> Float {
    var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
    var i = range.lowerBound
    while i + 64 <= range.upperBound {
        let raw = UnsafeRawPointer(p + i)
        a0 += raw.load(as: SIMD16<Float>.self)
        a1 += raw.load(fromByteOffset: 64, as: SIMD16<Float>.self)
        a2 += raw.load(fromByteOffset: 128, as: SIMD16<Float>.self)
        a3 += raw.load(fromByteOffset: 192, as: SIMD16<Float>.self)
        i += 64
    }
    return (a0 + a1 + a2 + a3).sum()
}

// MARK: - Registration

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, weightMBps, megaflops],
        timeUnits: .microseconds,
        warmupIterations: 3,
        maxDuration: .milliseconds(200),
        maxIterations: 2000
    )

    for threads in [1, 2] {
        let streamPool = ThreadPool(threads: threads)
        Benchmark("stream-read \(streamBytes >> 20) MB, \(threads) thread\(threads > 1 ? "s" : "")",
                  configuration: .init(metrics: [.wallClock, readMBps], warmupIterations: 1, maxDuration: .seconds(2),
                                       maxIterations: 20)) { benchmark in
            let buffer = StreamBuffer.shared
            var sums = [Float](repeating: 0, count: threads)
            let start = nanoseconds()
            sums.withUnsafeMutableBufferPointer { out in
                streamPool.parallelFor(buffer.count, granularity: 64) { range in
                    out[range.lowerBound * threads / buffer.count] = streamSum(buffer.floats, range)
                }
            }
            let elapsed = nanoseconds() - start
            blackHole(sums)
            benchmark.measurement(readMBps, Int(Double(streamBytes) / Double(elapsed) * 1000))
        }
    }

    for shape in shapes {
        // gemv-cold-1t runs on one thread: the per-core figure, steadier than 2 threads on a shared machine.
        let kinds: [(label: String, rows: Int, coldBytes: Int, pool: ThreadPool)] =
            [("gemv-hot", 1, 0, pool), ("gemv-cold", 1, 96 << 20, pool), ("gemv-cold-1t", 1, 96 << 20, singleThread),
             ("gemm", 64, 0, pool)]
            + (shape.outFeatures > 4096 ? [] : [("gemm", 512, 0, pool)])
        for kind in kinds {
            for variant in variants {
                let bytes = variant.weightBytes(shape)
                let copies = kind.coldBytes > 0 ? (kind.coldBytes + bytes - 1) / bytes : 1
                let name = "\(kind.label) rows \(kind.rows) \(shape.model) \(shape.inFeatures)→\(shape.outFeatures) \(variant.name)"
                let box = FixtureBox()
                let flops = 2.0 * Double(kind.rows) * Double(shape.inFeatures) * Double(shape.outFeatures)
                Benchmark(name, closure: { benchmark in
                    let fixture = box.fixture!
                    let layer = fixture.layers[fixture.next]
                    fixture.next = (fixture.next + 1) % fixture.layers.count
                    let start = nanoseconds()
                    layer.forward(fixture.x, rows: kind.rows, into: fixture.y, pool: kind.pool)
                    let elapsed = Double(nanoseconds() - start)
                    blackHole(fixture.y[0])
                    benchmark.measurement(weightMBps, Int(Double(bytes) / elapsed * 1000))
                    benchmark.measurement(megaflops, Int(flops / elapsed * 1000))
                }, setup: {
                    box.fixture = try Fixture(shape: shape, variant: variant, rows: kind.rows, copies: copies)
                }, teardown: {
                    box.fixture = nil
                })
            }
        }
    }
}
