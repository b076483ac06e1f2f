// The endpoints besides completions: embeddings (against transformers' encoder states), tokenize / detokenize
// (against the golden's input ids), models, health and the Prometheus metrics; an encoder-only model.
import Foundation
import FlintCheckpoint
import FlintFormat
import FlintServe
import FlintT5
import FlintTokenizer
import Testing

@Suite(.serialized) struct EndpointTests {
    let demo = Fixtures.demo

    /// The mean over tokens of a golden's encoder_last_hidden_state.
    func goldenMean(_ c: [String: Any]) -> [Double] {
        let rows = c["encoder_last_hidden_state"] as! [[Double]]
        return (0..<rows[0].count).map { j in rows.reduce(0) { $0 + $1[j] } / Double(rows.count) }
    }

    @Test func embeddingsAreTheEncoderMeanOfTransformers() async throws {
        let cases = Array(demo.golden.prefix(3))
        try await withServer { port in
            let r = try await http(port, "POST", "/v1/embeddings", json: ["input": cases.map { $0["prompt"] as! String }, "model": "demo"])
            #expect(r.status == 200, "\(r.text)")
            let json = try #require(r.json)
            #expect(json["object"] as? String == "list")
            let data = try #require(json["data"] as? [[String: Any]])
            #expect(data.count == cases.count)
            for (i, c) in cases.enumerated() {
                #expect(data[i]["index"] as? Int == i)
                #expect(data[i]["object"] as? String == "embedding")
                let vector = try #require(data[i]["embedding"] as? [Double])
                let expected = goldenMean(c)
                #expect(vector.count == expected.count)
                let worst = zip(vector, expected).map { abs($0 - $1) }.max() ?? .infinity
                #expect(worst < 1e-4, "input \(i): max difference \(worst)")
            }
            let usage = try #require(json["usage"] as? [String: Int])
            #expect(usage["prompt_tokens"] == cases.reduce(0) { $0 + ($1["input_ids"] as! [Int]).count })
            // base64: the same float32 values, little-endian.
            let b = try await http(port, "POST", "/v1/embeddings", json: ["input": cases[0]["prompt"] as! String, "encoding_format": "base64"])
            let encoded = try #require((b.json?["data"] as? [[String: Any]])?.first?["embedding"] as? String)
            let bytes = try #require(Data(base64Encoded: encoded))
            let floats = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let plain = (data[0]["embedding"] as! [Double]).map { Float($0) }
            #expect(floats == plain)
        }
    }

    @Test func tokenizeAndDetokenizeRoundTrip() async throws {
        let c = demo.golden[0]
        try await withServer { port in
            let t = try await http(port, "POST", "/tokenize", json: ["text": c["prompt"] as! String])
            #expect(t.status == 200, "\(t.text)")
            let ids = try #require(t.json?["ids"] as? [Int])
            #expect(ids == c["input_ids"] as? [Int])
            let pieces = try #require(t.json?["pieces"] as? [String])
            #expect(pieces.count == ids.count)
            #expect(pieces.last == "</s>")
            let d = try await http(port, "POST", "/detokenize", json: ["ids": ids, "skip_special_tokens": true])
            #expect(d.json?["text"] as? String == c["prompt"] as? String)
            let withEOS = try await http(port, "POST", "/detokenize", json: ["ids": ids])
            #expect(withEOS.json?["text"] as? String == (c["prompt"] as! String) + "</s>")
            let noEOS = try await http(port, "POST", "/tokenize", json: ["text": c["prompt"] as! String, "add_special_tokens": false])
            #expect(noEOS.json?["ids"] as? [Int] == Array(ids.dropLast()))
        }
    }

    @Test func modelsHealthAndMetrics() async throws {
        try await withServer { port in
            let models = try await http(port, "GET", "/v1/models")
            let data = try #require(models.json?["data"] as? [[String: Any]])
            #expect(data.count == 1)
            #expect(data.first?["id"] as? String == "demo")
            #expect(data.first?["object"] as? String == "model")
            let health = try await http(port, "GET", "/health")
            #expect(health.json?["status"] as? String == "ok")

            _ = try await complete(port, ["prompt": ["reverse: cat dog", "reverse: sun moon star rain"], "max_tokens": 20])
            // A request is counted once its last byte is written, which the client may see a moment before.
            var r = try await http(port, "GET", "/metrics")
            for _ in 0..<300 where !r.text.contains("flint_requests_total{endpoint=\"/v1/completions\"") {
                try await Task.sleep(nanoseconds: 100_000_000)
                r = try await http(port, "GET", "/metrics")
            }
            #expect(r.status == 200)
            #expect(r.headers["content-type"]?.hasPrefix("text/plain") == true)
            let text = r.text
            // "dog cat" + eos and "rain star moon sun" + eos: 3 + 5 tokens; prompts 7 + 9 tokens.
            #expect(metricValue(text, "flint_completion_tokens_total") == 8, "\(text)")
            #expect(metricValue(text, "flint_prompt_tokens_total") == 16, "\(text)")
            #expect(metricValue(text, "flint_queue_depth") == 0)
            #expect(metricValue(text, "flint_running_rows") == 0)
            #expect(text.contains("flint_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1"), "\(text)")
            #expect(text.contains("flint_request_duration_seconds_bucket{endpoint=\"/v1/completions\""), "\(text)")
            #expect(text.contains("flint_time_to_first_token_seconds_count 2"), "\(text)")
            // Both prompts came in one request: one encoder pass of 2 inputs, decoder steps of 2 rows (then 1).
            #expect(text.contains("flint_encoder_batch_inputs_count 1"), "\(text)")
            #expect(text.contains("flint_decoder_batch_rows_bucket{le=\"2.0\"} 5"), "\(text)")
        }
    }

    @Test func anEncoderOnlyModelServesEmbeddingsAndRefusesCompletions() async throws {
        let weights = try HFModelFolder(path: encoderFolder)
        let encoder = try T5EncoderModel(weights: weights, pool: nil)
        let tokenizer = try #require(try T5Tokenizer.load(from: weights))
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: encoderFolder + "/golden.json"))) as! [String: Any]
        let c = (golden["cases"] as! [[String: Any]])[0]
        try await withServer(engine: .encoderOnly(encoder), tokenizer: tokenizer, modelName: "t5-encoder") { port in
            let r = try await http(port, "POST", "/v1/embeddings", json: ["input": c["prompt"] as! String])
            #expect(r.status == 200, "\(r.text)")
            let vector = try #require((r.json?["data"] as? [[String: Any]])?.first?["embedding"] as? [Double])
            let expected = goldenMean(c)
            let worst = zip(vector, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(vector.count == expected.count && worst < 1e-4, "max difference \(worst)")
            let completion = try await http(port, "POST", "/v1/completions", json: ["prompt": "x"])
            #expect(completion.status == 400)
            #expect(completion.errorMessage?.contains("encoder-only") == true, "\(completion.text)")
        }
    }
}
