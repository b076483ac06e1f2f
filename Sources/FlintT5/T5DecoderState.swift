// The decoder's state for a batch of sequences being decoded together: per sequence, its self-attention KV
// cache and the cross-attention keys/values of its encoder output; scratch buffers shared by the batch.
// Sequences can join and leave between steps (continuous batching), and beam search copies rows.
import FlintFormat
import FlintKernels

/// Cross-attention keys and values of one encoder output, for every decoder block, computed once when a request
/// starts and shared by all its rows (beams). Stored head-major, `[numHeads][encoderLength][dKV]` per block: a
/// decoding step reads each head's keys and values as one sequential stream (position-major rows put one head's
/// 64 floats 3 KB apart in flan-t5-base, 12 strided passes per block over caches the step's weights had evicted).
/// `precision` is the model's (`T5ForConditionalGeneration.attentionCache`).
public final class T5CrossAttentionCache: @unchecked Sendable {
    public let encoderLength: Int
    public let precision: AttentionCachePrecision
    let numHeads: Int, dKV: Int
    let keys: [AttentionCacheStorage], values: [AttentionCacheStorage]

    /// Caches for `layers` blocks; `store` fills them.
    init(encoderLength: Int, layers: Int, numHeads: Int, dKV: Int, precision: AttentionCachePrecision) {
        self.encoderLength = encoderLength
        self.numHeads = numHeads
        self.dKV = dKV
        self.precision = precision
        let count = encoderLength * numHeads * dKV
        keys = (0..<layers).map { _ in AttentionCacheStorage(count: count, precision: precision) }
        values = (0..<layers).map { _ in AttentionCacheStorage(count: count, precision: precision) }
    }

    /// Block `layer`'s keys and values from the projections' `[encoderLength][numHeads · dKV]` rows.
    func store(layer: Int, keys projectedKeys: UnsafePointer<Float>, values projectedValues: UnsafePointer<Float>,
               isa: KernelISA) {
        let inner = numHeads * dKV, (k, v) = (keys[layer], values[layer])
        for h in 0..<numHeads {
            for p in 0..<encoderLength {
                let at = (h * encoderLength + p) * dKV, from = p * inner + h * dKV
                k.rows(at: at).store(projectedKeys + from, count: dKV, isa: isa)
                v.rows(at: at).store(projectedValues + from, count: dKV, isa: isa)
            }
        }
    }

    /// Head h's `[encoderLength][dKV]` keys / values of block `layer`.
    func keys(layer: Int, head h: Int) -> AttentionCacheRows { keys[layer].rows(at: h * encoderLength * dKV) }
    func values(layer: Int, head h: Int) -> AttentionCacheRows { values[layer].rows(at: h * encoderLength * dKV) }
}

/// Self-attention caches of one row of a decoding batch, per decoder block head-major `[numHeads][capacity][dKV]`
/// (each head's cached keys and values one sequential stream, as the cross-attention caches), in the precision of
/// its cross-attention cache. Allocated for up to 256 positions and doubled when the sequence gets longer, so a
/// large `maxLength` costs memory only if the text really gets that long.
final class T5DecodingSequence {
    let cross: T5CrossAttentionCache
    let maxLength: Int
    /// Decoder positions already processed (the next token's position).
    var length = 0
    private(set) var capacity = 0
    private(set) var keys: [AttentionCacheStorage] = [], values: [AttentionCacheStorage] = []
    let numHeads: Int, dKV: Int

    init(cross: T5CrossAttentionCache, maxLength: Int, layers: Int, numHeads: Int, dKV: Int, initialCapacity: Int) {
        self.cross = cross
        self.maxLength = maxLength
        self.numHeads = numHeads
        self.dKV = dKV
        keys = (0..<layers).map { _ in AttentionCacheStorage(count: 0, precision: cross.precision) }
        values = keys
        grow(to: min(maxLength, max(1, initialCapacity)))
    }

    /// Head h's cached keys / values of block `layer`: `capacity` rows of `dKV` elements, `length` of them written.
    func keys(layer: Int, head h: Int) -> AttentionCacheRows { keys[layer].rows(at: h * capacity * dKV) }
    func values(layer: Int, head h: Int) -> AttentionCacheRows { values[layer].rows(at: h * capacity * dKV) }

    /// Writes block `layer`'s key and value rows (`numHeads · dKV` floats each) at position `length`.
    func append(layer: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>, isa: KernelISA) {
        let (k, v) = (keys[layer], values[layer])
        for h in 0..<numHeads {
            let at = (h * capacity + length) * dKV
            k.rows(at: at).store(key + h * dKV, count: dKV, isa: isa)
            v.rows(at: at).store(value + h * dKV, count: dKV, isa: isa)
        }
    }

    /// Makes room for `positions` cached positions (doubling), keeping what is cached.
    func reserve(positions: Int) throws {
        guard positions > capacity else { return }
        guard positions <= maxLength else {
            throw FlintError("decoder: position \(positions - 1) is beyond this sequence's \(maxLength) positions")
        }
        grow(to: min(maxLength, max(positions, 2 * capacity)))
    }

    private func grow(to newCapacity: Int) {
        let (heads, dKV, length, oldCapacity) = (numHeads, dKV, length, capacity)
        func regrown(_ cache: AttentionCacheStorage) -> AttentionCacheStorage {
            let bigger = AttentionCacheStorage(count: newCapacity * heads * dKV, precision: cache.precision)
            if length > 0 {
                for h in 0..<heads {
                    bigger.rows(at: h * newCapacity * dKV).copy(from: cache.rows(at: h * oldCapacity * dKV),
                                                                count: length * dKV)
                }
            }
            return bigger
        }
        keys = keys.map(regrown)
        values = values.map(regrown)
        capacity = newCapacity
    }

