// `flint run`: generate text from prompts with the float32 T5 engine (greedy, beam search or sampling).
import ArgumentParser
import Foundation
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
        {"prompt", "input_ids", "ids", "text", "tokens_per_second"}, where ids are the generated tokens \
        without the decoder start token and tokens_per_second is that sequence's decoding speed (its tokens \
        over the time from the batch's first decoder step to its last token; encoder excluded).

        Examples:
          flint run ./flan-t5-small "translate English to German: How old are you?"
          flint run ./flan-t5-small "summarize: ..." --beams 4 --length-penalty 0.6
          flint run ./flan-t5-small "Write a poem:" --sample --top-p 0.9 --seed 42
          flint run ./flan-t5-small --input-file prompts.txt --json --batch-size 16
        """)

    @Argument(help: "A .flint file, a Hugging Face model folder, or hf:OWNER/NAME[@REVISION].")
    var model: String

    @Argument(help: "Prompts, each generated separately.")
    var prompts: [String] = []

    @Option(name: .customLong("input-file"), help: "A text file with one prompt per line (empty lines are skipped).")
    var inputFile: String?

    @Option(name: .customLong("max-tokens"), help: "At most this many new tokens per prompt (the eos counts).")
    var maxTokens = 64

    @Option(name: .customLong("batch-size"), help: "Prompts generated together in one batch.")
    var batchSize = 8

    @Option(help: "Beam search with this many beams (1 = greedy).")
    var beams = 1

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

    @Option(help: "Sampling: random seed (the same seed gives the same text).")
    var seed: UInt64?

    @Option(help: ArgumentHelp(KernelChoice.help))
    var kernels: String = KernelChoice.auto

    @Option(help: "Threads for the matrix kernels (default: active processors).")
    var threads: Int?

    @Flag(help: "Print one JSON object per prompt.")
    var json = false

    func validate() throws {
        try KernelChoice.validate(kernels)
        if prompts.isEmpty && inputFile == nil { throw ValidationError("give at least one PROMPT or --input-file") }
        if !prompts.isEmpty && inputFile != nil {
            throw ValidationError("give prompts either as arguments or with --input-file, not both")
        }
        if let inputFile, !FileManager.default.fileExists(atPath: inputFile) {
            throw ValidationError("--input-file \(inputFile) does not exist")
        }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
        guard (1...256).contains(batchSize) else { throw ValidationError("--batch-size must be 1…256, got \(batchSize)") }
        guard beams >= 1 else { throw ValidationError("--beams must be at least 1, got \(beams)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if sample && beams > 1 { throw ValidationError("--sample and --beams > 1 cannot be combined") }
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

    var generationOptions: GenerationOptions {
        let strategy: DecodingStrategy
        if sample {
            strategy = .sampling(SamplingOptions(temperature: temperature ?? 1, topK: topK ?? 0, topP: topP ?? 1,
                                                 seed: seed ?? 0))
        } else if beams > 1 {
            strategy = .beamSearch(BeamSearchOptions(numBeams: beams, lengthPenalty: lengthPenalty ?? 1,
                                                     earlyStopping: earlyStopping))
        } else {
            strategy = .greedy
        }
        return GenerationOptions(maxNewTokens: maxTokens, strategy: strategy)
    }

    func readPrompts() throws -> [String] {
        guard let inputFile else { return prompts }
        guard let data = FileManager.default.contents(atPath: inputFile),
              let text = String(data: data, encoding: .utf8) else {
            throw FlintError("\(inputFile): cannot be read as UTF-8 text")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
            .map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
            .filter { !$0.isEmpty }
        guard !lines.isEmpty else { throw FlintError("\(inputFile): no prompts (every line is empty)") }
        return lines
    }

    func run() throws {
        try reportingErrors {
            let allPrompts = try readPrompts()
            let weights = try loadWeights(path: model)
            let tokenizer = try loadTokenizer(weights)
            let pool = threads.map { ThreadPool(threads: $0) } ?? ThreadPool.shared
            let engine = try T5ForConditionalGeneration(weights: weights, pool: pool, int8Kernels: KernelChoice.resolve(kernels, for: weights))
            let options = generationOptions
            let terminal = !json && isatty(STDOUT_FILENO) != 0
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
            for first in stride(from: 0, to: allPrompts.count, by: batchSize) {
                let batch = Array(allPrompts[first..<min(first + batchSize, allPrompts.count)])
                let inputs = batch.map { tokenizer.encode($0) }
                // Streaming needs one sequence at a time on the screen: only a batch of one streams.
                var printer = StreamingPrinter(tokenizer: tokenizer, enabled: terminal && batch.count == 1)
                let results = try engine.generate(batch: inputs, options: options) { _, token in printer.add(token) }
                for (i, result) in results.enumerated() {
                    let ids = result.generatedIds
                    let text = tokenizer.decode(ids, skipSpecialTokens: true)
                    if json {
                        let line = RunJSON(prompt: batch[i], input_ids: inputs[i], ids: ids, text: text,
                                           tokens_per_second: result.decoderSeconds > 0 ? Double(ids.count) / result.decoderSeconds : nil)
                        FileHandle.standardOutput.write(try encoder.encode(line) + Data("\n".utf8))
                    } else if printer.enabled {
                        printer.finish(text)
                    } else {
                        print(text)
                    }
                }
            }
        }
    }
}

/// One prompt's result in `--json` output.
struct RunJSON: Encodable {
    let prompt: String
    let input_ids: [Int]
    let ids: [Int]
    let text: String
    let tokens_per_second: Double?
}

/// Prints generated text as tokens arrive: the decoded text so far is compared with what is already shown,
/// and only a growing suffix is written (sentencepiece may still change the last characters, so a text that
/// no longer extends the shown one waits for the final decode).
struct StreamingPrinter {
    let tokenizer: T5Tokenizer
    let enabled: Bool
    private var ids: [Int] = []
    private var shown = ""

    init(tokenizer: T5Tokenizer, enabled: Bool) {
        self.tokenizer = tokenizer
        self.enabled = enabled
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
