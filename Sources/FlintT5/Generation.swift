// Decoding: greedy, beam search with the exact rules of transformers 4.57's `GenerationMixin._beam_search`, and
// seeded sampling (temperature, top-k, top-p). Sequences start with the decoder start token, like HF's output.
import Foundation
import FlintFormat

/// Beam search settings, with the meaning of `generate(num_beams=, length_penalty=, early_stopping=)`.
public struct BeamSearchOptions: Sendable, Equatable {
    public var numBeams: Int
    /// A finished hypothesis scores `sum of log-probs / generatedLength ** lengthPenalty`, where the generated
    /// length counts the tokens after the decoder start token, the eos included.
    /// A Double like Python's float, so `length ** lengthPenalty` is the number transformers computes.
    public var lengthPenalty: Double
    /// true: stop as soon as `numBeams` hypotheses are finished. false: stop when the best running beam,
    /// normalized by its current length, cannot beat the worst finished one.
    public var earlyStopping: Bool

    public init(numBeams: Int, lengthPenalty: Double = 1.0, earlyStopping: Bool = false) {
        self.numBeams = numBeams
        self.lengthPenalty = lengthPenalty
        self.earlyStopping = earlyStopping
    }

    /// A Float penalty is taken through its shortest decimal form, so `Float(0.6)` means Python's `0.6`.
    public init(numBeams: Int, lengthPenalty: Float, earlyStopping: Bool = false) {
        self.init(numBeams: numBeams, lengthPenalty: Double("\(lengthPenalty)") ?? Double(lengthPenalty),
                  earlyStopping: earlyStopping)
    }
}

/// Sampling settings; processors apply in HF's order: temperature, top-k, top-p.
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Float
    /// Keep only the k most likely tokens (0 = no limit).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches topP (1 = no limit).
    public var topP: Float
    /// The same seed gives the same tokens.
    public var seed: UInt64

    public init(temperature: Float = 1.0, topK: Int = 0, topP: Float = 1.0, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }
}

public enum DecodingStrategy: Sendable, Equatable {
    case greedy
    case beamSearch(BeamSearchOptions)
    case sampling(SamplingOptions)
}

public struct GenerationOptions: Sendable, Equatable {
    /// At most this many tokens after the decoder start token (HF `max_new_tokens`; the eos counts).
    public var maxNewTokens: Int
    /// The eos cannot be chosen before this many tokens were generated (HF `min_new_tokens`: its logit is -inf
    /// until then). Equal to `maxNewTokens`, every sequence runs to the limit (the benchmarks do this).
    public var minNewTokens: Int
    public var strategy: DecodingStrategy
    /// HF `min_length`: the eos cannot be chosen while the decoder sequence (start token and prefix included) is
    /// shorter than this.
    public var minLength: Int = 0
    /// HF `no_repeat_ngram_size`: no n-gram of this size occurs twice in the decoder sequence (start token
    /// included); 0 = off.
    public var noRepeatNgramSize: Int = 0
    /// HF `repetition_penalty`: the score of every token already in the decoder sequence is divided by this when
    /// positive and multiplied when negative (> 1 discourages repeats); 1 = off.
    public var repetitionPenalty: Double = 1
    /// HF `bad_words_ids`: token sequences that must not be generated (a one-token word is never chosen; a longer
    /// one's last token is banned after its other tokens).
    public var badWordsIds: [[Int]] = []
    /// HF `suppress_tokens`: tokens never chosen.
    public var suppressTokens: [Int] = []
    /// HF `num_return_sequences`: beam search returns this many finished hypotheses (best first, at most
    /// `numBeams`); sampling draws this many independent sequences. Greedy returns one.
    public var numReturnSequences: Int = 1
    /// Tokens forced after the decoder start token before generation begins (HF `decoder_input_ids` =
    /// `[decoder_start_token_id] + decoderPrefix`); `maxNewTokens` and `minNewTokens` count after them, and the
    /// returned sequence contains them.
    public var decoderPrefix: [Int] = []
    /// HF `stop_strings`: greedy and sampling stop once the output text contains one of them (see `StopStrings`);
    /// the tokens that make the match stay in the output. Not with beam search.
    public var stopStrings: StopStrings? = nil
    /// HF `eos_token_id` of the generation config: a sequence ends at any of these tokens; nil = the model
    /// config's `eos_token_id` alone. Frontends take it from the file's generation settings.
    public var eosTokenIds: [Int]? = nil
    /// HF `decoder_start_token_id` of the generation config; nil = the model config's.
    public var decoderStartTokenId: Int? = nil

