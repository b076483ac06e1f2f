import Foundation
import Testing
import TestSupport
@testable import FlintCLI

/// `flint run` with `input` on stdin (the file is written first: a pipe could fill before the child reads).
private func flintWithStdin(_ args: [String], input: String) throws -> CLIResult {
    let dir = scratch()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/stdin.txt"
    try Data(input.utf8).write(to: URL(fileURLWithPath: path))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: flintBinary())
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    try p.run()
    let (o, e) = readToEnd(out, err)
    p.waitUntilExit()
    return CLIResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

private func jsonLines(_ text: String) throws -> [[String: Any]] {
    try text.split(separator: "\n").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
}



@Suite struct RunInputsCLITests {
    @Test func promptLinesSplitCRLFAndReadJSONLines() {
        let entries = PromptLines.parse("one\r\n\r\n{\"prompt\": \"two\"}\r\n{\"text\": \"three\"}\n{\"x\": 1}\nfour", source: "p.txt")
        #expect(entries.map(\.prompt) == ["one", "two", "three", nil, "four"])
        #expect(entries.map(\.line) == [1, 3, 4, 5, 6])
        #expect(entries[3].error == "p.txt: line 5 looks like JSON but has no string \"prompt\" or \"text\" field")
    }

    /// `-` reads the prompts from stdin (CRLF and JSON lines), with the ids the same prompts give as arguments.
    @Test func stdinPromptsMatchArguments() throws {
        let prompts = ["reverse: red apple blue", "reverse: cat dog", "reverse: one two three"]
        let expected = try jsonLines(try flint(arguments: ["run", demo] + prompts + ["--json"]).stdout).map { $0["ids"] as? [Int] }
        #expect(expected.count == 3 && expected.allSatisfy { $0 != nil })
        let input = "reverse: red apple blue\r\n{\"prompt\": \"reverse: cat dog\"}\r\n\r\nreverse: one two three\r\n"
        let r = try flintWithStdin(["run", demo, "-", "--json"], input: input)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = try jsonLines(r.stdout)
        #expect(lines.map { $0["ids"] as? [Int] } == expected)
        #expect(lines.map { $0["prompt"] as? String } == prompts)
        // --input-file with the same CRLF text, and --input-file - (stdin).
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(input.utf8).write(to: URL(fileURLWithPath: dir + "/p.txt"))
        let file = try flint("run", demo, "--input-file", dir + "/p.txt", "--json")
        #expect(try jsonLines(file.stdout).map { $0["ids"] as? [Int] } == expected)
        let dash = try flintWithStdin(["run", demo, "--input-file", "-"], input: input)
        #expect(dash.status == 0 && dash.stdout == "blue apple red\ndog cat\nthree two one\n", "\(dash.stdout) \(dash.stderr)")
    }

    /// One bad line is reported in its place; the others are generated; the exit status is 1.
    @Test func badPromptIsReportedWithoutLosingTheOthers() throws {
        let input = "reverse: red apple blue\n{\"promt\": \"typo\"}\nreverse: cat dog\n"
        let j = try flintWithStdin(["run", demo, "-", "--json", "--batch-size", "8"], input: input)
        #expect(j.status == 1)
        let lines = try jsonLines(j.stdout)
        #expect(lines.count == 3)
        #expect(lines[0]["text"] as? String == "blue apple red")
        #expect(lines[1]["line"] as? Int == 2)
        #expect((lines[1]["error"] as? String)?.contains("line 2 looks like JSON but has no string \"prompt\"") == true)
        #expect(lines[2]["text"] as? String == "dog cat")
        #expect(j.stderr.contains("1 of 3 prompts failed"))
        let t = try flintWithStdin(["run", demo, "-"], input: input)
        #expect(t.status == 1)
        #expect(t.stdout == "blue apple red\ndog cat\n")
        #expect(t.stderr.contains("prompt 2:") && t.stderr.contains("1 of 3 prompts failed"))
    }

    /// --stream in a pipe: a JSON event per token (its id and the text it adds), then the result with "done".
    @Test func streamInAPipeWritesTokenEvents() throws {
        let r = try flint("run", demo, "reverse: red apple blue", "reverse: cat dog", "--stream", "--max-tokens", "10")
        #expect(r.status == 0, "\(r.stderr)")
        let events = try jsonLines(r.stdout)
        let done = events.filter { $0["event"] as? String == "done" }
        #expect(done.count == 2)
        for d in done {
            let index = try #require(d["index"] as? Int)
            let tokens = events.filter { $0["event"] as? String == "token" && $0["index"] as? Int == index }
            #expect(tokens.map { $0["id"] as? Int ?? -1 } == d["ids"] as? [Int], "token events are the ids, in order")
            #expect(tokens.map { $0["text"] as? String ?? "" }.joined() == d["text"] as? String)
            // Every token event comes before its prompt's result.
            let doneAt = events.firstIndex { $0["event"] as? String == "done" && $0["index"] as? Int == index }!
            let lastToken = events.lastIndex { $0["event"] as? String == "token" && $0["index"] as? Int == index }!
            #expect(lastToken < doneAt)
        }
        #expect(done.map { $0["text"] as? String } == ["blue apple red", "dog cat"])
        let help = try flint("run", "--help")
        #expect(help.stdout.contains("--stream") && help.stdout.contains("flint run ./flan-t5-small - --json --stream"))
    }
}
