// Int4Linear (W4A8 on the packed int4 layout): every ISA path bit-identical to the portable Swift kernel, and the
// portable kernel within the activation-quantization bound of the exact int4 × f32 product.
import Testing
@testable import FlintFormat
@testable import FlintKernels

/// A packed int4 matrix with pseudo-random codes and f16 scales in [0.01, 0.05], and its dequantized values.
private struct Int4Weight {
    let view: TensorView
    let dequantized: [Double]
    let storage: UnsafeMutableRawBufferPointer

    init(out: Int, in cols: Int, groupSize: Int, seed: UInt64) {
        var random = TestRandom(seed: seed)
        let g = PackedInt4Geometry(shape: [out, cols], scheme: .int4Group(groupSize))!
        let q: [Int8] = (0..<(out * cols)).map { _ in Int8(max(-8, min(7, Int((random.signed() * 8).rounded(.down))))) }
        let scales: [Float] = (0..<(out * g.groups)).map { _ in Float(Float16(0.03 + 0.02 * random.signed())) }
        let bits = scales.map { Float16($0).bitPattern }
        let packed = UnsafeMutableRawBufferPointer.allocate(byteCount: g.byteCount, alignment: 64)
        q.withUnsafeBufferPointer { qp in bits.withUnsafeBufferPointer { g.pack(qp, scaleBits: $0, into: packed) } }
        storage = packed
        view = TensorView(name: "w", storage: .i4, shape: [out, cols], scheme: .int4Group(groupSize),
                          data: UnsafeRawBufferPointer(packed), layout: .int4Packed16x8, owner: nil)
        dequantized = (0..<(out * cols)).map { i in Double(q[i]) * Double(scales[(i / cols) * g.groups + (i % cols) / groupSize]) }
    }
}

private func run(_ linear: Int4Linear, _ x: [Float], rows: Int, pool: ThreadPool?) -> [Float] {
    var y = [Float](repeating: .nan, count: rows * linear.outFeatures)
    x.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { linear.forward(xp.baseAddress!, rows: rows, into: $0.baseAddress!, pool: pool) }
    }
    return y
}

