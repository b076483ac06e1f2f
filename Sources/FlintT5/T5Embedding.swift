// The token embedding `shared.weight` `[vocab, dModel]`, shared by both stacks (no scaling on input).
import FlintFormat
import FlintKernels

final class T5Embedding {
    /// Float rows (the table itself when stored as aligned float32), or nil when rows come from `int8Table`.
    let table: FloatStorage?
    /// An int8 `shared.weight` used in place from the mapped file when the model runs on int8 kernels: one row
    /// is dequantized per token instead of expanding the whole (vocab × d_model) table to float32 at load.
    let int8Table: Int8Embedding?
    let vocabSize: Int
    let dModel: Int

    init(_ loader: WeightLoader, config: T5Config) throws {
        let view = try loader.source.tensor("shared.weight")
        guard view.shape == [config.vocabSize, config.dModel] else {
            throw FlintError("tensor shared.weight in \(loader.source.sourceDescription): expected shape [\(config.vocabSize), \(config.dModel)], found \(view.shape)")
        }
        if view.storage == .i8, loader.int8Kernels != nil {
            int8Table = try Int8Embedding(view)
            table = nil
        } else {
            table = try TensorConversion.floatStorage(view)
            int8Table = nil
        }
        vocabSize = config.vocabSize
        dModel = config.dModel
    }

    /// Checks ids before any lookup: `what` names the input in the error.
    func validate(_ ids: [Int], _ what: String) throws {
        if let bad = ids.first(where: { $0 < 0 || $0 >= vocabSize }) {
            throw FlintError("\(what): token id \(bad) is outside the vocabulary (0..<\(vocabSize))")
        }
    }

    /// Row `ids[r]` into row r of `out`. Ids were range-checked by the callers (`validate`).
    func forward(_ ids: [Int], into out: UnsafeMutablePointer<Float>) {
        for (r, id) in ids.enumerated() {
            if let table {
                (out + r * dModel).update(from: table.pointer + id * dModel, count: dModel)
            } else {
                // The table's shape was checked at load and the id by the caller.
                try! int8Table!.dequantizeRow(id, into: out + r * dModel)
            }
        }
    }
}
