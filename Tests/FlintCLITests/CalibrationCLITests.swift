import Foundation
import Testing
import TestSupport

@Suite struct CalibrationCLITests {
    /// Default convert calibrates and smooths (wo int8, calibration in --json and the file), and `bench
    /// --kernels auto` then runs W8A8; --no-calibration keeps wo float32 and auto picks weight-only.
    @Test func defaultConvertCalibratesAndAutoKernelsFollowTheFile() throws {
        let dir = scratch()
        let demo = packageRoot + "/Tests/Fixtures/models/demo"
        let r = try flint("convert", demo, "-o", dir + "/cal.flint", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        #expect((j["kept_float"] as? [String])?.contains { $0.hasSuffix("wo.weight") } == false)
        let c = try #require(j["calibration"] as? [String: Any])
        #expect(c["prompt_source"] as? String == "built-in verify prompts")
        #expect(c["layers"] as? Int == 37 && (c["smoothing_folds"] as? Int ?? 0) > 0)
        let free = try flint("convert", demo, "-o", dir + "/free.flint", "--no-calibration", "--json")
        #expect(free.status == 0, "\(free.stderr)")
        let fj = try #require(free.json as? [String: Any])
        #expect(fj["calibration"] == nil)
        #expect((fj["kept_float"] as? [String])?.filter { $0.hasSuffix("wo.weight") }.count == 4)
        for (file, expected) in [("cal.flint", "w8a8"), ("free.flint", "weight-only")] {
            let b = try flint("bench", dir + "/" + file, "--runs", "1", "--new-tokens", "2", "--json")
            #expect(b.status == 0, "\(b.stderr)")
            #expect((b.json as? [String: Any])?["kernels"] as? String == expected, "\(file)")
        }
        let prompts = dir + "/prompts.txt"
        try "reverse: cat dog\n{\"prompt\": \"reverse: red sun\"}\n".write(toFile: prompts, atomically: true, encoding: .utf8)
        let fromFile = try flint("convert", demo, "-o", dir + "/file.flint", "--calibration", prompts, "--json")
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        let fc = try #require((fromFile.json as? [String: Any])?["calibration"] as? [String: Any])
        #expect(fc["prompts"] as? Int == 2 && fc["prompt_source"] as? String == "prompts.txt")
        let clash = try flint("convert", demo, "-o", dir + "/x.flint", "--calibration", prompts, "--no-calibration")
        #expect(clash.status != 0 && clash.stderr.contains("exclusive"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.flint"))
    }
}
