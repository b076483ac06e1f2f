// Calibration at conversion: run the float model on calibration prompts (greedy generation, so the decoder sees
// the tokens it would really produce) and record, for every linear layer, per-input-channel statistics of the
// activations entering it (ActivationStatistics). Conversion smooths the outlier channels this finds into the
// weights (FlintConvert.Smoothing).
//
// Memory: the model runs block by block (FlintT5.T5BlockStreamer, as GPTQ/AWQ calibrate): one block's weights
// are used at a time (f32 in place from the file mapping, f16/bf16 widened a tile of rows at a time just before
// each multiply), run over the prompts and dropped before the next; the encoder streams once, the decoder's
// greedy steps stream its blocks once per step and chunk. Resident memory is the weight pages in use + a chunk's
// activations and caches (CalibrationOptions.maxActivationBytes) + the statistics, (K + 1) floats per input
// channel of each layer — never the whole float model, nor a whole widened block.

import Foundation
import FlintFormat
import FlintKernels
import FlintQuant
import FlintT5
import FlintTokenizer
import FlintVerify

public struct CalibrationOptions: Sendable {
    /// Tokens generated per prompt; each generated token is one more decoder row for every decoder layer.
    public var maxNewTokens: Int
    /// The percentile stored beside the maximum (per channel).
    public var percentile: Double
    /// Values tracked per channel for the percentile (see ChannelStatisticsAccumulator).
    public var tracked: Int
    /// Longest prompt, in tokens (longer ones are cut, keeping the start and the final </s>).
    public var maxInputTokens: Int
    /// Activations and caches of the prompts run together (see `Calibrator.chunks`); more prompts than fit
    /// run in several chunks, each streaming the decoder `maxNewTokens` times more. nil: the model's own budget
    /// (`Calibrator.activationBudget`).
    public var maxActivationBytes: Int?

    public init(maxNewTokens: Int = 16, percentile: Double = 99.9, tracked: Int = 16, maxInputTokens: Int = 512,
                maxActivationBytes: Int? = nil) {
        self.maxNewTokens = maxNewTokens
        self.percentile = percentile
        self.tracked = tracked
        self.maxInputTokens = maxInputTokens
        self.maxActivationBytes = maxActivationBytes
    }
}

public enum CalibrationPrompts {
    /// The built-in set: the prompts `flint verify` uses by default.
    public static var builtIn: [String] { DefaultPrompts.prompts }
    public static let builtInSource = "built-in verify prompts"

    /// One prompt per line (blank lines skipped), or JSON lines with a "prompt" or "text" field.
    public static func load(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw FlintError("\(path): cannot read the calibration prompts (expected UTF-8 text, one prompt per line)")
        }
        var prompts: [String] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : String(raw)
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            if line.hasPrefix("{") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let prompt = (object["prompt"] ?? object["text"]) as? String else {
                    throw FlintError("\(path): line \(i + 1) starts with { but is not a JSON object with a \"prompt\" or \"text\" string")
                }
                prompts.append(prompt)
            } else {
                prompts.append(line)
            }
        }
        guard !prompts.isEmpty else { throw FlintError("\(path): no calibration prompts (the file has no non-blank line)") }
        return prompts
    }
}

/// The accumulators of every observed layer. The model runs its layers one after another on the calling thread.
final class ActivationRecorder: @unchecked Sendable {
    let tracked: Int
    private(set) var accumulators: [String: ChannelStatisticsAccumulator] = [:]
    private let lock = NSLock()

    init(tracked: Int) { self.tracked = tracked }

    func observe(_ name: String, _ x: UnsafePointer<Float>, rows: Int, channels: Int) {
        lock.lock()
        defer { lock.unlock() }
        if accumulators[name] == nil { accumulators[name] = ChannelStatisticsAccumulator(channels: channels, tracked: tracked) }
        accumulators[name]!.add(x, rows: rows)
    }
}

