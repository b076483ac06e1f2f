// `flint run`: generate text from prompts with the float32 T5 engine (greedy, beam search or sampling).
import ArgumentParser
import Foundation
import FlintCheckpoint
import FlintFormat
import FlintKernels
import FlintT5
import FlintTokenizer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opens the weights `run` and `embed` name: a .flint / .flint.zst file or a Hugging Face model folder
/// (through `openModel`, shared with the other commands).
func loadWeights(path: String) throws -> WeightSource {
    try openModel(path)
}

/// The tokenizer carried by the weights (tokenizer.json or spiece.model), or an error naming the source.
func loadTokenizer(_ weights: WeightSource) throws -> T5Tokenizer {
    guard let tokenizer = try T5Tokenizer.load(from: weights) else {
        throw FlintError("\(weights.sourceDescription): no tokenizer (tokenizer.json or spiece.model) found with the model")
    }
    return tokenizer
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Generate text from prompts (greedy, beam search or sampling).",
        discussion: """
        Each prompt's text is printed on its own line, in prompt order. Prompts are generated --batch-size at \
        a time in one batch (one encoder pass, then each decoder step for every sequence still running; a \
        sequence leaves the batch when it finishes); the results equal generating each prompt alone. With a \
        single prompt on a terminal the text appears as it is generated (beam search prints when the search \
        ends). --json prints one JSON object per line and prompt instead: \
        {"prompt", "input_ids", "ids", "text", "tokens_per_second"}, where ids are the tokens after the \
        decoder start token (a --decoder-prefix included) and tokens_per_second is that sequence's decoding speed (its tokens \
        over the time from the batch's first decoder step to its last token; encoder excluded). Beam search adds \
        "score"; --num-return N adds "sequences": [{"ids", "text", "score"}], best first; sampling adds the \
        "seed" used (random unless --seed is given).

        Defaults come from the model's generation_config.json (stored in the .flint file by convert, read from a \
        Hugging Face folder directly), like model.generate(**inputs): num_beams, max_new_tokens / max_length, \
        min_new_tokens, min_length, no_repeat_ngram_size, repetition_penalty, num_return_sequences, \
        bad_words_ids, suppress_tokens, length_penalty, early_stopping, do_sample, temperature, top_k (50 when \
        do_sample and unset, as transformers), top_p. A flag overrides its setting. Without any length setting \
        --max-tokens is 64 (transformers would stop at max_length 20).

        Examples:
          flint run ./flan-t5-small "translate English to German: How old are you?"
          flint run ./flan-t5-small "summarize: ..." --beams 4 --length-penalty 0.6
          flint run ./flan-t5-small "summarize: ..." --beams 4 --num-return 3 --json
          flint run ./flan-t5-small "Write a story:" --no-repeat-ngram 3 --repetition-penalty 1.2 --min-tokens 20
          flint run ./flan-t5-small "Name a fruit:" --bad-words "apple" --bad-words "banana" --suppress-tokens 3,5
          flint run ./flan-t5-small "translate English to German: Hello" --decoder-prefix "Hallo"
          flint run ./flan-t5-small "List three fruits:" --stop "."
          flint run ./flan-t5-small "Write a poem:" --sample --top-p 0.9 --seed 42
          flint run ./flan-t5-small --input-file prompts.txt --json --batch-size 16
          cat prompts.jsonl | flint run ./flan-t5-small - --json --stream

        A prompt that cannot be used (a JSON line without "prompt", a prompt the model rejects) is reported in \
        its place — {"line", "prompt", "error"} with --json, a message on stderr otherwise — and the others are \
        still generated; the exit status is then 1.
        """)

    @Argument(help: "A .flint file, a Hugging Face model folder, or hf:OWNER/NAME[@REVISION].")
    var model: String

    @Argument(help: "Prompts, each generated separately; - alone reads them from stdin (one per line or JSON lines).")
    var prompts: [String] = []

    @Option(name: .customLong("input-file"), help: "A file with one prompt per line (LF or CRLF; empty lines skipped) or JSON lines {\"prompt\": ...}; - is stdin.")
    var inputFile: String?

    @Option(name: .customLong("max-tokens"), help: "At most this many new tokens per prompt (the eos counts). Default: the model's generation config, else 64.")
    var maxTokens: Int?

    @Option(name: .customLong("min-tokens"), help: "No eos before this many new tokens (transformers' min_new_tokens).")
    var minTokens: Int?

    @Option(name: .customLong("no-repeat-ngram"), help: "No n-gram of this size twice in the output (no_repeat_ngram_size; 0 = off).")
    var noRepeatNgram: Int?

    @Option(name: .customLong("repetition-penalty"), help: "Divide positive / multiply negative scores of tokens already generated by X (1 = off).")
    var repetitionPenalty: Double?

    @Option(name: .customLong("num-return"), help: "Return the N best beam hypotheses (needs --beams N or more) or N samples, with --json.")
    var numReturn: Int?

    @Option(name: .customLong("bad-words"), help: ArgumentHelp("Never generate this text (its tokens, without </s>; repeatable).", valueName: "text"))
    var badWords: [String] = []

    @Option(name: .customLong("suppress-tokens"), help: ArgumentHelp("Token ids never generated, comma-separated.", valueName: "ids"))
    var suppressTokens: String?

    @Option(help: ArgumentHelp("Stop once the output contains this text (transformers' stop_strings; kept in the output; repeatable; not with beam search).", valueName: "text"))
    var stop: [String] = []

    @Option(name: .customLong("decoder-prefix"), help: ArgumentHelp("Start every output with this text (forced after the decoder start token).", valueName: "text"))
    var decoderPrefix: String?

    @Option(name: .customLong("batch-size"), help: "Prompts generated together in one batch.")
    var batchSize = 8

    @Option(help: "Beam search with this many beams (1 = greedy). Default: the model's generation config, else 1.")
    var beams: Int?

    @Option(name: .customLong("length-penalty"), help: "Beam search: score = log-prob sum / length^X.")
    var lengthPenalty: Double?

    @Flag(name: .customLong("early-stopping"), help: "Beam search: stop once as many hypotheses as beams are finished.")
    var earlyStopping = false

    @Flag(help: "Sample instead of taking the most likely token.")
    var sample = false

    @Option(help: "Sampling: divide the logits by T (> 0).")
    var temperature: Float?

    @Option(name: .customLong("top-k"), help: "Sampling: keep only the K most likely tokens (0 = all).")
    var topK: Int?

    @Option(name: .customLong("top-p"), help: "Sampling: keep the most likely tokens up to probability P (0 < P ≤ 1).")
    var topP: Float?

    @Option(help: "Sampling: random seed (the same seed gives the same text; default: a random one, printed with --json).")
    var seed: UInt64?

    @OptionGroup var kernelOptions: KernelOptions

    @Flag(help: "Print one JSON object per prompt.")
    var json = false

    @Flag(help: "Show tokens as they are generated: text on a terminal (one prompt at a time); JSON events {\"event\": \"token\", \"index\", \"line\", \"id\", \"text\"} then the result with \"event\": \"done\" in a pipe or with --json.")
    var stream = false

    func validate() throws {
        if prompts.isEmpty && inputFile == nil { throw ValidationError("give at least one PROMPT or --input-file") }
        if !prompts.isEmpty && inputFile != nil {
            throw ValidationError("give prompts either as arguments or with --input-file, not both")
        }
        if let inputFile, inputFile != "-", !FileManager.default.fileExists(atPath: inputFile) {
            throw ValidationError("--input-file \(inputFile) does not exist")
        }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
        if let minTokens, minTokens < 0 { throw ValidationError("--min-tokens must be 0 or more, got \(minTokens)") }
        if let noRepeatNgram, noRepeatNgram < 0 { throw ValidationError("--no-repeat-ngram must be 0 (off) or more, got \(noRepeatNgram)") }
        if let repetitionPenalty, !(repetitionPenalty > 0 && repetitionPenalty.isFinite) {
            throw ValidationError("--repetition-penalty must be a positive number, got \(repetitionPenalty)")
        }
        if let numReturn, numReturn < 1 { throw ValidationError("--num-return must be at least 1, got \(numReturn)") }
        if let numReturn, numReturn > 1, !sample, let beams, beams < numReturn {
            throw ValidationError("--num-return \(numReturn) needs --beams \(numReturn) or more (or --sample)")
        }
        if badWords.contains(where: { $0.isEmpty }) { throw ValidationError("--bad-words needs a non-empty text") }
        if stop.contains(where: { $0.isEmpty }) { throw ValidationError("--stop needs a non-empty text") }
        if !stop.isEmpty, let beams, beams > 1 { throw ValidationError("--stop works with greedy decoding and --sample, not --beams") }
        _ = try suppressedIds()
        guard (1...256).contains(batchSize) else { throw ValidationError("--batch-size must be 1…256, got \(batchSize)") }
        if let beams, beams < 1 { throw ValidationError("--beams must be at least 1, got \(beams)") }
        if sample, let beams, beams > 1 { throw ValidationError("--sample and --beams > 1 cannot be combined") }
        if beams == 1 && (lengthPenalty != nil || earlyStopping) {
            throw ValidationError("--length-penalty and --early-stopping need --beams 2 or more")
        }
        if let lengthPenalty, !lengthPenalty.isFinite { throw ValidationError("--length-penalty must be a finite number") }
        if !sample && (temperature != nil || topK != nil || topP != nil || seed != nil) {
            throw ValidationError("--temperature, --top-k, --top-p and --seed need --sample")
        }
        if let temperature, !(temperature > 0 && temperature.isFinite) {
            throw ValidationError("--temperature must be a positive number, got \(temperature)")
        }
        if let topK, topK < 0 { throw ValidationError("--top-k must be 0 (off) or positive, got \(topK)") }
        if let topP, !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
    }

    /// `--suppress-tokens 3,5,17` as ids.
    func suppressedIds() throws -> [Int] {
        guard let suppressTokens else { return [] }
        return try suppressTokens.split(separator: ",").map { part in
            guard let id = Int(part.trimmingCharacters(in: .whitespaces)), id >= 0 else {
                throw ValidationError("--suppress-tokens takes comma-separated token ids, got \"\(suppressTokens)\"")
            }
            return id
        }
    }

    /// The options of one run: the flags given, else the model's generation settings (`defaults`), else Flint's
    /// defaults. `randomSeed` is the seed used when sampling without --seed.
    func generationOptions(defaults: GenerationDefaults?, tokenizer: T5Tokenizer?, vocabSize: Int, randomSeed: UInt64) throws -> GenerationOptions {
        let d = defaults ?? GenerationDefaults()
        let numBeams = beams ?? (sample ? 1 : d.numBeams ?? 1)
        let sampling = sample || (beams == nil && d.doSample == true && numBeams == 1)
        let strategy: DecodingStrategy
        if sampling {
            // transformers' GenerationConfig defaults top_k to 50; --sample alone keeps Flint's "no top-k".
            let fromConfig = !sample
            strategy = .sampling(SamplingOptions(temperature: temperature ?? (fromConfig ? d.temperature.map(Float.init) : nil) ?? 1,
                                                 topK: topK ?? (fromConfig ? d.topK ?? 50 : 0),
                                                 topP: topP ?? (fromConfig ? d.topP.map(Float.init) : nil) ?? 1,
                                                 seed: seed ?? randomSeed))
        } else if numBeams > 1 {
            strategy = .beamSearch(BeamSearchOptions(numBeams: numBeams, lengthPenalty: lengthPenalty ?? d.lengthPenalty ?? 1,
                                                     earlyStopping: earlyStopping || (d.earlyStopping ?? false)))
        } else {
            if lengthPenalty != nil || earlyStopping {
                throw FlintError("--length-penalty and --early-stopping need beam search (--beams 2 or more)")
            }
            strategy = .greedy
        }
        let maxNew = maxTokens ?? d.maxNewTokens ?? d.maxLength.map { $0 - 1 } ?? 64
        var o = GenerationOptions(maxNewTokens: maxNew, minNewTokens: minTokens ?? d.minNewTokens ?? 0, strategy: strategy)
        o.minLength = d.minLength ?? 0
        o.noRepeatNgramSize = noRepeatNgram ?? d.noRepeatNgramSize ?? 0
        o.repetitionPenalty = repetitionPenalty ?? d.repetitionPenalty ?? 1
        o.numReturnSequences = numReturn ?? (numBeams >= (d.numReturnSequences ?? 1) || sampling ? d.numReturnSequences ?? 1 : 1)
        o.suppressTokens = try suppressedIds() + (suppressTokens == nil ? d.suppressTokens ?? [] : [])
        o.badWordsIds = d.badWordsIds ?? []
        if let tokenizer {
            o.badWordsIds += badWords.map { tokenizer.encode($0, addEOS: false) }
            if let decoderPrefix { o.decoderPrefix = tokenizer.encode(decoderPrefix, addEOS: false) }
            if !stop.isEmpty {
                if case .beamSearch = strategy {
                    throw FlintError("--stop works with greedy decoding and sampling; this model's generation config uses beam search (add --beams 1)")
                }
                // What each token adds to decoded text: its piece with sentencepiece's "▁" as a space.
                let texts = (0..<vocabSize).map { (tokenizer.idToPiece($0) ?? "").replacingOccurrences(of: "\u{2581}", with: " ") }
                o.stopStrings = StopStrings(stop, tokenText: texts)
            }
        }
        return o
    }

    /// The prompts in order: the arguments, stdin (`-` as the only prompt, or `--input-file -`), or the file's
    /// lines (LF or CRLF; JSON lines with "prompt" / "text", as `verify --prompts` reads them). A bad line is an
    /// entry with its error, reported in its place.
    func readPrompts() throws -> [PromptLines.Entry] {
        if let inputFile { return try PromptLines.readEntries(inputFile) }
        if prompts == ["-"] { return try PromptLines.readEntries("-") }
        return prompts.enumerated().map { PromptLines.Entry(line: $0.offset + 1, prompt: $0.element, error: nil) }
    }

    func run() throws {
        try reportingErrors {
            let entries = try readPrompts()
            let weights = try loadWeights(path: model)
            let tokenizer = try loadTokenizer(weights)
            let engine = try T5ForConditionalGeneration(weights: weights, pool: kernelOptions.makePool(),
                                                        int8Kernels: kernelOptions.mode(for: weights))
            var generator = SystemRandomNumberGenerator()
            let randomSeed = generator.next()
            let options = try generationOptions(defaults: try generationDefaults(of: weights), tokenizer: tokenizer,
                                                vocabSize: engine.config.vocabSize, randomSeed: randomSeed)
            var sampledSeed: UInt64? = nil
            if case .sampling(let s) = options.strategy { sampledSeed = s.seed }
            let isBeam: Bool
            if case .beamSearch = options.strategy { isBeam = true } else { isBeam = false }
            let onTerminal = isatty(STDOUT_FILENO) != 0
            // --stream on a terminal shows text as it comes (one prompt at a time); in a pipe (or with --json) it
            // writes JSON token events. Without --stream, a single prompt on a terminal streams its text too.
            let jsonEvents = stream && (json || !onTerminal)
            let textStreaming = !json && onTerminal && (stream || entries.count == 1) && options.numReturnSequences == 1
            let step = textStreaming ? 1 : batchSize
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
            func emit<T: Encodable>(_ value: T) throws {
                FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
            }
            var failed = 0
            func report(_ entry: PromptLines.Entry, _ message: String) throws {
                failed += 1
                if json || jsonEvents {
                    try emit(RunErrorJSON(line: entry.line, prompt: entry.prompt, error: message, event: jsonEvents ? "error" : nil))
                } else {
                    FileHandle.standardError.write(Data("flint: error: prompt \(entry.line): \(message)\n".utf8))
                }
            }
            for first in stride(from: 0, to: entries.count, by: step) {
                let chunk = Array(entries[first..<min(first + step, entries.count)])
                let good = chunk.filter { $0.prompt != nil }
                let inputs = good.map { tokenizer.encode($0.prompt!) }
                var printer = StreamingPrinter(tokenizer: tokenizer, enabled: textStreaming && good.count == 1,
                                               prefix: options.decoderPrefix)
                var deltas = TokenTextDeltas(tokenizer: tokenizer, count: good.count, prefix: options.decoderPrefix)
                func onToken(_ i: Int, _ token: Int) {
                    printer.add(token)
                    if jsonEvents {
                        let text = deltas.add(token, to: i)
                        try? emit(RunTokenEvent(index: first + i, line: good[i].line, id: token, text: text))
                    }
                }
                // One prompt failing must not lose the others: a failed batch is retried prompt by prompt.
                var results: [Result<GenerationResult, FlintError>]
                do {
                    results = try engine.generate(batch: inputs, options: options, onToken: onToken).map { .success($0) }
                } catch let e as FlintError where inputs.count > 1 {
                    _ = e
                    results = inputs.indices.map { i in
                        do { return .success(try engine.generate(batch: [inputs[i]], options: options) { onToken(i, $1) }[0]) }
                        catch let e as FlintError { return .failure(e) }
                        catch { return .failure(FlintError("\(error)")) }
                    }
                } catch let e as FlintError {
                    results = [.failure(e)]
                }
                var next = 0
                for entry in chunk {
                    guard entry.prompt != nil else { try report(entry, entry.error ?? "bad prompt"); continue }
                    let i = next
                    next += 1
                    let result: GenerationResult
                    switch results[i] {
                    case .failure(let e): try report(entry, e.message); continue
                    case .success(let r): result = r
                    }
                    let ids = result.generatedIds
                    let text = tokenizer.decode(ids, skipSpecialTokens: true)
                    if json || jsonEvents {
                        var line = RunJSON(prompt: entry.prompt!, input_ids: inputs[i], ids: ids, text: text,
                                           tokens_per_second: result.decoderSeconds > 0 ? Double(ids.count) / result.decoderSeconds : nil)
                        line.score = isBeam ? result.score.map(Double.init) : nil
                        line.seed = sampledSeed
                        if options.numReturnSequences > 1 {
                            line.sequences = result.returned.map {
                                let ids = Array($0.sequence.dropFirst())
                                return RunSequenceJSON(ids: ids, text: tokenizer.decode(ids, skipSpecialTokens: true),
                                                       score: $0.score.map(Double.init))
                            }
                        }
                        if jsonEvents { line.event = "done"; line.index = first + i; line.line = entry.line }
                        try emit(line)
                    } else if printer.enabled {
                        printer.finish(text)
                    } else if options.numReturnSequences > 1 {
                        // One line per returned sequence, best first.
                        for sequence in result.returned {
                            print(tokenizer.decode(Array(sequence.sequence.dropFirst()), skipSpecialTokens: true))
                        }
                    } else {
                        print(text)
                    }
                }
            }
            if failed > 0 {
                throw FlintError("\(failed) of \(entries.count) prompts failed (reported in their place)")
            }
        }
    }
}

