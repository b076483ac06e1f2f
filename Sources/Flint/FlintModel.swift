// The high-level entry point: one model file (or folder) opened with its tokenizer, ready to generate text,
// stream it, embed and tokenize. Everything below it (FlintFormat, FlintT5, FlintKernels, ...) stays reachable
// for programs that need more control.

import Foundation

/// A T5 / FLAN-T5 model with its tokenizer, ready to generate text, stream it, embed and tokenize.
///
/// ```swift
/// import Flint
///
/// let model = try FlintModel(contentsOf: URL(fileURLWithPath: "flan-t5-small.flint"))
/// let answer = try model.generate("translate English to German: How old are you?")
/// ```
///
/// Int8 weights of a `.flint` file are used in place from the memory-mapped file (``Kernels/auto``): a
/// flan-t5-base int8 file runs in about a quarter of the memory its float32 weights would take. A model is
/// safe to use from several tasks at once; each call runs on the model's thread pool.
public final class FlintModel: Sendable {
    /// Where the weights come from (a `FlintFile`, or an `HFModelFolder` read into memory).
    public let weights: WeightSource
    /// The model's configuration (sizes, special token ids, activation).
    public let config: T5Config
    /// The tokenizer the model carries (tokenizer.json or spiece.model, as AutoTokenizer would load it).
    public let tokenizer: T5Tokenizer
    /// How int8 weights multiply (`nil`: they were widened to float32 at load, ``Kernels/dequantized``).
    public let int8Kernels: Int8KernelMode?
    /// The threads the matrix kernels run on.
    public let pool: ThreadPool
    /// The generation settings the weights carry (`WeightSource.generationDefaults()`); generation takes their eos and
    /// decoder start tokens unless the options name their own.
    public let generationDefaults: GenerationDefaults?
    /// The encoder-decoder engine; nil for an encoder-only checkpoint (T5EncoderModel), which can only embed.
    public let generator: T5ForConditionalGeneration?
    private let encoderOnly: T5EncoderModel?

    /// How int8 weights are multiplied. Int4 weights run W4A8 in place (activations quantized per weight group)
    /// in every mode but `.dequantized`.
    public enum Kernels: String, Sendable, CaseIterable {
        /// W8A8 for files converted with calibration and smoothing (their activation outliers were folded
        /// into the weights), weight-only otherwise. What `flint run` uses by default.
        case auto
        /// Int8 weights read in place, widened in registers; float activations and accumulation.
        case weightOnly = "weight-only"
        /// Int8 weights and int8 activations (quantized per row on the fly), Int32 accumulation: faster.
        case w8a8
        /// Int8 and int4 weights widened to float32 once, at load: the reference arithmetic, at four (eight) times
        /// the memory.
        case dequantized

        /// The int8 mode these weights run with (nil: widened to float32 at load).
        public func mode(for weights: WeightSource) -> Int8KernelMode? {
            switch self {
            case .weightOnly: return .weightOnly
            case .w8a8: return .w8a8
            case .dequantized: return nil
            case .auto:
                if let file = weights as? FlintFile, file.isSmoothed { return .w8a8 }
                return .weightOnly
            }
        }
    }

    /// How a model is loaded.
    public struct LoadOptions: Sendable {
        /// How int8 weights multiply; ``Kernels/auto`` keeps them int8.
        public var kernels: Kernels
        /// Threads for the matrix kernels (1…`ThreadPool.maximumThreads`); nil shares the process-wide pool (all
        /// active processors).
        public var threads: Int?
        /// The instruction set every layer runs (`KernelISA.preferred`: the best this CPU has).
        public var isa: KernelISA
        /// The precision of the decoder's key/value caches; nil: f16 for int8/int4 weights, f32 for float ones.
        public var attentionCache: AttentionCachePrecision?

        public init(kernels: Kernels = .auto, threads: Int? = nil, isa: KernelISA = .preferred,
                    attentionCache: AttentionCachePrecision? = nil) {
            self.kernels = kernels
            self.threads = threads
            self.isa = isa
            self.attentionCache = attentionCache
        }
    }

