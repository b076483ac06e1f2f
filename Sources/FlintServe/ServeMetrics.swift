// `GET /metrics`: Prometheus text from swift-prometheus. Each server has its own registry (not the process-wide
// swift-metrics bootstrap), so several servers in one process — the tests — keep their numbers apart.
import Foundation
import Prometheus

final class ServeMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()

    let queueDepth: Gauge
    let runningRows: Gauge
    let promptTokens: Counter
    let completionTokens: Counter
    let cancelled: Counter
    let timedOut: Counter
    /// Rows per decoder step (the batch continuous batching achieves).
    let decoderBatch: ValueHistogram
    /// Distinct prompts per encoder pass, and their tokens.
    let encoderBatch: ValueHistogram
    let encoderTokens: ValueHistogram
    let queueWait: ValueHistogram
    let timeToFirstToken: ValueHistogram
    /// From joining the batch to the last token.
    let generation: ValueHistogram

    private let lock = NSLock()
    private var requestCounters: [String: Counter] = [:]
    private var durations: [String: ValueHistogram] = [:]
    private var rejections: [String: Counter] = [:]

    static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
    static let batchBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]

    private func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "flint", metricName: name, unitName: unit, helpText: help)
    }

    init() {
        func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "flint", metricName: name, unitName: unit, helpText: help)
        }
        queueDepth = registry.makeGauge(descriptor: d("queue_depth", "", "Completion choices waiting to join the batch."))
        runningRows = registry.makeGauge(descriptor: d("running_rows", "", "Decoder rows (sequences and beams) in the batch."))
        promptTokens = registry.makeCounter(descriptor: d("prompt_tokens", "total", "Prompt tokens of accepted requests."))
        completionTokens = registry.makeCounter(descriptor: d("completion_tokens", "total", "Tokens generated."))
        cancelled = registry.makeCounter(descriptor: d("cancelled_choices", "total", "Choices dropped because their client went away."))
        timedOut = registry.makeCounter(descriptor: d("timed_out_choices", "total", "Choices that ran past --timeout."))
        decoderBatch = registry.makeValueHistogram(descriptor: d("decoder_batch_rows", "", "Rows per decoder step."),
                                                   buckets: Self.batchBuckets)
        encoderBatch = registry.makeValueHistogram(descriptor: d("encoder_batch_inputs", "", "Distinct inputs per encoder pass."),
                                                   buckets: Self.batchBuckets)
        encoderTokens = registry.makeValueHistogram(descriptor: d("encoder_batch_tokens", "", "Tokens per encoder pass."),
                                                    buckets: [8, 32, 128, 512, 1024, 2048, 4096, 8192])
        queueWait = registry.makeValueHistogram(descriptor: d("queue_wait", "seconds", "From arrival to joining the batch."),
                                                buckets: Self.latencyBuckets)
        timeToFirstToken = registry.makeValueHistogram(descriptor: d("time_to_first_token", "seconds", "From arrival to the first generated token."),
                                                       buckets: Self.latencyBuckets)
        generation = registry.makeValueHistogram(descriptor: d("generation", "seconds", "From joining the batch to the last token."),
                                                 buckets: Self.latencyBuckets)
    }

    /// Counts a finished HTTP request and its duration (until the last byte of the body was written).
    func request(endpoint: String, status: Int, seconds: Double) {
        let (counter, histogram) = lock.withLock { () -> (Counter, ValueHistogram) in
            let key = "\(endpoint) \(status)"
            let counter = requestCounters[key] ?? registry.makeCounter(
                descriptor: descriptor("requests", "total", "HTTP requests by endpoint and status."),
                labels: [("endpoint", endpoint), ("status", String(status))])
            requestCounters[key] = counter
            let histogram = durations[endpoint] ?? registry.makeValueHistogram(
                descriptor: descriptor("request_duration", "seconds", "HTTP request latency (to the last byte), by endpoint."),
                labels: [("endpoint", endpoint)], buckets: Self.latencyBuckets)
            durations[endpoint] = histogram
            return (counter, histogram)
        }
        counter.increment()
        histogram.record(seconds)
    }

    /// Counts a request refused for capacity (`queue_full`, `shutting_down`).
    func rejected(reason: String) {
        let counter = lock.withLock { () -> Counter in
            let counter = rejections[reason] ?? registry.makeCounter(
                descriptor: descriptor("rejected_requests", "total", "Requests refused for capacity, by reason."),
                labels: [("reason", reason)])
            rejections[reason] = counter
            return counter
        }
        counter.increment()
    }

    func text() -> String { registry.emitToString() }
}
