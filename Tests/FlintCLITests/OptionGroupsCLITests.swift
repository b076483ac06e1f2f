// The options several commands share (Sources/FlintCLI/Options.swift): parsed once, the same rules everywhere.
import Foundation
import Testing
import TestSupport

@Suite struct OptionGroupsCLITests {
    /// --kernels is an enum: any case is accepted, and a bad value is a usage error listing the choices, in
    /// every command that has it.
    @Test func kernelsAreParsedTheSameInEveryCommand() throws {
        let runs = try flint("run", demo, "reverse: red apple blue", "--kernels", "WEIGHT-ONLY", "--json")
        #expect(runs.status == 0, "\(runs.stderr)")
        #expect((runs.json as? [String: Any])?["text"] as? String == "blue apple red")
        for command in [["run", demo, "x"], ["embed", demo, "x"], ["bench", demo], ["verify", demo, "--reference", demo]] {
            let r = try flint(arguments: command + ["--kernels", "fast"])
            #expect(r.status == 64, "\(command[0]): \(r.stderr)")
            #expect(r.stderr.contains("'auto', 'weight-only' or 'w8a8'"), "\(command[0]): \(r.stderr)")
            let t = try flint(arguments: command + ["--threads", "0"])
            #expect(t.status == 64 && t.stderr.contains("--threads must be between 1 and 1024, got 0"), "\(command[0]): \(t.stderr)")
            // Past the pool's bound: refused before any thread is made (the pool's claim word has 16 bits per part).
            let many = try flint(arguments: command + ["--threads", "70000"])
            #expect(many.status == 64 && many.stderr.contains("--threads must be between 1 and 1024, got 70000"),
                    "\(command[0]): \(many.stderr)")
        }
    }

    /// --quant and --keep keep their own error text (it names the valid forms); --from lists the formats.
    @Test func convertValuesAreCheckedWhenParsed() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let q = try flint("convert", flanTiny, "-o", dir + "/x.flint", "--quant", "int4")
        #expect(q.status == 64 && q.stderr.contains("valid schemes: f32, f16, bf16, int8"), "\(q.stderr)")
        let k = try flint("convert", flanTiny, "-o", dir + "/x.flint", "--keep", "*.wo.weight=int8")
        #expect(k.status == 64 && k.stderr.contains("use GLOB, GLOB=f32, GLOB=f16 or GLOB=bf16"), "\(k.stderr)")
        let f = try flint("convert", flanTiny, "-o", dir + "/x.flint", "--from", "onnx")
        #expect(f.status == 64 && f.stderr.contains("'safetensors', 'pytorch', 'h5' or 'msgpack'"), "\(f.stderr)")
        let o = try flint("export", dir + "/x.flint", "-o", dir + "/")
        #expect(o.status == 64 && o.stderr.contains("--output must name a file"), "\(o.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.flint"))
    }
}