    /// Opens a `.flint` file, a `.flint.zst` (unpacked once to `<file>.unpacked.flint` beside it), or a Hugging
    /// Face model folder (config.json, weights and tokenizer; converted to float in memory).
    public convenience init(contentsOf url: URL, options: LoadOptions = LoadOptions()) throws {
        guard url.isFileURL else { throw FlintError("\(url): only file URLs can be opened") }
        try self.init(opening: url.path, options: options)
    }

    /// Opens what `flint run` accepts: a path as in ``init(contentsOf:options:)``, or `hf:OWNER/NAME[@REVISION]`
    /// (the repository is downloaded into the Hugging Face cache through `hub`).
    public convenience init(opening source: String, options: LoadOptions = LoadOptions(),
                            hub: HubClient = HubClient()) throws {
        try self.init(weights: FlintModel.openWeights(source, hub: hub), options: options)
    }

    /// A model over weights already open; `tokenizer` defaults to the one the weights carry.
    public init(weights: WeightSource, tokenizer: T5Tokenizer? = nil, options: LoadOptions = LoadOptions()) throws {
        if let threads = options.threads, !(1...ThreadPool.maximumThreads).contains(threads) {
            throw FlintError("threads must be between 1 and \(ThreadPool.maximumThreads), got \(threads)")
        }
        self.weights = weights
        config = weights.config
        self.tokenizer = try tokenizer ?? FlintModel.tokenizer(for: weights)
        int8Kernels = options.kernels.mode(for: weights)
        pool = options.threads.map { ThreadPool(threads: $0) } ?? .shared
        generationDefaults = try weights.generationDefaults()
        if config.isEncoderOnly {
            generator = nil
            encoderOnly = try T5EncoderModel(weights: weights, pool: pool, int8Kernels: int8Kernels, isa: options.isa)
        } else {
            generator = try T5ForConditionalGeneration(weights: weights, pool: pool, int8Kernels: int8Kernels,
                                                       isa: options.isa, attentionCache: options.attentionCache)
            encoderOnly = nil
        }
    }

    /// True for an encoder-only checkpoint (T5EncoderModel): it embeds but cannot generate.
    public var isEncoderOnly: Bool { generator == nil }

    // MARK: Tokens

    /// The token ids of `text`, `</s>` appended (as the Hugging Face tokenizer does).
    public func tokenize(_ text: String, addEOS: Bool = true) -> [Int] {
        tokenizer.encode(text, addEOS: addEOS)
    }

    /// The text of token ids; special tokens (`<pad>`, `</s>`, sentinels) are left out unless asked for.
    public func detokenize(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
    }

    // MARK: Generation

    /// One prompt's generated text and what produced it.
    public struct Completion: Sendable, Equatable {
        public let prompt: String
        /// The prompt's token ids (`</s>` included).
        public let inputIds: [Int]
        /// The generated token ids, without the decoder start token (ending with `</s>` unless the length
        /// limit came first).
        public let ids: [Int]
        /// The generated text, special tokens left out.
        public let text: String
        /// Beam search: the hypothesis' length-normalized score; nil for greedy and sampling.
        public let score: Float?
        /// Wall time of the encoder pass (of the whole batch) and of this sequence's decoding.
        public let encoderSeconds: Double
        public let decoderSeconds: Double

        /// This sequence's decoding speed (its tokens over its decoding time); nil when too fast to time.
        public var tokensPerSecond: Double? { decoderSeconds > 0 ? Double(ids.count) / decoderSeconds : nil }
    }

    /// The text generated for `prompt` (greedy by default; beam search or sampling through `options`).
    public func generate(_ prompt: String, options: GenerationOptions = GenerationOptions()) throws -> String {
        try completions([prompt], options: options)[0].text
    }

    /// The texts generated for several prompts, in prompt order. Up to `batchSize` prompts are generated
    /// together (one encoder pass, then one decoder step per position for every sequence still running); the
    /// results equal generating each prompt alone.
    public func generate(_ prompts: [String], options: GenerationOptions = GenerationOptions(),
                         batchSize: Int = 8) throws -> [String] {
        try completions(prompts, options: options, batchSize: batchSize).map(\.text)
    }

