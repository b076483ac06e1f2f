// Int8Linear against a float64 reference computed from the dequantized weights (q × scale).
//
// Weight-only must equal that reference up to float32 summation error: |y − ref| ≤ 1e-5 · Σ|wᵢ·xᵢ|.
// W8A8 also quantizes the activations: per block (the weight group, or the whole row for per-row weights) it uses
// scale_x = max|x| / 127 and rounds to nearest, so every activation moves by at most scale_x / 2. The weights are
// exact, hence |y − ref| ≤ Σ_blocks (scale_x / 2) · Σ_{i ∈ block} |wᵢ|, plus the same float32 slack. That bound
// is a worst case (all rounding errors aligned), so W8A8 is also compared with the scheme replayed exactly in the
// test (the same q_x), which must agree to float32 summation error.
import Testing
import FlintFormat
@testable import FlintKernels

/// Owns the bytes behind a synthetic TensorView, as a mapped file would.
final class TensorMemory {
    let data: UnsafeMutableRawBufferPointer
    let scales: UnsafeMutableBufferPointer<Float>
    init(bytes: Int, scales: Int) {
        data = .allocate(byteCount: max(bytes, 1), alignment: 64)
        self.scales = .allocate(capacity: max(scales, 1))
    }
    deinit { data.deallocate(); scales.deallocate() }
}

/// Deterministic xorshift generator, so failures reproduce.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
    mutating func int8() -> Int8 { Int8(Int(next() % 255) - 127) }
    mutating func unit() -> Float { Float(next() % 1_000_001) / 1_000_000 }
    mutating func signed() -> Float { unit() * 2 - 1 }
}

/// A random int8 weight `[out, in]` with positive scales under `scheme`, plus its dequantized values.
struct QuantizedWeight {
    let view: TensorView
    let memory: TensorMemory
    let dequantized: [Double]
    let out: Int
    let inFeatures: Int

    init(out: Int, in inFeatures: Int, scheme: QuantScheme, seed: UInt64) {
        var random = TestRandom(seed: seed)
        let scaleCount = scheme.scaleCount(shape: [out, inFeatures])
        let memory = TensorMemory(bytes: out * inFeatures, scales: scaleCount)
        let q = memory.data.bindMemory(to: Int8.self)
        for i in 0..<(out * inFeatures) { q[i] = random.int8() }
        for i in 0..<scaleCount { memory.scales[i] = 0.001 + 0.02 * random.unit() }
        let g = scheme.groupSize
        let groupsPerRow = g > 0 ? (inFeatures + g - 1) / g : 1
        var dequantized = [Double](repeating: 0, count: out * inFeatures)
        for row in 0..<out {
            for col in 0..<inFeatures {
                let scale = memory.scales[row * groupsPerRow + (g > 0 ? col / g : 0)]
                dequantized[row * inFeatures + col] = Double(q[row * inFeatures + col]) * Double(scale)
            }
        }
        self.memory = memory
        self.dequantized = dequantized
        self.out = out
        self.inFeatures = inFeatures
        view = TensorView(name: "test.weight", storage: .i8, shape: [out, inFeatures], scheme: scheme,
                          data: UnsafeRawBufferPointer(start: memory.data.baseAddress, count: out * inFeatures),
                          scales: UnsafeBufferPointer(start: memory.scales.baseAddress, count: scaleCount),
                          owner: memory)
    }
}

func randomActivations(rows: Int, cols: Int, seed: UInt64) -> [Float] {
    var random = TestRandom(seed: seed)
    // A few large entries per row, like T5's outlier features, make the activation scales matter.
    return (0..<(rows * cols)).map { i in i % 37 == 5 ? 8 * random.signed() : random.signed() }
}

func run(_ linear: Int8Linear, _ x: [Float], rows: Int, pool: ThreadPool?) -> [Float] {
    var y = [Float](repeating: .nan, count: rows * linear.outFeatures)
    x.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { yp in
            linear.forward(xp.baseAddress!, rows: rows, into: yp.baseAddress!, pool: pool)
        }
    }
    return y
}