/// A failed prompt in `--json` output (or a `--stream` event).
struct RunErrorJSON: Encodable {
    let line: Int
    let prompt: String?
    let error: String
    var event: String?
}

/// `--stream` in a pipe: one generated token of prompt `index` (the order of the prompts, from 0).
struct RunTokenEvent: Encodable {
    var event = "token"
    let index: Int
    let line: Int
    let id: Int
    /// The text this token adds to the prompt's output so far (may be empty while a piece is incomplete).
    let text: String
}

/// The text each new token adds, per sequence: the decoded text so far minus what was already reported.
struct TokenTextDeltas {
    let tokenizer: T5Tokenizer
    private var ids: [[Int]]
    private var shown: [String]

    init(tokenizer: T5Tokenizer, count: Int, prefix: [Int]) {
        self.tokenizer = tokenizer
        ids = [[Int]](repeating: prefix, count: count)
        shown = [String](repeating: "", count: count)
    }

    mutating func add(_ token: Int, to i: Int) -> String {
        ids[i].append(token)
        let text = tokenizer.decode(ids[i], skipSpecialTokens: true)
        guard text.hasPrefix(shown[i]) else { return "" }
        let delta = String(text.dropFirst(shown[i].count))
        shown[i] = text
        return delta
    }
}

/// One prompt's result in `--json` output.
struct RunJSON: Encodable {
    let prompt: String
    let input_ids: [Int]
    let ids: [Int]
    let text: String
    let tokens_per_second: Double?
    /// Beam search: the returned hypothesis' score.
    var score: Double? = nil
    /// Sampling: the seed used.
    var seed: UInt64? = nil
    /// --num-return N > 1: every returned sequence, best first.
    var sequences: [RunSequenceJSON]? = nil
    /// --stream in a pipe: "done", the prompt's position and its line.
    var event: String? = nil
    var index: Int? = nil
    var line: Int? = nil
}

