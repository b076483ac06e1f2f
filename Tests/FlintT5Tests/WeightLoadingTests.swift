import Foundation
import Testing
import FlintFormat
import FlintCheckpoint
import FlintKernels
import FlintQuant
@testable import FlintT5

/// Forwards to a real checkpoint, replacing chosen tensors: to check what the model does with stored types and
/// bad shapes it would otherwise never see in the fixtures.
final class PatchedWeights: WeightSource, @unchecked Sendable {
    let base: WeightSource
    let patch: (TensorView) throws -> TensorView
    var keepAlive: [AnyObject] = []

    init(_ base: WeightSource, patch: @escaping (TensorView) throws -> TensorView) {
        self.base = base
        self.patch = patch
    }

    var config: T5Config { base.config }
    var tensorNames: [String] { base.tensorNames }
    var tokenizerModel: [UInt8]? { base.tokenizerModel }
    var sourceDescription: String { "patched " + base.sourceDescription }
    func tensor(_ name: String) throws -> TensorView { try patch(try base.tensor(name)) }
}

/// Owned bytes for a patched tensor.
final class ByteBox {
    let pointer: UnsafeMutableRawBufferPointer
    init(count: Int) { pointer = .allocate(byteCount: max(count, 1), alignment: 16) }
    deinit { pointer.deallocate() }
}

struct WeightLoadingTests {
    let folder = fixturesDirectory.appendingPathComponent("flan-tiny").path

    /// Every float tensor re-stored as bf16 or f16: the model must give the logits of the same weights rounded
    /// to that type, i.e. close to the float32 model (random tiny weights survive the rounding within 1e-2).
    @Test(arguments: [StorageType.f16, .bf16])
    func halfPrecisionWeightsAreWidenedAtLoad(storage: StorageType) throws {
        let base = try HFModelFolder(path: folder)
        var boxes: [ByteBox] = []
        let patched = PatchedWeights(base) { view in
            guard view.storage == .f32 else { return view }
            let floats = try TensorConversion.floatArray(view)
            let box = ByteBox(count: floats.count * 2)
            boxes.append(box)
            let halves = box.pointer.bindMemory(to: UInt16.self)
            for (i, f) in floats.enumerated() {
                halves[i] = storage == .f16 ? HalfConversion.f16Bits(f) : HalfConversion.bf16Bits(f)
            }
            return TensorView(name: view.name, storage: storage, shape: view.shape,
                              data: UnsafeRawBufferPointer(box.pointer), owner: box)
        }
        let reference = try T5ForConditionalGeneration(weights: base, pool: nil)
        let model = try T5ForConditionalGeneration(weights: patched, pool: nil)
        let ids = [28, 27, 14, 12, 36, 76, 42, 1]
        let expected = try reference.logits(inputIds: ids, decoderInputIds: [0])[0]
        let got = try model.logits(inputIds: ids, decoderInputIds: [0])[0]
        let error = try relativeError(got, expected.map(Double.init))
        #expect(error > 0, "the weights were not actually re-stored")
        #expect(error < 2e-2, "\(storage): relative error \(error)")
    }

    @Test func wrongShapeNamesTheTensor() throws {
        let base = try HFModelFolder(path: folder)
        let target = "decoder.block.1.layer.2.DenseReluDense.wo.weight"
        let patched = PatchedWeights(base) { view in
            guard view.name == target || view.name.hasSuffix(target) else { return view }
            return TensorView(name: view.name, storage: view.storage, shape: [view.shape[1], view.shape[0]],
                              data: view.data, owner: view.owner)
        }
        do {
            _ = try T5ForConditionalGeneration(weights: patched, pool: nil)
            Issue.record("a transposed \(target) was accepted")
        } catch let error as FlintError {
            #expect(error.message.contains(target), "\(error.message)")
        }
    }

    @Test func encoderOnlyCheckpointIsNotAGenerator() throws {
        let base = try HFModelFolder(path: fixturesDirectory.appendingPathComponent("t5-encoder").path)
        #expect(throws: FlintError.self) { try T5ForConditionalGeneration(weights: base, pool: nil) }
    }
}