    public init(maxNewTokens: Int = 20, minNewTokens: Int = 0, strategy: DecodingStrategy = .greedy) {
        self.maxNewTokens = maxNewTokens
        self.minNewTokens = minNewTokens
        self.strategy = strategy
    }

    /// Checks the numbers; names the first bad option.
    public func validate() throws {
        guard maxNewTokens >= 1 else { throw FlintError("generation: max new tokens must be at least 1, got \(maxNewTokens)") }
        guard minNewTokens >= 0 else { throw FlintError("generation: min new tokens must be 0 or more, got \(minNewTokens)") }
        guard minLength >= 0 else { throw FlintError("generation: min length must be 0 or more, got \(minLength)") }
        guard noRepeatNgramSize >= 0 else { throw FlintError("generation: no-repeat n-gram size must be 0 (off) or more, got \(noRepeatNgramSize)") }
        guard repetitionPenalty > 0, repetitionPenalty.isFinite else {
            throw FlintError("generation: repetition penalty must be a positive number, got \(repetitionPenalty)")
        }
        guard numReturnSequences >= 1 else { throw FlintError("generation: number of returned sequences must be at least 1, got \(numReturnSequences)") }
        if let empty = badWordsIds.firstIndex(where: { $0.isEmpty }) {
            throw FlintError("generation: bad word \(empty) has no tokens")
        }
        switch strategy {
        case .greedy:
            guard numReturnSequences == 1 else {
                throw FlintError("generation: greedy decoding returns one sequence; \(numReturnSequences) need beam search with at least as many beams, or sampling")
            }
        case .beamSearch(let beam):
            guard stopStrings == nil || stopStrings!.strings.isEmpty else {
                throw FlintError("generation: stop strings work with greedy decoding and sampling, not beam search")
            }
            guard beam.numBeams >= 1 else { throw FlintError("generation: number of beams must be at least 1, got \(beam.numBeams)") }
            guard numReturnSequences <= beam.numBeams else {
                throw FlintError("generation: \(numReturnSequences) returned sequences need at least as many beams, got \(beam.numBeams)")
            }
            guard beam.lengthPenalty.isFinite else { throw FlintError("generation: length penalty must be finite, got \(beam.lengthPenalty)") }
        case .sampling(let sampling):
            guard sampling.temperature > 0, sampling.temperature.isFinite else {
                throw FlintError("generation: temperature must be a positive number, got \(sampling.temperature)")
            }
            guard sampling.topK >= 0 else { throw FlintError("generation: top-k must be 0 (off) or positive, got \(sampling.topK)") }
            guard sampling.topP > 0, sampling.topP <= 1 else {
                throw FlintError("generation: top-p must be in (0, 1], got \(sampling.topP)")
            }
        }
    }

    /// The tokens that end a sequence: `eosTokenIds`, else the config's eos.
    public func endTokens(_ config: T5Config) -> [Int] { eosTokenIds ?? [config.eosTokenId] }

    /// The first decoder token: `decoderStartTokenId`, else the config's.
    public func startToken(_ config: T5Config) -> Int { decoderStartTokenId ?? config.decoderStartTokenId }

    /// These options with the special ids a model file's generation settings name, where the options set none
    /// (what `flint run`, `flint serve` and `FlintModel` generate with).
    public func withSpecialIds(of defaults: GenerationDefaults?) -> GenerationOptions {
        var o = self
        o.eosTokenIds = eosTokenIds ?? defaults?.eosTokenIds
        o.decoderStartTokenId = decoderStartTokenId ?? defaults?.decoderStartTokenId
        return o
    }

