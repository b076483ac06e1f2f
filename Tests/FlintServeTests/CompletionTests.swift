// /v1/completions against transformers' goldens for the demo model: greedy and beam search, concurrent requests
// batched together, lists of prompts with n, stop strings, and streaming.
import Foundation
import Testing

@Suite(.serialized) struct CompletionTests {
    let demo = Fixtures.demo

    @Test func greedyMatchesTransformersWhileRequestsShareTheBatch() async throws {
        let log = CapturedLog()
        let cases = demo.clearCases
        try #require(cases.count >= 4)
        try await withServer({ $0.maxBatch = 4 }, log: log) { port in
            // All at once: they are encoded and decoded together (more requests than rows, so some join later).
            let responses = try await withThrowingTaskGroup(of: (Int, [String: Any]).self) { group in
                for (i, c) in cases.enumerated() {
                    group.addTask { (i, try await complete(port, ["prompt": c["prompt"] as! String, "max_tokens": 20])) }
                }
                var all: [Int: [String: Any]] = [:]
                for try await (i, r) in group { all[i] = r }
                return all
            }
            for (i, c) in cases.enumerated() {
                let r = try #require(responses[i])
                let choice = try #require(choices(r).first)
                #expect(choice["text"] as? String == c["greedy_text"] as? String, "prompt \(c["prompt"]!)")
                let golden = c["greedy_ids"] as! [Int]
                #expect(choice["finish_reason"] as? String == (golden.last == 1 ? "stop" : "length"))
                #expect(r["object"] as? String == "text_completion")
                #expect(r["model"] as? String == "demo")
                #expect((r["id"] as? String)?.hasPrefix("cmpl-") == true)
                #expect(r["created"] is Int)
                let usage = try #require(r["usage"] as? [String: Int])
                #expect(usage["prompt_tokens"] == (c["input_ids"] as! [Int]).count)
                #expect(usage["completion_tokens"] == golden.count - 1)
                #expect(usage["total_tokens"] == usage["prompt_tokens"]! + usage["completion_tokens"]!)
            }
        }
        // One log line per request, naming the path and status (logged once the last byte is written, which
        // the client may see a moment before; the server has stopped here, so every line is in).
        let lines = log.lines.filter { $0.hasPrefix("POST /v1/completions 200") }
        #expect(lines.count == cases.count, "\(log.lines)")
    }

