// A float model with channel scalings applied (a SmoothQuant fold, an outlier transform): the same function as
// the source, in the basis a smoothed candidate was quantized in. The sensitivity hybrids (reference + one part
// of the candidate) must be built on it: folds reach ACROSS blocks (encoder.final_layer_norm → every decoder
// block's cross-attention k/v, decoder.final_layer_norm → lm_head), so mixing a smoothed part into an
// unsmoothed reference would change the function, not just add that part's quantization error.

import Foundation
import FlintFormat
import FlintKernels
import FlintQuant

public final class ScaledWeights: WeightSource, @unchecked Sendable {
    public let base: WeightSource
    private let scalings: [String: [ChannelScaling]]
    private var cache: [String: TensorView] = [:]
    private var buffers: [UnsafeMutableBufferPointer<Float>] = []
    private let lock = NSLock()
    /// Whether a scaled copy is kept for the next lookup (whole-model runs look every tensor up once per model
    /// built) or made afresh each time and freed with its last view (block-by-block runs, whose memory must not
    /// grow to the whole model).
    public let caching: Bool

    public init(base: WeightSource, scalings: [ChannelScaling], caching: Bool = true) {
        self.base = base
        self.scalings = scalings.byTensor()
        self.caching = caching
    }

    deinit { buffers.forEach { $0.deallocate() } }

    public var holdsQuantizedWeights: Bool { base.holdsQuantizedWeights }

    /// The float model in the basis `candidate` was quantized in: `reference` with the candidate's recorded
    /// smoothing folds applied (metadata `calibration.smoothing`), or `reference` itself for an unsmoothed
    /// candidate. Per-part comparisons (sensitivity hybrids) must start from it.
    public static func smoothedBasis(_ reference: WeightSource, for candidate: WeightSource,
                                     caching: Bool = true) throws -> WeightSource {
        guard let file = candidate as? FlintFile, let smoothing = try file.calibration()?.smoothing,
              !smoothing.folds.isEmpty else { return reference }
        return ScaledWeights(base: reference, scalings: try smoothing.channelScalings(), caching: caching)
    }

    public var config: T5Config { base.config }
    public var tensorNames: [String] { base.tensorNames }
    public var tokenizerModel: [UInt8]? { base.tokenizerModel }
    public var sourceDescription: String { base.sourceDescription + " (channel-scaled)" }

    /// Scaled tensors are float32 copies made once (each op one IEEE multiply or divide, as the converter does);
    /// the rest are the base's own views.
    public func tensor(_ name: String) throws -> TensorView {
        let view = try base.tensor(name)
        // Aliases (tied names) resolve to the stored tensor's name, whose scalings apply.
        guard let ops = scalings[view.name] ?? scalings[name] else { return view }
        if !caching {
            let copy = try ScaledCopy(view, ops)
            return TensorView(name: view.name, storage: .f32, shape: view.shape,
                              data: UnsafeRawBufferPointer(copy.values), owner: copy)
        }
        lock.lock()
        defer { lock.unlock() }
        if let cached = cache[view.name] { return cached }
        let floats = try TensorConversion.floatArray(view)
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, floats.count))
        _ = buffer.initialize(from: floats)
        let values = UnsafeMutableBufferPointer(start: buffer.baseAddress, count: floats.count)
        for op in ops { try op.apply(to: values, shape: view.shape) }
        buffers.append(buffer)
        let scaled = TensorView(name: view.name, storage: .f32, shape: view.shape,
                                data: UnsafeRawBufferPointer(values), owner: self)
        cache[view.name] = scaled
        return scaled
    }
}

/// One scaled float32 copy, freed with the last view that holds it.
private final class ScaledCopy {
    let values: UnsafeMutableBufferPointer<Float>

    init(_ view: TensorView, _ ops: [ChannelScaling]) throws {
        let floats = try TensorConversion.floatArray(view)
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, floats.count))
        _ = buffer.initialize(from: floats)
        values = UnsafeMutableBufferPointer(start: buffer.baseAddress, count: floats.count)
        do {
            for op in ops { try op.apply(to: values, shape: view.shape) }
        } catch {
            buffer.deallocate()
            throw error
        }
    }

    deinit { values.baseAddress?.deallocate() }
}