    /// Checks every token id the options name against a vocabulary of `vocabSize`.
    public func validate(vocabSize: Int) throws {
        try validate()
        if eosTokenIds?.isEmpty == true { throw FlintError("generation: eos token ids: the list is empty (nil means the config's)") }
        for (name, ids) in [("decoder prefix", decoderPrefix), ("suppressed tokens", suppressTokens), ("bad words", badWordsIds.flatMap { $0 }),
                            ("eos token ids", eosTokenIds ?? []), ("decoder start token", decoderStartTokenId.map { [$0] } ?? [])] {
            if let bad = ids.first(where: { $0 < 0 || $0 >= vocabSize }) {
                throw FlintError("generation: \(name): token \(bad) is outside the vocabulary (0..<\(vocabSize))")
            }
        }
    }
}

/// One returned sequence: the decoder start token, the prefix, the generated tokens; and its beam score.
public struct GeneratedSequence: Sendable, Equatable {
    public var sequence: [Int]
    /// Beam search: the length-normalized score (HF `sequences_scores`); nil for greedy and sampling.
    public var score: Float?

    public init(sequence: [Int], score: Float?) {
        self.sequence = sequence
        self.score = score
    }
}

public struct GenerationResult: Sendable, Equatable {
    /// The decoder start token, then the generated tokens (ending with eos unless the length limit came first).
    public var sequence: [Int]
    /// Beam search: the returned hypothesis' length-normalized score; nil for greedy and sampling.
    public var score: Float?
    /// Wall time of the encoder pass (of the whole batch, when generated in one) and of decoding until this
    /// sequence finished (the cross-attention set-up included).
    public var encoderSeconds: Double = 0
    public var decoderSeconds: Double = 0
    /// All `numReturnSequences` sequences, best first for beam search; the first is `sequence` / `score`.
    public var returned: [GeneratedSequence] = []

    /// The generated tokens without the decoder start token.
    public var generatedIds: [Int] { Array(sequence.dropFirst()) }
}

extension T5ForConditionalGeneration {
    /// Generates for one input. `onToken` receives each token as it is chosen (greedy and sampling); beam search
    /// only knows its tokens at the end and reports them then.
    public func generate(inputIds: [Int], options: GenerationOptions,
                         onToken: ((Int) -> Void)? = nil) throws -> GenerationResult {
        try generate(batch: [inputIds], options: options, onToken: onToken.map { report in { _, token in report(token) } })[0]
    }

