import ArgumentParser
import Foundation
import FlintFormat
import FlintKernels
import FlintTokenizer
import FlintVerify

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Prove a quantized model still answers like its float original, and say where it drifts.",
        discussion: helpDiscussion("""
        Both models run on the same prompts. Teacher-forced on the reference's greedy continuation: top-1
        agreement and KL divergence of every next-token distribution. Free-running: exact match of greedy
        generations, and the token similarity (1 − normalised edit distance) of those that differ. Block by
        block: cosine and SNR of every encoder and decoder block's output against the reference's (the first
        block below --min-layer-snr fails the check), and the largest activation each block's output reaches in
        the float reference (the outlier channels that make int8 hard). The output head is measured as a layer:
        the candidate's final norm and lm_head against the reference's, both fed the REFERENCE's last hidden
        state, so head damage is told apart from drift that reached it from upstream.

        Where the drift starts ("drift starts at"), by one of two rules:
          sensitivity  the float reference is run once per block with only that block's
                       weights taken from the candidate; the block (or lm_head,
                       measured as above) costing the largest mean KL is named. This is
                       the part that, fixed alone, recovers most. One extra teacher-
                       forced run per block: --sensitivity auto (default) runs it when
                       a check fails, always / never as said.
          own-noise    without that pass: lm_head when its own KL is at least half the
                       whole model's, otherwise the block that added the most noise
                       itself. Noise powers add, so a block's own noise is its output's
                       noise-to-signal ratio minus its input's (the block before it;
                       for the first decoder block, the encoder output); "own SNR" in
                       the report is that, in dB.

        Default thresholds: --min-top1 0.95, --max-mean-kl 0.05, --max-changed 0.1 (a model whose greedy output
        changed on 10 % of the prompts or more fails), --min-layer-snr 15 (dB).
        Exit status: 0 when every check passes, 1 when any fails, 2 on error (64 for usage errors).

        With --golden, FILE is checked against outputs Hugging Face transformers produced (the golden.json the
        Tools scripts write: prompts, input ids, first-step logits, greedy and beam-4 ids) instead.

        Examples:
          flint verify flan-t5-base.flint --reference ./flan-t5-base
          flint verify base-int8.flint --reference base-f32.flint \\
              --prompts prompts.txt --json
          flint verify base-int8.flint --reference ./flan-t5-base \\
              --report out/verify.md
          flint verify base-int8.flint --reference ./flan-t5-base \\
              --sensitivity always --json | jq .culprit
          flint verify ./flan-t5-base --golden golden.json
        """))

    @Argument(help: "The model to check: a .flint file (or a model folder with --golden).")
    var file: String

    @Option(help: "The float reference: the original model folder (or hf:OWNER/NAME[@REVISION]), or another .flint file.")
    var reference: String?

    @Option(help: "Prompts, one per line, or JSON lines with a \"prompt\" (or \"text\") field. Default: the built-in set.")
    var prompts: String?

    @Option(help: "Tokens generated per prompt.")
    var maxTokens: Int = 32

    @Option(help: "Minimum teacher-forced top-1 agreement.")
    var minTop1: Double = VerifyThresholds().minTop1

    @Option(help: "Maximum mean KL divergence (nats).")
    var maxMeanKl: Double = VerifyThresholds().maxMeanKL

    @Option(help: "Fail when at least this fraction of prompts changed its greedy generation (0 fails any change).")
    var maxChanged: Double = VerifyThresholds().maxChanged

    @Option(help: "Minimum per-block output SNR in dB.")
    var minLayerSnr: Double = VerifyThresholds().minLayerSNR

    @Option(help: "Compare with a transformers golden file instead of a reference model.")
    var golden: String?

    @Option(help: "Relative tolerance of first-step logits in --golden mode.")
    var tolerance: Double = 1e-4

    @Option(help: "Per-block sensitivity pass: auto (when a check fails), always or never.")
    var sensitivity: SensitivityMode = .auto

    @Option(help: "Write a Markdown report here, with an SVG chart of per-block SNR beside it.")
    var report: String?

    @OptionGroup var kernelOptions: KernelOptions

    @OptionGroup var format: JSONOption

    func validate() throws {
        guard modelArgumentExists(file) else { throw ValidationError("\(file) does not exist") }
        if golden == nil && reference == nil { throw ValidationError("give --reference SOURCE (or --golden FILE)") }
        if golden != nil && reference != nil { throw ValidationError("--golden and --reference are exclusive") }
        if let reference, !modelArgumentExists(reference) { throw ValidationError("\(reference) does not exist") }
        if let prompts, !FileManager.default.fileExists(atPath: prompts) { throw ValidationError("\(prompts) does not exist") }
        guard maxTokens >= 1, maxTokens <= 4096 else { throw ValidationError("--max-tokens must be 1…4096") }
        guard (0...1).contains(minTop1), maxChanged >= 0, maxMeanKl >= 0 else {
            throw ValidationError("--min-top1 is a fraction in 0…1; --max-changed and --max-mean-kl are ≥ 0")
        }
    }

    func run() throws {
        do {
            if let report, golden == nil { try checkReportTarget(report) }
            let pool = kernelOptions.makePool()
            if let golden {
                try runGolden(golden, pool: pool)
            } else {
                try runComparison(pool: pool)
            }
        } catch let e as FlintError {
            FileHandle.standardError.write(Data("flint: error: \(e.message)\n".utf8))
            throw ExitCode(2)
        }
    }

    private func runComparison(pool: ThreadPool) throws {
        let candidate = try openModel(file)
        let ref = try openModel(reference!)
        guard let tokenizer = try T5Tokenizer.load(from: candidate) ?? T5Tokenizer.load(from: ref) else {
            throw FlintError("\(file): no tokenizer in the candidate or the reference (tokenizer.json or spiece.model)")
        }
        let texts = try prompts.map(readPrompts) ?? DefaultPrompts.prompts
        let inputs = texts.map { VerifyInput(prompt: $0, inputIds: Array(tokenizer.encode($0).prefix(512))) }
        var thresholds = VerifyThresholds()
        thresholds.minTop1 = minTop1
        thresholds.maxMeanKL = maxMeanKl
        thresholds.maxChanged = maxChanged
        thresholds.minLayerSNR = minLayerSnr
        let bar = ProgressBar("verifying")
        let result = try Verifier.verify(candidate: candidate, reference: ref, inputs: inputs, maxNewTokens: maxTokens,
                                         thresholds: thresholds, pool: pool,
                                         int8Kernels: kernelOptions.mode(for: candidate),
                                         sensitivity: sensitivity) { bar.update(done: $0, total: $1) }
        bar.finish()
        if let report { try writeReport(result, to: report) }
        if format.json {
            try printJSON(result)
        } else {
            print(VerifyReportWriter.summary(result))
        }
        if !result.passed { throw ExitCode(1) }
    }

    private func runGolden(_ path: String, pool: ThreadPool) throws {
        let model = try openModel(file)
        let bar = ProgressBar("checking")
        let result = try GoldenVerifier.verify(weights: model, goldenPath: path, tolerance: tolerance, pool: pool) {
            bar.update(done: $0, total: $1)
        }
        bar.finish()
        if format.json {
            try printJSON(result)
        } else {
            print("model      \(result.model)")
            print("golden     \(result.golden) (\(result.cases.count) cases)")
            let tok = result.cases.compactMap(\.tokenizerMatches)
            if !tok.isEmpty { print("tokenizer  \(tok.filter { $0 }.count)/\(tok.count) identical") }
            print(String(format: "logits     max relative difference %.2e (tolerance %.0e)", result.maxFirstLogitsRelativeDiff, result.tolerance))
            let greedy = result.cases.compactMap(\.greedyMatches), beam = result.cases.compactMap(\.beamMatches)
            print("greedy     \(greedy.filter { $0 }.count)/\(greedy.count) identical")
            if !beam.isEmpty { print("beam-4     \(beam.filter { $0 }.count)/\(beam.count) identical") }
            print(result.passed ? "PASSED" : "FAILED: " + result.failures.joined(separator: "; "))
        }
        if !result.passed { throw ExitCode(1) }
    }

    /// One prompt per line (LF or CRLF), or JSON lines with "prompt" / "text" (shared with `run --input-file`).
    private func readPrompts(_ path: String) throws -> [String] {
        try PromptLines.read(path)
    }

    /// The report and its chart beside it (`<name>-layers.svg`).
    private func reportPaths(_ path: String) -> (report: URL, chart: URL) {
        let url = URL(fileURLWithPath: path)
        let chart = url.deletingPathExtension().lastPathComponent + "-layers.svg"
        return (url, url.deletingLastPathComponent().appendingPathComponent(chart))
    }

    /// Before any work: the report folder exists (made if missing) and neither the report nor its chart is one
    /// of the inputs (a model folder's files count, but for earlier reports and charts in it). An earlier report
    /// is replaced without --force: a report is derived output, rewritten on every run, unlike the model files
    /// convert/export/pack write.
    private func checkReportTarget(_ path: String) throws {
        let (report, chart) = reportPaths(path)
        try FileManager.default.createDirectory(at: report.deletingLastPathComponent(), withIntermediateDirectories: true)
        var inputs: [String] = []
        for source in [file, reference, golden, prompts].compactMap({ $0 }) {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: source, isDirectory: &isFolder), isFolder.boolValue {
                inputs += OutputTarget.filesIn(source).filter { !$0.hasSuffix(".md") && !$0.hasSuffix(".svg") }
            } else {
                inputs.append(source)
            }
        }
        try OutputTarget.check(report.path, inputs: inputs, force: true)
        try OutputTarget.check(chart.path, inputs: inputs, force: true)
    }

    private func writeReport(_ result: VerifyReport, to path: String) throws {
        let chartURL = reportPaths(path).chart
        let chart = chartURL.lastPathComponent
        try atomicWrite(VerifyReportWriter.svgChart(result), to: chartURL.path)
        try atomicWrite(VerifyReportWriter.markdown(result, chartFileName: chart), to: path)
    }
}

extension SensitivityMode: ExpressibleByArgument {}

/// Writes text through a temporary file and a rename, so a reader never sees half a report.
func atomicWrite(_ text: String, to path: String) throws {
    let temporary = FlintWriter.temporaryName(for: path)
    do {
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw FlintError("\(path): cannot rename \(temporary) into place") }
    } catch let e as FlintError {
        unlink(temporary)
        throw e
    } catch {
        unlink(temporary)
        throw FlintError("\(path): cannot write (\(error.localizedDescription))")
    }
}
