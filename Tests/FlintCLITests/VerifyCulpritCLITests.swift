// `flint verify`'s culprit naming through the command line: --sensitivity, the JSON keys it adds, --help.

import Foundation
import Testing
import TestSupport

@Suite struct VerifyCulpritCLITests {
    @Test func jsonCarriesHeadSensitivityCulpritAndActivations() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", demo, "-o", dir + "/d.flint").status == 0)
        let prompts = dir + "/prompts.txt"
        try "reverse: red apple blue\nreverse: one two three\nreverse: cat dog\n".write(toFile: prompts, atomically: true, encoding: .utf8)
        let r = try flint("verify", dir + "/d.flint", "--reference", demo, "--prompts", prompts, "--json", "--sensitivity", "always")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        let head = try #require(j["head"] as? [String: Any])
        #expect(head["name"] as? String == "lm_head")
        for key in ["logits_snr_db", "mean_kl", "top1_agreement"] { #expect(head[key] != nil, "head.\(key)") }
        let sensitivity = try #require(j["sensitivity"] as? [[String: Any]])
        #expect(sensitivity.map { $0["name"] as? String } == ["encoder.block.0", "encoder.block.1", "decoder.block.0", "decoder.block.1", "lm_head"])
        let culprit = try #require(j["culprit"] as? [String: Any])
        #expect(culprit["rule"] as? String == "sensitivity")
        #expect(sensitivity.contains { $0["name"] as? String == culprit["name"] as? String })
        let activations = try #require(j["activations"] as? [[String: Any]])
        #expect(activations.count == 4 && activations.allSatisfy { ($0["max_abs"] as? Double ?? 0) > 0 })
        let layers = try #require(j["layers"] as? [[String: Any]])
        #expect(layers.allSatisfy { $0.keys.contains("own_snr_db") })
        #expect((j["thresholds"] as? [String: Any])?["max_changed"] as? Double == 0.1)
        // Keys are sorted, so the output is stable for diffing.
        let keyOrder = r.stdout.split(separator: "\n").filter { $0.hasPrefix("  \"") }.map { $0.split(separator: "\"")[1] }
        #expect(keyOrder == keyOrder.sorted())

        // never: no sensitivity pass, the key stays (null) and the own-noise rule names the part.
        let quick = try flint("verify", dir + "/d.flint", "--reference", demo, "--prompts", prompts, "--json", "--sensitivity", "never")
        let q = try #require(quick.json as? [String: Any])
        #expect(q.keys.contains("sensitivity") && q["sensitivity"] is NSNull)
        #expect((q["culprit"] as? [String: Any])?["rule"] as? String == "own-noise")

        // Text output names it, and --max-changed 0 fails on any changed prompt only.
        let text = try flint("verify", dir + "/d.flint", "--reference", demo, "--prompts", prompts, "--max-changed", "0")
        #expect(text.stdout.contains("drift starts at"), "\(text.stdout)")
        #expect(try flint("verify", dir + "/d.flint", "--reference", demo, "--sensitivity", "sometimes").status == 64)
    }

    @Test func helpExplainsTheRules() throws {
        let h = try flint("verify", "--help")
        for phrase in ["sensitivity", "own-noise", "--max-changed", "lm_head", "10 %"] {
            #expect(h.stdout.contains(phrase), "--help lacks \(phrase)")
        }
    }
}
