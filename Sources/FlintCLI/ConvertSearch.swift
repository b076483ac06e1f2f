// `flint convert --target-top1 X / --max-mean-kl X`: the recipe search (FlintRecipe) wired into convert.

import Foundation
import FlintCalibration
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintQuant
import FlintRecipe
import FlintTokenizer
import FlintVerify

extension ConvertCommand {
    static let searchDiscussion = """
        --target-top1 X and/or --max-mean-kl X search the recipe: the model is converted as asked (calibrated
        and smoothed by default, once), scored teacher-forced against the float model on the calibration prompts
        (or --search-prompts FILE, a held-out set) on the kernels it will run with, and while
        the target is missed the tensor whose quantization alone costs the most (measured: the float model with
        only that tensor quantized) moves one step finer, int8 → int8-g32 → f32, and is measured again. What was
        kept, in order, with the bytes it cost and the quality after each step, is printed and recorded in the
        file's provenance (quantization.search; `flint inspect` shows it).
        """

    /// Converts with the search; returns the final conversion's report, the search record and the recipe's
    /// calibration. The recipe is the default one (calibration + smoothing unless turned off), calibrated once:
    /// every candidate is converted with the same folds, the per-tensor measurements start from the float
    /// model in that smoothed basis, and candidates are scored on the kernels the file will run with
    /// (`--kernels auto`: W8A8 when smoothed).
    func searchRecipe(_ folder: HFModelFolder, options: RecipeOptions, promptsFile: String?,
                      target: RecipeTarget) throws -> (ConvertReport, RecipeSearchRecord, PreparedRecipe) {
        guard let tokenizer = try T5Tokenizer.load(from: folder) else {
            throw FlintError("\(source): --target-top1 / --max-mean-kl need the tokenizer (spiece.model or tokenizer.json) to encode the prompts")
        }
        // Scored on the --search-prompts file when given (a held-out set), else on the calibration prompts.
        let scoringFile: String?
        if let promptsFile { scoringFile = promptsFile } else if case .file(let path) = options.calibration { scoringFile = path } else { scoringFile = nil }
        let texts = try scoringFile.map(CalibrationPrompts.load) ?? CalibrationPrompts.builtIn
        let inputs = texts.map { VerifyInput(prompt: $0, inputIds: Array(tokenizer.encode($0).prefix(512))) }
        let calibrationBar = ProgressBar("calibrating")
        let prepared = try CalibratedConverter.prepare(folder, options: options) { _, done, total, item in
            calibrationBar.update(done: done, total: total, detail: item)
        }
        calibrationBar.finish()
        if let skipped = prepared.calibrationSkipped { warn(skipped) }
        let searchOptions = RecipeSearchOptions(
            target: target, inputs: inputs,
            promptSource: scoringFile.map { ($0 as NSString).lastPathComponent } ?? CalibrationPrompts.builtInSource,
            int8Kernels: prepared.smoothed ? .w8a8 : .weightOnly)
        let bar = ProgressBar("searching")
        let floatBase: ((FlintFile) throws -> WeightSource)? = prepared.smoothed
            ? { first in try ScaledWeights.smoothedBasis(folder, for: first) } : nil
        let result = try RecipeSearch.run(folder, output: output, options: searchOptions, convert: { path, rules, search in
            var o = prepared.convert
            o.schemeRules += rules
            o.search = search
            return try Converter.convert(folder, output: path, options: o)
        }, floatBase: floatBase) { phase, done, total, item in
            bar.update(done: done, total: max(total, done), detail: "\(phase.rawValue) \(item)")
        }
        bar.finish()
        return (result.convert, result.record, prepared)
    }

    func printSearch(_ s: RecipeSearchRecord) {
        var target: [String] = []
        if let t = s.targetTop1 { target.append(String(format: "top-1 ≥ %.4g", t)) }
        if let k = s.maxMeanKL { target.append(String(format: "mean KL ≤ %.4g", k)) }
        print("  search       \(target.joined(separator: ", ")) on \(s.prompts) prompts (\(s.promptSource)), \(s.kernels) kernels: "
              + (s.met ? "met" : "NOT met (every quantized tensor moved to its finest form)"))
        print(String(format: "               as converted: top-1 %.4f, mean KL %.4g → chosen: top-1 %.4f, mean KL %.4g",
                     s.before.top1, s.before.meanKL, s.after.top1, s.after.meanKL))
        let total = s.changes.reduce(0) { $0 + $1.bytes }
        if s.changes.isEmpty {
            print("  kept finer   nothing (+0 bytes: the recipe as converted \(s.met ? "meets" : "misses") the target)")
        } else {
            print("  kept finer   \(s.changes.count) steps, +\(formatBytes(Int64(total))) (+\(total) bytes):")
        }
        for c in s.changes {
            print(String(format: "               %@ %@ → %@  +%@  (alone it cost KL %.3g; after: top-1 %.4f, KL %.3g)",
                         c.tensor, c.from, c.to, formatBytes(Int64(c.bytes)), c.sensitivityKL, c.after.top1, c.after.meanKL))
        }
    }
}
