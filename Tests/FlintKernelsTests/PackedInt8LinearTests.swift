// Int8Linear on the packed layout (FLINT.md layout 1) against the same weights row-major: W8A8 must be
// bit-identical to the portable row-major kernel on every ISA (the packed kernels' contract), weight-only within
// float summation error, and one thread, two threads and no pool must agree bit for bit.
import Testing
import FlintFormat
@testable import FlintKernels

/// `weight` re-laid as packed16x4 (with its weight sums), in 64-byte aligned memory that the view owns.
func packedView(_ weight: QuantizedWeight) -> (TensorView, TensorMemory) {
    let view = weight.view
    let geometry = PackedInt8Geometry(shape: view.shape, scheme: view.scheme)!
    let memory = TensorMemory(bytes: geometry.byteCount, scales: view.scales.count)
    geometry.pack(view.data.bindMemory(to: Int8.self), into: memory.data)
    _ = memory.scales.initialize(from: view.scales)
    let packed = TensorView(name: view.name, storage: .i8, shape: view.shape, scheme: view.scheme,
                            data: UnsafeRawBufferPointer(start: memory.data.baseAddress, count: geometry.byteCount),
                            scales: UnsafeBufferPointer(start: memory.scales.baseAddress, count: view.scales.count),
                            layout: .int8Packed16x4, owner: memory)
    return (packed, memory)
}

let packedCases: [Case] = cases + [
    Case(out: 17, inFeatures: 33, scheme: .int8Row),          // k not a multiple of 4: a padded last quad
    Case(out: 40, inFeatures: 36, scheme: .int8Group(8)),     // several short groups
    Case(out: 1, inFeatures: 64, scheme: .int8Group(32)),     // one row: 15 padding lanes
]

@Suite struct PackedInt8LinearTests {
    @Test func packUnpackRoundTrip() throws {
        for c in packedCases {
            let weight = QuantizedWeight(out: c.out, in: c.inFeatures, scheme: c.scheme, seed: 11)
            let (packed, memory) = packedView(weight)
            let geometry = try #require(packed.packedGeometry)
            #expect(geometry.byteCount == geometry.blocks * 16 * geometry.paddedCols + geometry.blocks * geometry.groups * 64)
            let original = Array(weight.view.data.bindMemory(to: Int8.self))
            let back = try packed.withRowMajorInt8 { Array($0) }
            #expect(back == original, "\(c.testDescription): unpacked codes differ")
            // The stored sums are Σ q per (row, group); padding rows and bytes are zero.
            let sums = UnsafeRawPointer(memory.data.baseAddress! + geometry.weightBytes).assumingMemoryBound(to: Int32.self)
            for row in 0..<(geometry.blocks * 16) {
                for g in 0..<geometry.groups {
                    var expected: Int32 = 0
                    if row < c.out {
                        for col in (g * geometry.groupSize)..<min(c.inFeatures, (g + 1) * geometry.groupSize) {
                            expected += Int32(original[row * c.inFeatures + col])
                        }
                    }
                    #expect(sums[((row / 16) * geometry.groups + g) * 16 + row % 16] == expected)
                }
            }
            var padding = 0
            for row in 0..<(geometry.blocks * 16) {
                for col in 0..<geometry.paddedCols where row >= c.out || col >= c.inFeatures {
                    padding |= Int(memory.data.load(fromByteOffset: geometry.offset(row: row, col: col), as: Int8.self))
                }
            }
            #expect(padding == 0, "\(c.testDescription): padding bytes are not zero")
        }
    }

    @Test(arguments: packedCases, KernelISA.allCases)
    func w8a8IsBitIdenticalToTheRowMajorPortableKernel(_ c: Case, isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weight = QuantizedWeight(out: c.out, in: c.inFeatures, scheme: c.scheme, seed: UInt64(c.out * 5 + c.inFeatures))
        let (packed, _) = packedView(weight)
        let reference = try Int8Linear(weight.view, mode: .w8a8, isa: .portable)
        let linear = try Int8Linear(packed, mode: .w8a8, isa: isa)
        #expect(linear.layout == .int8Packed16x4 && linear.isa == isa)
        for rows in rowCounts(c) + [8, 9] {
            let x = randomActivations(rows: rows, cols: c.inFeatures, seed: UInt64(rows + 3))
            let expected = run(reference, x, rows: rows, pool: pool1)
            let y = run(linear, x, rows: rows, pool: pool1)
            let differing = zip(y, expected).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            #expect(differing == 0, "rows \(rows): \(differing) of \(y.count) outputs differ from the portable row-major kernel")
            #expect(run(linear, x, rows: rows, pool: pool2) == y, "2 threads differ from 1 (rows \(rows))")
            #expect(run(linear, x, rows: rows, pool: nil) == y, "no pool differs from 1 thread (rows \(rows))")
        }
    }

    @Test(arguments: packedCases, KernelISA.allCases)
    func weightOnlyMatchesDequantizedReference(_ c: Case, isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weight = QuantizedWeight(out: c.out, in: c.inFeatures, scheme: c.scheme, seed: UInt64(c.out * 3 + c.inFeatures))
        let (packed, _) = packedView(weight)
        let linear = try Int8Linear(packed, mode: .weightOnly, isa: isa)
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
        }
    }

    @Test func embeddingAndDequantizationReadPackedRows() throws {
        for c in packedCases.prefix(4) {
            let weight = QuantizedWeight(out: c.out, in: c.inFeatures, scheme: c.scheme, seed: 5)
            let (packed, _) = packedView(weight)
            let rowMajor = try Int8Embedding(weight.view), table = try Int8Embedding(packed)
            var a = [Float](repeating: 0, count: c.inFeatures), b = a
            for row in [0, c.out / 2, c.out - 1] {
                try rowMajor.dequantizeRow(row, into: &a)
                try table.dequantizeRow(row, into: &b)
                #expect(a == b, "\(c.testDescription): embedding row \(row) differs")
            }
            #expect(throws: FlintError.self) { try table.dequantizeRow(c.out, into: &b) }
            #expect(try TensorConversion.floatArray(packed) == TensorConversion.floatArray(weight.view))
        }
    }

    @Test func packedViewsWithWrongSizesAreRejected() throws {
        let weight = QuantizedWeight(out: 20, in: 40, scheme: .int8Row, seed: 1)
        let (packed, memory) = packedView(weight)
        // One byte short of the packed size, and a row-major-sized packed view.
        for count in [packed.data.count - 1, 20 * 40] {
            let bad = TensorView(name: "bad.weight", storage: .i8, shape: [20, 40], scheme: .int8Row,
                                 data: UnsafeRawBufferPointer(start: memory.data.baseAddress, count: count),
                                 scales: packed.scales, layout: .int8Packed16x4, owner: memory)
            #expect(throws: FlintError.self) { try Int8Linear(bad, mode: .w8a8) }
            #expect(throws: FlintError.self) { try Int8Embedding(bad) }
            #expect(throws: FlintError.self) { try TensorConversion.floatStorage(bad) }
            #expect(throws: FlintError.self) { try bad.withRowMajorInt8 { _ in () } }
        }
        // A group size that does not start groups on quads cannot be packed.
        #expect(PackedInt8Geometry(shape: [4, 12], scheme: .int8Group(6)) == nil)
        #expect(PackedInt8Geometry(shape: [4, 12, 2], scheme: .int8Row) == nil)
    }
}
