// `flint convert --target-top1 X / --max-mean-kl X`: the recipe search (FlintRecipe) wired into convert.

import Foundation
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
        --target-top1 X and/or --max-mean-kl X search the recipe: the model is converted as asked, scored
        teacher-forced against the float model on the calibration prompts (top-1 agreement, mean KL), and while
        the target is missed the tensor whose quantization alone costs the most (measured: the float model with
        only that tensor quantized) moves one step finer, int8 → int8-g32 → f32, and is measured again. What was
        kept, in order, with the bytes it cost and the quality after each step, is printed and recorded in the
        file's provenance (quantization.search; `flint inspect` shows it).
        """

    /// Converts with the search; returns the final conversion's report and the search record.
    func searchRecipe(_ folder: HFModelFolder, options: ConvertOptions, promptsFile: String?,
                      target: RecipeTarget) throws -> (ConvertReport, RecipeSearchRecord) {
        guard let tokBytes = folder.tokenizerModel else {
            throw FlintError("\(source): --target-top1 needs the tokenizer (spiece.model) to encode the calibration prompts")
        }
        let tokenizer = try T5Tokenizer(modelBytes: tokBytes)
        let texts = try promptsFile.map(readPromptFile) ?? DefaultPrompts.prompts
        let inputs = texts.map { VerifyInput(prompt: $0, inputIds: Array(tokenizer.encode($0).prefix(512))) }
        let searchOptions = RecipeSearchOptions(
            target: target, inputs: inputs,
            promptSource: promptsFile.map { ($0 as NSString).lastPathComponent } ?? "built-in verify prompts")
        let bar = ProgressBar("searching")
        let result = try RecipeSearch.run(folder, output: output, options: searchOptions, convert: { path, rules, search in
            var o = options
            o.schemeRules += rules
            o.search = search
            return try Converter.convert(folder, output: path, options: o)
        }) { phase, done, total, item in
            bar.update(done: done, total: max(total, done), detail: "\(phase.rawValue) \(item)")
        }
        bar.finish()
        return (result.convert, result.record)
    }

    func printSearch(_ s: RecipeSearchRecord) {
        var target: [String] = []
        if let t = s.targetTop1 { target.append(String(format: "top-1 ≥ %.4g", t)) }
        if let k = s.maxMeanKL { target.append(String(format: "mean KL ≤ %.4g", k)) }
        print("  search       \(target.joined(separator: ", ")) on \(s.prompts) prompts (\(s.promptSource)), \(s.kernels) kernels: "
              + (s.met ? "met" : "NOT met (every tensor already at its finest form)"))
        print(String(format: "               as converted: top-1 %.4f, mean KL %.4g → chosen: top-1 %.4f, mean KL %.4g",
                     s.before.top1, s.before.meanKL, s.after.top1, s.after.meanKL))
        let total = s.changes.reduce(0) { $0 + $1.bytes }
        if !s.changes.isEmpty { print("  kept finer   \(s.changes.count) steps, +\(formatBytes(Int64(total))):") }
        for c in s.changes {
            print(String(format: "               %@ %@ → %@  +%@  (alone it cost KL %.3g; after: top-1 %.4f, KL %.3g)",
                         c.tensor, c.from, c.to, formatBytes(Int64(c.bytes)), c.sensitivityKL, c.after.top1, c.after.meanKL))
        }
    }

    /// One prompt per line, or JSON lines with "prompt" / "text".
    func readPromptFile(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw FlintError("\(path): cannot read the prompts file as UTF-8 text")
        }
        var result: [String] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("{") {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any],
                      let prompt = (obj["prompt"] ?? obj["text"]) as? String else {
                    throw FlintError("\(path): line \(n + 1) looks like JSON but has no string \"prompt\" or \"text\" field")
                }
                result.append(prompt)
            } else if !trimmed.isEmpty {
                result.append(String(line))
            }
        }
        guard !result.isEmpty else { throw FlintError("\(path): no prompts in the file") }
        return result
    }
}