    /// Becomes a copy of `other` (same request: same encoder output and limits), reusing this row's memory.
    func copy(from other: T5DecodingSequence) throws {
        try reserve(positions: other.length)
        for l in keys.indices {
            for h in 0..<numHeads {
                keys(layer: l, head: h).copy(from: other.keys(layer: l, head: h), count: other.length * dKV)
                values(layer: l, head: h).copy(from: other.values(layer: l, head: h), count: other.length * dKV)
            }
        }
        length = other.length
    }

    func clone() -> T5DecodingSequence {
        let copy = T5DecodingSequence(cross: cross, maxLength: maxLength, layers: keys.count, numHeads: numHeads,
                                      dKV: dKV, initialCapacity: capacity)
        try! copy.copy(from: self)  // same capacity: cannot run out of positions
        return copy
    }
}

/// The decoder state of a batch: rows in order, each one sequence being decoded (a request's greedy sequence,
/// or one of its beams). `decodeStep` takes one token per row and returns one logits row per row. Rows can be
/// added (`T5ForConditionalGeneration.addSequences`) and removed (`removeRows`) between steps.
public final class T5DecoderState {
    let config: T5Config
    private(set) var sequences: [T5DecodingSequence] = []
    private(set) var workspace: T5Workspace
    private(set) var logits: FloatStorage
    private var biasBuffers: [FloatStorage] = []
    /// Positions allocated up front per row (tests use a small one to exercise growing).
    let initialCapacity: Int

    static let defaultInitialCapacity = 256

    init(config: T5Config, initialCapacity: Int = T5DecoderState.defaultInitialCapacity) {
        self.config = config
        self.initialCapacity = max(1, initialCapacity)
        workspace = T5Workspace(rows: 1, config: config)
        logits = FloatStorage(count: config.vocabSize)
    }

    /// Rows in the batch.
    public var rowCount: Int { sequences.count }
    /// Decoder positions already processed by each row (the position of its next token).
    public var lengths: [Int] { sequences.map(\.length) }
    /// Positions of row 0 (all rows of a single request advance together).
    public var length: Int { sequences.first?.length ?? 0 }

    /// The logits of the last step, `[rowCount, vocab]` (valid until the next step or change of rows).
    public var lastLogits: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: logits.pointer, count: sequences.count * config.vocabSize)
    }

    /// Appends `count` rows decoding against `cross`, at most `maxLength` positions each (the start token
    /// included); returns their row indices.
    func append(_ cross: T5CrossAttentionCache, count: Int, maxLength: Int) -> Range<Int> {
        let first = sequences.count
        for _ in 0..<count {
            sequences.append(T5DecodingSequence(cross: cross, maxLength: maxLength, layers: config.numDecoderLayers,
                                                numHeads: config.numHeads, dKV: config.dKV,
                                                initialCapacity: initialCapacity))
        }
        return first..<sequences.count
    }

    /// Removes rows (e.g. sequences that finished); the remaining rows keep their order.
    public func removeRows(_ rows: some Sequence<Int>) throws {
        let doomed = Set(rows)
        guard doomed.allSatisfy({ $0 >= 0 && $0 < sequences.count }) else {
            throw FlintError("decoder: rows \(doomed.sorted()) are not all in 0..<\(sequences.count)")
        }
        sequences = sequences.enumerated().filter { !doomed.contains($0.offset) }.map(\.element)
    }

    /// Beam search: row `r` continues from row `sources[r]`, so its cache becomes a copy of that row's. A row
    /// nobody continues from lends its memory to a copy; a pure permutation copies nothing.
    public func reorderRows(_ sources: [Int]) throws {
        guard sources.count == sequences.count, sources.allSatisfy({ $0 >= 0 && $0 < sequences.count }) else {
            throw FlintError("decoder: reorder \(sources) does not name \(sequences.count) existing rows")
        }
        if sources.enumerated().allSatisfy({ $0.offset == $0.element }) { return }
        var taken = [Bool](repeating: false, count: sequences.count)
        var spare = sequences.indices.filter { !sources.contains($0) }.map { sequences[$0] }
        var reordered: [T5DecodingSequence] = []
        reordered.reserveCapacity(sources.count)
        for source in sources {
            let original = sequences[source]
            if !taken[source] {
                taken[source] = true
                reordered.append(original)
            } else if let row = spare.popLast(), row.cross === original.cross {
                try row.copy(from: original)
                reordered.append(row)
            } else {
                reordered.append(original.clone())
            }
        }
        sequences = reordered
    }

    /// The old name of `reorderRows` for a state holding one request's beams.
    public func reorderBeams(_ sources: [Int]) throws { try reorderRows(sources) }

    /// Sizes the shared scratch for the current rows before a step.
    func prepareStep() throws {
        let rows = sequences.count
        if workspace.rows < rows {
            workspace = T5Workspace(rows: max(rows, 2 * workspace.rows), config: config)
        }
        if logits.count < rows * config.vocabSize {
            logits = FloatStorage(count: workspace.rows * config.vocabSize)
        }
        for sequence in sequences { try sequence.reserve(positions: sequence.length + 1) }
    }

    /// Scratch for step bias `index` (one per bias table of the decoder), at least `count` floats.
    func biasBuffer(_ index: Int, count: Int) -> FloatStorage {
        while biasBuffers.count <= index { biasBuffers.append(FloatStorage(count: 0)) }
        if biasBuffers[index].count < count { biasBuffers[index] = FloatStorage(count: max(count, 2 * biasBuffers[index].count)) }
        return biasBuffers[index]
    }

    func advance() { for sequence in sequences { sequence.length += 1 } }
}
