// The encoder's last hidden state, and the encoder pass itself (shared by both model types).
import FlintFormat
import FlintKernels

/// The encoder's last hidden state for one input: `length × dModel` floats, row-major.
public struct T5EncoderOutput: Sendable {
    public let hiddenStates: [Float]
    public let length: Int
    public let dModel: Int

    public init(hiddenStates: [Float], length: Int, dModel: Int) {
        precondition(hiddenStates.count == length * dModel, "T5EncoderOutput: \(hiddenStates.count) floats for \(length) × \(dModel)")
        self.hiddenStates = hiddenStates
        self.length = length
        self.dModel = dModel
    }

    /// Row `i` (the hidden state of input token `i`).
    public func row(_ i: Int) -> ArraySlice<Float> { hiddenStates[(i * dModel)..<((i + 1) * dModel)] }

    /// The mean over tokens (a sentence embedding).
    public var meanOverTokens: [Float] {
        var mean = [Float](repeating: 0, count: dModel)
        for i in 0..<length { for c in 0..<dModel { mean[c] += hiddenStates[i * dModel + c] } }
        return mean.map { $0 / Float(max(length, 1)) }
    }
}

/// Runs several inputs through the encoder at once: their tokens are packed one after another, so every linear
/// layer multiplies all rows of the batch together, while attention stays within each input (the same numbers
/// as padding to the longest input with an attention mask, without the padding). One output per input.
func runEncoder(_ stack: T5Stack, embedding: T5Embedding, inputs: [[Int]], _ context: T5ForwardContext) throws -> [T5EncoderOutput] {
    guard !inputs.isEmpty else { return [] }
    for (i, ids) in inputs.enumerated() {
        let what = inputs.count == 1 ? "encoder input" : "encoder input \(i)"
        guard !ids.isEmpty else { throw FlintError("\(what): no token ids (at least one is needed)") }
        try embedding.validate(ids, what)
    }
    let config = stack.config, d = config.dModel
    let lengths = inputs.map(\.count), rows = lengths.reduce(0, +)
    let work = T5Workspace(rows: rows, config: config)
    embedding.forward(inputs.flatMap { $0 }, into: work.hidden.mutablePointer)
    let ranges = segments(lengths)
    stack.forward(work, rows: rows, pass: T5SequencePass(stack: stack, segments: ranges), context)
    stack.finalLayerNorm.forward(work.hidden.pointer, rows: rows, into: work.normed.mutablePointer, pool: context.pool)
    return ranges.map { range in
        T5EncoderOutput(hiddenStates: Array(UnsafeBufferPointer(start: work.normed.pointer + range.lowerBound * d,
                                                                count: range.count * d)),
                        length: range.count, dModel: d)
    }
}

/// Embedding rows for token ids (the input of block 0 of either stack): `ids.count × dModel` floats.
func embedRows(_ embedding: T5Embedding, _ ids: [Int]) throws -> [Float] {
    try embedding.validate(ids, "embedding")
    guard !ids.isEmpty else { return [] }
    var rows = [Float](repeating: 0, count: ids.count * embedding.dModel)
    rows.withUnsafeMutableBufferPointer { embedding.forward(ids, into: $0.baseAddress!) }
    return rows
}
