// Where quality is lost, measured rather than guessed: the reference model with ONE component (a block, a single
// tensor, or the output head) taken from the candidate, scored teacher-forced against the reference itself.
// A component's sensitivity is the mean KL (and top-1 agreement) the whole model loses when only that component
// is the candidate's. `flint verify` names the component that costs most as the culprit; `flint convert
// --target-top1` moves the most sensitive tensors to a finer scheme.

import Foundation
import FlintFormat
import FlintKernels
import FlintT5

/// The reference's weights, except the tensors named in `fromCandidate`, which come from the candidate.
/// Everything the model looks up by name goes through `tensor(_:)`, so the hybrid is an ordinary WeightSource.
public final class HybridWeights: WeightSource, @unchecked Sendable {
    public let reference: WeightSource
    public let candidate: WeightSource
    public let fromCandidate: Set<String>
    let label: String

    public init(reference: WeightSource, candidate: WeightSource, fromCandidate: Set<String>, label: String) {
        self.reference = reference
        self.candidate = candidate
        self.fromCandidate = fromCandidate
        self.label = label
    }

    public var config: T5Config { reference.config }
    public var tensorNames: [String] { reference.tensorNames }
    public var tokenizerModel: [UInt8]? { reference.tokenizerModel }
    public var sourceDescription: String { "\(reference.sourceDescription) with \(label) from \(candidate.sourceDescription)" }

    public func tensor(_ name: String) throws -> TensorView {
        fromCandidate.contains(name) ? try candidate.tensor(name) : try reference.tensor(name)
    }

    public var holdsQuantizedWeights: Bool {
        (!fromCandidate.isEmpty && candidate.holdsQuantizedWeights) || reference.holdsQuantizedWeights
    }
}

/// One prompt's teacher-forcing script: the reference's own greedy continuation and the reference's logits on it.
public struct TeacherScript: Sendable {
    public var inputIds: [Int]
    /// Decoder inputs: the start token and all but the last generated token.
    public var decoderInputIds: [Int]
    /// `[decoderInputIds.count][vocab]`.
    public var referenceLogits: [[Float]]

    public init(inputIds: [Int], decoderInputIds: [Int], referenceLogits: [[Float]]) {
        self.inputIds = inputIds
        self.decoderInputIds = decoderInputIds
        self.referenceLogits = referenceLogits
    }
}

/// A part of the model measured on its own: a set of tensor names taken from the candidate together.
public struct SensitivityComponent: Sendable, Equatable {
    public var name: String
    public var tensors: [String]
    public init(name: String, tensors: [String]) {
        self.name = name
        self.tensors = tensors
    }
}

/// The quality the whole model keeps when only one component is the candidate's.
public struct ComponentSensitivity: Codable, Sendable, Equatable {
    public var name: String
    /// Mean KL(reference ‖ hybrid) over every teacher-forced step, in nats.
    public var meanKL: Double
    /// Teacher-forced top-1 agreement of the hybrid with the reference.
    public var top1Agreement: Double
    /// The component's tensors as the candidate stores them are bit-identical to the reference's (not run).
    public var identical: Bool
    public var tensors: [String]

    public init(name: String, meanKL: Double, top1Agreement: Double, identical: Bool, tensors: [String]) {
        self.name = name
        self.meanKL = meanKL
        self.top1Agreement = top1Agreement
        self.identical = identical
        self.tensors = tensors
    }

    enum CodingKeys: String, CodingKey {
        case name
        case meanKL = "mean_kl"
        case top1Agreement = "top1_agreement"
        case identical, tensors
    }
}

/// Teacher-forced agreement of a whole model with the reference's scripts.
public struct TeacherForcedScore: Sendable, Equatable {
    public var top1Agreement: Double
    public var meanKL: Double
    public var steps: Int
}

public enum Sensitivity {
    /// The reference's greedy continuations and logits for `inputs` (what every sensitivity run is scored on).
    public static func scripts(reference: WeightSource, inputs: [VerifyInput], maxNewTokens: Int,
                               pool: ThreadPool? = .shared, int8Kernels: Int8KernelMode? = .weightOnly,
                               progress: ((Int, Int) -> Void)? = nil) throws -> [TeacherScript] {
        let model = try T5ForConditionalGeneration(weights: reference, pool: pool, int8Kernels: int8Kernels)
        let greedy = GenerationOptions(maxNewTokens: maxNewTokens, strategy: .greedy)
        var result: [TeacherScript] = []
        for (i, input) in inputs.enumerated() {
            let generated = try model.generate(inputIds: input.inputIds, options: greedy)
            let script = Array(generated.sequence.dropLast())
            let logits = try model.logits(inputIds: input.inputIds, decoderInputIds: script)
            result.append(TeacherScript(inputIds: input.inputIds, decoderInputIds: script, referenceLogits: logits))
            progress?(i + 1, inputs.count)
        }
        return result
    }

    /// Scores `weights` teacher-forced on `scripts` (top-1 agreement and mean KL against the reference logits).
    public static func score(_ weights: WeightSource, scripts: [TeacherScript], pool: ThreadPool? = .shared,
                             int8Kernels: Int8KernelMode? = .weightOnly) throws -> TeacherForcedScore {
        let model = try T5ForConditionalGeneration(weights: weights, pool: pool, int8Kernels: int8Kernels)
        var hits = 0, steps = 0
        var klSum = 0.0
        for s in scripts {
            let logits = try model.logits(inputIds: s.inputIds, decoderInputIds: s.decoderInputIds)
            for (r, c) in zip(s.referenceLogits, logits) {
                if Verifier.argmax(r) == Verifier.argmax(c) { hits += 1 }
                klSum += Verifier.klDivergence(reference: r, candidate: c)
                steps += 1
            }
        }
        return TeacherForcedScore(top1Agreement: Double(hits) / Double(max(1, steps)),
                                  meanKL: klSum / Double(max(1, steps)), steps: steps)
    }

