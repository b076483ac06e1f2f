import Foundation
import Testing

// `flint run` batches prompts: the ids must not depend on how prompts are grouped, and `bench --batch`
// measures the batched path (every sequence runs to --new-tokens).
@Suite struct BatchedRunCLITests {
    @Test func batchSizeDoesNotChangeTheOutput() throws {
        let prompts = ["reverse: red apple blue", "reverse: one two three four five", "reverse: cat", "reverse: a b c d"]
        func ids(_ batchSize: String, _ extra: String...) throws -> [String] {
            let args = ["run", demo] + prompts + ["--json", "--batch-size", batchSize] + extra
            let r = try flintArgs(args)
            #expect(r.status == 0, "\(r.stderr)")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == prompts.count)
            return try lines.map { line in
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(object["prompt"] as? String != nil)
                return "\(object["prompt"]!) \(object["ids"]!)"
            }
        }
        let one = try ids("1")
        #expect(try ids("3") == one)
        #expect(try ids("8") == one)
        #expect(try ids("1", "--beams", "3") == (try ids("4", "--beams", "3")))
        #expect(try flintArgs(["run", demo, "x", "--batch-size", "0"]).status == 64)
    }

    @Test func benchBatchRunsEverySequenceToTheEnd() throws {
        let r = try flintArgs(["bench", demo, "--prompt-tokens", "8", "--new-tokens", "6", "--runs", "1", "--batch", "4", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(r.json as? [String: Any])
        #expect(j["batch"] as? Int == 4)
        #expect((j["decode_tokens_per_second"] as? Double ?? 0) > 0)
    }
}

/// `flint(...)` with an argument array.
private func flintArgs(_ args: [String]) throws -> CLIResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: flintBinary())
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return CLIResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}