    @Test func beamSearchThroughFlintRunsFieldNames() async throws {
        let c = demo.golden.first { ($0["prompt"] as? String)?.hasPrefix("summarize:") == true }!
        try await withServer({ $0.maxBatch = 8 }) { port in
            let prompt = c["prompt"] as! String
            let beam4 = try await complete(port, ["prompt": prompt, "max_tokens": 20, "beams": 4])
            let beam4ES = try await complete(port, ["prompt": prompt, "max_tokens": 20, "beams": 4,
                                                    "length_penalty": 0.6, "early_stopping": true])
            let tokenizer = demo.tokenizer
            #expect(choices(beam4).first?["text"] as? String
                    == tokenizer.decode(Array((c["beam4_ids"] as! [Int]).dropFirst()), skipSpecialTokens: true))
            #expect(choices(beam4ES).first?["text"] as? String
                    == tokenizer.decode(Array((c["beam4_es_ids"] as! [Int]).dropFirst()), skipSpecialTokens: true))
            // Beam and greedy differ on this prompt, so the option really reached the decoder.
            #expect(c["beam4_ids"] as! [Int] != c["greedy_ids"] as! [Int])
        }
    }

    @Test func listsOfPromptsAndNGiveOneChoicePerPromptAndN() async throws {
        let cases = Array(demo.clearCases.prefix(2))
        try await withServer { port in
            let r = try await complete(port, ["prompt": cases.map { $0["prompt"] as! String }, "max_tokens": 20, "n": 2])
            let texts = choices(r).sorted { ($0["index"] as! Int) < ($1["index"] as! Int) }.map { $0["text"] as? String }
            #expect(texts == [cases[0]["greedy_text"], cases[0]["greedy_text"], cases[1]["greedy_text"], cases[1]["greedy_text"]]
                .map { $0 as? String })
            // Token ids as the prompt give the same text as the words.
            let ids = try await complete(port, ["prompt": cases[0]["input_ids"] as! [Int], "max_tokens": 20])
            #expect(choices(ids).first?["text"] as? String == cases[0]["greedy_text"] as? String)
        }
    }

    @Test func seededSamplingRepeatsAndTemperatureZeroIsGreedy() async throws {
        let c = demo.clearCases[0]
        let prompt = c["prompt"] as! String
        try await withServer { port in
            let a = try await complete(port, ["prompt": prompt, "temperature": 1.5, "seed": 7, "n": 3, "max_tokens": 12])
            let b = try await complete(port, ["prompt": prompt, "temperature": 1.5, "seed": 7, "n": 3, "max_tokens": 12])
            #expect(choices(a).map { $0["text"] as? String } == choices(b).map { $0["text"] as? String })
            let greedy = try await complete(port, ["prompt": prompt, "temperature": 0, "top_p": 1, "max_tokens": 20])
            #expect(choices(greedy).first?["text"] as? String == c["greedy_text"] as? String)
            // top_k 1 samples the most likely token every time: greedy's text.
            let topK1 = try await complete(port, ["prompt": prompt, "sample": true, "top_k": 1, "seed": 3, "max_tokens": 20])
            #expect(choices(topK1).first?["text"] as? String == c["greedy_text"] as? String)
        }
    }

    @Test func stopStringsCutTheTextAndEndGeneration() async throws {
        let c = demo.golden.first { $0["prompt"] as? String == "reverse: one two three four five six" }!
        let full = c["greedy_text"] as! String  // "six five four three two one"
        try await withServer { port in
            let r = try await complete(port, ["prompt": c["prompt"] as! String, "max_tokens": 20, "stop": [" three", "zzz"]])
            let choice = try #require(choices(r).first)
            #expect(choice["text"] as? String == "six five four")
            #expect(choice["finish_reason"] as? String == "stop")
            // Generation stopped at the stop string: fewer tokens than the whole answer.
            let usage = try #require(r["usage"] as? [String: Int])
            #expect(usage["completion_tokens"]! < (c["greedy_ids"] as! [Int]).count - 1)
            // Streamed, the pieces add up to the same text (the bytes of a possible stop string were held back).
            let s = try await http(port, "POST", "/v1/completions",
                                   json: ["prompt": c["prompt"] as! String, "max_tokens": 20, "stop": " three", "stream": true])
            let events = EventStream(s.body)
            #expect(events.texts[0] == "six five four")
            #expect(events.finishReasons[0] == "stop")
            #expect(full.hasPrefix("six five four three"))
        }
    }

    @Test func streamingSendsPiecesThenDoneAndAddsUpToTheText() async throws {
        let cases = Array(demo.clearCases.prefix(3))
        try await withServer { port in
            for c in cases {
                let r = try await http(port, "POST", "/v1/completions",
                                       json: ["prompt": c["prompt"] as! String, "max_tokens": 20, "stream": true,
                                              "stream_options": ["include_usage": true]])
                #expect(r.status == 200)
                #expect(r.headers["content-type"]?.hasPrefix("text/event-stream") == true)
                let events = EventStream(r.body)
                #expect(events.done, "no data: [DONE] in \(r.text)")
                #expect(events.texts[0] == c["greedy_text"] as? String)
                #expect(events.finishReasons[0] == "stop")
                // Several events carry text (it is streamed, not sent at the end), and every chunk is a
                // text_completion object with the same id.
                let pieces = events.events.flatMap { choices($0) }.filter { !($0["text"] as? String ?? "").isEmpty }
                #expect(pieces.count >= 2, "\(r.text)")
                #expect(Set(events.events.compactMap { $0["id"] as? String }).count == 1)
                #expect(events.events.allSatisfy { $0["object"] as? String == "text_completion" })
                // The usage chunk comes last, before [DONE].
                let usage = try #require(events.events.last?["usage"] as? [String: Int])
                #expect(usage["completion_tokens"] == (c["greedy_ids"] as! [Int]).count - 1)
            }
        }
    }
}
