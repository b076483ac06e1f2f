// What a server facing bad or hostile clients must do: a 4xx naming the field for every bad input (and keep
// serving), 401 without the key, 413 for big bodies, 429 at once when the queue is full, the place of a client
// that hangs up given to the next request, 504 past the timeout.
import Foundation
import Testing

@Suite(.serialized) struct ProtectionTests {
    @Test func everyBadInputIsA4xxNamingTheFieldAndTheServerKeepsServing() async throws {
        let ok = ["prompt": "reverse: cat dog"] as [String: Any]
        func with(_ extra: [String: Any]) -> [String: Any] { ok.merging(extra) { $1 } }
        // (body, expected status, field the error must name or nil)
        let cases: [(Any, Int, String?)] = [
            ([:] as [String: Any], 400, "prompt"),
            (["prompt": 5], 400, "prompt"),
            (["prompt": [] as [Any]], 400, "prompt"),
            (["prompt": ["a", 1]], 400, "prompt"),
            (["prompt": [5, 99999]], 400, "prompt"),
            (with(["max_tokens": 0]), 400, "max_tokens"),
            (with(["max_tokens": 1.5]), 400, "max_tokens"),
            (with(["max_tokens": "10"]), 400, "max_tokens"),
            (with(["max_tokens": 100000]), 400, "max_tokens"),
            (with(["min_tokens": 30, "max_tokens": 10]), 400, "min_tokens"),
            (with(["temperature": -1]), 400, "temperature"),
            (with(["temperature": "hot"]), 400, "temperature"),
            (with(["top_p": 0, "temperature": 1]), 400, "top_p"),
            (with(["top_p": 0.5]), 400, "top_p"),
            (with(["top_k": -2, "temperature": 1]), 400, "top_k"),
            (with(["n": 0]), 400, "n"),
            (with(["n": 1000]), 400, "n"),
            (with(["stream": "yes"]), 400, "stream"),
            (with(["stop": 3]), 400, "stop"),
            (with(["stop": ["a", "b", "c", "d", "e"]]), 400, "stop"),
            (with(["stop": [""]]), 400, "stop"),
            (with(["seed": -1, "temperature": 1]), 400, "seed"),
            (with(["beams": 0]), 400, "beams"),
            (with(["beams": 100]), 400, "beams"),
            (with(["beams": 2, "temperature": 1]), 400, "beams"),
            (with(["length_penalty": 0.5]), 400, "length_penalty"),
            (with(["early_stopping": "true", "beams": 2]), 400, "early_stopping"),
            (with(["max_token": 10]), 400, "max_token"),
            (with(["logprobs": 3]), 400, "logprobs"),
            (with(["echo": true]), 400, "echo"),
            (with(["stream_options": ["include_usage": true]]), 400, "stream_options"),
            (with(["model": "gpt-4"]), 404, "model"),
            (["prompt": String(repeating: "apple ", count: 600)], 400, "prompt"),
        ]
        try await withServer({ $0.maxTokens = 256 }) { port in
            for (body, status, field) in cases {
                let r = try await http(port, "POST", "/v1/completions", json: body)
                #expect(r.status == status, "\(body): \(r.status) \(r.text)")
                #expect(r.errorParam == field, "\(body): \(r.text)")
                let message = try #require(r.errorMessage, "\(body): no error message in \(r.text)")
                if let field { #expect(message.contains(field), "\(body): \(message)") }
                #expect(r.headers["content-type"] == "application/json")
            }
            // Not JSON, not an object, truncated.
            for raw in ["{\"prompt\": ", "[1, 2]", "hello", ""] {
                let r = try await http(port, "POST", "/v1/completions", raw: Data(raw.utf8))
                #expect(r.status == 400, "\(raw): \(r.status) \(r.text)")
                #expect(r.errorMessage?.contains("JSON") == true, "\(raw): \(r.text)")
            }
            // The other JSON endpoints check their fields the same way.
            let others: [(String, Any, String)] = [
                ("/v1/embeddings", [:] as [String: Any], "input"),
                ("/v1/embeddings", ["input": [1.5]], "input"),
                ("/v1/embeddings", ["input": "a", "encoding_format": "hex"], "encoding_format"),
                ("/tokenize", ["txt": "a"], "text"),
                ("/tokenize", ["text": 3], "text"),
                ("/detokenize", ["ids": "1 2"], "ids"),
                ("/detokenize", ["ids": [1, 5000000]], "ids"),
            ]
            for (path, body, field) in others {
                let r = try await http(port, "POST", path, json: body)
                #expect(r.status == 400, "\(path) \(body): \(r.status) \(r.text)")
                #expect(r.errorParam == field, "\(path) \(body): \(r.text)")
            }
            let missing = try await http(port, "GET", "/v1/nothing")
            #expect(missing.status == 404)
            #expect(missing.errorMessage != nil, "\(missing.text)")
            // Still healthy and still answering correctly.
            let health = try await http(port, "GET", "/health")
            #expect(health.status == 200)
            let r = try await complete(port, ["prompt": "reverse: cat dog", "max_tokens": 20])
            #expect(choices(r).first?["text"] as? String == "dog cat")
        }
    }

    @Test func bodiesOverTheLimitAre413() async throws {
        try await withServer({ $0.maxBodyBytes = 4096 }) { port in
            let big = ["prompt": String(repeating: "x", count: 10_000)]
            let r = try await http(port, "POST", "/v1/completions", json: big)
            #expect(r.status == 413, "\(r.text)")
            #expect(r.errorMessage?.contains("4096") == true, "\(r.text)")
            // Without a Content-Length (chunked), the limit holds while reading.
            let chunked = try await onThread { () -> Int in
                let c = try TestConnection(port: port)
                try c.sendRequest("POST", "/tokenize", headers: ["Transfer-Encoding": "chunked", "Content-Type": "application/json"])
                let payload = Array(String(repeating: "y", count: 3000).utf8)
                for _ in 0..<3 { try c.send(Array((String(payload.count, radix: 16) + "\r\n").utf8) + payload + Array("\r\n".utf8)) }
                try c.send(Array("0\r\n\r\n".utf8))
                return try c.readHead().status
            }
            #expect(chunked == 413)
            #expect(try await http(port, "GET", "/health").status == 200)
        }
    }

    @Test func anAPIKeyIsRequiredOnEveryEndpointButHealth() async throws {
        try await withServer({ $0.apiKey = "s3cret-key" }) { port in
            for (method, path) in [("GET", "/v1/models"), ("GET", "/metrics"), ("POST", "/v1/completions"), ("POST", "/tokenize")] {
                let body: Any? = method == "POST" ? ["prompt": "x", "text": "x"] : nil
                let none = try await http(port, method, path, json: body)
                #expect(none.status == 401, "\(path): \(none.status)")
                #expect(none.headers["www-authenticate"] == "Bearer")
                let wrong = try await http(port, method, path, json: body, headers: ["Authorization": "Bearer s3cret-kez"])
                #expect(wrong.status == 401)
                let short = try await http(port, method, path, json: body, headers: ["Authorization": "Bearer s3cret"])
                #expect(short.status == 401)
                let basic = try await http(port, method, path, json: body, headers: ["Authorization": "Basic s3cret-key"])
                #expect(basic.status == 401)
            }
            #expect(try await http(port, "GET", "/health").status == 200)
            let models = try await http(port, "GET", "/v1/models", headers: ["Authorization": "Bearer s3cret-key"])
            #expect(models.status == 200)
            let r = try await complete(port, ["prompt": "reverse: cat dog", "max_tokens": 20], headers: ["Authorization": "Bearer s3cret-key"])
            #expect(choices(r).first?["text"] as? String == "dog cat")
        }
    }

    /// A request that runs until it is cancelled (the demo model would stop at its eos; min_tokens forbids it).
    static func endless(stream: Bool) -> [String: Any] {
        ["prompt": "reverse: red apple blue", "max_tokens": 200_000, "min_tokens": 200_000, "stream": stream]
    }

    @Test func aFullQueueIs429AtOnceAndAClientThatHangsUpFreesItsPlace() async throws {
        try await withServer({ $0.maxBatch = 1; $0.maxQueue = 1; $0.maxTokens = 200_000; $0.timeoutSeconds = 60 }) { port in
            // A takes the only row: its first piece of text shows it is running.
            let a = try TestConnection(port: port)
            let first = try await onThread { () -> String in
                try a.sendRequest("POST", "/v1/completions", body: try JSONSerialization.data(withJSONObject: Self.endless(stream: true)))
                let (status, _) = try a.readHead()
                guard status == 200, let chunk = try a.readChunk() else { return "status \(status)" }
                return String(decoding: chunk, as: UTF8.self)
            }
            #expect(first.hasPrefix("data: "), "\(first)")
            // B waits in the queue (its only place).
            let b = Task { try await http(port, "POST", "/v1/completions", json: ["prompt": "reverse: cat dog", "max_tokens": 20]) }
            try await waitForMetric(port, "flint_queue_depth", equal: 1)
            // C finds the queue full.
            let c = try await http(port, "POST", "/v1/completions", json: ["prompt": "reverse: cat dog"])
            #expect(c.status == 429, "\(c.text)")
            #expect(c.headers["retry-after"] == "1")
            #expect(c.errorMessage?.contains("queue") == true)
            // A hangs up: its row is freed (it would otherwise run for 200000 tokens) and B gets it.
            a.hangUp()
            let rb = try await b.value
            #expect(rb.status == 200, "\(rb.text)")
            #expect(choices(rb.json ?? [:]).first?["text"] as? String == "dog cat")
            let metrics = try await http(port, "GET", "/metrics").text
            #expect(metricValue(metrics, "flint_cancelled_choices_total") == 1, "\(metrics)")
            // B's rows leave the batch right after its answer is sent.
            try await waitForMetric(port, "flint_running_rows", equal: 0)
        }
    }

    @Test func aRequestPastTheTimeoutFailsWith504AndLeavesTheBatch() async throws {
        try await withServer({ $0.timeoutSeconds = 0.5; $0.maxTokens = 200_000 }) { port in
            let r = try await http(port, "POST", "/v1/completions", json: Self.endless(stream: false))
            #expect(r.status == 504, "\(r.text)")
            #expect(r.errorMessage?.contains("timeout") == true, "\(r.text)")
            let streamed = try await http(port, "POST", "/v1/completions", json: Self.endless(stream: true))
            #expect(streamed.status == 200)
            #expect(EventStream(streamed.body).events.last?["error"] != nil, "\(streamed.text)")
            let metrics = try await http(port, "GET", "/metrics").text
            #expect(metricValue(metrics, "flint_timed_out_choices_total") == 2)
            try await waitForMetric(port, "flint_running_rows", equal: 0)
        }
    }
}

/// The value of an unlabelled metric in Prometheus text.
func metricValue(_ text: String, _ name: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.split(separator: " ")[1])
    }
    return nil
}

/// Polls /metrics until the metric has the value (the scheduler moves on its own thread); fails after 60 s.
func waitForMetric(_ port: Int, _ name: String, equal value: Double) async throws {
    for _ in 0..<600 {
        let text = try await http(port, "GET", "/metrics").text
        if metricValue(text, name) == value { return }
        try await Task.sleep(nanoseconds: 100_000_000)
    }
    Issue.record("\(name) never became \(value)")
}
