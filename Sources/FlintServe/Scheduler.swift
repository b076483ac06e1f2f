// Continuous batching: one thread owns the model and runs a loop of (admit waiting requests: one packed encoder
// pass for all of them, their rows join the decoder batch) then (one decoder step for every running row; finished,
// cancelled and timed-out requests leave the batch). HTTP handlers never touch the model: they queue jobs here and
// read their results from an AsyncStream. The loop runs on its own thread, not in Swift's cooperative pool, so
// minutes of matrix work never starve the tasks that serve HTTP.
import Foundation
import FlintFormat
import FlintT5
import FlintTokenizer
import Logging

/// The model the server runs: an encoder-decoder (completions and embeddings) or an encoder (embeddings only).
public enum ServedEngine: @unchecked Sendable {
    case seq2seq(T5ForConditionalGeneration)
    case encoderOnly(T5EncoderModel)

    var config: T5Config {
        switch self {
        case .seq2seq(let m): m.config
        case .encoderOnly(let m): m.config
        }
    }

    func encode(batch inputs: [[Int]]) throws -> [T5EncoderOutput] {
        switch self {
        case .seq2seq(let m): try m.encode(batch: inputs)
        case .encoderOnly(let m): try m.encode(batch: inputs)
        }
    }
}

/// Seconds since an arbitrary start (monotonic).
func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// What a completion job reports to the handler waiting for it.
enum CompletionEvent: Sendable {
    /// More text for a stream (choice index, text).
    case piece(Int, String)
    case finished(Int, CompletionOutcome)
    case failed(Int, APIError)
}

struct CompletionOutcome: Sendable {
    var text: String
    /// The generated tokens (the eos included when the model produced one).
    var ids: [Int]
    /// "stop" (eos or a stop string) or "length" (max_tokens reached).
    var finishReason: String
    var promptTokens: Int
}

/// One choice of one prompt: a sequence (or a beam search) to decode.
final class CompletionJob: @unchecked Sendable {
    let choice: Int
    let inputIds: [Int]
    let options: GenerationOptions
    let stops: [String]
    let streaming: Bool
    let enqueuedAt: Double
    let deadline: Double
    let events: AsyncStream<CompletionEvent>.Continuation
    private let lock = NSLock()
    private var _cancelled = false

    // Owned by the scheduler thread once admitted.
    var generator: T5SequenceGenerator!
    var text: CompletionText!
    var admittedAt = 0.0
    var firstTokenAt: Double?

    init(choice: Int, inputIds: [Int], options: GenerationOptions, stops: [String], streaming: Bool,
         timeout: Double, events: AsyncStream<CompletionEvent>.Continuation) {
        self.choice = choice
        self.inputIds = inputIds
        self.options = options
        self.stops = stops
        self.streaming = streaming
        enqueuedAt = now()
        deadline = enqueuedAt + timeout
        self.events = events
    }

    /// Rows the job takes in the decoder batch.
    var rows: Int {
        if case .beamSearch(let beam) = options.strategy { return beam.numBeams }
        return 1
    }

    /// Marks the job abandoned (its client went away, or a sibling choice failed); the scheduler drops it at
    /// its next step.
    func cancel() { lock.withLock { _cancelled = true } }
    var isCancelled: Bool { lock.withLock { _cancelled } }
}

/// Inputs to encode for `/v1/embeddings`; answered with the mean over tokens of each.
final class EmbeddingJob: @unchecked Sendable {
    let inputs: [[Int]]
    let enqueuedAt = now()
    private let reply: @Sendable (Result<[[Float]], APIError>) -> Void

    init(inputs: [[Int]], reply: @escaping @Sendable (Result<[[Float]], APIError>) -> Void) {
        self.inputs = inputs
        self.reply = reply
    }

    func answer(_ result: Result<[[Float]], APIError>) { reply(result) }
}

enum SchedulerJob {
    case completion(CompletionJob)
    case embedding(EmbeddingJob)

    var tokenCount: Int {
        switch self {
        case .completion(let job): job.inputIds.count
        case .embedding(let job): job.inputs.reduce(0) { $0 + $1.count }
        }
    }
}

final class BatchScheduler: @unchecked Sendable {
    let engine: ServedEngine
    let tokenizer: T5Tokenizer
    let maxBatch: Int
    let maxQueue: Int
    /// Prompt tokens encoded together at most per encoder pass (a burst of long prompts is split, so the
    /// running streams wait for at most one bounded pass).
    let encoderTokenBudget: Int
    let metrics: ServeMetrics
    let logger: Logger