    /// Generates for several inputs decoded together: one encoder pass over all of them, then one decoder step
    /// per position for every sequence still running (a request's beams are rows of the batch); a sequence
    /// leaves the batch as soon as it finishes. Each result is what `generate(inputIds:)` gives for that input
    /// alone (the same rules per sequence; the numbers agree up to float rounding). `onToken(input, token)` as in
    /// the single-input form.
    public func generate(batch inputs: [[Int]], options: GenerationOptions,
                         onToken: ((_ input: Int, _ token: Int) -> Void)? = nil) throws -> [GenerationResult] {
        try options.validate(vocabSize: config.vocabSize)
        guard !inputs.isEmpty else { return [] }
        let start = DispatchTime.now().uptimeNanoseconds
        let encoded = try encode(batch: inputs)
        let encodedAt = DispatchTime.now().uptimeNanoseconds
        let encoderSeconds = Double(encodedAt - start) / 1e9
        let state = makeDecoderState()
        var running: [DecodingRequest] = []
        let processors = LogitsProcessors(options: options, config: config)
        let cacheLength = options.maxNewTokens + 1 + options.decoderPrefix.count
        for (index, encoderOutput) in encoded.enumerated() {
            var requests: [DecodingRequest] = []
            switch options.strategy {
            case .greedy:
                requests = [OneSequenceRequest(index: index, options: options, config: config, processors: processors, sampler: nil)]
            case .sampling(let sampling):
                // Independent draws: draw i uses seed + i (draw 0 is what a single sequence gets).
                requests = (0..<options.numReturnSequences).map { draw in
                    var seeded = sampling
                    seeded.seed = sampling.seed &+ UInt64(draw)
                    return OneSequenceRequest(index: index, options: options, config: config, processors: processors,
                                              sampler: TokenSampler(options: seeded, vocabSize: config.vocabSize))
                }
            case .beamSearch(let beam):
                requests = [BeamSearchRequest(index: index, options: options, beam: beam, config: config, processors: processors)]
            }
            let cross = try crossAttentionCache(encoderOutput)
            for request in requests {
                try addSequences(to: state, cross: cross, rows: request.rowCount, maxLength: cacheLength)
                running.append(request)
            }
        }
        var results = [GenerationResult?](repeating: nil, count: inputs.count)
        let vocab = config.vocabSize
        while !running.isEmpty {
            let logits = try decodeStep(state, tokens: running.flatMap(\.nextTokens))
            var sources: [Int] = [], leaving: [Int] = [], stillRunning: [DecodingRequest] = []
            var row = 0
            for request in running {
                let rows = row..<(row + request.rowCount)
                let own = UnsafeMutableBufferPointer(mutating: UnsafeBufferPointer(
                    rebasing: logits[(rows.lowerBound * vocab)..<(rows.upperBound * vocab)]))
                let step = request.advance(own, onToken: onToken)
                sources += step.sources?.map { $0 + row } ?? Array(rows)
                if step.finished {
                    leaving += rows
                    var result = request.result
                    result.encoderSeconds = encoderSeconds
                    result.decoderSeconds = Double(DispatchTime.now().uptimeNanoseconds - encodedAt) / 1e9
                    if case .beamSearch = options.strategy, let onToken {
                        result.sequence.dropFirst(processors.promptLength).forEach { onToken(request.index, $0) }
                    }
                    if var earlier = results[request.index] {
                        // A further sampled draw of the same input.
                        earlier.returned += result.returned
                        earlier.decoderSeconds = max(earlier.decoderSeconds, result.decoderSeconds)
                        results[request.index] = earlier
                    } else {
                        results[request.index] = result
                    }
                } else {
                    stillRunning.append(request)
                }
                row = rows.upperBound
            }
            try state.reorderRows(sources)
            if !leaving.isEmpty { try state.removeRows(leaving) }
            running = stillRunning
        }
        return results.map { $0! }
    }
}

/// One request of a decoding batch: its rows' next tokens, and what it does with their logits.
protocol DecodingRequest: AnyObject {
    /// The request's position in the batch given to `generate`.
    var index: Int { get }
    var rowCount: Int { get }
    var nextTokens: [Int] { get }
    /// Takes this step's logits of the request's rows (`rowCount × vocab`, may be modified); returns which of
    /// its rows each row continues from (nil: each its own) and whether the request is done.
    func advance(_ logits: UnsafeMutableBufferPointer<Float>, onToken: ((Int, Int) -> Void)?) -> (sources: [Int]?, finished: Bool)
    var result: GenerationResult { get }
}

/// Greedy (no sampler) or sampling: one row.
final class OneSequenceRequest: DecodingRequest {
    let index: Int
    let rowCount = 1
    private var sequence: [Int]
    /// Decoder prefix tokens not yet fed.
    private var forced: ArraySlice<Int>
    private var sampler: TokenSampler?
    private let maxNewTokens: Int
    private let processors: LogitsProcessors
    private let stop: StopStrings?
    private let eos: Set<Int>

    init(index: Int, options: GenerationOptions, config: T5Config, processors: LogitsProcessors, sampler: TokenSampler?) {
        stop = options.stopStrings
        self.index = index
        sequence = [options.startToken(config)]
        sequence.reserveCapacity(options.maxNewTokens + 1 + options.decoderPrefix.count)
        forced = options.decoderPrefix[...]
        self.sampler = sampler
        maxNewTokens = options.maxNewTokens
        self.processors = processors
        eos = Set(options.endTokens(config))
    }

