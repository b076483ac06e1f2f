// `flint convert --target-top1` with the default recipe: the search converts calibrated and smoothed (one
// calibration for every candidate), scores on the kernels the file runs with (W8A8 for a smoothed file), and
// scores on the calibration prompts unless --search-prompts gives a held-out set.

import Foundation
import Testing
import TestSupport

@Suite struct SmoothedSearchCLITests {
    @Test func searchUsesTheDefaultSmoothedRecipe() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let prompts = dir + "/calib.txt"
        try "reverse: five six seven\nreverse: door window roof wall\nreverse: cat dog\nreverse: red sun\n"
            .write(toFile: prompts, atomically: true, encoding: .utf8)
        let r = try flint("convert", demo, "-o", dir + "/s.flint", "--calibration", prompts, "--calibration-tokens", "8",
                          "--target-top1", "0.99", "--max-mean-kl", "0.01", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        let search = try #require(j["search"] as? [String: Any])
        #expect(search["kernels"] as? String == "w8a8", "\(search)")
        #expect(search["met"] as? Bool == true)
        #expect(search["prompt_source"] as? String == "calib.txt" && search["prompts"] as? Int == 4, "\(search)")
        let calibration = try #require(j["calibration"] as? [String: Any])
        #expect(calibration["prompt_source"] as? String == "calib.txt")
        #expect((calibration["smoothing_folds"] as? Int ?? 0) > 0)
        // The written file is smoothed and carries the search record.
        let i = try flint("inspect", dir + "/s.flint", "--json")
        let meta = try #require(i.json as? [String: Any])
        let q = ((meta["provenance"] as? [String: Any])?["quantization"]) as? [String: Any]
        #expect(q?["search"] as? [String: Any] != nil)
        // A held-out scoring set is used as given.
        let held = dir + "/held.txt"
        try "reverse: one two\nreverse: big small fish\n".write(toFile: held, atomically: true, encoding: .utf8)
        let h = try flint("convert", demo, "-o", dir + "/h.flint", "--calibration", prompts, "--calibration-tokens", "8",
                          "--search-prompts", held, "--target-top1", "0.99", "--json")
        #expect(h.status == 0, "\(h.stderr)")
        let hs = try #require((h.json as? [String: Any])?["search"] as? [String: Any])
        #expect(hs["prompt_source"] as? String == "held.txt" && hs["prompts"] as? Int == 2, "\(hs)")
    }
}
