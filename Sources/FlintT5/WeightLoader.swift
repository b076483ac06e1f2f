// Weight lookup by Hugging Face tensor name, with the shape each name must have.
import FlintFormat
import FlintKernels

/// Loads tensors from a WeightSource by Hugging Face name, checking each shape against the configuration.
struct WeightLoader {
    let source: WeightSource
    /// How int8 weights multiply (nil: expanded to float32 at load).
    let int8Kernels: Int8KernelMode?
    /// The kernels every layer runs.
    let isa: KernelISA
    /// f16 / bf16 linear weights multiplied from their stored bytes, pages handed back after each multiply (block
    /// streaming); otherwise LinearFactory's rule for resident models.
    var streamHalfPrecision = false
    /// One activation scratch for all int8 layers of the model: its layers run one after another.
    let int8Scratch = Int8Scratch()

    func linear(_ name: String, out: Int, in inFeatures: Int) throws -> LinearWeight {
        try LinearFactory.make(source.tensor(name), expectedShape: [out, inFeatures], int8Kernels: int8Kernels,
                               int8Scratch: int8Scratch, isa: isa, streamHalfPrecision: streamHalfPrecision)
    }

    /// A 1-D float tensor, borrowed in place when stored as aligned float32 (see `TensorConversion.floatStorage`).
    func vector(_ name: String, count: Int) throws -> FloatStorage {
        let view = try source.tensor(name)
        guard view.shape == [count] else {
            throw FlintError("tensor \(name) in \(source.sourceDescription): expected shape [\(count)], found \(view.shape)")
        }
        return try TensorConversion.floatStorage(view)
    }

    func matrix(_ name: String, rows: Int, cols: Int) throws -> FloatStorage {
        let view = try source.tensor(name)
        guard view.shape == [rows, cols] else {
            throw FlintError("tensor \(name) in \(source.sourceDescription): expected shape [\(rows), \(cols)], found \(view.shape)")
        }
        return try TensorConversion.floatStorage(view)
    }
}
