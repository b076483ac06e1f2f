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
        // Uninitialized: every buffer is written by the pass before it is read (`hidden` by the caller).
        hidden = FloatStorage(uninitializedCount: d); normed = FloatStorage(uninitializedCount: d)
        sublayerOutput = FloatStorage(uninitializedCount: d)
        queries = FloatStorage(uninitializedCount: inner); keys = FloatStorage(uninitializedCount: inner)
        values = FloatStorage(uninitializedCount: inner); context = FloatStorage(uninitializedCount: inner)
        ffInner = FloatStorage(uninitializedCount: ff); ffGate = FloatStorage(uninitializedCount: ff)
    }

    /// `hidden += sublayerOutput` (the residual add after every sublayer), split over the pool for long inputs.
    func addSublayerOutput(rows: Int, _ context: T5ForwardContext) {
        let (output, hidden) = (sublayerOutput.pointer, hidden.mutablePointer)
        context.forChunks(rows * dModel, minimumPerThread: 65536) { range in
            addScaled(output + range.lowerBound, scale: 1, into: hidden + range.lowerBound, count: range.count)
        }
    }
}
