// Renders a VerifyReport: a terminal summary, Markdown, and an SVG chart of per-block SNR.

import Foundation

public enum VerifyReportWriter {
    /// The terminal summary table.
    public static func summary(_ r: VerifyReport) -> String {
        let t = r.thresholds
        /// One table row; `ok` nil for measures without a threshold.
        func row(_ name: String, _ value: String, _ limit: String = "", _ ok: Bool? = nil) -> String {
            let line = name.padding(toLength: 28, withPad: " ", startingAt: 0) + value.padding(toLength: 22, withPad: " ", startingAt: 0)
                + limit.padding(toLength: 12, withPad: " ", startingAt: 0) + (ok.map { $0 ? "ok" : "FAIL" } ?? "")
            return String(line.reversed().drop(while: { $0 == " " }).reversed())
        }
        let worstSNR = r.layers.first { $0.name == r.worstLayer }?.snrDB
        var lines: [String] = [
            "candidate  \(r.candidate)",
            "reference  \(r.reference)",
            "prompts    \(r.prompts)",
            "",
            row("measure", "value", "threshold"),
            row("top-1 agreement (forced)", String(format: "%.4f", r.top1Agreement), String(format: "≥ %.4f", t.minTop1), r.top1Agreement >= t.minTop1),
            row("first-token agreement", String(format: "%.4f", r.firstTokenAgreement)),
            row("mean KL (nats)", String(format: "%.3g", r.meanKL), String(format: "≤ %.3g", t.maxMeanKL), r.meanKL <= t.maxMeanKL),
            row("p99 / max KL", String(format: "%.3g / %.3g", r.p99KL, r.maxKL)),
            row("greedy changed (prompts)", String(format: "%.3f (exact %.3f)", r.changedFraction, r.exactMatch),
                String(format: "< %.3f", t.maxChanged), !(r.changedFraction > 0 && r.changedFraction >= t.maxChanged - 1e-12)),
            row("similarity of the rest", String(format: "%.3f", r.similarity)),
            row(r.worstLayerBelowThreshold ? "first drifting block" : "weakest block", r.worstLayer ?? "-"),
            row("  its output SNR (dB)", worstSNR.map { String(format: "%.1f", $0) } ?? "exact",
                String(format: "≥ %.1f", t.minLayerSNR), !r.worstLayerBelowThreshold),
        ]
        if let h = r.head {
            lines.append(row("lm_head alone: KL / top-1", String(format: "%.3g / %.4f", h.meanKL, h.top1Agreement)))
            lines.append(row("  its logits SNR (dB)", h.logitsSNR.map { String(format: "%.1f", $0) } ?? "exact"))
        }
        lines.append(row("drift starts at", r.culprit?.name ?? "- (exact)"))
        if let c = r.culprit { lines.append("  rule \(c.rule): \(c.reason)") }
        if let s = r.sensitivity {
            lines.append("  only this part from the candidate (mean KL): " + s.map {
                "\(short($0.name)) " + ($0.identical ? "exact" : String(format: "%.3g", $0.meanKL))
            }.joined(separator: ", "))
        }
        if let peak = r.activations.max(by: { $0.maxAbs < $1.maxAbs }) {
            lines.append(row("largest activation (float)", String(format: "%.4g", peak.maxAbs))
                         + String(format: "   %@ channel %d, %.0f× the median channel", peak.name, peak.channel, peak.outlierRatio))
        }
        lines += [
            "",
            r.passed ? "PASSED" : "FAILED: " + r.failures.joined(separator: "; "),
        ]
        if r.layers.count <= 64 {
            lines.insert(contentsOf: ["", "block SNR (dB): " + r.layers.map {
                "\(short($0.name)) " + ($0.snrDB.map { String(format: "%.1f", $0) } ?? "exact")
            }.joined(separator: ", ")], at: lines.count - 2)
        }
        return lines.joined(separator: "\n")
    }

    /// `e0`, `d3`, `lm_head`: block names shortened for one-line lists.
    static func short(_ name: String) -> String {
        name.replacingOccurrences(of: "encoder.block.", with: "e").replacingOccurrences(of: "decoder.block.", with: "d")
    }

