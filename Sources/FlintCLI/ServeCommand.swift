// `flint serve`: the HTTP API over one model (FlintServe), with continuous batching across requests.
import ArgumentParser
import Foundation
import FlintFormat
import FlintKernels
import FlintServe
import FlintT5
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over HTTP: OpenAI-compatible completions and embeddings, with batching across requests.",
        discussion: helpDiscussion("""
        Endpoints: POST /v1/completions (OpenAI's fields: prompt, max_tokens, temperature (0 or absent = greedy), \
        top_p, n, seed, stop, stream; and flint run's options as extra fields: beams, length_penalty, \
        early_stopping, sample, top_k, min_tokens, no_repeat_ngram, repetition_penalty, bad_words (texts or token-id lists), \
        suppress_tokens (ids), decoder_prefix (text or ids); a field left out takes \
        the model's generation config, as flint run without that flag), POST /v1/embeddings (the encoder's mean over tokens, as \
        flint embed), POST /tokenize {"text"} → {"ids", "pieces"}, POST /detokenize {"ids"} → {"text"}, \
        GET /v1/models, GET /health, GET /metrics (Prometheus). Greedy output equals flint run's for the same \
        model and options.

        Concurrent requests share the model: one packed encoder pass for the requests that arrive together, and \
        each decoder step runs every running sequence at once (at most --max-batch rows; a beam counts as a row). \
        Requests join and leave the batch between steps. A full queue answers 429 at once; bad input answers 400 \
        naming the field; a client that disconnects frees its place. SIGTERM or SIGINT stop accepting work, give \
        running requests a few seconds (--shutdown-grace) and exit 0. One line per request is logged on stderr.

        Examples:
          flint serve model.flint
          flint serve ./flan-t5-small --port 9000 --api-key "$FLINT_API_KEY" \\
              --max-batch 16
          curl -s localhost:8080/v1/completions -H 'Content-Type: application/json' \\
              -d '{"prompt": "translate English to German: How old are you?",
                   "max_tokens": 32}'
        """))

    @Argument(help: "A .flint file, a Hugging Face model folder, or hf:OWNER/NAME[@REVISION].")
    var model: String

    @Option(help: "Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).")
    var host = "127.0.0.1"

    @Option(help: "TCP port (0: any free port, printed when listening).")
    var port = 8080

    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' on every endpoint but /health.")
    var apiKey: String?

    @Option(name: .customLong("model-name"), help: "The model's name in the API (default: the file or folder name).")
    var modelName: String?

    @OptionGroup(title: "Kernels")
    var kernelOptions: KernelOptions

    @OptionGroup(title: "Kernels")
    var cacheOptions: AttentionCacheOptions

    @Option(name: .customLong("max-batch"), help: "Decoder rows (sequences; each beam counts) decoded together at most.")
    var maxBatch = 8

    @Option(name: .customLong("max-queue"), help: "Completions waiting for a place in the batch at most; beyond, 429.")
    var maxQueue = 64

    @Option(name: .customLong("max-input-tokens"), help: "Prompt tokens at most; longer prompts are refused (400).")
    var maxInputTokens = 512

    @Option(name: .customLong("max-tokens"), help: "The largest max_tokens a request may ask for (a request without one gets min(64, this)).")
    var maxTokens = 512

    @Option(name: .customLong("max-body-bytes"), help: "Request bodies above this size are refused (413).")
    var maxBodyBytes = 1 << 20

    @Option(help: "Seconds a request may take, queueing included; then it fails (504) and leaves the batch.")
    var timeout = 300.0

    @Option(name: .customLong("shutdown-grace"), help: "Seconds running requests get to finish on SIGTERM/SIGINT before they are cancelled.")
    var shutdownGrace = 3.0

    @Option(name: .customLong("log-level"), help: "trace, debug, info (default: a line per request), notice, warning, error or critical.")
    var logLevel = "info"

    var serveConfiguration: ServeConfiguration {
        var c = ServeConfiguration()
        c.host = host
        c.port = port
        c.apiKey = apiKey
        c.maxBatch = maxBatch
        c.maxQueue = maxQueue
        c.maxInputTokens = maxInputTokens
        c.maxTokens = maxTokens
        c.defaultMaxTokens = min(64, maxTokens)
        c.maxBodyBytes = maxBodyBytes
        c.timeoutSeconds = timeout
        c.shutdownGraceSeconds = shutdownGrace
        return c
    }

    func validate() throws {
        guard !host.isEmpty else { throw ValidationError("--host must not be empty") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535, got \(port)") }
        guard (1...256).contains(maxBatch) else { throw ValidationError("--max-batch must be 1…256, got \(maxBatch)") }
        guard maxQueue >= 1 else { throw ValidationError("--max-queue must be at least 1, got \(maxQueue)") }
        guard maxInputTokens >= 1 else { throw ValidationError("--max-input-tokens must be at least 1, got \(maxInputTokens)") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024, got \(maxBodyBytes)") }
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
        guard shutdownGrace >= 0, shutdownGrace.isFinite else { throw ValidationError("--shutdown-grace must be 0 or more seconds") }
        if let apiKey, apiKey.isEmpty { throw ValidationError("--api-key must not be empty") }
        if let modelName, modelName.isEmpty { throw ValidationError("--model-name must not be empty") }
        guard Logger.Level(rawValue: logLevel.lowercased()) != nil else {
            throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical, got \(logLevel)")
        }
        guard modelArgumentExists(model) else { throw ValidationError("\(model) does not exist") }
    }

    /// The name the API reports: --model-name, else the hf: repository or the file/folder name without .flint.
    var servedName: String {
        if let modelName { return modelName }
        if model.hasPrefix("hf:") { return String(model.dropFirst(3)) }
        var name = URL(fileURLWithPath: model).lastPathComponent
        for suffix in [".zst", ".flint"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
        return name.isEmpty ? "model" : name
    }

    func run() throws {
        try reportingErrors {
            let weights = try loadWeights(path: model)
            let tokenizer = try loadTokenizer(weights)
            let pool = kernelOptions.makePool()
            let int8 = kernelOptions.mode(for: weights)
            let engine: ServedEngine = weights.config.isEncoderOnly
                ? .encoderOnly(try T5EncoderModel(weights: weights, pool: pool, int8Kernels: int8))
                : .seq2seq(try T5ForConditionalGeneration(weights: weights, pool: pool, int8Kernels: int8,
                                                          attentionCache: cacheOptions.choice.precision))
            var logger = Logger(label: "flint.serve") { StreamLogHandler.standardError(label: $0) }
            logger.logLevel = Logger.Level(rawValue: logLevel.lowercased()) ?? .info
            let served = ServedModel(id: servedName, engine: engine, tokenizer: tokenizer,
                                     generationDefaults: try weights.generationDefaults())
            let server = try FlintServer(model: served,
                                         configuration: serveConfiguration, logger: logger)
            try runBlocking { try await server.run(handleSignals: true) }
        }
    }
}

/// Runs async work from a synchronous command and waits for it (the command tree is synchronous).
func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var failure: Error?
    Task {
        do { try await body() } catch { failure = error }
        done.signal()
    }
    done.wait()
    if let failure {
        // A port in use and the like: one clear line, exit 1.
        throw FlintError("serve: \(failure)")
    }
}