    private let condition = NSCondition()
    private var pending: [SchedulerJob] = []
    private var pendingCompletions = 0
    private enum Phase { case running, draining, cancelling, stopped }
    private var phase = Phase.running
    private var thread: Thread?
    private var stoppedWaiters: [CheckedContinuation<Void, Never>] = []

    init(engine: ServedEngine, tokenizer: T5Tokenizer, maxBatch: Int, maxQueue: Int, maxInputTokens: Int,
         metrics: ServeMetrics, logger: Logger) {
        self.engine = engine
        self.tokenizer = tokenizer
        self.maxBatch = maxBatch
        self.maxQueue = maxQueue
        encoderTokenBudget = max(4096, maxInputTokens)
        self.metrics = metrics
        self.logger = logger
    }

    func start() {
        condition.withLock {
            guard thread == nil else { return }
            let thread = Thread { [self] in loop() }
            thread.name = "flint-scheduler"
            thread.stackSize = 8 << 20
            self.thread = thread
            thread.start()
        }
    }

    /// Whether new work is still accepted (false once shutdown began).
    var isAccepting: Bool { condition.withLock { phase == .running } }

    /// Queued completion jobs not yet in the batch.
    var queueDepth: Int { condition.withLock { pendingCompletions } }

    /// Queues the jobs of one request, all or none: 429 when the queue cannot take them all, 503 when shutting down.
    func submit(_ jobs: [SchedulerJob]) throws {
        try condition.withLock {
            guard phase == .running else {
                throw APIError(status: 503, message: "the server is shutting down", type: "server_error", param: nil, code: "shutting_down")
            }
            let completions = jobs.filter { if case .completion = $0 { true } else { false } }.count
            guard pendingCompletions + completions <= maxQueue || completions == 0 else {
                metrics.rejected(reason: "queue_full")
                throw APIError(status: 429, message: "the queue is full (\(pendingCompletions) requests waiting, --max-queue \(maxQueue)); retry later",
                               type: "rate_limit_error", param: nil, code: "queue_full", retryAfter: "1")
            }
            pending.append(contentsOf: jobs)
            pendingCompletions += completions
            metrics.queueDepth.set(to: Double(pendingCompletions))
            condition.signal()
        }
    }

    /// Stops accepting work; running and queued jobs go on for `grace` seconds, then whatever is left fails with
    /// 503. Returns when the scheduler thread has ended.
    func shutdown(grace: Double) async {
        condition.withLock {
            if phase == .running { phase = .draining }
            condition.signal()
        }
        // After the grace, whatever still runs is cancelled (the scheduler thread then ends at once).
        let cancelAfterGrace = Task {
            try? await Task.sleep(nanoseconds: UInt64(max(0, grace) * 1e9))
            guard !Task.isCancelled else { return }
            condition.withLock {
                if phase == .draining { phase = .cancelling }
                condition.signal()
            }
        }
        await waitUntilStopped()
        cancelAfterGrace.cancel()
    }