    var nextTokens: [Int] { [sequence.last!] }

    func advance(_ logits: UnsafeMutableBufferPointer<Float>, onToken: ((Int, Int) -> Void)?) -> (sources: [Int]?, finished: Bool) {
        if let token = forced.popFirst() {
            // The prefix is fed, not chosen: this step's logits only move the cache on.
            sequence.append(token)
            return (nil, false)
        }
        if !processors.isEmpty { processors.apply(logits, sequence: sequence) }
        let scores = UnsafeBufferPointer(logits)
        let next = sampler != nil ? sampler!.sample(scores) : argmax(scores)
        sequence.append(next)
        onToken?(index, next)
        return (nil, eos.contains(next) || sequence.count - processors.promptLength >= maxNewTokens || stop?.matches(sequence) == true)
    }

    var result: GenerationResult {
        var r = GenerationResult(sequence: sequence, score: nil)
        r.returned = [GeneratedSequence(sequence: sequence, score: nil)]
        return r
    }
}

/// Beam search for one request, step for step as transformers 4.57 `_beam_search` (one or several eos tokens) and the
/// logits processors of `LogitsProcessors` applied to each beam's log-probs (`decoder_prompt_len` = the decoder
/// start token and the prefix).
/// Scores are float32 and the "impossible" marks are the same `-1e9` additions, so ties resolve alike.
final class BeamSearchRequest: DecodingRequest {
    let index: Int
    let rowCount: Int
    private let options: BeamSearchOptions
    private let vocab: Int, eos: Set<Int>
    private let maxLength: Int
    private let processors: LogitsProcessors
    private let promptLength: Int
    private let numReturn: Int
    /// Decoder prefix tokens not yet fed (every beam gets the same).
    private var forced: ArraySlice<Int>
    private let impossible: Float = -1.0e9
    // Running beams: the first starts at 0, the others at -1e9 so step one only expands the first.
    private var running: [[Int]]
    private var runningScores: [Float]
    // Finished hypotheses, kept sorted best first.
    private var finished: [[Int]]
    private var finishedScores: [Float]
    private var isFinished: [Bool]
    private var improvementPossible = true
    private var currentLength: Int
    private var logProbs: [Float]
    private var top: TopK

    init(index: Int, options generation: GenerationOptions, beam: BeamSearchOptions, config: T5Config,
         processors: LogitsProcessors) {
        self.index = index
        options = beam
        rowCount = beam.numBeams
        vocab = config.vocabSize
        let endTokens = generation.endTokens(config)
        eos = Set(endTokens)
        self.processors = processors
        promptLength = processors.promptLength
        maxLength = generation.maxNewTokens + promptLength
        numReturn = generation.numReturnSequences
        forced = generation.decoderPrefix[...]
        currentLength = promptLength
        running = [[Int]](repeating: [generation.startToken(config)] + generation.decoderPrefix, count: beam.numBeams)
        runningScores = [Float](repeating: impossible, count: beam.numBeams)
        runningScores[0] = 0
        finished = running
        finishedScores = [Float](repeating: impossible, count: beam.numBeams)
        isFinished = [Bool](repeating: false, count: beam.numBeams)
        logProbs = [Float](repeating: 0, count: config.vocabSize)
        // HF `beams_to_keep`: enough candidates that num_beams survive even if the eos tokens take the best ones.
        top = TopK(capacity: max(2, 1 + endTokens.count) * beam.numBeams)
    }

    /// While the prefix is fed, every beam takes the decoder start token, then the prefix tokens but the last;
    /// from then on each beam's newest token (the last prefix token first).
    var nextTokens: [Int] {
        let fed = promptLength - 1 - forced.count
        if !forced.isEmpty { return [Int](repeating: running[0][fed], count: rowCount) }
        return running.map { $0.last! }
    }

