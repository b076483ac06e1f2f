// `T5Attention`: multi-head attention without score scaling (`q·kᵀ`, no 1/sqrt(d_kv)), the relative-position
// bias and the mask added to the scores before a float32 softmax. Self-attention (`SelfAttention`) adds a
// position bias; cross-attention (`EncDecAttention`) attends over the encoder output with none.
import FlintFormat
import FlintKernels

final class T5Attention {
    let q: T5Linear, k: T5Linear, v: T5Linear, o: T5Linear
    let numHeads: Int
    let dKV: Int
    let isa: KernelISA
    var innerDim: Int { numHeads * dKV }
    /// This layer's own `relative_attention_bias.weight` when it has one: T5 stores it in block 0's
    /// self-attention only (the other blocks reuse it), UMT5 in every self-attention; cross-attention never
    /// uses one (a stray table in a checkpoint is ignored, as transformers does).
    let relativeBias: RelativePositionBias?

    /// `prefix`: e.g. `encoder.block.0.layer.0.SelfAttention` or `decoder.block.3.layer.1.EncDecAttention`.
    /// `biasDirection`: load this layer's bias table, bucketed bidirectionally (encoder) or causally (decoder).
    init(_ loader: WeightLoader, prefix: String, config: T5Config, biasDirection: BiasDirection?) throws {
        let inner = config.innerDim, d = config.dModel
        q = try T5Linear(loader, "\(prefix).q.weight", out: inner, in: d)
        k = try T5Linear(loader, "\(prefix).k.weight", out: inner, in: d)
        v = try T5Linear(loader, "\(prefix).v.weight", out: inner, in: d)
        o = try T5Linear(loader, "\(prefix).o.weight", out: d, in: inner)
        numHeads = config.numHeads
        dKV = config.dKV
        isa = loader.isa
        relativeBias = try biasDirection.map {
            try RelativePositionBias(loader, "\(prefix).relative_attention_bias.weight", config: config,
                                     bidirectional: $0 == .bidirectional)
        }
    }

    enum BiasDirection { case bidirectional, causal }

    // MARK: Whole sequences (encoder; teacher-forced decoder rows)

