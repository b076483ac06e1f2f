// Calibration at conversion: run the float model on calibration prompts (greedy generation, so the decoder sees
// the tokens it would really produce) and record, for every linear layer, per-input-channel statistics of the
// activations entering it (ActivationStatistics). Conversion smooths the outlier channels this finds into the
// weights (FlintConvert.Smoothing).
//
// Memory: the float weights of a safetensors checkpoint are used in place from the file mapping, and each
// layer's pages are handed back to the kernel as soon as the next layer starts (they are read again from the
// page cache on the next use), so resident memory stays near the largest tensor plus activations — the conversion bound —
// instead of the whole float model. Statistics cost (K + 1) floats per input channel of each layer.

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

    public init(maxNewTokens: Int = 16, percentile: Double = 99.9, tracked: Int = 16, maxInputTokens: Int = 512) {
        self.maxNewTokens = maxNewTokens
        self.percentile = percentile
        self.tracked = tracked
        self.maxInputTokens = maxInputTokens
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
    /// `progress(done, total)` is called after each prompt.
    public static func calibrate(weights: WeightSource, prompts: [String], promptSource: String,
                                 options: CalibrationOptions = CalibrationOptions(), pool: ThreadPool? = .shared,
                                 progress: ((Int, Int) -> Void)? = nil) throws -> ActivationStatistics {
        guard !prompts.isEmpty else { throw FlintError("calibration: no prompts") }
        // Whichever tokenizer the source ships (spiece.model or tokenizer.json, with its added tokens).
        guard let tokenizer = try T5Tokenizer.load(from: weights) else {
            throw FlintError("\(weights.sourceDescription): calibration needs the model's tokenizer (spiece.model or tokenizer.json) to encode its prompts; add it to the folder, or convert with --no-calibration")
        }
        let recorder = ActivationRecorder(tracked: options.tracked)
        let model = try T5ForConditionalGeneration(weights: weights, pool: pool)
        // A layer's input arrives just before it multiplies; the layer before it is done by then, so its weight's
        // file-mapped pages are handed back (they come again from the page cache on its next use).
        var views: [String: UnsafeRawBufferPointer] = [:]
        var previous: String? = nil
        let observer: T5LinearInputObserver = { name, input, rows in
            recorder.observe(name, input.baseAddress!, rows: rows, channels: input.count / max(rows, 1))
            if let previous, previous != name, let data = views[previous] { releaseMappedPages(data) }
            if views[name] == nil { views[name] = (try? weights.tensor(name))?.data ?? UnsafeRawBufferPointer(start: nil, count: 0) }
            previous = name
        }
        let eos = weights.config.eosTokenId, start = weights.config.decoderStartTokenId
        for (i, prompt) in prompts.enumerated() {
            var ids = tokenizer.encode(prompt)
            if ids.count > options.maxInputTokens {
                ids = Array(ids.prefix(options.maxInputTokens - 1)) + [ids.last!]
            }
            // Greedy generation, so the decoder sees the tokens the model itself would produce.
            let encoded = try model.encode(ids, linearObserver: observer)
            let cross = try model.crossAttentionCache(encoded, linearObserver: observer)
            let state = model.makeDecoderState()
            try model.addSequences(to: state, cross: cross, rows: 1, maxLength: options.maxNewTokens + 1)
            var token = start
            for _ in 0..<options.maxNewTokens {
                let logits = try model.decodeStep(state, tokens: [token], linearObserver: observer)
                var best = 0
                for j in 1..<logits.count where logits[j] > logits[best] { best = j }
                token = best
                if token == eos { break }
            }
            progress?(i + 1, prompts.count)
        }
        if let previous, let data = views[previous] { releaseMappedPages(data) }
        var layers: [String: ChannelStatistics] = [:]
        for (name, accumulator) in recorder.accumulators {
            layers[name] = accumulator.statistics(percentile: options.percentile)
        }
        return ActivationStatistics(layers: layers, percentile: options.percentile, prompts: prompts.count,
                                    promptSource: promptSource, maxNewTokens: options.maxNewTokens)
    }
}