struct Case: CustomTestStringConvertible, Sendable {
    let out: Int
    let inFeatures: Int
    let scheme: QuantScheme
    var testDescription: String { "\(out)x\(inFeatures) \(scheme)" }
}

let cases: [Case] = [
    Case(out: 24, inFeatures: 40, scheme: .int8Group(32)),   // short last group (8 of 32)
    Case(out: 19, inFeatures: 40, scheme: .int8Row),         // odd output count, row shorter than a vector
    Case(out: 512, inFeatures: 1024, scheme: .int8Row),
    Case(out: 512, inFeatures: 1024, scheme: .int8Group(32)),
    Case(out: 512, inFeatures: 1024, scheme: .int8Group(64)),
    Case(out: 64, inFeatures: 1000, scheme: .int8Group(128)), // last group 104 wide, last chunk partial
    Case(out: 33, inFeatures: 100, scheme: .int8Group(48)),  // group size the VNNI kernels do not take
    Case(out: 16, inFeatures: 96, scheme: .int8Group(16)),
    Case(out: 13, inFeatures: 77, scheme: .int8Row),          // odd k: no full vector tail
    Case(out: 67, inFeatures: 129, scheme: .int8Group(64)),  // odd k, 1-wide last group, out beyond a row block
]

/// Row counts around the kernels' row blocks (4-row tiles, 64-row chunks) and a long input, limited so the
/// float64 reference stays cheap for the large matrices.
func rowCounts(_ c: Case) -> [Int] {
    [1, 7, 64, 65, 300].filter { $0 <= 7 || $0 * c.out * c.inFeatures <= 3_000_000 }
}

let pool1 = ThreadPool(threads: 1)
let pool2 = ThreadPool(threads: 2)

@Suite struct Int8LinearTests {
    @Test(arguments: cases, KernelISA.allCases)
    func weightOnlyMatchesDequantizedReference(_ c: Case, isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weight = QuantizedWeight(out: c.out, in: c.inFeatures, scheme: c.scheme, seed: UInt64(c.out * 7 + c.inFeatures))
        let linear = try Int8Linear(weight.view, mode: .weightOnly, isa: isa)
        for rows in rowCounts(c) {
            let x = randomActivations(rows: rows, cols: c.inFeatures, seed: UInt64(rows))
            let y = run(linear, x, rows: rows, pool: pool1)
            var worst = 0.0
            for r in 0..<rows {
                for n in 0..<c.out {
                    var ref = 0.0, magnitude = 0.0
                    for i in 0..<c.inFeatures {
                        let p = weight.dequantized[n * c.inFeatures + i] * Double(x[r * c.inFeatures + i])
                        ref += p; magnitude += abs(p)
                    }
                    worst = max(worst, abs(Double(y[r * c.out + n]) - ref) / max(magnitude, 1e-30))
                }
            }
            #expect(worst <= 1e-5, "rows \(rows): worst error relative to Σ|w·x| is \(worst)")
            #expect(run(linear, x, rows: rows, pool: pool2) == y, "2 threads differ from 1 (rows \(rows))")
            #expect(run(linear, x, rows: rows, pool: nil) == y, "no pool differs from 1 thread (rows \(rows))")
        }
    }