    /// Self-attention of whole sequences packed one after another in `x` (`segments` are their row ranges; a
    /// row attends only within its own sequence, which is what padding plus an attention mask would give,
    /// without computing the padding). Causal: query i sees keys 0...i (teacher-forced decoder rows).
    /// Writes the projected output (`o`) to `y`.
    func forwardSequences(_ x: UnsafePointer<Float>, rows: Int, segments: [Range<Int>], causal: Bool,
                          bias: SequenceBias, work: T5Workspace, into y: UnsafeMutablePointer<Float>,
                          _ context: T5ForwardContext) {
        T5Linear.forward([q, k, v], sharingInput: x, rows: rows,
                         into: [work.queries.mutablePointer, work.keys.mutablePointer, work.values.mutablePointer], context)
        let inner = innerDim, dKV = dKV, heads = numHeads, isa = isa
        let longest = segments.map(\.count).max() ?? 0
        let queries = work.queries.pointer, keys = work.keys.pointer, values = work.values.pointer
        let output = work.context.mutablePointer
        let tiled = VectorMath.hasAttendSequence(isa)
        let forItems: (Range<Int>) -> Void = { items in
            if tiled {
                // The path's tiled kernel: per thread, one head's transposed keys and 4 score rows.
                let sizes = VectorMath.attendSequenceScratch(length: longest, dKV: dKV)
                let keyScratch = UnsafeMutablePointer<Float>.allocate(capacity: sizes.keys)
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: sizes.scores)
                defer { keyScratch.deallocate(); scores.deallocate() }
                for item in items {
                    let segment = segments[item / heads], h = item % heads
                    let offset = segment.lowerBound * inner + h * dKV
                    _ = VectorMath.attendSequence(
                        queries: queries + offset, keys: keys + offset, values: values + offset, length: segment.count,
                        stride: inner, dKV: dKV, bias: bias.centre(head: h), causal: causal, keyScratch: keyScratch,
                        scores: scores, context: output + offset, isa: isa)
                }
                return
            }
            // Portable: one head's keys and transposed values made contiguous, and its score matrix.
            let keyScratch = UnsafeMutablePointer<Float>.allocate(capacity: longest * dKV)
            let valueScratch = UnsafeMutablePointer<Float>.allocate(capacity: longest * dKV)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: longest * longest)
            defer { keyScratch.deallocate(); valueScratch.deallocate(); scores.deallocate() }
            for item in items {
                let segment = segments[item / heads], h = item % heads
                let offset = segment.lowerBound * inner + h * dKV
                Self.attendHeadAsMatrices(
                    queries: queries + offset, keys: keys + offset, values: values + offset,
                    length: segment.count, stride: inner, dKV: dKV, bias: bias.centre(head: h), causal: causal,
                    keyScratch: keyScratch, valueScratch: valueScratch, scores: scores, context: output + offset, isa: isa)
            }
        }
        let items = segments.count * heads
        if let pool = context.pool { pool.parallelFor(items, forItems) } else { forItems(0..<items) }
        o.forward(work.context.pointer, rows: rows, into: y, context)
    }

    /// Cross-attention of whole sequences: the rows of `segments[s]` attend over `encoderStates[s]` (its keys
    /// and values are projected here). Writes the projected output to `y`.
    func forwardCrossSequences(_ x: UnsafePointer<Float>, rows: Int, segments: [Range<Int>],
                               encoderStates: [T5EncoderOutput], work: T5Workspace,
                               into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext) {
        q.forward(x, rows: rows, into: work.queries.mutablePointer, context)
        let inner = innerDim
        for (segment, encoded) in zip(segments, encoderStates) {
            let keys = FloatStorage(uninitializedCount: encoded.length * inner)
            let values = FloatStorage(uninitializedCount: encoded.length * inner)
            let scores = FloatStorage(count: encoded.length)
            encoded.hiddenStates.withUnsafeBufferPointer { states in
                T5Linear.forward([k, v], sharingInput: states.baseAddress!, rows: encoded.length,
                                 into: [keys.mutablePointer, values.mutablePointer], context)
            }
            for h in 0..<numHeads {
                let offset = segment.lowerBound * inner + h * dKV
                VectorMath.attend(queries: work.queries.pointer + offset, queryCount: segment.count,
                                  keys: keys.pointer + h * dKV, values: values.pointer + h * dKV,
                                  keyCount: encoded.length, stride: inner, dKV: dKV, bias: nil, biasRowStride: 0,
                                  scores: scores.mutablePointer, context: work.context.mutablePointer + offset, isa: isa)
            }
        }
        o.forward(work.context.pointer, rows: rows, into: y, context)
    }

    // MARK: One decoding step

    /// Self-attention of one new row per sequence of a decoding batch: row r's key and value are appended to its
    /// cache at position `state.sequences[r].length`, then the row attends over positions 0...length with its
    /// causal bias. Writes the projected output to `y`.
    func forwardStep(_ x: UnsafePointer<Float>, state: T5DecoderState, layer: Int, bias: StepBias,
                     work: T5Workspace, into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext) {
        let rows = state.rowCount
        T5Linear.forward([q, k, v], sharingInput: x, rows: rows,
                         into: [work.queries.mutablePointer, work.keys.mutablePointer, work.values.mutablePointer], context)
        let inner = innerDim, dKV = dKV, isa = isa
        let sequences = state.sequences
        var longest = 0
        for (r, sequence) in sequences.enumerated() {
            sequence.append(layer: layer, key: work.keys.pointer + r * inner, value: work.values.pointer + r * inner,
                            isa: isa)
            longest = max(longest, sequence.length + 1)
        }
        let queries = work.queries.pointer, output = work.context.mutablePointer
        // One query: the kernel's `stride` only steps through the keys and values, which are head-major.
        attendRowsAndHeads(rows: rows, longest: longest, context) { r, h, scores in
            let sequence = sequences[r]
            VectorMath.attend(queries: queries + r * inner + h * dKV, queryCount: 1,
                              keys: sequence.keys(layer: layer, head: h), values: sequence.values(layer: layer, head: h),
                              keyCount: sequence.length + 1, stride: dKV, dKV: dKV, bias: bias.row(r, head: h),
                              biasRowStride: 0, scores: scores, context: output + r * inner + h * dKV, isa: isa)
        }
        o.forward(work.context.pointer, rows: rows, into: y, context)
    }

    /// Cross-attention of one new row per sequence over that sequence's encoder output (keys and values
    /// projected once, when the sequence joined the batch). Writes the projected output to `y`.
    func forwardCrossStep(_ x: UnsafePointer<Float>, state: T5DecoderState, layer: Int, work: T5Workspace,
                          into y: UnsafeMutablePointer<Float>, _ context: T5ForwardContext) {
        let rows = state.rowCount
        q.forward(x, rows: rows, into: work.queries.mutablePointer, context)
        let inner = innerDim, dKV = dKV, isa = isa
        let sequences = state.sequences
        let longest = sequences.map(\.cross.encoderLength).max() ?? 0
        let queries = work.queries.pointer, output = work.context.mutablePointer
        attendRowsAndHeads(rows: rows, longest: longest, context) { r, h, scores in
            let cross = sequences[r].cross
            VectorMath.attend(queries: queries + r * inner + h * dKV, queryCount: 1,
                              keys: cross.keys(layer: layer, head: h), values: cross.values(layer: layer, head: h),
                              keyCount: cross.encoderLength, stride: dKV, dKV: dKV, bias: nil, biasRowStride: 0,
                              scores: scores, context: output + r * inner + h * dKV, isa: isa)
        }
        o.forward(work.context.pointer, rows: rows, into: y, context)
    }

    /// Runs `body(row, head, scores)` for every (row, head) of a decoding step, split over the pool when the
    /// step has enough work: the heads of all rows are independent, and at batch 8 they were the serial part of
    /// a 2-thread step (the keys and values they read, `longest × dKV` floats twice per item, come from memory:
    /// 8 rows of flan-t5-small read ~20 MB of caches per step). Each thread gets its own `longest` score floats;
    /// the results do not depend on the split.
    private func attendRowsAndHeads(rows: Int, longest: Int, _ context: T5ForwardContext,
                                    _ body: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        let heads = numHeads, items = rows * heads
        guard items > 0 else { return }
        // About 8k multiply-adds per thread before a wake-up pays (the workers spin between the jobs of a step).
        let minimumItems = max(1, 8192 / max(1, longest * dKV))
        withoutActuallyEscaping(body) { body in
            let run: (Range<Int>) -> Void = { range in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, longest)) { scores in
                    for item in range { body(item / heads, item % heads, scores.baseAddress!) }
                }
            }
            if let pool = context.pool { pool.parallelFor(items, minimumPerThread: minimumItems, run) } else { run(0..<items) }
        }
    }

    // MARK: Kernels

    /// Self-attention of one head over a whole sequence, as two matrix products so the float GEMM kernel does
    /// the work: `S = Q·Kᵀ + bias`, row softmax, `context = S·V`. Query i and key j take `bias[j - i]` (the
    /// head's relative-position bias, centred on position 0). Causal: key j > i is masked out (its weight is
    /// exactly 0, as HF's additive minimum-value mask gives after the softmax). The scratch buffers hold
    /// `length × dKV` (twice) and `length × length` floats.
    static func attendHeadAsMatrices(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                                     values: UnsafePointer<Float>, length: Int, stride: Int, dKV: Int,
                                     bias: UnsafePointer<Float>, causal: Bool = false,
                                     keyScratch: UnsafeMutablePointer<Float>,
                                     valueScratch: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>,
                                     context: UnsafeMutablePointer<Float>, isa: KernelISA) {
        for j in 0..<length {
            (keyScratch + j * dKV).update(from: keys + j * stride, count: dKV)
            for c in 0..<dKV { valueScratch[c * length + j] = values[j * stride + c] }
        }
        MatrixMultiply.multiplyTransposed(x: queries, rows: length, xStride: stride, w: keyScratch,
                                          outFeatures: length, inFeatures: dKV, y: scores, pool: nil, isa: isa)
        for i in 0..<length {
            let row = scores + i * length
            let biasRow = bias - i
            let visible = causal ? i + 1 : length
            for j in 0..<visible { row[j] += biasRow[j] }
            VectorMath.softmax(row, count: visible, isa: isa)
            for j in visible..<length { row[j] = 0 }
        }
        MatrixMultiply.multiplyTransposed(x: scores, rows: length, w: valueScratch, outFeatures: dKV,
                                          inFeatures: length, y: context, yStride: stride, pool: nil, isa: isa)
    }
}

