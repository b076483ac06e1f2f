// `flint serve`'s HTTP server (Hummingbird 2): routes, authentication, body limits, request logging, and the
// service group that shuts everything down in order on SIGTERM / SIGINT.
import Foundation
import FlintFormat
import FlintT5
import FlintTokenizer
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// The limits and addresses of a server.
public struct ServeConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0: any free port (the port is reported to `onListening`).
    public var port = 8080
    /// When set, every endpoint but /health needs `Authorization: Bearer <key>`.
    public var apiKey: String?
    /// Decoder rows (sequences, beams count each) decoded together at most.
    public var maxBatch = 8
    /// Completion choices waiting to join the batch at most; more are refused with 429.
    public var maxQueue = 64
    /// Prompt tokens at most (longer prompts are refused with 400).
    public var maxInputTokens = 512
    /// `max_tokens` a request may ask for at most.
    public var maxTokens = 512
    /// `max_tokens` of a request that gives none (flint run's default), at most `maxTokens`.
    public var defaultMaxTokens = 64
    /// Request bodies larger than this are refused with 413.
    public var maxBodyBytes = 1 << 20
    /// A request not finished this many seconds after it arrived fails with 504 and leaves the batch.
    public var timeoutSeconds = 300.0
    /// On shutdown, running requests get this long to finish before they are cancelled.
    public var shutdownGraceSeconds = 3.0

    public init() {}

    /// Checks the numbers; names the first bad one.
    public func validate() throws {
        guard (0...65535).contains(port) else { throw FlintError("port must be 0…65535, got \(port)") }
        guard maxBatch >= 1 else { throw FlintError("max batch must be at least 1, got \(maxBatch)") }
        guard maxQueue >= 1 else { throw FlintError("max queue must be at least 1, got \(maxQueue)") }
        guard maxInputTokens >= 1 else { throw FlintError("max input tokens must be at least 1, got \(maxInputTokens)") }
        guard maxTokens >= 1 else { throw FlintError("max tokens must be at least 1, got \(maxTokens)") }
        guard maxBodyBytes >= 1024 else { throw FlintError("max body bytes must be at least 1024, got \(maxBodyBytes)") }
        guard timeoutSeconds > 0, timeoutSeconds.isFinite else { throw FlintError("timeout must be a positive number of seconds") }
        guard shutdownGraceSeconds >= 0, shutdownGraceSeconds.isFinite else { throw FlintError("shutdown grace must be 0 or more seconds") }
        if let apiKey, apiKey.isEmpty { throw FlintError("the API key must not be empty") }
    }
}

/// A loaded model and its tokenizer, under the name the API reports (`"model"`).
public struct ServedModel: Sendable {
    public let id: String
    public let engine: ServedEngine
    public let tokenizer: T5Tokenizer
    /// The model's generation settings (a .flint file's metadata, a folder's generation_config.json): the
    /// defaults of every completion field a request leaves out, as for `flint run` without flags.
    public let generationDefaults: GenerationDefaults?

    public init(id: String, engine: ServedEngine, tokenizer: T5Tokenizer, generationDefaults: GenerationDefaults? = nil) {
        self.id = id
        self.engine = engine
        self.tokenizer = tokenizer
        self.generationDefaults = generationDefaults
    }
}

/// The request context: Hummingbird's, plus what the log line and metrics learn from the handler.
struct ServeRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let stats = RequestStats()

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}

final class RequestStats: @unchecked Sendable {
    private let lock = NSLock()
    private var _promptTokens = 0, _completionTokens = 0
    private var _note: String?

    func record(promptTokens: Int = 0, completionTokens: Int = 0, note: String? = nil) {
        lock.withLock {
            _promptTokens += promptTokens
            _completionTokens += completionTokens
            if let note { _note = note }
        }
    }

    var summary: (prompt: Int, completion: Int, note: String?) { lock.withLock { (_promptTokens, _completionTokens, _note) } }
}

public final class FlintServer: @unchecked Sendable {
    public let model: ServedModel
    public let configuration: ServeConfiguration
    let logger: Logger
    let metrics = ServeMetrics()
    let scheduler: BatchScheduler
    let created = Int(Date().timeIntervalSince1970)
    private let lock = NSLock()
    private var serviceGroup: ServiceGroup?
    private var shutdownRequested = false

    public init(model: ServedModel, configuration: ServeConfiguration, logger: Logger) throws {
        try configuration.validate()
        self.model = model
        self.configuration = configuration
        self.logger = logger
        scheduler = BatchScheduler(engine: model.engine, tokenizer: model.tokenizer, maxBatch: configuration.maxBatch,
                                   maxQueue: configuration.maxQueue, maxInputTokens: configuration.maxInputTokens,
                                   metrics: metrics, logger: logger)
    }

