// Scratch buffers for running rows through a stack, allocated once per input batch or decoding batch.
import FlintFormat
import FlintKernels

final class T5Workspace {
    /// Rows the buffers hold.
    let rows: Int
    let dModel: Int
    let hidden: FloatStorage, normed: FloatStorage, sublayerOutput: FloatStorage
    let queries: FloatStorage, keys: FloatStorage, values: FloatStorage, context: FloatStorage
    let ffInner: FloatStorage, ffGate: FloatStorage

    init(rows: Int, config: T5Config) {
        self.rows = rows
        dModel = config.dModel
        let d = rows * config.dModel, inner = rows * config.innerDim, ff = rows * config.dFF
        hidden = FloatStorage(count: d); normed = FloatStorage(count: d); sublayerOutput = FloatStorage(count: d)
        queries = FloatStorage(count: inner); keys = FloatStorage(count: inner)
        values = FloatStorage(count: inner); context = FloatStorage(count: inner)
        ffInner = FloatStorage(count: ff); ffGate = FloatStorage(count: ff)
    }

    /// `hidden += sublayerOutput` (the residual add after every sublayer).
    func addSublayerOutput(rows: Int) {
        addScaled(sublayerOutput.pointer, scale: 1, into: hidden.mutablePointer, count: rows * dModel)
    }
}