struct RunSequenceJSON: Encodable {
    let ids: [Int]
    let text: String
    let score: Double?
}

/// The generation settings the weights carry: a .flint file's metadata, a Hugging Face folder's
/// generation_config.json; nil for other sources.
func generationDefaults(of weights: WeightSource) throws -> GenerationDefaults? {
    if let file = weights as? FlintFile { return file.metadata.generation }
    if let folder = weights as? HFModelFolder { return try folder.generationConfig()?.defaults }
    return nil
}

/// Prints generated text as tokens arrive: the decoded text so far is compared with what is already shown,
/// and only a growing suffix is written (sentencepiece may still change the last characters, so a text that
/// no longer extends the shown one waits for the final decode).
struct StreamingPrinter {
    let tokenizer: T5Tokenizer
    let enabled: Bool
    private var ids: [Int] = []
    private var shown = ""

    /// `prefix`: decoder prefix tokens the output starts with (forced, so not reported by the generator).
    init(tokenizer: T5Tokenizer, enabled: Bool, prefix: [Int] = []) {
        self.tokenizer = tokenizer
        self.enabled = enabled
        ids = prefix
    }

    mutating func add(_ id: Int) {
        guard enabled else { return }
        ids.append(id)
        show(tokenizer.decode(ids, skipSpecialTokens: true))
    }

    mutating func finish(_ text: String) {
        show(text)
        if !text.hasPrefix(shown) {
            // The final text differs from what was streamed: print it whole on a new line.
            FileHandle.standardOutput.write(Data("\n\(text)".utf8))
        }
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    private mutating func show(_ text: String) {
        guard text.hasPrefix(shown), text.count > shown.count else { return }
        let suffix = String(text.dropFirst(shown.count))
        FileHandle.standardOutput.write(Data(suffix.utf8))
        shown = text
    }
}