    @Test(arguments: cases, KernelISA.allCases)
    func w8a8WithinActivationQuantizationBound(_ c: Case, isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weight = QuantizedWeight(out: c.out, in: c.inFeatures, scheme: c.scheme, seed: UInt64(c.out * 3 + c.inFeatures))
        let linear = try Int8Linear(weight.view, mode: .w8a8, isa: isa)
        let block = c.scheme.groupSize > 0 ? min(c.scheme.groupSize, c.inFeatures) : c.inFeatures
        for rows in rowCounts(c) {
            let x = randomActivations(rows: rows, cols: c.inFeatures, seed: UInt64(rows) + 100)
            let y = run(linear, x, rows: rows, pool: pool1)
            var worstExcess = -Double.infinity
            var worstRatio = 0.0
            var worstSchemeError = 0.0
            for r in 0..<rows {
                for n in 0..<c.out {
                    var ref = 0.0, magnitude = 0.0, bound = 0.0
                    // The documented scheme replayed exactly: q_x = roundHalfEven(x · (127 / max|x|)) in Float.
                    var schemeRef = 0.0, schemeMagnitude = 0.0
                    var start = 0
                    while start < c.inFeatures {
                        let end = min(c.inFeatures, start + block)
                        var amax = 0.0, weightMass = 0.0
                        var amaxFloat: Float = 0
                        for i in start..<end {
                            let xi = Double(x[r * c.inFeatures + i])
                            let wi = weight.dequantized[n * c.inFeatures + i]
                            amax = max(amax, abs(xi))
                            amaxFloat = max(amaxFloat, abs(x[r * c.inFeatures + i]))
                            weightMass += abs(wi)
                            ref += wi * xi; magnitude += abs(wi * xi)
                        }
                        bound += amax / 127 / 2 * weightMass
                        let inverse: Float = 127 / amaxFloat
                        let xScale = Double(amaxFloat / 127)
                        for i in start..<end {
                            let qx = Double(min(127, max(-127, (x[r * c.inFeatures + i] * inverse).rounded(.toNearestOrEven))))
                            let p = weight.dequantized[n * c.inFeatures + i] * qx * xScale
                            schemeRef += p; schemeMagnitude += abs(p)
                        }
                        start = end
                    }
                    let value = Double(y[r * c.out + n])
                    let error = abs(value - ref)
                    let allowed = bound + 1e-5 * magnitude
                    worstExcess = max(worstExcess, error - allowed)
                    worstRatio = max(worstRatio, error / allowed)
                    worstSchemeError = max(worstSchemeError, abs(value - schemeRef) / max(schemeMagnitude, 1e-30))
                }
            }
            #expect(worstExcess <= 0, "rows \(rows): error exceeds the activation-quantization bound (ratio \(worstRatio))")
            #expect(worstSchemeError <= 1e-5, "rows \(rows): differs from the replayed quantization scheme by \(worstSchemeError) of Σ|w·x̂|")
            #expect(run(linear, x, rows: rows, pool: pool2) == y, "2 threads differ from 1 (rows \(rows))")
            #expect(run(linear, x, rows: rows, pool: nil) == y, "no pool differs from 1 thread (rows \(rows))")
        }
    }