@Suite struct Int4LinearTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let out: Int, inFeatures: Int, groupSize: Int
        var testDescription: String { "\(out)x\(inFeatures) g\(groupSize)" }
    }
    static let cases = [Case(out: 37, inFeatures: 100, groupSize: 32), Case(out: 64, inFeatures: 256, groupSize: 64),
                        Case(out: 20, inFeatures: 130, groupSize: 128), Case(out: 16, inFeatures: 32, groupSize: 32)]

    @Test(arguments: cases, KernelISA.allCases)
    func pathsMatchThePortableKernel(_ c: Case, isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weight = Int4Weight(out: c.out, in: c.inFeatures, groupSize: c.groupSize, seed: UInt64(c.out * 31 + c.inFeatures))
        defer { weight.storage.deallocate() }
        let portable = try Int4Linear(weight.view, isa: .portable)
        let linear = try Int4Linear(weight.view, isa: isa)
        for rows in [1, 2, 3, 5, 9, 17] {  // 9 and 17: the AVX-512 prefill tiles (4 rows × 3 blocks, then single rows)
            let x = randomActivations(rows: rows, cols: c.inFeatures, seed: UInt64(rows * 3 + 1))
            let reference = run(portable, x, rows: rows, pool: nil)
            // Bit-identical: exact int32 dot products, the same unfused float epilogue in the same order.
            #expect(run(linear, x, rows: rows, pool: pool1) == reference, "\(isa) rows \(rows)")
            #expect(run(linear, x, rows: rows, pool: pool2) == reference, "\(isa) 2 threads, rows \(rows)")
        }
    }

    /// A group of activations holding a NaN or ±∞ makes its row's outputs NaN on every path (not a quietly
    /// finite code 127), and the other rows are untouched.
    @Test(arguments: KernelISA.allCases)
    func nonFiniteActivationsGiveNaNOnEveryPath(isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weight = Int4Weight(out: 37, in: 100, groupSize: 32, seed: 11)
        defer { weight.storage.deallocate() }
        let portable = try Int4Linear(weight.view, isa: .portable)
        let linear = try Int4Linear(weight.view, isa: isa)
        var x = randomActivations(rows: 3, cols: 100, seed: 7)
        x[0 * 100 + 40] = .nan
        x[2 * 100 + 99] = .infinity
        let y = run(linear, x, rows: 3, pool: nil)
        let nanRows = y[0..<37].allSatisfy { $0.isNaN } && y[74..<111].allSatisfy { $0.isNaN }
        let finiteRow = y[37..<74].allSatisfy { $0.isFinite }
        #expect(nanRows, "\(isa)")
        #expect(finiteRow, "\(isa)")
        #expect(Array(y[37..<74]) == Array(run(portable, x, rows: 3, pool: nil)[37..<74]), "\(isa)")
    }

    @Test(arguments: cases)
    func portableIsTheInt4ProductUpToActivationRounding(_ c: Case) throws {
        let weight = Int4Weight(out: c.out, in: c.inFeatures, groupSize: c.groupSize, seed: UInt64(c.out + c.inFeatures))
        defer { weight.storage.deallocate() }
        let linear = try Int4Linear(weight.view, isa: .portable)
        let rows = 3
        let x = randomActivations(rows: rows, cols: c.inFeatures, seed: 5)
        let y = run(linear, x, rows: rows, pool: nil)
        for r in 0..<rows {
            for n in 0..<c.out {
                // Each activation is off by at most half its group's step max|x_g| / 127.
                var exact = 0.0, bound = 0.0
                for i in 0..<c.inFeatures {
                    let w = weight.dequantized[n * c.inFeatures + i]
                    exact += w * Double(x[r * c.inFeatures + i])
                    let group = (i / c.groupSize) * c.groupSize
                    let amax = (group..<min(c.inFeatures, group + c.groupSize)).map { abs(Double(x[r * c.inFeatures + $0])) }.max()!
                    bound += abs(w) * amax / 254 * 1.0001 + 1e-6 * abs(w * Double(x[r * c.inFeatures + i]))
                }
                #expect(abs(Double(y[r * c.out + n]) - exact) <= bound, "row \(r) out \(n): \(y[r * c.out + n]) vs \(exact) (bound \(bound))")
            }
        }
    }

    /// Int4 weights stay packed in both int8 modes (decode never widens them); only the dequantized reference
    /// (no int8 mode) widens them to float32, with the same values as the packed codes × scales.
    @Test func factoryKeepsInt4PackedUnlessDequantized() throws {
        let weight = Int4Weight(out: 37, in: 100, groupSize: 32, seed: 9)
        defer { weight.storage.deallocate() }
        for mode in [Int8KernelMode.weightOnly, .w8a8] {
            let linear = try LinearFactory.make(weight.view, expectedShape: [37, 100], int8Kernels: mode)
            #expect(linear is Int4Linear, "\(mode): \(type(of: linear))")
        }
        let widened = try LinearFactory.make(weight.view, expectedShape: [37, 100], int8Kernels: nil)
        #expect(widened is FloatLinear)
        let values = try TensorConversion.floatStorage(weight.view)
        #expect((0..<values.count).allSatisfy { Double(values.pointer[$0]) == weight.dequantized[$0] })
    }

    @Test func refusesWhatIsNotPackedInt4() throws {
        let weight = Int4Weight(out: 16, in: 32, groupSize: 32, seed: 1)
        defer { weight.storage.deallocate() }
        let short = TensorView(name: "w", storage: .i4, shape: [16, 32], scheme: .int4Group(32),
                               data: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(weight.storage)[0..<100]),
                               layout: .int4Packed16x8, owner: nil)
        #expect { try Int4Linear(short) } throws: {
            ($0 as? FlintError)?.kind == .corrupt && ($0 as? FlintError)?.message.contains("needs 288 bytes, found 100") == true
        }
        let int8 = TensorView(name: "w", storage: .i8, shape: [16, 32], scheme: .int8Row,
                              data: UnsafeRawBufferPointer(weight.storage), layout: .rowMajor, owner: nil)
        #expect(throws: FlintError.self) { try Int4Linear(int8) }
        // An infinite f16 scale (a hostile file) is refused at load.
        let g = PackedInt4Geometry(shape: [16, 32], scheme: .int4Group(32))!
        weight.storage.storeBytes(of: UInt16(0x7C00), toByteOffset: g.codeBytes + 2 * 3, as: UInt16.self)
        #expect { try Int4Linear(weight.view) } throws: { ($0 as? FlintError)?.message.contains("f16 scale 3 is not finite") == true }
    }
}