    /// Markdown with the same numbers, a per-block table, and the chart linked beside it.
    public static func markdown(_ r: VerifyReport, chartFileName: String?) -> String {
        var md = "# flint verify: \(r.passed ? "passed" : "FAILED")\n\n"
        md += "- candidate: `\(r.candidate)`\n- reference: `\(r.reference)`\n- prompts: \(r.prompts)\n\n"
        md += "| measure | value | threshold |\n|---|---:|---:|\n"
        md += String(format: "| top-1 agreement (teacher-forced) | %.4f | ≥ %.4f |\n", r.top1Agreement, r.thresholds.minTop1)
        md += String(format: "| first-token agreement | %.4f | |\n", r.firstTokenAgreement)
        md += String(format: "| mean KL (nats) | %.5f | ≤ %.5f |\n", r.meanKL, r.thresholds.maxMeanKL)
        md += String(format: "| p99 KL | %.5f | |\n| max KL | %.5f | |\n", r.p99KL, r.maxKL)
        md += String(format: "| exact match (greedy) | %.3f | |\n", r.exactMatch)
        md += String(format: "| prompts whose greedy output changed | %.3f | < %.3f |\n", r.changedFraction, r.thresholds.maxChanged)
        if let h = r.head {
            md += String(format: "| lm_head alone (reference hidden states): mean KL | %.5f | |\n", h.meanKL)
            md += String(format: "| lm_head alone: top-1 / logits SNR (dB) | %.4f / %@ | |\n", h.top1Agreement,
                         h.logitsSNR.map { String(format: "%.1f", $0) } ?? "exact")
        }
        md += String(format: "| similarity of differing generations | %.3f | |\n", r.similarity)
        md += "\n"
        if let w = r.worstLayer {
            md += r.worstLayerBelowThreshold
                ? "**First block to drift below \(r.thresholds.minLayerSNR) dB: `\(w)`.**\n\n"
                : "Weakest block: `\(w)` (all blocks above \(r.thresholds.minLayerSNR) dB).\n\n"
        }
        if let c = r.culprit {
            md += "**Drift starts at `\(c.name)`** (rule `\(c.rule)`: \(c.reason)).\n\n"
        }
        if let s = r.sensitivity {
            md += "Sensitivity (the float reference with only this part from the candidate):\n\n| part | mean KL | top-1 |\n|---|---:|---:|\n"
            for c in s {
                md += "| \(c.name) | \(c.identical ? "exact" : String(format: "%.5f", c.meanKL)) | \(String(format: "%.4f", c.top1Agreement)) |\n"
            }
            md += "\n"
        }
        if !r.failures.isEmpty { md += "Failures:\n" + r.failures.map { "- \($0)\n" }.joined() + "\n" }
        if let chartFileName { md += "![per-block SNR](\(chartFileName))\n\n" }
        md += "| block | cosine | SNR (dB) | own SNR (dB) | largest activation (float) | channel | × median channel |\n"
        md += "|---|---:|---:|---:|---:|---:|---:|\n"
        for l in r.layers {
            let peak = r.activations.first { $0.name == l.name }
            md += "| \(l.name) | \(String(format: "%.6f", l.cosine)) | \(l.snrDB.map { String(format: "%.1f", $0) } ?? "exact") | "
                + (l.ownSNR.map { String(format: "%.1f", $0) } ?? "-") + " | "
                + (peak.map { String(format: "%.4g | %d | %.0f", $0.maxAbs, $0.channel, $0.outlierRatio) } ?? " | | ") + " |\n"
        }
        md += "\n## Prompts\n\n| prompt | tokens | top-1 | mean KL | exact | similarity |\n|---|---:|---:|---:|:-:|---:|\n"
        for d in r.details {
            let p = d.prompt.count > 60 ? String(d.prompt.prefix(57)) + "…" : d.prompt
            let cell = p.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
            md += "| \(cell) | \(d.inputTokens) | \(String(format: "%.3f", d.top1Agreement)) | \(String(format: "%.4f", d.meanKL)) | \(d.exact ? "yes" : "no") | \(String(format: "%.3f", d.similarity)) |\n"
        }
        return md
    }

    /// A bar chart of every block's output SNR (encoder blocks, then decoder blocks) with the threshold line.
    public static func svgChart(_ r: VerifyReport) -> String {
        let bars = r.layers
        let width = 60 + max(1, bars.count) * 28 + 20, height = 300
        let plotTop = 30.0, plotBottom = Double(height - 70), left = 60.0
        let capped = bars.map { min($0.snrDB ?? 80, 80) }
        let top = max(40, (capped.max() ?? 40) + 5)
        func y(_ v: Double) -> Double { plotBottom - (max(0, v) / top) * (plotBottom - plotTop) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(left)\" y=\"18\" font-size=\"13\">Per-block output SNR vs reference (dB) — \(r.passed ? "passed" : "FAILED")</text>\n"
        for tick in stride(from: 0.0, through: top, by: 10) {
            s += String(format: "<line x1=\"%.0f\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", left, width - 20, y(tick), y(tick))
            s += String(format: "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", left - 6, y(tick) + 4, tick)
        }
        for (i, l) in bars.enumerated() {
            let x = left + Double(i) * 28 + 4
            let v = capped[i]
            let below = (l.snrDB ?? .infinity) < r.thresholds.minLayerSNR
            let color = below ? "#d9534f" : (l.name.hasPrefix("encoder") ? "#4a7dbf" : "#5cb85c")
            s += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"20\" height=\"%.1f\" fill=\"%@\"><title>%@: %@</title></rect>\n",
                        x, y(v), plotBottom - y(v), color, l.name, l.snrDB.map { String(format: "%.1f dB", $0) } ?? "exact")
            let label = l.name.replacingOccurrences(of: "encoder.block.", with: "e").replacingOccurrences(of: "decoder.block.", with: "d")
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n", x + 10, plotBottom + 14, label)
        }
        let ty = y(r.thresholds.minLayerSNR)
        s += String(format: "<line x1=\"%.0f\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#d9534f\" stroke-dasharray=\"5,3\"/>\n", left, width - 20, ty, ty)
        s += String(format: "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#d9534f\">threshold %.0f dB</text>\n", width - 22, ty - 4, r.thresholds.minLayerSNR)
        s += "<text x=\"\(left)\" y=\"\(height - 30)\">e = encoder block, d = decoder block (blue encoder, green decoder, red below threshold)</text>\n"
        s += "</svg>\n"
        return s
    }
}
