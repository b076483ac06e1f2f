// `flint convert --quant int4-g32` through the binary: the recipe it writes, what `inspect` shows, that the
// file runs, and `export` giving float tensors back.

import Foundation
import Testing
import TestSupport

@Suite struct Int4CLITests {
    @Test func convertInspectRunExportInt4() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try flint("convert", demo, "-o", dir + "/m.flint", "--quant", "int4-g32", "--calibration-tokens", "4")
        #expect(c.status == 0, "\(c.stderr)")
        #expect(c.stdout.contains("int4 share"), "\(c.stdout)")
        let text = try flint("inspect", dir + "/m.flint")
        #expect(text.status == 0)
        #expect(text.stdout.contains("recipe     int4-g32"), "\(text.stdout)")
        // The demo's matrices are whole blocks: exactly 4.5 bits per int4 weight.
        #expect(text.stdout.contains("int4-g32 37 tensors") && text.stdout.contains("(4.50 bits/weight)"), "\(text.stdout)")
        let line = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("encoder.block.0.layer.0.SelfAttention.q.weight ") && $0.contains("packed") })
        #expect(line.contains("int4-g32") && line.contains("int4-packed16x8") && line.contains("9216"), "\(line)")
        let json = try #require(try flint("inspect", dir + "/m.flint", "--json").json as? [String: Any])
        let tensors = try #require(json["tensors"] as? [[String: Any]])
        let shared = try #require(tensors.first { $0["name"] as? String == "shared.weight" })
        #expect(shared["scheme"] as? String == "int8")
        #expect(tensors.filter { $0["scheme"] as? String == "int4-g32" }.allSatisfy { $0["dtype"] as? String == "i4" && $0["scale_bytes"] as? Int == 0 })

        let run = try flint("run", dir + "/m.flint", "--max-tokens", "4", "translate English to German: The house is small.")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!run.stdout.isEmpty)

        let e = try flint("export", dir + "/m.flint", "-o", dir + "/back.safetensors")
        #expect(e.status == 0, "\(e.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/back.safetensors"))

        let bad = try flint("convert", demo, "-o", dir + "/x.flint", "--quant", "int4-g16")
        #expect(bad.status != 0 && bad.stderr.contains("int4-g32, int4-g64, int4-g128"), "\(bad.stderr)")
    }
}
