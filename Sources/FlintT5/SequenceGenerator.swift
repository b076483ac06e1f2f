// One request's decoding rules (greedy, sampling or beam search) for a caller that runs the decoder batch itself:
// a server's scheduler adds and removes requests between steps (continuous batching), so it cannot use
// `generate(batch:)`, which owns its batch from the first step to the last. The rules are the very objects
// `generate(batch:)` uses, so a request decodes the same tokens either way.
import FlintFormat

public final class T5SequenceGenerator {
    /// What one decoder step did for this request.
    public struct Step: Sendable, Equatable {
        /// Which of this request's rows each of its rows continues from (beam search reorders them; nil: each
        /// row continues itself). Offsets within the request: add the request's first row.
        public var sources: [Int]?
        /// The request is done: its rows leave the batch, `result` is final.
        public var finished: Bool
        /// The token chosen this step (greedy and sampling); nil for beam search, whose text is known only at
        /// the end (`result`).
        public var token: Int?
    }

    public let options: GenerationOptions
    private let request: DecodingRequest
    private var chosen: Int?

    /// Validates the options (a FlintError names the bad one).
    /// One sequence (sampling: the draw with the options' seed; several draws are several generators).
    public init(options: GenerationOptions, config: T5Config) throws {
        try options.validate(vocabSize: config.vocabSize)
        self.options = options
        let processors = LogitsProcessors(options: options, config: config)
        switch options.strategy {
        case .greedy:
            request = OneSequenceRequest(index: 0, options: options, config: config, processors: processors, sampler: nil)
        case .sampling(let sampling):
            request = OneSequenceRequest(index: 0, options: options, config: config, processors: processors,
                                         sampler: TokenSampler(options: sampling, vocabSize: config.vocabSize))
        case .beamSearch(let beam):
            request = BeamSearchRequest(index: 0, options: options, beam: beam, config: config, processors: processors)
        }
    }

    /// Decoder rows the request occupies (its beams, or 1).
    public var rowCount: Int { request.rowCount }

    /// Positions each row needs at most (`addSequences(maxLength:)`): the start token, the decoder prefix and
    /// every new token.
    public var maxLength: Int { options.maxNewTokens + 1 + options.decoderPrefix.count }

    /// The token each of the request's rows feeds into the next step, in row order.
    public var nextTokens: [Int] { request.nextTokens }

    /// Takes this step's logits of the request's rows (`rowCount × vocab`, modified in place).
    public func advance(_ logits: UnsafeMutableBufferPointer<Float>) -> Step {
        chosen = nil
        let step = request.advance(logits) { [unowned self] _, token in self.chosen = token }
        return Step(sources: step.sources, finished: step.finished, token: chosen)
    }

    /// The sequence so far (greedy, sampling) or the best finished hypothesis (beam search, once finished).
    public var result: GenerationResult { request.result }
}
