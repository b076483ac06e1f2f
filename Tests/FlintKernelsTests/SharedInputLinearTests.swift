// Int8Linear.forward(_:sharingInput:...): layers reading the same input (q/k/v, wi_0/wi_1, cross-attention k/v)
// quantize it once. The results must equal one `forward` per layer bit for bit — on every ISA, packed and
// row-major, with 1 or 2 threads — and layers that cannot share (weight-only, another group size, float) must
// still get their own correct output.
import Testing
import FlintFormat
@testable import FlintKernels

@Suite struct SharedInputLinearTests {
    /// Outputs of one `forward` per layer, the reference.
    private func separate(_ layers: [any LinearWeight], _ x: [Float], rows: Int, pool: ThreadPool?) -> [[Float]] {
        layers.map { layer in
            var y = [Float](repeating: .nan, count: rows * layer.outFeatures)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { layer.forward(xp.baseAddress!, rows: rows, into: $0.baseAddress!, pool: pool) }
            }
            return y
        }
    }

    private func shared(_ layers: [any LinearWeight], _ x: [Float], rows: Int, pool: ThreadPool?) -> [[Float]] {
        let outputs = layers.map { UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * $0.outFeatures)) }
        defer { outputs.forEach { $0.deallocate() } }
        for (layer, y) in zip(layers, outputs) { y.initialize(repeating: .nan, count: max(1, rows * layer.outFeatures)) }
        x.withUnsafeBufferPointer { xp in
            Int8Linear.forward(layers, sharingInput: xp.baseAddress!, rows: rows, into: outputs, pool: pool)
        }
        return zip(layers, outputs).map { Array(UnsafeBufferPointer(start: $1, count: rows * $0.outFeatures)) }
    }

    @Test(arguments: KernelISA.allCases)
    func sharedQuantizationEqualsOneForwardPerLayer(isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let k = 96
        // q/k/v-like layers (per-row and 32-groups, packed and row-major), a weight-only layer, a layer with other
        // groups, and a float layer: only the W8A8 layers quantizing like the first share.
        let weights = [
            QuantizedWeight(out: 40, in: k, scheme: .int8Row, seed: 1),
            QuantizedWeight(out: 33, in: k, scheme: .int8Row, seed: 2),
            QuantizedWeight(out: 64, in: k, scheme: .int8Row, seed: 3),
            QuantizedWeight(out: 24, in: k, scheme: .int8Row, seed: 4),
            QuantizedWeight(out: 20, in: k, scheme: .int8Group(32), seed: 5),
        ]
        let (packedFirst, packedMemory) = packedView(weights[0])
        let (packedThird, packedMemory3) = packedView(weights[2])
        let floatWeight = FloatStorage(count: 17 * k)
        for i in 0..<(17 * k) { floatWeight.mutablePointer[i] = Float((i * 37) % 23 - 11) / 64 }
        let layers: [any LinearWeight] = [
            try Int8Linear(packedFirst, mode: .w8a8, isa: isa),
            try Int8Linear(weights[1].view, mode: .w8a8, isa: isa),
            try Int8Linear(packedThird, mode: .w8a8, isa: isa),
            try Int8Linear(weights[3].view, mode: .weightOnly, isa: isa),
            try Int8Linear(weights[4].view, mode: .w8a8, isa: isa),
            FloatLinear(weight: floatWeight, outFeatures: 17, inFeatures: k, isa: isa),
        ]
        for rows in [1, 3, 8, 37] {
            let x = randomActivations(rows: rows, cols: k, seed: UInt64(rows))
            for pool in [nil, pool1, pool2] {
                let expected = separate(layers, x, rows: rows, pool: pool)
                let got = shared(layers, x, rows: rows, pool: pool)
                for (i, (y, e)) in zip(got, expected).enumerated() {
                    let differing = zip(y, e).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                    #expect(differing == 0, "\(isa), rows \(rows), threads \(pool?.threadCount ?? 0): layer \(i) has \(differing) of \(y.count) outputs differing from its own forward")
                }
            }
        }
        withExtendedLifetime((packedMemory, packedMemory3, weights)) {}
    }

    @Test func sharingNeedsTheSameQuantization() throws {
        let a = try Int8Linear(QuantizedWeight(out: 8, in: 64, scheme: .int8Row, seed: 1).view, mode: .w8a8, isa: .portable)
        let b = try Int8Linear(QuantizedWeight(out: 16, in: 64, scheme: .int8Row, seed: 2).view, mode: .w8a8, isa: .portable)
        let grouped = try Int8Linear(QuantizedWeight(out: 8, in: 64, scheme: .int8Group(32), seed: 3).view, mode: .w8a8, isa: .portable)
        let wider = try Int8Linear(QuantizedWeight(out: 8, in: 128, scheme: .int8Row, seed: 4).view, mode: .w8a8, isa: .portable)
        let weightOnly = try Int8Linear(QuantizedWeight(out: 8, in: 64, scheme: .int8Row, seed: 5).view, mode: .weightOnly, isa: .portable)
        #expect(a.quantizesInput(like: b))
        #expect(!a.quantizesInput(like: grouped))
        #expect(!a.quantizesInput(like: wider))
        #expect(!a.quantizesInput(like: weightOnly))
    }
}
