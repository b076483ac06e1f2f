import ArgumentParser
import Foundation
import FlintFormat
import FlintKernels
import FlintT5

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure load time, encoder and decoder speed, and peak memory of a model.",
        discussion: helpDiscussion("""
        The prompt is a synthetic sequence of --prompt-tokens ids (deterministic, no special tokens but the final
        </s>). Decoding is greedy and runs all --new-tokens steps (</s> is barred before the limit, as HF min_new_tokens does), so every
        run does the same work. With --batch B, B inputs (distinct ids, same length) are encoded in one pass and
        decoded together, the batched path `flint run` takes; tokens/s count every sequence. Each
        measure is the median of --runs runs after one warm-up run.

        load_ms is open-to-ready: mapping the file, validating it and building the model. peak_rss_mb is the
        process's high-water resident memory (VmHWM).

        Examples:
          flint bench flan-t5-base.flint
          flint bench flan-t5-small.flint --prompt-tokens 512 --new-tokens 1 --json
          flint bench base.flint --kernels w8a8 --threads 2 --json
        """))

    @Argument(help: "A .flint file, a model folder, or hf:OWNER/NAME[@REVISION].")
    var model: String

    @Option(help: "Input length in tokens.")
    var promptTokens: Int = 64

    @Option(help: "Tokens decoded per run.")
    var newTokens: Int = 64

    @Option(help: "Sequences decoded together.")
    var batch: Int = 1

    @OptionGroup var kernelOptions: KernelOptions
    @OptionGroup var cacheOptions: AttentionCacheOptions

    @Option(help: "Measured runs (after one warm-up).")
    var runs: Int = 3

    @OptionGroup var format: JSONOption

    func validate() throws {
        guard modelArgumentExists(model) else { throw ValidationError("\(model) does not exist") }
        guard (1...4096).contains(promptTokens) else { throw ValidationError("--prompt-tokens must be 1…4096") }
        guard (1...4096).contains(newTokens) else { throw ValidationError("--new-tokens must be 1…4096") }
        guard (1...64).contains(batch) else { throw ValidationError("--batch must be 1…64") }
        guard (1...100).contains(runs) else { throw ValidationError("--runs must be 1…100") }
    }

    struct Result: Encodable {
        var model: String
        var file_bytes: Int64
        var kernels: String
        /// The kernel instruction set that ran (`KernelISA`: avx512, avx2, neon, portable; FLINT_ISA forces one).
        var isa: String
        var isa_detail: String
        /// The precision of the decoder's key/value caches (`--kv-cache`; auto: f16 for int8/int4 models).
        var kv_cache: String
        var threads: Int
        var prompt_tokens: Int
        var new_tokens: Int
        var batch: Int
        var runs: Int
        var load_ms: Double
        var encoder_tokens_per_second: Double
        var time_to_first_token_ms: Double
        var decode_tokens_per_second: Double
        var peak_rss_mb: Double
    }

    func run() throws {
        try reportingErrors {
            let pool = kernelOptions.makePool()
            let loadStart = DispatchTime.now().uptimeNanoseconds
            let weights = try openModel(model)
            let mode = kernelOptions.mode(for: weights)
            let t5 = try T5ForConditionalGeneration(weights: weights, pool: pool, int8Kernels: mode,
                                                    attentionCache: cacheOptions.choice.precision)
            let loadMs = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e6
            let config = t5.config

            // Deterministic ids spread over the ordinary vocabulary (3…), ending in </s>; each sequence of a
            // batch gets its own input of the same length.
            let ordinary = max(4, min(config.vocabSize, 32000)) - 3
            let inputs: [[Int]] = (0..<batch).map { b in
                (0..<(promptTokens - 1)).map { 3 + (($0 &+ 101 &* b) &* 7919 &+ 13) % ordinary } + [config.eosTokenId]
            }
            // The batched greedy path of `flint run`, forced to run every step (no eos before the limit).
            let options = GenerationOptions(maxNewTokens: newTokens, minNewTokens: newTokens, strategy: .greedy)

            var encodeTimes: [Double] = [], firstTokenTimes: [Double] = [], decodeRates: [Double] = []
            for run in 0...runs {
                let t0 = DispatchTime.now().uptimeNanoseconds
                var firstStepAt: UInt64 = 0, reported = 0
                let results = try t5.generate(batch: inputs, options: options) { _, _ in
                    reported += 1
                    if reported == batch { firstStepAt = DispatchTime.now().uptimeNanoseconds }
                }
                let t3 = DispatchTime.now().uptimeNanoseconds
                guard results.allSatisfy({ $0.generatedIds.count == newTokens }) else {
                    throw FlintError("bench: a sequence stopped before \(newTokens) tokens")
                }
                guard run > 0 else { continue }  // the first run warms caches and pages
                let encodeSeconds = results[0].encoderSeconds
                let t1 = t0 + UInt64(encodeSeconds * 1e9)
                encodeTimes.append(encodeSeconds)
                firstTokenTimes.append(Double(firstStepAt - t0) / 1e9)
                // Tokens after the first step, over the time they took (the first is in time-to-first-token).
                decodeRates.append(newTokens > 1 ? Double((newTokens - 1) * batch) / (Double(t3 - firstStepAt) / 1e9)
                                                 : Double(batch) / (Double(firstStepAt - t1) / 1e9))
            }
            let result = Result(model: model, file_bytes: fileSize(model), kernels: mode.cliName,
                                isa: t5.isa.rawValue, isa_detail: t5.isa.summary,
                                kv_cache: t5.attentionCache.rawValue, threads: pool.threadCount,
                                prompt_tokens: promptTokens, new_tokens: newTokens, batch: batch, runs: runs,
                                load_ms: round2(loadMs),
                                encoder_tokens_per_second: round2(Double(promptTokens * batch) / median(encodeTimes)),
                                time_to_first_token_ms: round2(median(firstTokenTimes) * 1000),
                                decode_tokens_per_second: round2(median(decodeRates)),
                                peak_rss_mb: round2(peakResidentMegabytes()))
            if format.json {
                try printJSON(result)
            } else {
                print("model            \(model) (\(formatBytes(result.file_bytes)))")
                print("setup            \(result.threads) threads, \(result.kernels) kernels on \(result.isa_detail), \(result.kv_cache) KV cache, batch \(batch), \(promptTokens) prompt tokens, \(newTokens) new tokens, median of \(runs)")
                print(String(format: "load             %.1f ms", result.load_ms))
                print(String(format: "encoder          %.1f tokens/s", result.encoder_tokens_per_second))
                print(String(format: "first token      %.1f ms", result.time_to_first_token_ms))
                print(String(format: "decode           %.1f tokens/s", result.decode_tokens_per_second))
                print(String(format: "peak RSS         %.1f MB", result.peak_rss_mb))
            }
        }
    }

    private func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s[s.count / 2]
    }

    private func round2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
}

/// The process's peak resident set size (VmHWM) in MB, from /proc/self/status.
func peakResidentMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    return (statusKilobytes(status, field: "VmHWM") ?? 0) / 1024
}

/// A `/proc/<pid>/status` field in kB. The kernel pads the number after the tab to 8 columns with spaces, so from
/// 10 000 000 kB (9.5 GB: an int8 flan-t5-xxl run) on the tab touches the digits: split on tabs and spaces both.
func statusKilobytes(_ status: String, field: String) -> Double? {
    for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
        return line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
            .compactMap { Double($0) }.first
    }
    return nil
}