public enum Calibrator {
    /// Runs the float model in `weights` over `prompts` and returns every linear layer's input statistics.
    /// The model runs block by block (`T5BlockStreamer`): the prompts go through the encoder one block at a time,
    /// then the decoder generates greedily for the prompts of a chunk together, one step at a time, each step
    /// streaming the decoder's blocks. Prompts are taken in chunks whose activations and caches fit
    /// `options.maxActivationBytes` (default `activationBudget`); each chunk streams the decoder once more per
    /// step, the encoder streams once for all chunks.
    /// `progress(done, total, what)` after each block run.
    public static func calibrate(weights: WeightSource, prompts: [String], promptSource: String,
                                 options: CalibrationOptions = CalibrationOptions(), pool: ThreadPool? = .shared,
                                 progress: ((Int, Int, String) -> Void)? = nil) throws -> ActivationStatistics {
        guard !prompts.isEmpty else { throw FlintError("calibration: no prompts") }
        guard options.maxNewTokens >= 1 else { throw FlintError("calibration: --calibration-tokens must be at least 1") }
        // Whichever tokenizer the source ships (spiece.model or tokenizer.json, with its added tokens).
        guard let tokenizer = try T5Tokenizer.load(from: weights) else {
            throw FlintError("\(weights.sourceDescription): calibration needs the model's tokenizer (spiece.model or tokenizer.json) to encode its prompts; add it to the folder, or convert with --no-calibration")
        }
        let recorder = ActivationRecorder(tracked: options.tracked)
        let streamer = try T5BlockStreamer(weights: weights, pool: pool)
        let observer: T5LinearInputObserver = { name, input, rows in
            recorder.observe(name, input.baseAddress!, rows: rows, channels: input.count / max(rows, 1))
        }
        let inputs: [[Int]] = prompts.map { prompt in
            var ids = tokenizer.encode(prompt)
            if ids.isEmpty { ids = [weights.config.eosTokenId] }
            if ids.count > options.maxInputTokens { ids = Array(ids.prefix(options.maxInputTokens - 1)) + [ids.last!] }
            return ids
        }
        let budget = options.maxActivationBytes ?? activationBudget(weights)
        let chunks = Self.chunks(inputs.map(\.count), config: weights.config, maxNewTokens: options.maxNewTokens,
                                 maxActivationBytes: budget)
        let config = weights.config
        // The continuation `flint run` would decode: the generation config's start and eos tokens, if it names them.
        let special = try weights.generationDefaults()
        let perChunk = options.maxNewTokens * config.numDecoderLayers
        let total = config.numEncoderLayers + chunks.count * perChunk
        // The encoder streams once for every chunk: each block runs over one chunk after another while its
        // pages are fresh (a chunk's encoder rows are small next to its decoder caches). Every layer still sees
        // its chunks in order, so the statistics are the same as encoding chunk by chunk.
        let lengths = chunks.map { chunk in inputs[chunk].map(\.count) }
        var hidden = try chunks.map { chunk in try streamer.embedded(Array(inputs[chunk])) }
        let span = chunks.count == 1 ? "" : ", \(chunks.count) chunks of prompts"
        for index in 0..<config.numEncoderLayers {
            for c in chunks.indices {
                try streamer.runBlocks(.encoder, index..<(index + 1), hidden: &hidden[c], lengths: lengths[c],
                                       linearObserver: observer)
            }
            progress?(index + 1, total, "encoder block \(index + 1)/\(config.numEncoderLayers)\(span)")
        }
        for (c, chunk) in chunks.enumerated() {
            let encoded = try streamer.encoderOutputs(hidden[c], lengths: lengths[c])
            hidden[c] = []
            let base = config.numEncoderLayers + c * perChunk
            let span = chunks.count == 1 ? "" : ", prompts \(chunk.lowerBound + 1)-\(chunk.upperBound) of \(inputs.count)"
            _ = try streamer.greedy(encoded, maxNewTokens: options.maxNewTokens, startToken: special?.decoderStartTokenId,
                                    endTokens: special?.eosTokenIds, linearObserver: observer) { done, count in
                let step = (done - 1) / config.numDecoderLayers + 1, block = (done - 1) % config.numDecoderLayers + 1
                progress?(base + done, total,
                          "decoder step \(step)/\(options.maxNewTokens) block \(block)/\(config.numDecoderLayers)\(span)")
            }
        }
        progress?(total, total, "done")
        var layers: [String: ChannelStatistics] = [:]
        for (name, accumulator) in recorder.accumulators {
            layers[name] = accumulator.statistics(percentile: options.percentile)
        }
        return ActivationStatistics(layers: layers, percentile: options.percentile, prompts: prompts.count,
                                    promptSource: promptSource, maxNewTokens: options.maxNewTokens)
    }

    /// The activation budget when none is given: at least 192 MiB, and twice the largest stored tensor. Each
    /// chunk streams the decoder `maxNewTokens` times, so fewer chunks save whole passes over the weights, while
    /// the convert's memory bound is 3 × the largest tensor + 256 MB: the streamed weights (a tile per thread,
    /// their pages handed back as the pass moves on) and the statistics fit beside two of those.
    public static func activationBudget(_ weights: WeightSource) -> Int {
        var largest = 0
        for name in weights.tensorNames {
            if let view = try? weights.tensor(name) { largest = max(largest, view.data.count) }
        }
        return max(192 << 20, 2 * largest)
    }

    /// Consecutive prompt ranges whose activations and caches stay within `maxActivationBytes`: per
    /// input token, the encoder's scratch rows, its output row and every decoder block's cross-attention keys
    /// and values; per prompt, every decoder block's self-attention cache. A prompt larger than the budget on its
    /// own is a chunk by itself.
    static func chunks(_ lengths: [Int], config: T5Config, maxNewTokens: Int, maxActivationBytes: Int) -> [Range<Int>] {
        let float = MemoryLayout<Float>.size
        let perToken = float * (2 * config.innerDim * config.numDecoderLayers
                                + 4 * config.dModel + 4 * config.innerDim + 2 * config.dFF)
        let perPrompt = float * 2 * config.innerDim * config.numDecoderLayers * maxNewTokens
        var result: [Range<Int>] = []
        var start = 0, bytes = 0
        for (i, length) in lengths.enumerated() {
            let cost = length * perToken + perPrompt
            if i > start, bytes + cost > maxActivationBytes {
                result.append(start..<i)
                start = i
                bytes = 0
            }
            bytes += cost
        }
        result.append(start..<lengths.count)
        return result
    }
}
