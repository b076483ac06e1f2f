// The real `flint serve` process: it prints where it listens, answers greedy requests exactly as `flint run`
// does, and on SIGTERM / SIGINT stops, ends its streams and exits 0.
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `flint` executable built beside the test bundle.
func flintBinary() -> String {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("flint").path) { break }
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent("flint").path
}

/// A running `flint serve`: its port (read from its log line), and its stderr so far.
final class ServeProcess: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var stderrText = ""
    private(set) var port = 0

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: flintBinary())
        process.arguments = ["serve"] + arguments + ["--port", "0"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let fd = err.fileHandleForReading.fileDescriptor
        let portFound = DispatchSemaphore(value: 0)
        // Drain stderr on a thread of its own until the process closes it.
        Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            var signalled = false
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                lock.withLock { stderrText += String(decoding: buffer[0..<n], as: UTF8.self) }
                if !signalled, let p = listeningPort() {
                    lock.withLock { port = p }
                    signalled = true
                    portFound.signal()
                }
            }
            if !signalled { portFound.signal() }
        }.start()
        portFound.wait()
        guard port > 0 else {
            process.terminate()
            process.waitUntilExit()
            throw TestClientError(description: "flint serve did not start: \(stderr)")
        }
    }

    var stderr: String { lock.withLock { stderrText } }

    private func listeningPort() -> Int? {
        let text = stderr
        guard let range = text.range(of: "on http://127.0.0.1:") else { return nil }
        let digits = text[range.upperBound...].prefix { $0.isNumber }
        return Int(digits)
    }

    /// Waits for the exit (at most `seconds`, then kills it): the exit status, or nil if it had to be killed.
    func waitForExit(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

enum CapturedStream { case stdout, stderr }

/// Runs `flint` to its end; its exit status and one of its outputs (read with read(2), retrying EINTR).
func runFlint(_ arguments: [String], capture: CapturedStream) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: flintBinary())
    p.arguments = arguments
    let pipe = Pipe()
    if capture == .stdout {
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
    } else {
        p.standardError = pipe
        p.standardOutput = FileHandle.nullDevice
    }
    try p.run()
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    let fd = pipe.fileHandleForReading.fileDescriptor
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 { data += buffer[0..<n]; continue }
        if n < 0 && errno == EINTR { continue }
        break
    }
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite(.serialized) struct ServeBinaryTests {
    /// `flint run --json`'s ids and text for prompts.
    func flintRun(_ prompts: [String]) throws -> [(ids: [Int], text: String)] {
        let (status, output) = try runFlint(["run", demoFolder, "--json", "--max-tokens", "20"] + prompts, capture: .stdout)
        #expect(status == 0)
        return output.split(separator: "\n").map { line in
            let json = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
            return (json["ids"] as? [Int] ?? [], json["text"] as? String ?? "")
        }
    }

    @Test func greedyAnswersAreFlintRunsAndSIGTERMEndsTheServerWithExit0() async throws {
        let prompts = Fixtures.demo.golden.map { $0["prompt"] as! String }
        let expected = try await onThread { try self.flintRun(prompts) }
        try #require(expected.count == prompts.count)
        let server = try await onThread {
            try ServeProcess([demoFolder, "--max-batch", "4", "--max-tokens", "200000", "--shutdown-grace", "1", "--timeout", "60"])
        }
        let port = server.port
        for (i, prompt) in prompts.enumerated() {
            let r = try await complete(port, ["prompt": prompt, "max_tokens": 20])
            let choice = try #require(choices(r).first)
            #expect(choice["text"] as? String == expected[i].text, "prompt \(i)")
            // The completion's tokens are flint run's ids (usage counts them, the eos included).
            #expect((r["usage"] as? [String: Int])?["completion_tokens"] == expected[i].ids.count, "prompt \(i)")
        }
        let ids = try await http(port, "POST", "/tokenize", json: ["text": prompts[0]])
        #expect(ids.json?["ids"] as? [Int] == Fixtures.demo.golden[0]["input_ids"] as? [Int])

        // A stream that would run for minutes is running when SIGTERM comes. The sequence runs on one thread,
        // so a busy test process cannot stretch the time between the first piece and the signal.
        let pid = server.process.processIdentifier
        let (firstPiece, tail) = try await onThread { () -> (Bool, String) in
            let stream = try TestConnection(port: port)
            try stream.sendRequest("POST", "/v1/completions", body: try JSONSerialization.data(withJSONObject: ProtectionTests.endless(stream: true)))
            let running = try stream.readHead().status == 200 && stream.readChunk() != nil
            kill(pid, SIGTERM)
            // The stream ends (with an error event: the grace ran out) instead of hanging.
            var text = ""
            while let chunk = try stream.readChunk() { text = String(decoding: chunk, as: UTF8.self) }
            return (running, text)
        }
        #expect(firstPiece)
        #expect(tail.contains("\"error\""), "last event: \(tail)")
        let status = try await onThread { server.waitForExit(seconds: 30) }
        #expect(status == 0, "exit status \(String(describing: status)); stderr: \(server.stderr)")
        // One log line per request.
        #expect(server.stderr.components(separatedBy: "POST /v1/completions 200").count - 1 == prompts.count + 1, "\(server.stderr)")
    }

    @Test func SIGINTOnAnIdleServerExits0() async throws {
        let server = try await onThread { try ServeProcess([demoFolder]) }
        #expect(try await http(server.port, "GET", "/health").status == 200)
        kill(server.process.processIdentifier, SIGINT)
        let status = try await onThread { server.waitForExit(seconds: 30) }
        #expect(status == 0, "stderr: \(server.stderr)")
    }

    @Test func aPortInUseIsOneClearError() async throws {
        let first = try await onThread { try ServeProcess([demoFolder]) }
        let port = first.port
        let (status, text) = try await onThread { try runFlint(["serve", demoFolder, "--port", String(port)], capture: .stderr) }
        #expect(status == 1, "\(text)")
        #expect(text.contains("flint: error: serve:"), "\(text)")
        kill(first.process.processIdentifier, SIGTERM)
        #expect(try await onThread { first.waitForExit(seconds: 30) } == 0)
    }
}
