import Foundation
import Testing
import TestSupport

/// Runs the built `flint` executable (it sits next to the test bundle) and captures its output.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) }
}


func flintBinary() -> String {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    // The test bundle is a directory on some platforms (…/FlintPackageTests.xctest/Contents/MacOS/…).
    for _ in 0..<4 {
        if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("flint").path) { break }
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent("flint").path
}

@discardableResult
func flint(_ args: String...) throws -> CLIResult { try flint(arguments: args) }

@discardableResult
func flint(arguments args: [String]) throws -> CLIResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: flintBinary())
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read before waiting so a large output cannot fill the pipe and block.
    let (o, e) = readToEnd(out, err)
    p.waitUntilExit()
    return CLIResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// Everything written to two pipes until both close. Both are drained at once (stderr on another thread) so a
/// child that fills one pipe while we wait on the other cannot block, and an interrupted read (EINTR: test
/// processes receive signals, and FileHandle.readDataToEndOfFile traps on it) is simply retried.
func readToEnd(_ out: Pipe, _ err: Pipe) -> (Data, Data) {
    @Sendable func drain(_ fd: Int32) -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { data.append(contentsOf: buffer[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            return data
        }
    }
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { errData = drain(err.fileHandleForReading.fileDescriptor) }
    let outData = drain(out.fileHandleForReading.fileDescriptor)
    group.wait()
    return (outData, errData)
}

let flanTiny = packageRoot + "/Tests/Fixtures/models/flan-tiny"

@Suite struct ConvertInspectExportCLITests {
    @Test func convertJSONHasTheDocumentedFields() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try flint("convert", flanTiny, "-o", dir + "/m.flint", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        for key in ["output", "source_format", "quant", "tensors", "bytes_in", "bytes_out", "kept_float", "per_tensor"] {
            #expect(j[key] != nil, "missing \(key)")
        }
        #expect(j["quant"] as? String == "int8")
        #expect(j["source_format"] as? String == "safetensors")
        let per = try #require(j["per_tensor"] as? [[String: Any]])
        #expect(per.count == j["tensors"] as? Int)
        let q = try #require(per.first { $0["name"] as? String == "encoder.block.0.layer.0.SelfAttention.q.weight" })
        #expect(q["scheme"] as? String == "int8")
        #expect((q["snr_db"] as? Double ?? 0) > 30)
        // Piped: no progress bar on stderr.
        #expect(r.stderr.isEmpty, "\(r.stderr)")
    }

    @Test func inspectJSONListsEveryTensorWithSchemeAndChecksum() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", flanTiny, "-o", dir + "/m.flint", "--quant", "int8-g32").status == 0)
        let r = try flint("inspect", dir + "/m.flint", "--json", "--verify")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        #expect(j["format_version"] as? Int == 1)
        let config = try #require(j["config"] as? [String: Any])
        #expect(config["d_model"] as? Int == 40)
        let tok = try #require(j["tokenizer"] as? [String: Any])
        #expect(tok["type"] as? String == "sentencepiece" && (tok["bytes"] as? Int ?? 0) > 1000)
        let tensors = try #require(j["tensors"] as? [[String: Any]])
        #expect(!tensors.isEmpty)
        for t in tensors {
            for key in ["name", "dtype", "shape", "offset", "bytes", "scheme", "group_size", "checksum"] {
                #expect(t[key] != nil, "tensor lacks \(key)")
            }
            #expect((t["offset"] as? Int ?? 1) % 64 == 0)
        }
        #expect(tensors.contains { $0["scheme"] as? String == "int8-g32" && $0["group_size"] as? Int == 32 })
        let text = try flint("inspect", dir + "/m.flint")
        #expect(text.status == 0 && text.stdout.contains("shared.weight") && text.stdout.contains("int8-g32"))
    }

    @Test func exportWritesSafetensors() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", flanTiny, "-o", dir + "/m.flint", "--quant", "f32").status == 0)
        let r = try flint("export", dir + "/m.flint", "-o", dir + "/m.safetensors", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        #expect(j["bytes_out"] as? Int == Int(try FileManager.default.attributesOfItem(atPath: dir + "/m.safetensors")[.size] as! NSNumber))
    }

    @Test func usageErrorsExit64() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try flint("convert", flanTiny, "-o", dir + "/x.flint", "--quant", "int4")
        #expect(r.status == 64)
        #expect(r.stderr.contains("int4"))
        #expect(try flint("convert", "/nonexistent/model", "-o", dir + "/x.flint").status == 64)
        #expect(try flint("convert", flanTiny, "-o", dir + "/x.flint", "--keep", "*.wo.weight=int8").status == 64)
    }

    @Test func badInputIsOneClearLineAndNoOutputLeft() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/junk.flint", contents: Data(repeating: 7, count: 500))
        let r = try flint("inspect", dir + "/junk.flint")
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("flint: error: ") && r.stderr.contains("junk.flint") && r.stderr.contains("not a .flint file"))
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        // A folder with a broken config: error, and no output file (not even a temporary one) left behind.
        try FileManager.default.createDirectory(atPath: dir + "/broken", withIntermediateDirectories: true)
        try Data("{\"model_type\": \"t5\"}".utf8).write(to: URL(fileURLWithPath: dir + "/broken/config.json"))
        let c = try flint("convert", dir + "/broken", "-o", dir + "/out/b.flint")
        #expect(c.status != 0)
        #expect(!FileManager.default.fileExists(atPath: dir + "/out/b.flint"))
    }

    @Test func everyCommandHasHelpWithAnExample() throws {
        for command in ["convert", "inspect", "export", "pack", "unpack"] {
            let r = try flint(command, "--help")
            #expect(r.status == 0)
            #expect(r.stdout.contains("Examples:") && r.stdout.contains("flint \(command)"), "\(command) --help lacks an example")
        }
    }

    /// Piped `--help` is wrapped at 80 columns by ArgumentParser alone: a prose paragraph's lines are full up to its
    /// last one. (The discussions' source lines are ~115 columns; passed on as they are, every paragraph came out as
    /// alternating long and short lines.)
    @Test func helpProseIsWrappedOnce() throws {
        for command in ["convert", "inspect", "export", "pack", "unpack", "run", "serve", "embed", "tokenize", "verify",
                        "bench"] {
            let r = try flint(command, "--help")
            #expect(r.status == 0)
            let lines = r.stdout.components(separatedBy: "\n")
            let discussion = lines.prefix { !$0.hasPrefix("USAGE:") }
            var paragraph: [String] = []
            var checked = 0
            var previousIndented = false
            for line in discussion + [""] {
                // An indented line (example, table) is kept as written, so it must fit: one the parser had to wrap
                // shows as an indented line with its tail, unindented, right below it.
                #expect(!(previousIndented && !line.isEmpty && !line.hasPrefix(" ")),
                        "\(command) --help: an indented line wider than 80 columns, wrapped before \"\(line)\"")
                previousIndented = line.hasPrefix(" ")
                if line.isEmpty || line.hasPrefix(" ") || line.hasPrefix("OVERVIEW:") {
                    // A finished prose paragraph: every line but the last fills most of the 80 columns.
                    for full in paragraph.dropLast() {
                        #expect(full.count > 55, "\(command) --help: a short line inside a paragraph: \"\(full)\"")
                        checked += 1
                    }
                    paragraph = []
                } else {
                    #expect(line.count <= 80, "\(command) --help: longer than 80 columns: \"\(line)\"")
                    paragraph.append(line)
                }
            }
            #expect(checked > 0, "\(command) --help has no wrapped prose paragraph to check")
        }
    }
}