struct Int8WeightTests {
    /// flan-tiny with every projection (not norms or the position-bias table) quantized to int8 groups of 16.
    static func quantizedFlanTiny() throws -> PatchedWeights {
        let base = try HFModelFolder(path: fixturesDirectory.appendingPathComponent("flan-tiny").path)
        let quantizer = try Int8GroupQuantizer(groupSize: 16)
        var cache: [String: TensorView] = [:]
        var boxes: [AnyObject] = []
        let lock = NSLock()
        return PatchedWeights(base) { view in
            guard view.shape.count == 2, !view.name.contains("relative_attention_bias") else { return view }
            lock.lock(); defer { lock.unlock() }
            if let done = cache[view.name] { return done }
            let floats = try TensorConversion.floatArray(view)
            let q = try floats.withUnsafeBufferPointer {
                try quantizer.quantize($0, rows: view.shape[0], cols: view.shape[1], tensorName: view.name)
            }
            let data = ByteBox(count: q.values.count)
            q.values.withUnsafeBytes { data.pointer.copyMemory(from: $0) }
            let scales = ByteBox(count: q.scales.count * 4)
            q.scales.withUnsafeBytes { scales.pointer.copyMemory(from: $0) }
            boxes.append(data); boxes.append(scales)
            let patched = TensorView(name: view.name, storage: .i8, shape: view.shape, scheme: .int8Group(16),
                                     data: UnsafeRawBufferPointer(start: data.pointer.baseAddress, count: q.values.count),
                                     scales: UnsafeBufferPointer(start: scales.pointer.baseAddress!.assumingMemoryBound(to: Float.self),
                                                                 count: q.scales.count),
                                     owner: [data, scales] as NSArray)
            cache[view.name] = patched
            return patched
        }
    }

    /// Each ISA's int8 kernels against the same int8 weights expanded to float32 and run on the portable float
    /// kernels (which the golden tests hold to transformers).
    @Test(arguments: KernelISA.allCases)
    func int8KernelsMatchDequantizedWeights(isa: KernelISA) throws {
        guard runsHere(isa) else { return }
        let weights = try Self.quantizedFlanTiny()
        let ids = [28, 27, 14, 12, 36, 76, 42, 1]
        let float = try LoadedModels.shared.model("flan-tiny", isa: .portable).logits(inputIds: ids, decoderInputIds: [0, 5])
        let dequantized = try T5ForConditionalGeneration(weights: weights, pool: nil, isa: .portable)
            .logits(inputIds: ids, decoderInputIds: [0, 5])
        let weightOnly = try T5ForConditionalGeneration(weights: weights, pool: nil, int8Kernels: .weightOnly, isa: isa)
            .logits(inputIds: ids, decoderInputIds: [0, 5])
        let w8a8 = try T5ForConditionalGeneration(weights: weights, pool: nil, int8Kernels: .w8a8, isa: isa)
            .logits(inputIds: ids, decoderInputIds: [0, 5])
        for step in 0..<2 {
            let reference = dequantized[step].map(Double.init)
            // Same numbers (int8 × scale), different summation order: measured ≤ 6.6e-7 (avx512 and portable).
            let weightOnlyError = try relativeError(weightOnly[step], reference)
            #expect(weightOnlyError < 5e-6, "\(isa) weight-only vs dequantized: \(weightOnlyError)")
            // Quantization changes the model a little, activations quantized too a little more; neither is exact.
            let int8Error = try relativeError(dequantized[step], float[step].map(Double.init))
            #expect(int8Error > 0 && int8Error < 0.1, "int8 weights vs float: \(int8Error)")
            let w8a8Error = try relativeError(w8a8[step], reference)
            #expect(w8a8Error > 0 && w8a8Error < 0.1, "w8a8 vs int8 weights: \(w8a8Error)")
        }
    }
}
