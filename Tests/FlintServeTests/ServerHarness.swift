// Starts a FlintServer in the test process on a free loopback port, and stops it when the test body ends.
import Foundation
import FlintCheckpoint
import FlintFormat
import FlintServe
import FlintT5
import FlintTokenizer
import Logging
import Testing
import TestSupport

let demoFolder = fixturePath("models/demo")
let encoderFolder = fixturePath("models/t5-encoder")

/// The demo model (a small T5 trained to reverse word lists) and its transformers golden, loaded once.
final class Fixtures: @unchecked Sendable {
    static let demo = Fixtures(folder: demoFolder)
    let folder: String
    let model: T5ForConditionalGeneration
    let tokenizer: T5Tokenizer
    let golden: [[String: Any]]

    init(folder: String) {
        self.folder = folder
        do {
            let weights = try HFModelFolder(path: folder)
            model = try T5ForConditionalGeneration(weights: weights, pool: nil)
            tokenizer = try T5Tokenizer.load(from: weights)!
            let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/golden.json"))
            golden = (try JSONSerialization.jsonObject(with: data) as! [String: Any])["cases"] as! [[String: Any]]
        } catch {
            fatalError("cannot load the fixture \(folder): \(error)")
        }
    }

    /// Golden cases whose greedy choice is clear (top-2 logit margin ≥ 1), so batching's float rounding cannot
    /// flip a token.
    var clearCases: [[String: Any]] {
        golden.filter { ($0["greedy_min_top2_margin"] as? Double ?? 0) >= 1 }
    }
}

/// Log lines a test can inspect (the server logs one per request).
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    var lines: [String] { lock.withLock { _lines } }
    func append(_ line: String) { lock.withLock { _lines.append(line) } }
}

struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        log.append(event.message.description)
    }
}

/// Runs `body` against a server on a free port; the server is shut down (and its task awaited) afterwards,
/// whatever the body does.
func withServer(_ configure: (inout ServeConfiguration) -> Void = { _ in },
                engine: ServedEngine? = nil, tokenizer: T5Tokenizer? = nil, modelName: String = "demo",
                served: ServedModel? = nil, log: CapturedLog = CapturedLog(),
                _ body: (Int) async throws -> Void) async throws {
    var configuration = ServeConfiguration()
    configuration.port = 0
    configuration.shutdownGraceSeconds = 1
    configure(&configuration)
    let logger = Logger(label: "flint.serve.test") { _ in CapturingLogHandler(log: log) }
    let served = served ?? ServedModel(id: modelName, engine: engine ?? .seq2seq(Fixtures.demo.model),
                                       tokenizer: tokenizer ?? Fixtures.demo.tokenizer)
    let server = try FlintServer(model: served, configuration: configuration, logger: logger)
    let (ports, portContinuation) = AsyncStream<Int>.makeStream()
    let running = Task { try await server.run(handleSignals: false) { portContinuation.yield($0); portContinuation.finish() } }
    var port: Int?
    for await p in ports { port = p; break }
    guard let port else {
        try await running.value
        throw TestClientError(description: "the server stopped before listening")
    }
    do {
        try await body(port)
    } catch {
        await server.shutdown()
        _ = try? await running.value
        throw error
    }
    await server.shutdown()
    try await running.value
}

/// A `/v1/completions` call's JSON (the test fails with the body when the status is not 200).
func complete(_ port: Int, _ request: [String: Any], headers: [String: String] = [:]) async throws -> [String: Any] {
    let r = try await http(port, "POST", "/v1/completions", json: request, headers: headers)
    #expect(r.status == 200, "status \(r.status): \(r.text)")
    return try #require(r.json, "not JSON: \(r.text)")
}

func choices(_ response: [String: Any]) -> [[String: Any]] { response["choices"] as? [[String: Any]] ?? [] }

/// Sends every prompt of a generation golden (Tests/Fixtures/generation) once per setting, with that setting's
/// request fields and max_tokens 20, and checks the text (and, with `checkUsage`, the completion token count)
/// against transformers' ids. Returns how many outputs differ from the golden's plain greedy ones, so a caller
/// can check the fields really reached the decoder.
func expectGoldenCompletions(_ port: Int, cases: [[String: Any]], requests: [String: [String: Any]],
                             tokenizer: T5Tokenizer, checkUsage: Bool) async throws -> Int {
    var differsFromPlain = 0
    for c in cases {
        let results = try #require(c["results"] as? [String: [String: Any]])
        let plain = (results["plain"]?["sequences"] as? [[Int]])?.first
        for (setting, fields) in requests.sorted(by: { $0.key < $1.key }) {
            let expected = try #require((results[setting]?["sequences"] as? [[Int]])?.first, "\(setting)")
            var body = fields
            body["prompt"] = c["prompt"] as! String
            body["max_tokens"] = 20
            let r = try await complete(port, body)
            #expect(choices(r).first?["text"] as? String == tokenizer.decode(Array(expected.dropFirst()), skipSpecialTokens: true),
                    "\(setting): \(c["prompt"]!)")
            if checkUsage {
                #expect((r["usage"] as? [String: Int])?["completion_tokens"] == expected.count - 1, "\(setting): \(c["prompt"]!)")
            }
            if expected != plain { differsFromPlain += 1 }
        }
    }
    return differsFromPlain
}