    func advance(_ logits: UnsafeMutableBufferPointer<Float>, onToken: ((Int, Int) -> Void)?) -> (sources: [Int]?, finished: Bool) {
        let numBeams = rowCount
        if forced.popFirst() != nil {
            // Feeding the prefix (already in `running`): nothing is chosen this step.
            return (nil, false)
        }
        // Best `max(2, 1 + eos count) × numBeams` of (beam score + processed log-softmax) over all beams × vocabulary.
        top.reset()
        for b in 0..<numBeams {
            let row = UnsafeBufferPointer(rebasing: logits[(b * vocab)..<((b + 1) * vocab)])
            logSoftmax(row, into: &logProbs)
            if !processors.isEmpty {
                logProbs.withUnsafeMutableBufferPointer { processors.apply($0, sequence: running[b]) }
            }
            let base = runningScores[b]
            for t in 0..<vocab { top.offer(logProbs[t] + base, index: b * vocab + t) }
        }
        let candidates = top.sortedDescending()
        let candidateBeam = candidates.map { $0.index / vocab }
        let candidateToken = candidates.map { $0.index % vocab }
        let hitsStop = candidateToken.map { eos.contains($0) || currentLength + 1 >= maxLength }

        // Next running beams: the best candidates that did not stop.
        let runningValue = (0..<candidates.count).map { candidates[$0].value + (hitsStop[$0] ? impossible : 0) }
        let runningOrder = stableTopIndices(runningValue, count: numBeams)

        // Finished hypotheses: only the first `numBeams` candidates may enter, scored by length.
        let lengthDivisor = Float(pow(Double(currentLength + 1 - promptLength), options.lengthPenalty))
        let allFinished = isFinished.allSatisfy { $0 }
        var newScores: [Float] = []
        for c in 0..<candidates.count {
            var score = candidates[c].value / lengthDivisor
            if allFinished && options.earlyStopping { score += impossible }
            if !improvementPossible { score += impossible }
            if !(hitsStop[c] && c < numBeams) { score += impossible }
            newScores.append(score)
        }
        let mergedScores = finishedScores + newScores
        let mergedSequences = finished + (0..<candidates.count).map { running[candidateBeam[$0]] + [candidateToken[$0]] }
        let mergedIsFinished = isFinished + (0..<candidates.count).map { hitsStop[$0] && $0 < numBeams }
        let kept = stableTopIndices(mergedScores, count: numBeams)
        finished = kept.map { mergedSequences[$0] }
        finishedScores = kept.map { mergedScores[$0] }
        isFinished = kept.map { mergedIsFinished[$0] }

        let sources = runningOrder.map { candidateBeam[$0] }
        running = runningOrder.map { running[candidateBeam[$0]] + [candidateToken[$0]] }
        runningScores = runningOrder.map { runningValue[$0] }
        currentLength += 1

        // HF `_check_early_stop_heuristic` (early_stopping True/False): the best running beam at its current
        // length against the worst finished one; a beam slot not yet finished always allows improvement.
        let bestPossible = runningScores[0] / Float(pow(Double(currentLength - promptLength), options.lengthPenalty))
        let worstFinished = finishedScores.min()!
        improvementPossible = improvementPossible
            && isFinished.contains { bestPossible > ($0 ? worstFinished : impossible) }
        let openBeamExists = !(isFinished.allSatisfy { $0 } && options.earlyStopping)
        let continuationExists = !hitsStop.allSatisfy { $0 }
        return (sources, !(improvementPossible && openBeamExists && continuationExists))
    }

    var result: GenerationResult {
        var r = GenerationResult(sequence: finished[0], score: finishedScores[0])
        r.returned = (0..<numReturn).map { GeneratedSequence(sequence: finished[$0], score: finishedScores[$0]) }
        return r
    }
}

// MARK: - Helpers

/// Index of the largest value; the first one on ties (like torch.argmax).
func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
    var best = 0
    for i in values.indices where values[i] > values[best] { best = i }
    return best
}