@Suite struct PackCLITests {
    @Test func packUnpackIsBitForBitAndModelsReadPackedFiles() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", flanTiny, "-o", dir + "/m.flint").status == 0)
        let p = try flint("pack", dir + "/m.flint", "--json")
        #expect(p.status == 0, "\(p.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/m.flint.zst"))
        let u = try flint("unpack", dir + "/m.flint.zst", "-o", dir + "/again.flint")
        #expect(u.status == 0, "\(u.stderr)")
        #expect(FileManager.default.contents(atPath: dir + "/again.flint") == FileManager.default.contents(atPath: dir + "/m.flint"))
        // A command that reads a model takes the .zst directly, through a cache file beside it.
        let i = try flint("inspect", dir + "/m.flint.zst", "--json")
        #expect(i.status == 0, "\(i.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/m.flint.zst.unpacked.flint"))
    }

    @Test func corruptPackIsRefusedAndLeavesNothing() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", flanTiny, "-o", dir + "/m.flint", "--quant", "f32").status == 0)
        #expect(try flint("pack", dir + "/m.flint").status == 0)
        var bytes = [UInt8](FileManager.default.contents(atPath: dir + "/m.flint.zst")!)
        bytes.removeLast(bytes.count / 3)
        FileManager.default.createFile(atPath: dir + "/cut.flint.zst", contents: Data(bytes))
        let r = try flint("unpack", dir + "/cut.flint.zst")
        #expect(r.status == 1)
        #expect(r.stderr.contains("cut.flint.zst"), "\(r.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("cut") || $0.hasPrefix(".cut") }
        #expect(left == ["cut.flint.zst"], "left behind: \(left)")
    }
}