    /// One component per encoder and decoder block: every tensor whose name starts with `encoder.block.N.` or
    /// `decoder.block.N.` (its norms included, so a scale folded from a norm into the block's linears moves with
    /// them).
    public static func blockComponents(_ candidate: WeightSource) -> [SensitivityComponent] {
        let names = candidate.tensorNames
        return candidate.config.weightLayout.blockNames.map { block in
            SensitivityComponent(name: block, tensors: names.filter { $0.hasPrefix(block + ".") })
        }
    }

    /// Whether two views hold the same bytes in the same form.
    public static func identical(_ a: TensorView, _ b: TensorView) -> Bool {
        guard a.storage == b.storage, a.shape == b.shape, a.scheme == b.scheme,
              a.data.count == b.data.count, a.scales.count == b.scales.count else { return false }
        if a.data.count > 0, memcmp(a.data.baseAddress!, b.data.baseAddress!, a.data.count) != 0 { return false }
        if a.scales.count > 0, memcmp(a.scales.baseAddress!, b.scales.baseAddress!, a.scales.count * 4) != 0 { return false }
        return true
    }

    /// Measures every component: the reference with that component's tensors from the candidate, scored on
    /// `scripts`. Components whose tensors are bit-identical in both are reported as exact without running.
    /// `progress(done, total, name)` after each component.
    public static func measure(reference: WeightSource, candidate: WeightSource, components: [SensitivityComponent],
                               scripts: [TeacherScript], pool: ThreadPool? = .shared,
                               int8Kernels: Int8KernelMode? = .weightOnly,
                               progress: ((Int, Int, String) -> Void)? = nil) throws -> [ComponentSensitivity] {
        var result: [ComponentSensitivity] = []
        for (i, component) in components.enumerated() {
            let same = try component.tensors.allSatisfy { name in
                identical(try candidate.tensor(name), try reference.tensor(name))
            }
            if same {
                result.append(ComponentSensitivity(name: component.name, meanKL: 0, top1Agreement: 1, identical: true,
                                                   tensors: component.tensors))
            } else {
                let hybrid = HybridWeights(reference: reference, candidate: candidate,
                                           fromCandidate: Set(component.tensors), label: component.name)
                let s = try score(hybrid, scripts: scripts, pool: pool, int8Kernels: int8Kernels)
                result.append(ComponentSensitivity(name: component.name, meanKL: s.meanKL, top1Agreement: s.top1Agreement,
                                                   identical: false, tensors: component.tensors))
            }
            progress?(i + 1, components.count, component.name)
        }
        return result
    }
}

/// The output head measured as a layer: the reference's last decoder block output (before the final norm) goes
/// through the reference's final norm and head, and through the candidate's final norm and head, so the head's
/// own error is separated from everything upstream of it.
final class HeadProbe {
    let dModel: Int, vocab: Int
    let epsilon: Float
    let outputScale: Float
    let referenceNorm: [Float], candidateNorm: [Float]
    let referenceHead: LinearWeight, candidateHead: LinearWeight
    let pool: ThreadPool?
    let headName: String

    init(reference: WeightSource, candidate: WeightSource, pool: ThreadPool?, int8Kernels: Int8KernelMode?) throws {
        let c = reference.config
        dModel = c.dModel
        vocab = c.vocabSize
        epsilon = Float(c.layerNormEpsilon)
        outputScale = c.scaleDecoderOutputs ? Float(pow(Double(c.dModel), -0.5)) : 1
        headName = c.weightLayout.outputProjection
        referenceNorm = try TensorConversion.floatArray(try reference.tensor("decoder.final_layer_norm.weight"))
        candidateNorm = try TensorConversion.floatArray(try candidate.tensor("decoder.final_layer_norm.weight"))
        guard referenceNorm.count == dModel, candidateNorm.count == dModel else {
            throw FlintError("decoder.final_layer_norm.weight: expected \(dModel) values")
        }
        let scratch = Int8Scratch()
        referenceHead = try LinearFactory.make(try reference.tensor(headName), expectedShape: [vocab, dModel],
                                               int8Kernels: int8Kernels, int8Scratch: scratch)
        candidateHead = try LinearFactory.make(try candidate.tensor(headName), expectedShape: [vocab, dModel],
                                               int8Kernels: int8Kernels, int8Scratch: scratch)
        self.pool = pool
    }

    /// The reference head's and the candidate head's logits for one hidden row.
    func logits(_ hidden: [Float]) -> (reference: [Float], candidate: [Float]) {
        precondition(hidden.count == dModel)
        var variance: Float = 0
        for v in hidden { variance += v * v }
        let inverse = 1 / (variance / Float(dModel) + epsilon).squareRoot()
        let refIn = (0..<dModel).map { referenceNorm[$0] * (hidden[$0] * inverse) * outputScale }
        let candIn = (0..<dModel).map { candidateNorm[$0] * (hidden[$0] * inverse) * outputScale }
        var r = [Float](repeating: 0, count: vocab), c = [Float](repeating: 0, count: vocab)
        refIn.withUnsafeBufferPointer { x in
            r.withUnsafeMutableBufferPointer { referenceHead.forward(x.baseAddress!, rows: 1, into: $0.baseAddress!, pool: pool) }
        }
        candIn.withUnsafeBufferPointer { x in
            c.withUnsafeMutableBufferPointer { candidateHead.forward(x.baseAddress!, rows: 1, into: $0.baseAddress!, pool: pool) }
        }
        return (r, c)
    }
}