/// `x - max - log(Σ exp(x - max))` in float32, like torch's log_softmax.
func logSoftmax(_ logits: UnsafeBufferPointer<Float>, into out: inout [Float]) {
    var maxValue = -Float.infinity
    for v in logits { maxValue = max(maxValue, v) }
    var total: Float = 0
    for v in logits { total += expf(v - maxValue) }
    let logTotal = logf(total)
    for (i, v) in logits.enumerated() { out[i] = v - maxValue - logTotal }
}

/// The indices of the `count` largest values, largest first; equal values keep their original order.
func stableTopIndices(_ values: [Float], count: Int) -> [Int] {
    let order = values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
    return Array(order.prefix(count))
}

/// The k largest (value, index) pairs of a stream, without sorting the stream.
struct TopK {
    struct Entry { var value: Float; var index: Int }
    let capacity: Int
    private(set) var entries: [Entry] = []

    init(capacity: Int) {
        self.capacity = capacity
        entries.reserveCapacity(capacity + 1)
    }

    mutating func reset() { entries.removeAll(keepingCapacity: true) }

    /// Keeps the entries sorted descending; on equal values the earlier index stays ahead.
    mutating func offer(_ value: Float, index: Int) {
        if entries.count == capacity {
            guard value > entries[capacity - 1].value else { return }
            entries.removeLast()
        }
        var position = entries.count
        while position > 0 && entries[position - 1].value < value { position -= 1 }
        entries.insert(Entry(value: value, index: index), at: position)
    }

    func sortedDescending() -> [Entry] { entries }
}

/// A small seeded generator (SplitMix64): the same seed gives the same stream on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1) from the top 53 bits.
    mutating func nextUnit() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }
}

/// Temperature, top-k, top-p, then a draw from the remaining distribution.
struct TokenSampler {
    let options: SamplingOptions
    var generator: SplitMix64
    private var probabilities: [Float]
    private var order: [Int]

    init(options: SamplingOptions, vocabSize: Int) {
        self.options = options
        generator = SplitMix64(seed: options.seed)
        probabilities = [Float](repeating: 0, count: vocabSize)
        order = Array(0..<vocabSize)
    }

    mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int {
        let n = logits.count
        // Work in place in the buffer allocated once per request.
        var scaled = probabilities
        probabilities = []
        defer { probabilities = scaled }
        for i in 0..<n { scaled[i] = logits[i] / options.temperature }
        // top-k (HF TopKLogitsWarper): drop everything below the k-th largest value (ties with it stay).
        if options.topK > 0 && options.topK < n {
            var top = TopK(capacity: options.topK)
            for i in 0..<n { top.offer(scaled[i], index: i) }
            let threshold = top.entries.last!.value
            for i in 0..<n where scaled[i] < threshold { scaled[i] = -.infinity }
        }
        // Softmax over what is left.
        var maxValue = -Float.infinity
        for v in scaled { maxValue = max(maxValue, v) }
        var total: Float = 0
        for i in 0..<n {
            let e = scaled[i] == -.infinity ? 0 : expf(scaled[i] - maxValue)
            scaled[i] = e
            total += e
        }
        for i in 0..<n { scaled[i] /= total }
        // top-p (HF TopPLogitsWarper): in ascending order, drop tokens while the cumulative probability stays
        // at or below 1 - topP; the most likely token always stays.
        if options.topP < 1 {
            order.sort { scaled[$0] < scaled[$1] || (scaled[$0] == scaled[$1] && $0 < $1) }
            var cumulative: Float = 0
            var removed: Float = 0
            for (rank, i) in order.enumerated() where rank < n - 1 {
                cumulative += scaled[i]
                if cumulative <= 1 - options.topP {
                    removed += scaled[i]
                    scaled[i] = 0
                } else {
                    break
                }
            }
            let kept = 1 - removed
            if kept > 0 { for i in 0..<n { scaled[i] /= kept } }
        }
        let u = Float(generator.nextUnit())
        var cumulative: Float = 0
        var last = 0
        for i in 0..<n where scaled[i] > 0 {
            cumulative += scaled[i]
            last = i
            if u < cumulative { return i }
        }
        return last
    }
}