    /// Each ISA's kernels and the Swift ones implement the same arithmetic; only float summation order differs.
    /// Also checks the layer reports the ISA it really runs (the requested one when the group size suits it).
    @Test(arguments: [Int8KernelMode.weightOnly, .w8a8], KernelISA.allCases)
    func isaAndPortableAgree(_ mode: Int8KernelMode, isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weight = QuantizedWeight(out: 96, in: 520, scheme: .int8Group(64), seed: 5)
        let native = try Int8Linear(weight.view, mode: mode, isa: isa)
        let portable = try Int8Linear(weight.view, mode: mode, isa: .portable)
        #expect(native.isa == isa)
        #expect(portable.isa == .portable)
        let x = randomActivations(rows: 5, cols: 520, seed: 9)
        let a = run(native, x, rows: 5, pool: pool2)
        let b = run(portable, x, rows: 5, pool: pool2)
        for i in 0..<a.count { #expect(abs(a[i] - b[i]) <= 1e-4 * max(1, abs(b[i])), "element \(i): \(a[i]) vs \(b[i])") }
    }

    @Test(arguments: KernelISA.allCases)
    func w8a8PropagatesNonFiniteActivationsAndHandlesZeroRows(_ isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weight = QuantizedWeight(out: 16, in: 64, scheme: .int8Row, seed: 3)
        let linear = try Int8Linear(weight.view, mode: .w8a8, isa: isa)
        var x = [Float](repeating: 0, count: 3 * 64)
        x[64 + 10] = .nan
        for i in 128..<192 { x[i] = 0.5 }
        let y = run(linear, x, rows: 3, pool: pool2)
        #expect(y[0..<16].allSatisfy { $0 == 0 }, "an all-zero row must give zeros")
        #expect(y[16..<32].allSatisfy { $0.isNaN }, "a NaN activation must give NaN, not a finite guess")
        #expect(y[32..<48].allSatisfy { $0.isFinite && $0 != 0 })
    }

    @Test func refusesMismatchedTensors() throws {
        let weight = QuantizedWeight(out: 8, in: 32, scheme: .int8Group(16), seed: 1)
        let wrongScales = TensorView(name: "enc.wi", storage: .i8, shape: [8, 32], scheme: .int8Group(16),
                                     data: weight.view.data,
                                     scales: UnsafeBufferPointer(rebasing: weight.view.scales[0..<15]),
                                     owner: weight.memory)
        #expect(throws: FlintError.self) { try Int8Linear(wrongScales, mode: .w8a8) }
        do {
            _ = try Int8Linear(wrongScales, mode: .w8a8)
        } catch let error as FlintError {
            #expect(error.message.contains("enc.wi") && error.message.contains("16 scales"))
        }
        let floatView = TensorView(name: "enc.wo", storage: .f32, shape: [8, 8], data: weight.view.data, owner: weight.memory)
        #expect(throws: FlintError.self) { try Int8Linear(floatView, mode: .weightOnly) }
        let shortData = TensorView(name: "enc.wq", storage: .i8, shape: [8, 33], scheme: .int8Row,
                                   data: weight.view.data, scales: UnsafeBufferPointer(rebasing: weight.view.scales[0..<8]),
                                   owner: weight.memory)
        #expect(throws: FlintError.self) { try Int8Linear(shortData, mode: .weightOnly) }
        weight.memory.scales[3] = .infinity
        #expect(throws: FlintError.self) { try Int8Linear(weight.view, mode: .weightOnly) }
    }

    @Test func unsupportedISAIsRejected() throws {
        let weight = QuantizedWeight(out: 8, in: 32, scheme: .int8Row, seed: 2)
        for isa in KernelISA.allCases where !isa.isSupported {
            #expect(throws: FlintError.self) { try Int8Linear(weight.view, mode: .weightOnly, isa: isa) }
            #expect(throws: FlintError.self) { try LinearFactory.make(weight.view, expectedShape: [8, 32], isa: isa) }
        }
        // A group size the AVX-512 kernels do not take runs (and says it runs) the portable kernels; the AVX2 and
        // NEON kernels take every group size.
        let odd = QuantizedWeight(out: 8, in: 96, scheme: .int8Group(48), seed: 2)
        for isa in KernelISA.supported {
            let expected: KernelISA = isa == .avx2 || isa == .neon ? isa : .portable
            #expect(try Int8Linear(odd.view, mode: .w8a8, isa: isa).isa == expected)
        }
    }

    @Test func modeNamesParse() {
        #expect(Int8KernelMode(cliName: "weight-only") == .weightOnly)
        #expect(Int8KernelMode(cliName: "W8A8") == .w8a8)
        #expect(Int8KernelMode(cliName: "int4") == nil)
        #expect(Int8KernelMode.allCases.allSatisfy { Int8KernelMode(cliName: $0.cliName) == $0 })
    }

    @Test func embeddingRowIsDequantized() throws {
        let weight = QuantizedWeight(out: 10, in: 40, scheme: .int8Group(32), seed: 11)
        let embedding = try Int8Embedding(weight.view)
        var row = [Float](repeating: 0, count: 40)
        try row.withUnsafeMutableBufferPointer { try embedding.dequantizeRow(7, into: $0.baseAddress!) }
        for i in 0..<40 { #expect(row[i] == Float(weight.dequantized[7 * 40 + i])) }
        #expect(throws: FlintError.self) {
            try row.withUnsafeMutableBufferPointer { try embedding.dequantizeRow(10, into: $0.baseAddress!) }
        }
    }
}
