// `flint convert --target-top1` through the command line: the search runs, prints what it kept, records it in
// the provenance (`inspect` shows it), and validates its flags.

import Foundation
import Testing
import TestSupport

@Suite struct ConvertSearchCLITests {
    @Test func targetTop1SearchRecordsWhatItKept() throws {
        let dir = scratch()
        // The demo model on words it is unsure about: plain data-free per-row int8 with no keep-list misses top-1 0.999.
        let prompts = dir + "/prompts.txt"
        try "reverse: five six seven\nreverse: door window roof wall\nreverse: cat dog\n".write(toFile: prompts, atomically: true, encoding: .utf8)
        let r = try flint("convert", demo, "-o", dir + "/s.flint", "--no-calibration", "--no-default-keep", "--target-top1", "0.999",
                          "--max-mean-kl", "0.001", "--search-prompts", prompts, "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        let search = try #require(j["search"] as? [String: Any])
        #expect(search["met"] as? Bool == true, "\(search)")
        #expect(search["target_top1"] as? Double == 0.999 && search["max_mean_kl"] as? Double == 0.001)
        #expect(search["prompt_source"] as? String == "prompts.txt" && search["prompts"] as? Int == 3)
        let after = try #require(search["after"] as? [String: Any])
        #expect((after["top1"] as? Double ?? 0) >= 0.999 && (after["mean_kl"] as? Double ?? 1) <= 0.001)
        let changes = try #require(search["changes"] as? [[String: Any]])
        #expect(!changes.isEmpty, "the plain conversion misses this target, so something must be kept finer")
        // The same record is in the file, and inspect prints it.
        let i = try flint("inspect", dir + "/s.flint", "--json")
        let q = try #require((((i.json as? [String: Any])?["provenance"] as? [String: Any])?["quantization"]) as? [String: Any])
        #expect((q["search"] as? [String: Any])?["changes"] as? [[String: Any]] != nil)
        #expect(((q["search"] as? [String: Any])?["changes"] as? [[String: Any]])?.count == changes.count)
        let text = try flint("inspect", dir + "/s.flint")
        #expect(text.stdout.contains("search     top-1 ≥ 0.999"), "\(text.stdout)")
        for c in changes { #expect(text.stdout.contains(c["tensor"] as? String ?? "?")) }
        // Text mode prints the steps.
        let t = try flint("convert", demo, "-o", dir + "/t.flint", "--no-calibration", "--no-default-keep", "--target-top1", "0.999",
                          "--max-mean-kl", "0.001", "--search-prompts", prompts)
        #expect(t.status == 0 && t.stdout.contains("search") && t.stdout.contains("met"), "\(t.stdout)")
    }

    @Test func searchFlagsAreValidated() throws {
        let dir = scratch()
        #expect(try flint("convert", demo, "-o", dir + "/x.flint", "--target-top1", "1.5").status == 64)
        #expect(try flint("convert", demo, "-o", dir + "/x.flint", "--max-mean-kl", "-1").status == 64)
        #expect(try flint("convert", demo, "-o", dir + "/x.flint", "--search-prompts", dir + "/none.txt").status == 64)
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.flint"))
        let h = try flint("convert", "--help")
        #expect(h.stdout.contains("--target-top1") && h.stdout.contains("int8-g32"))
    }
}