let demo = packageRoot + "/Tests/Fixtures/models/demo"

@Suite struct RunVerifyBenchCLITests {
    @Test func runsTheDemoModelFromAnInt8File() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", demo, "-o", dir + "/d.flint").status == 0)
        let r = try flint("run", dir + "/d.flint", "reverse: red apple blue", "reverse: one two three four five")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n").map(String.init) == ["blue apple red", "five four three two one"])
        let j = try flint("run", dir + "/d.flint", "reverse: cat dog", "--json", "--kernels", "w8a8")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        for key in ["prompt", "input_ids", "ids", "text", "tokens_per_second"] { #expect(obj[key] != nil, "missing \(key)") }
        #expect(obj["text"] as? String == "dog cat")
        #expect((obj["ids"] as? [Int])?.last == 1, "ids end with </s>")
    }

    @Test func verifyPassesOnInt8AndRefusesAnotherModel() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", demo, "-o", dir + "/d.flint").status == 0)
        let prompts = dir + "/prompts.txt"
        try "reverse: red apple blue\n{\"prompt\": \"reverse: one two three\"}\nreverse: cat dog\n".write(toFile: prompts, atomically: true, encoding: .utf8)
        let r = try flint("verify", dir + "/d.flint", "--reference", demo, "--prompts", prompts, "--json",
                          "--report", dir + "/report/verify.md")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        for key in ["passed", "prompts", "top1_agreement", "first_token_agreement", "mean_kl", "p99_kl", "max_kl",
                    "exact_match", "similarity", "layers", "worst_layer", "thresholds"] {
            #expect(j[key] != nil, "missing \(key)")
        }
        #expect(j["prompts"] as? Int == 3 && j["passed"] as? Bool == true)
        #expect(FileManager.default.fileExists(atPath: dir + "/report/verify.md"))
        #expect(FileManager.default.fileExists(atPath: dir + "/report/verify-layers.svg"))
        // A per-block SNR bar int8 cannot reach: exit 1, and the first block is named.
        let strict = try flint("verify", dir + "/d.flint", "--reference", demo, "--prompts", prompts, "--min-layer-snr", "200")
        #expect(strict.status == 1, "\(strict.stderr)")
        #expect(strict.stdout.contains("FAILED") && strict.stdout.contains("encoder.block.0"), "\(strict.stdout)")
        // A different model is an error, not a score: exit 2.
        let other = try flint("verify", dir + "/d.flint", "--reference", flanTiny, "--prompts", prompts)
        #expect(other.status == 2)
        #expect(other.stderr.contains("not the same model"))
        // Golden mode against transformers' outputs.
        let g = try flint("verify", demo, "--golden", demo + "/golden.json")
        #expect(g.status == 0 && g.stdout.contains("PASSED"), "\(g.stdout)\(g.stderr)")
    }

    @Test func benchReportsItsFields() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", demo, "-o", dir + "/d.flint").status == 0)
        let r = try flint("bench", dir + "/d.flint", "--prompt-tokens", "16", "--new-tokens", "8", "--runs", "1", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        for key in ["load_ms", "encoder_tokens_per_second", "time_to_first_token_ms", "decode_tokens_per_second", "peak_rss_mb", "kernels"] {
            #expect(j[key] != nil, "missing \(key)")
        }
        #expect((j["decode_tokens_per_second"] as? Double ?? 0) > 0)
    }

    @Test func tokenizeReadsTheTokenizerInsideAFlintFile() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try flint("convert", demo, "-o", dir + "/d.flint").status == 0)
        let a = try flint("tokenize", dir + "/d.flint", "reverse: red apple blue", "--json")
        let b = try flint("tokenize", demo, "reverse: red apple blue", "--json")
        #expect(a.status == 0 && a.stdout == b.stdout, "\(a.stderr)")
    }

    @Test func everyCommandHasHelpWithAnExample() throws {
        for command in ["run", "embed", "tokenize", "verify", "bench"] {
            let r = try flint(command, "--help")
            #expect(r.status == 0)
            #expect(r.stdout.contains("flint \(command) "), "\(command) --help lacks an example")
        }
    }
}
