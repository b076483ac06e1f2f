// `flint inspect` on a calibrated .flint file (issue 9): the calibration summary in text and --json.

import Foundation
import Testing
import TestSupport

/// `flint inspect` shows a calibrated file's calibration: the prompts, each fold (what was smoothed, scale
/// range) and every layer's largest input, in text and --json; a data-free file shows none.
@Suite struct InspectCalibrationCLITests {
    @Test func inspectShowsTheCalibrationSummary() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try flint("convert", demo, "-o", dir + "/m.flint", "--calibration-tokens", "4")
        #expect(c.status == 0, "\(c.stderr)")
        let text = try flint("inspect", dir + "/m.flint")
        #expect(text.status == 0)
        #expect(text.stdout.contains("calibration 23 prompts (built-in verify prompts), 4 new tokens each, 37 layers"), "\(text.stdout)")
        #expect(text.stdout.contains("smoothing  α 0.5, "))
        #expect(text.stdout.contains("encoder.final_layer_norm.weight (element) → 4 layers: scales "))
        #expect(text.stdout.contains("decoder.block.1.layer.2.DenseReluDense.wi_1.weight (row) → DenseReluDense.wo: scales "))
        let tableLine = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("lm_head.weight ") && $0.contains(":") })
        #expect(tableLine.split(separator: " ").count >= 6, "\(tableLine)")
        let json = try #require(try flint("inspect", dir + "/m.flint", "--json").json as? [String: Any])
        let calibration = try #require(json["calibration"] as? [String: Any])
        let layers = try #require(calibration["layers"] as? [String: [String: Any]])
        #expect(layers.count == 37)
        let largest = layers.values.compactMap { $0["abs_max"] as? Double }.max() ?? -1
        #expect(calibration["largest_input"] as? Double == largest)
        let folds = try #require((calibration["smoothing"] as? [String: Any])?["folds"] as? [[String: Any]])
        #expect(!folds.isEmpty && folds.allSatisfy { $0["scales"] == nil && $0["max_scale"] is Double })
        // Data-free: nothing to show.
        #expect(try flint("convert", demo, "-o", dir + "/d.flint", "--no-calibration").status == 0)
        let d = try flint("inspect", dir + "/d.flint")
        #expect(!d.stdout.contains("calibration ") && !d.stdout.contains("smoothing "))
        let dj = try #require(try flint("inspect", dir + "/d.flint", "--json").json as? [String: Any])
        #expect(dj["calibration"] is NSNull)
    }
}