    /// Like ``generate(_:options:batchSize:)``, with the token ids, scores and timings. `onToken(prompt,
    /// token)` receives each token as it is chosen (beam search reports its tokens when the search ends);
    /// `prompt` indexes `prompts`.
    public func completions(_ prompts: [String], options: GenerationOptions = GenerationOptions(),
                            batchSize: Int = 8,
                            onToken: ((_ prompt: Int, _ token: Int) -> Void)? = nil) throws -> [Completion] {
        let engine = try requireGenerator()
        guard batchSize >= 1 else { throw FlintError("generation: batch size must be at least 1, got \(batchSize)") }
        try options.validate()
        let options = options.withSpecialIds(of: generationDefaults)
        var completions: [Completion] = []
        completions.reserveCapacity(prompts.count)
        for first in stride(from: 0, to: prompts.count, by: batchSize) {
            let batch = Array(prompts[first..<min(first + batchSize, prompts.count)])
            let inputs = batch.map { tokenizer.encode($0) }
            let results = try engine.generate(batch: inputs, options: options,
                                              onToken: onToken.map { report in { report(first + $0, $1) } })
            for (i, result) in results.enumerated() {
                let ids = result.generatedIds
                completions.append(Completion(prompt: batch[i], inputIds: inputs[i], ids: ids,
                                              text: tokenizer.decode(ids, skipSpecialTokens: true), score: result.score,
                                              encoderSeconds: result.encoderSeconds,
                                              decoderSeconds: result.decoderSeconds))
            }
        }
        return completions
    }

    /// The text of `prompt` as it is generated: pieces that, joined, are the text ``generate(_:options:)``
    /// returns (spaces kept). A piece is yielded once a word is complete (see `TextStreamer`); beam search
    /// yields its text when the search ends. Generation runs on its own thread; ending the iteration early
    /// stops the delivery, not the decoding already under way (it ends at `options.maxNewTokens` at most).
    public func stream(_ prompt: String,
                       options: GenerationOptions = GenerationOptions()) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let thread = Thread { [self] in
                do {
                    var streamer = TextStreamer(tokenizer: tokenizer)
                    _ = try completions([prompt], options: options) { _, token in
                        if let piece = streamer.add(token) { continuation.yield(piece) }
                    }
                    let rest = streamer.finish()
                    if !rest.isEmpty { continuation.yield(rest) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.name = "flint-stream"
            thread.start()
        }
    }

    // MARK: Embeddings

    /// The encoder's output for one text: every token's last hidden state and their mean.
    public struct Embedding: Sendable {
        /// The text's token ids (`</s>` included).
        public let inputIds: [Int]
        /// The encoder's last hidden state (after its final layer norm), `inputIds.count × d_model`.
        public let tokenStates: T5EncoderOutput
        /// The mean of the token states over tokens: a sentence embedding of `d_model` numbers.
        public var mean: [Float] { tokenStates.meanOverTokens }
    }

    /// Encodes `text` (what `flint embed` prints). Works for encoder-only and encoder-decoder models.
    public func embed(_ text: String) throws -> Embedding {
        try embed([text])[0]
    }

    /// Encodes several texts in one encoder pass; one embedding per text, in order.
    public func embed(_ texts: [String]) throws -> [Embedding] {
        let inputs = texts.map { tokenizer.encode($0) }
        let outputs: [T5EncoderOutput]
        if let generator {
            outputs = try generator.encode(batch: inputs)
        } else {
            outputs = try encoderOnly!.encode(batch: inputs)
        }
        return zip(inputs, outputs).map { Embedding(inputIds: $0, tokenStates: $1) }
    }

    private func requireGenerator() throws -> T5ForConditionalGeneration {
        guard let generator else {
            throw FlintError("\(weights.sourceDescription): an encoder-only model has no decoder, so it cannot generate; use embed")
        }
        return generator
    }
}