/// A self-attention bias for whole sequences: `numHeads × width` floats, entry `centre + (key - query)` of a
/// head's row is that relative position's bias (width `2 × longest - 1`, so every sequence of the batch fits).
struct SequenceBias {
    let values: FloatStorage
    let width: Int

    init(_ table: RelativePositionBias, longest: Int) {
        width = 2 * longest - 1
        values = FloatStorage(count: table.numHeads * width)
        table.fill(values.mutablePointer, lowest: -(longest - 1), highest: longest - 1)
    }

    /// Head h's bias of relative position 0; relative position r is at offset r.
    func centre(head h: Int) -> UnsafePointer<Float> { values.pointer + h * width + (width - 1) / 2 }
}

/// The causal self-attention bias of one decoding step: for every row of the batch, `numHeads × keyCount`
/// floats for relative positions `-position...0` (the row's cached keys and its new one), in a buffer the
/// decoder state keeps from step to step.
struct StepBias {
    let values: UnsafePointer<Float>
    /// Where row r's entries start, and its key count.
    let offsets: [Int]
    let keyCounts: [Int]

    init(_ table: RelativePositionBias, state: T5DecoderState, buffer: Int) {
        var offsets: [Int] = [], keyCounts: [Int] = [], total = 0
        offsets.reserveCapacity(state.rowCount)
        keyCounts.reserveCapacity(state.rowCount)
        for sequence in state.sequences {
            offsets.append(total)
            keyCounts.append(sequence.length + 1)
            total += table.numHeads * (sequence.length + 1)
        }
        let storage = state.biasBuffer(buffer, count: total)
        for r in 0..<offsets.count {
            table.fill(storage.mutablePointer + offsets[r], lowest: -(keyCounts[r] - 1), highest: 0)
        }
        values = storage.pointer
        self.offsets = offsets
        self.keyCounts = keyCounts
    }

    func row(_ r: Int, head h: Int) -> UnsafePointer<Float> { values + offsets[r] + h * keyCounts[r] }
}