    var limits: RequestLimits {
        RequestLimits(defaults: model.generationDefaults ?? GenerationDefaults(), maxInputTokens: configuration.maxInputTokens, maxTokens: configuration.maxTokens,
                      defaultMaxTokens: configuration.defaultMaxTokens, maxBatch: configuration.maxBatch,
                      maxQueue: configuration.maxQueue, vocabSize: model.engine.config.vocabSize)
    }

    /// Serves until `shutdown()` or, with `handleSignals`, SIGTERM / SIGINT: then stops accepting work, gives
    /// running requests `shutdownGraceSeconds` to finish, cancels the rest (503) and returns.
    /// `onListening` gets the port bound (useful with port 0).
    public func run(handleSignals: Bool, onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let router = Router(context: ServeRequestContext.self)
        router.add(middleware: RequestLogMiddleware(logger: logger, metrics: metrics))
        if let key = configuration.apiKey { router.add(middleware: BearerAuthMiddleware(key: key)) }
        addRoutes(router)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "flint"),
            onServerRunning: { [logger, model, configuration] channel in
                let port = channel.localAddress?.port ?? configuration.port
                logger.info("flint serve: \(model.id) on http://\(configuration.host):\(port) (max batch \(configuration.maxBatch), max queue \(configuration.maxQueue))")
                onListening(port)
            },
            logger: logger)
        // Services stop in reverse order: the scheduler first (it drains or cancels the work, so every handler
        // returns), then the HTTP server (it stops accepting and waits for the handlers).
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: app), .init(service: SchedulerService(scheduler: scheduler, grace: configuration.shutdownGraceSeconds))],
            gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: logger))
        let stopAtOnce = lock.withLock { () -> Bool in
            serviceGroup = group
            return shutdownRequested
        }
        scheduler.start()
        if stopAtOnce { await group.triggerGracefulShutdown() }
        try await group.run()
    }

    /// Starts the graceful shutdown of a running server (or of the next `run`).
    public func shutdown() async {
        let group = lock.withLock { () -> ServiceGroup? in
            shutdownRequested = true
            return serviceGroup
        }
        await group?.triggerGracefulShutdown()
    }

    // MARK: Routes

    private func addRoutes(_ router: Router<ServeRequestContext>) {
        router.get("/health") { [self] _, _ in
            let accepting = scheduler.isAccepting
            return jsonResponse(accepting ? .ok : .serviceUnavailable,
                                ["status": accepting ? "ok" : "shutting_down", "model": model.id])
        }
        router.get("/v1/models") { [self] _, _ in
            jsonResponse(.ok, ModelListJSON(data: [.init(id: model.id, created: created)]))
        }
        router.get("/metrics") { [self] _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: metrics.text())))
        }
        router.post("/tokenize") { [self] request, context in
            let body = try TokenizeRequest(try await readBody(request))
            let (ids, pieces) = model.tokenizer.encodeWithPieces(body.text, addEOS: body.addEOS)
            return jsonResponse(.ok, TokenizeJSON(ids: ids, pieces: pieces))
        }
        router.post("/detokenize") { [self] request, context in
            let body = try DetokenizeRequest(try await readBody(request), tokenizer: model.tokenizer)
            return jsonResponse(.ok, ["text": model.tokenizer.decode(body.ids, skipSpecialTokens: body.skipSpecialTokens)])
        }
        router.post("/v1/embeddings") { [self] request, context in
            try await embeddings(request, context)
        }
        router.post("/v1/completions") { [self] request, context in
            try await completions(request, context)
        }
    }

    /// The body, at most `maxBodyBytes` (413 beyond, from the Content-Length before reading when it is given).
    private func readBody(_ request: Request) async throws -> Data {
        let limit = configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError.tooLarge(limit)
        }
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: limit)
            return Data(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError.tooLarge(limit)
        }
    }

    private func embeddings(_ request: Request, _ context: ServeRequestContext) async throws -> Response {
        let body = try EmbeddingRequest(try await readBody(request), limits: limits, model: model.id)
        let inputs = try tokenizePrompts(body.inputs, tokenizer: model.tokenizer, maxInputTokens: configuration.maxInputTokens, field: "input")
        let tokens = inputs.reduce(0) { $0 + $1.count }
        let vectors: [[Float]] = try await withCheckedThrowingContinuation { continuation in
            let job = EmbeddingJob(inputs: inputs) { continuation.resume(with: $0.mapError { $0 as Error }) }
            do {
                try scheduler.submit([.embedding(job)])
            } catch {
                continuation.resume(throwing: error)
            }
        }
        context.stats.record(promptTokens: tokens)
        metrics.promptTokens.increment(by: Int64(tokens))
        guard vectors.allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
            throw APIError(status: 500, message: "the model produced a non-finite embedding", type: "server_error", param: nil, code: nil)
        }
        let data = vectors.enumerated().map { i, v in
            EmbeddingJSON.Item(index: i, embedding: body.base64 ? .base64(v.withUnsafeBytes { Data($0) }.base64EncodedString()) : .floats(v))
        }
        return jsonResponse(.ok, EmbeddingJSON(data: data, model: model.id, usage: UsageJSON(prompt_tokens: tokens, completion_tokens: nil, total_tokens: tokens)))
    }

    private func completions(_ request: Request, _ context: ServeRequestContext) async throws -> Response {
        guard case .seq2seq = model.engine else {
            throw APIError.badRequest("'\(model.id)' is an encoder-only model: it serves /v1/embeddings, not completions")
        }
        let body = try CompletionRequest(try await readBody(request), limits: limits, model: model.id)
        let inputs = try tokenizePrompts(body.prompts, tokenizer: model.tokenizer, maxInputTokens: configuration.maxInputTokens, field: "prompt")
        let choiceOptions = try (0..<body.n).map { try body.options(choice: $0, tokenizer: model.tokenizer) }
        let choices = inputs.count * body.n
        guard choices <= configuration.maxQueue else {
            throw APIError.outOfRange("n", "× prompts = \(choices) choices; this server queues at most \(configuration.maxQueue) (--max-queue)")
        }
        let (events, continuation) = AsyncStream<CompletionEvent>.makeStream()
        var jobs: [CompletionJob] = []
        for (p, ids) in inputs.enumerated() {
            for c in 0..<body.n {
                jobs.append(CompletionJob(choice: p * body.n + c, inputIds: ids, options: choiceOptions[c], stops: body.stop,
                                          streaming: body.stream, timeout: configuration.timeoutSeconds, events: continuation))
            }
        }
        // However the handler ends (finished, client gone, an error), its jobs leave the scheduler.
        let allJobs = jobs
        continuation.onTermination = { _ in allJobs.forEach { $0.cancel() } }
        try scheduler.submit(allJobs.map { .completion($0) })
        let promptTokens = inputs.reduce(0) { $0 + $1.count } * body.n
        metrics.promptTokens.increment(by: Int64(promptTokens))
        context.stats.record(promptTokens: promptTokens)
        let id = "cmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let created = Int(Date().timeIntervalSince1970)

        if !body.stream {
            var outcomes = [CompletionOutcome?](repeating: nil, count: choices)
            var remaining = choices
            for await event in events {
                switch event {
                case .piece: break
                case .finished(let choice, let outcome):
                    outcomes[choice] = outcome
                    remaining -= 1
                case .failed(_, let error):
                    continuation.finish()
                    throw error
                }
                if remaining == 0 { break }
            }
            continuation.finish()
            // The stream ends early only when this task is cancelled (the client went away).
            guard remaining == 0 else { throw CancellationError() }
            let done = outcomes.map { $0! }
            let completionTokens = done.reduce(0) { $0 + $1.ids.count }
            context.stats.record(completionTokens: completionTokens)
            return jsonResponse(.ok, CompletionJSON(
                id: id, created: created, model: model.id,
                choices: done.enumerated().map { CompletionChoiceJSON(index: $0, text: $1.text, finish_reason: $1.finishReason) },
                usage: UsageJSON(prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens)))
        }

        // Streaming: one `data:` event per piece of text, one per finished choice, then `data: [DONE]`.
        let modelID = model.id
        let includeUsage = body.includeUsage
        let stats = context.stats
        let logger = self.logger
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let stream = ResponseBody { writer in
            func chunk(_ choice: Int, _ text: String, _ finish: String?) -> ByteBuffer {
                let object = CompletionJSON(id: id, created: created, model: modelID,
                                            choices: [CompletionChoiceJSON(index: choice, text: text, finish_reason: finish)])
                return ByteBuffer(bytes: Data("data: ".utf8) + encodeJSON(object) + Data("\n\n".utf8))
            }
            var remaining = choices
            var completionTokens = 0
            do {
                for await event in events {
                    switch event {
                    case .piece(let choice, let text):
                        try await writer.write(chunk(choice, text, nil))
                    case .finished(let choice, let outcome):
                        completionTokens += outcome.ids.count
                        try await writer.write(chunk(choice, "", outcome.finishReason))
                        remaining -= 1
                    case .failed(_, let error):
                        let event = Data("data: ".utf8) + encodeJSON(ErrorJSON(error)) + Data("\n\n".utf8)
                        stats.record(note: "error \(error.status): \(error.message)")
                        try await writer.write(ByteBuffer(bytes: event))
                        continuation.finish()
                        try await writer.finish(nil)
                        return
                    }
                    if remaining == 0 { break }
                }
                continuation.finish()
                stats.record(completionTokens: completionTokens)
                guard remaining == 0 else {
                    stats.record(note: "cancelled")
                    try await writer.finish(nil)
                    return
                }
                if includeUsage {
                    let usage = CompletionJSON(id: id, created: created, model: modelID, choices: [],
                                               usage: UsageJSON(prompt_tokens: promptTokens, completion_tokens: completionTokens,
                                                                total_tokens: promptTokens + completionTokens))
                    try await writer.write(ByteBuffer(bytes: Data("data: ".utf8) + encodeJSON(usage) + Data("\n\n".utf8)))
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client went away mid-stream: its jobs leave the batch at the next step.
                continuation.finish()
                stats.record(completionTokens: completionTokens, note: "client disconnected")
                logger.debug("stream ended: \(error)")
                throw error
            }
        }
        return Response(status: .ok, headers: headers, body: stream)
    }
}

