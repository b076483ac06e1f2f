// `T5LayerNorm`: RMS norm, `weight · x / sqrt(mean(x²) + eps)`, no mean subtraction, no bias.
import FlintKernels

struct T5LayerNorm {
    /// Borrowed from the mapped file when stored as aligned float32 (nothing is read at load: a model has a
    /// hundred-odd norms spread over the file, and copying them was most of a cold load's page faults).
    let weight: FloatStorage
    let epsilon: Float

    /// `name`: e.g. `encoder.block.0.layer.0.layer_norm.weight` or `decoder.final_layer_norm.weight`.
    init(_ loader: WeightLoader, _ name: String, dModel: Int, epsilon: Double) throws {
        weight = try loader.vector(name, count: dModel)
        self.epsilon = Float(epsilon)
    }

    /// `rows × dModel` from `x` into `y`, the rows split over `pool` when there are enough of them.
    func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool? = nil) {
        let d = weight.count
        guard let pool, rows * d >= 65536 else { return normalize(x, rows: 0..<rows, into: y) }
        pool.parallelFor(rows, minimumPerThread: max(1, 32768 / max(1, d))) { normalize(x, rows: $0, into: y) }
    }

    private func normalize(_ x: UnsafePointer<Float>, rows: Range<Int>, into y: UnsafeMutablePointer<Float>) {
        let d = weight.count, w = weight.pointer
        for r in rows {
            let row = x + r * d
            let variance = dot(row, row, count: d) / Float(d)
            let inverse = 1 / (variance + epsilon).squareRoot()
            let out = y + r * d
            for i in 0..<d { out[i] = w[i] * (row[i] * inverse) }
        }
    }
}