    private func waitUntilStopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = condition.withLock { () -> Bool in
                if phase == .stopped || thread == nil { return true }
                stoppedWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    // MARK: The loop (scheduler thread only)

    private var state: T5DecoderState?
    /// Running jobs in row order: job i owns the rows after those of jobs 0..<i.
    private var running: [CompletionJob] = []
    private var runningRows = 0

    private func loop() {
        if case .seq2seq(let model) = engine { state = model.makeDecoderState() }
        while true {
            var admitted: [SchedulerJob] = []
            var cancelAll = false
            condition.lock()
            while pending.isEmpty && running.isEmpty && phase != .cancelling {
                if phase == .draining { break }
                condition.wait()
            }
            if (phase == .draining && pending.isEmpty && running.isEmpty) || phase == .cancelling && pending.isEmpty && running.isEmpty {
                phase = .stopped
                let waiters = stoppedWaiters
                stoppedWaiters = []
                condition.unlock()
                waiters.forEach { $0.resume() }
                return
            }
            cancelAll = phase == .cancelling
            if cancelAll {
                admitted = pending
                pending = []
                pendingCompletions = 0
            } else {
                admitted = admit()
            }
            metrics.queueDepth.set(to: Double(pendingCompletions))
            condition.unlock()

            if cancelAll {
                let shuttingDown = APIError(status: 503, message: "the server shut down before the request finished",
                                            type: "server_error", param: nil, code: "shutting_down")
                for job in admitted { fail(job, shuttingDown) }
                for job in running { fail(.completion(job), shuttingDown) }
                if let state, state.rowCount > 0 { try? state.removeRows(0..<state.rowCount) }
                running = []
                runningRows = 0
                metrics.runningRows.set(to: 0)
                continue
            }
            if !admitted.isEmpty { join(admitted) }
            dropAbandoned()
            if !running.isEmpty { step() }
        }
    }

    /// Takes waiting jobs in arrival order while their rows fit the batch and their tokens the encoder budget
    /// (called with the lock held). Embedding jobs take no rows.
    private func admit() -> [SchedulerJob] {
        // Jobs whose client left or whose time ran out while waiting give their place up first.
        let t = now()
        pending.removeAll { job in
            guard case .completion(let c) = job else { return false }
            if c.isCancelled {
                metrics.cancelled.increment()
            } else if t > c.deadline {
                timeOut(c)
            } else {
                return false
            }
            pendingCompletions -= 1
            return true
        }
        var taken: [SchedulerJob] = []
        var rows = runningRows, tokens = 0
        while let job = pending.first {
            if case .completion(let c) = job, rows + c.rows > maxBatch { break }
            if !taken.isEmpty && tokens + job.tokenCount > encoderTokenBudget { break }
            pending.removeFirst()
            if case .completion(let c) = job {
                rows += c.rows
                pendingCompletions -= 1
            }
            tokens += job.tokenCount
            taken.append(job)
        }
        return taken
    }

    private func fail(_ job: SchedulerJob, _ error: APIError) {
        switch job {
        case .completion(let c):
            c.events.yield(.failed(c.choice, error))
        case .embedding(let e):
            e.answer(.failure(error))
        }
    }

    /// One encoder pass for every admitted input (a prompt shared by several choices is encoded once); the
    /// completion jobs' rows join the decoder batch.
    private func join(_ jobs: [SchedulerJob]) {
        let started = now()
        var live: [SchedulerJob] = []
        for job in jobs {
            if case .completion(let c) = job {
                if c.isCancelled { metrics.cancelled.increment(); continue }
                if started > c.deadline { timeOut(c); continue }
            }
            live.append(job)
        }
        guard !live.isEmpty else { return }
        var unique: [[Int]] = [], slot: [[Int]: Int] = [:]
        func index(_ ids: [Int]) -> Int {
            if let i = slot[ids] { return i }
            slot[ids] = unique.count
            unique.append(ids)
            return unique.count - 1
        }
        for job in live {
            switch job {
            case .completion(let c): _ = index(c.inputIds)
            case .embedding(let e): e.inputs.forEach { _ = index($0) }
            }
        }
        let encoded: [T5EncoderOutput]
        do {
            encoded = try engine.encode(batch: unique)
        } catch {
            let e = APIError(status: 500, message: "encoder failed: \(error)", type: "server_error", param: nil, code: nil)
            live.forEach { fail($0, e) }
            return
        }
        metrics.encoderBatch.record(Double(unique.count))
        metrics.encoderTokens.record(Double(unique.reduce(0) { $0 + $1.count }))
        var crossCaches: [Int: T5CrossAttentionCache] = [:]
        let joinedAt = now()
        for job in live {
            switch job {
            case .embedding(let e):
                let embeddings = e.inputs.map { encoded[slot[$0]!].meanOverTokens }
                e.answer(.success(embeddings))
            case .completion(let c):
                guard case .seq2seq(let model) = engine, let state else { continue }
                do {
                    let i = slot[c.inputIds]!
                    let cross = try crossCaches[i] ?? model.crossAttentionCache(encoded[i])
                    crossCaches[i] = cross
                    c.generator = try T5SequenceGenerator(options: c.options, config: model.config)
                    c.text = CompletionText(tokenizer: tokenizer, stops: c.stops, streaming: c.streaming)
                    try model.addSequences(to: state, cross: cross, rows: c.generator.rowCount, maxLength: c.generator.maxLength)
                    c.admittedAt = joinedAt
                    metrics.queueWait.record(joinedAt - c.enqueuedAt)
                    running.append(c)
                    runningRows += c.generator.rowCount
                } catch {
                    fail(job, APIError(status: 500, message: "cannot start decoding: \(error)", type: "server_error", param: nil, code: nil))
                }
            }
        }
        metrics.runningRows.set(to: Double(runningRows))
    }

    private func timeOut(_ job: CompletionJob) {
        metrics.timedOut.increment()
        job.events.yield(.failed(job.choice, APIError(
            status: 504, message: String(format: "the request did not finish within %.0f s (--timeout)", job.deadline - job.enqueuedAt),
            type: "timeout", param: nil, code: "timeout")))
    }

    /// Removes the rows of jobs whose client went away or whose time is up, before computing their next step.
    private func dropAbandoned() {
        let t = now()
        var leaving: [Int] = [], kept: [CompletionJob] = [], expired: [CompletionJob] = []
        var row = 0
        for job in running {
            let rows = row..<(row + job.generator.rowCount)
            row = rows.upperBound
            if job.isCancelled {
                metrics.cancelled.increment()
                leaving += rows
            } else if t > job.deadline {
                expired.append(job)
                leaving += rows
            } else {
                kept.append(job)
            }
        }
        guard !leaving.isEmpty, let state else { return }
        do {
            try state.removeRows(leaving)
        } catch {
            logger.error("scheduler: cannot remove rows: \(error)")
        }
        running = kept
        runningRows -= leaving.count
        metrics.runningRows.set(to: Double(runningRows))
        expired.forEach(timeOut)
    }

    /// One decoder step for every running row; the jobs that finish leave the batch.
    private func step() {
        guard case .seq2seq(let model) = engine, let state else { return }
        let vocab = model.config.vocabSize
        let logits: UnsafeBufferPointer<Float>
        do {
            logits = try model.decodeStep(state, tokens: running.flatMap { $0.generator.nextTokens })
        } catch {
            // Cannot happen with the checks made before a job joins; if it does, the batch is unusable.
            let e = APIError(status: 500, message: "decoder step failed: \(error)", type: "server_error", param: nil, code: nil)
            running.forEach { fail(.completion($0), e) }
            if state.rowCount > 0 { try? state.removeRows(0..<state.rowCount) }
            running = []
            runningRows = 0
            metrics.runningRows.set(to: 0)
            return
        }
        metrics.decoderBatch.record(Double(state.rowCount))
        let stepAt = now()
        var sources: [Int] = [], leaving: [Int] = [], kept: [CompletionJob] = [], done: [CompletionJob] = []
        var row = 0
        var tokens = 0
        for job in running {
            let generator = job.generator!
            let rows = row..<(row + generator.rowCount)
            row = rows.upperBound
            let own = UnsafeMutableBufferPointer(mutating: UnsafeBufferPointer(
                rebasing: logits[(rows.lowerBound * vocab)..<(rows.upperBound * vocab)]))
            let result = generator.advance(own)
            sources += result.sources?.map { $0 + rows.lowerBound } ?? Array(rows)
            var finished = result.finished
            if let token = result.token {
                tokens += 1
                if job.firstTokenAt == nil {
                    job.firstTokenAt = stepAt
                    metrics.timeToFirstToken.record(stepAt - job.enqueuedAt)
                }
                let (piece, stopped) = job.text.add(token)
                if let piece { job.events.yield(.piece(job.choice, piece)) }
                finished = finished || stopped
            }
            if finished {
                leaving += rows
                done.append(job)
            } else {
                kept.append(job)
            }
        }
        metrics.completionTokens.increment(by: Int64(tokens))
        do {
            try state.reorderRows(sources)
            if !leaving.isEmpty { try state.removeRows(leaving) }
        } catch {
            logger.error("scheduler: cannot reorder rows: \(error)")
        }
        running = kept
        runningRows -= leaving.count
        metrics.runningRows.set(to: Double(runningRows))
        // Answered after the metrics are updated, so a client that reads /metrics next sees its request in them.
        done.forEach(complete)
    }

    private func complete(_ job: CompletionJob) {
        let generated = job.generator.result.generatedIds
        let (text, rest, stopFound) = job.text.finish(generatedIds: generated)
        if case .beamSearch = job.options.strategy {
            metrics.completionTokens.increment(by: Int64(generated.count))
        }
        // Tokens up to the stop string (greedy/sampling stop there); a beam's whole hypothesis otherwise.
        if let rest, job.streaming { job.events.yield(.piece(job.choice, rest)) }
        let stopped = stopFound || generated.last.map(job.options.endTokens(engine.config).contains) == true
        job.events.yield(.finished(job.choice, CompletionOutcome(
            text: text, ids: generated, finishReason: stopped ? "stop" : "length", promptTokens: job.inputIds.count)))
        metrics.generation.record(now() - job.admittedAt)
    }
}