struct TokenizeJSON: Encodable {
    var ids: [Int]
    var pieces: [String]
}

func jsonResponse<T: Encodable>(_ status: HTTPResponse.Status, _ value: T) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: encodeJSON(value))))
}

extension APIError {
    static func tooLarge(_ limit: Int) -> APIError {
        APIError(status: 413, message: "the request body is larger than \(limit) bytes (--max-body-bytes)",
                 type: "invalid_request_error", param: nil, code: "body_too_large")
    }

    var response: Response {
        var response = jsonResponse(HTTPResponse.Status(code: status), ErrorJSON(self))
        if let retryAfter { response.headers[.retryAfter] = retryAfter }
        if let authenticate { response.headers[.wwwAuthenticate] = authenticate }
        return response
    }
}

/// The scheduler as a service of the server's group: on graceful shutdown it drains (see `BatchScheduler.shutdown`).
struct SchedulerService: Service {
    let scheduler: BatchScheduler
    let grace: Double

    func run() async throws {
        // Wait for the group's graceful shutdown (or cancellation), then drain.
        try? await gracefulShutdown()
        await scheduler.shutdown(grace: grace)
    }
}

/// One log line per request (method, path, status, duration to the last byte, tokens), the request metrics,
/// and every error as an OpenAI-style JSON error object.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = ServeRequestContext
    let logger: Logger
    let metrics: ServeMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = now()
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = error.response
        } catch let error as HTTPResponseError {
            let message: String
            switch error.status {
            case .notFound: message = "no route \(request.method) \(request.uri.path)"
            case .contentTooLarge: message = "the request body is too large"
            default: message = error.status.reasonPhrase
            }
            response = APIError(status: error.status.code, message: message, type: "invalid_request_error", param: nil, code: nil).response
        } catch is CancellationError {
            response = APIError(status: 499, message: "the client closed the request", type: "cancelled", param: nil, code: nil).response
        } catch {
            response = APIError(status: 500, message: "\(error)", type: "server_error", param: nil, code: nil).response
        }
        let status = response.status.code
        let endpoint = context.endpointPath ?? "unmatched"
        let method = request.method.rawValue, path = request.uri.path
        let stats = context.stats
        let body = response.body
        let finished: @Sendable () -> Void = { [logger, metrics] in
            let seconds = now() - start
            metrics.request(endpoint: endpoint, status: status, seconds: seconds)
            let (prompt, completion, note) = stats.summary
            var line = "\(method) \(path) \(status) \(String(format: "%.1f", seconds * 1000)) ms"
            if prompt > 0 || completion > 0 { line += " prompt_tokens=\(prompt) completion_tokens=\(completion)" }
            if let note { line += " (\(note))" }
            logger.info("\(line)")
        }
        // After the last byte (a stream's included), or when writing failed (the client went away).
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            do {
                try await body.write(writer)
                finished()
            } catch {
                finished()
                throw error
            }
        }
        return response
    }
}

/// `Authorization: Bearer <key>` on every endpoint but /health; the key is compared in constant time.
struct BearerAuthMiddleware: RouterMiddleware {
    typealias Context = ServeRequestContext
    let key: [UInt8]

    init(key: String) { self.key = Array(key.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        let given = header.hasPrefix(prefix) ? Array(header.utf8.dropFirst(prefix.utf8.count)) : []
        guard constantTimeEqual(given, key) else {
            throw APIError(status: 401, message: header.isEmpty ? "missing 'Authorization: Bearer <key>' header" : "invalid API key",
                           type: "invalid_request_error", param: nil, code: "invalid_api_key",
                           authenticate: "Bearer")
        }
        return try await next(request, context)
    }
}

/// Equal byte strings, in time that depends only on the lengths (not on where they first differ).
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(a.count == b.count ? 0 : 1)
    let n = max(a.count, b.count)
    for i in 0..<n {
        let x = i < a.count ? a[i] : 0
        let y = i < b.count ? b[i] : 0
        difference |= x ^ y
    }
    return difference == 0
}
