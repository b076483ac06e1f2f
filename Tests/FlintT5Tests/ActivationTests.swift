import Foundation
import Testing
import FlintFormat
import FlintCheckpoint
import FlintKernels
@testable import FlintT5
import TestSupport

/// Every parameter-free activation of transformers' ACT2FN, as a config names it (`dense_act_fn`), read by HFConfig
/// and applied by the feed-forward block's code, against transformers' own modules in float32
/// (Tests/Fixtures/activations/golden.json, Tools/make_activation_golden.py).
@Suite struct ActivationTests {
    struct Golden: Decodable {
        let x: [Double]
        let y: [String: [Double]]
    }

    static func golden() throws -> Golden {
        let url = URL(fileURLWithPath: fixturePath("activations/golden.json"))
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    static func config(denseActFn: String) -> Data {
        Data("""
        {"model_type": "t5", "d_model": 8, "d_kv": 4, "d_ff": 16, "num_heads": 2, "num_layers": 1, "vocab_size": 10,
         "feed_forward_proj": "gated-gelu", "dense_act_fn": "\(denseActFn)", "tie_word_embeddings": false}
        """.utf8)
    }

    @Test func everyACT2FNNameWithoutParametersIsReadAndComputedLikeTransformers() throws {
        let golden = try Self.golden()
        #expect(golden.y.count == 20, "the golden covers \(golden.y.keys.sorted())")
        for (name, expected) in golden.y.sorted(by: { $0.key < $1.key }) {
            let config = try HFConfig.parse(configJSON: Self.config(denseActFn: name), path: "config.json")
            for isa in KernelISA.allCases where isa.isSupported {
                var values = golden.x.map { Float($0) }
                values.withUnsafeMutableBufferPointer { config.activation.apply($0.baseAddress!, count: $0.count, isa: isa) }
                var worst = 0.0
                for (i, (got, want)) in zip(values, expected).enumerated() {
                    // A few float32 ulps of the result (erf / exp / tanh differ from torch's by an ulp or two), or
                    // of 1 near zero.
                    let error = abs(Double(got) - want) / max(abs(want), 1)
                    worst = max(worst, error)
                    if error > 2e-6 {
                        Issue.record("\(name) (\(config.activation.rawValue), \(isa)) at x = \(golden.x[i]): \(got), transformers \(want)")
                        break
                    }
                }
                #expect(worst <= 2e-6, "\(name) \(isa): worst relative error \(worst)")
            }
        }
    }

    @Test func aliasesMapToOneFormulaEach() throws {
        let expected: [String: FeedForwardActivation] = [
            "gelu_pytorch_tanh": .geluNew, "gelu_fast": .geluNew, "gelu_accurate": .geluNew, "gelu_python_tanh": .geluNew,
            "gelu_new": .geluNew, "gelu": .gelu, "gelu_python": .gelu, "silu": .silu, "swish": .silu,
            "quick_gelu": .quickGelu, "gelu_10": .gelu10, "relu": .relu, "relu6": .relu6, "relu2": .relu2,
            "leaky_relu": .leakyRelu, "sigmoid": .sigmoid, "tanh": .tanh, "mish": .mish, "linear": .linear,
            "laplace": .laplace,
        ]
        for (name, activation) in expected {
            #expect(try HFConfig.parse(configJSON: Self.config(denseActFn: name), path: "config.json").activation == activation, "\(name)")
        }
        // The golden's names are exactly these: a new ACT2FN entry shows up here.
        #expect(Set(try Self.golden().y.keys) == Set(expected.keys))
    }

    /// `feed_forward_proj` alone ("gated-silu" as UL2 / Pile-T5 write it, without dense_act_fn) gives the same.
    @Test func feedForwardProjGatedSilu() throws {
        let json = Data("""
        {"model_type": "umt5", "d_model": 8, "d_kv": 4, "d_ff": 16, "num_heads": 2, "num_layers": 1, "vocab_size": 10,
         "feed_forward_proj": "gated-silu"}
        """.utf8)
        let config = try HFConfig.parse(configJSON: json, path: "config.json")
        #expect(config.activation == .silu && config.isGatedFFN)
        #expect(config.requiredFeatures == [T5Config.perLayerRelativeBiasFeature, T5Config.extraActivationsFeature])
    }

    @Test(arguments: [("prelu", "learned slope"), ("xielu", "learned parameters"), ("softsign", "not one transformers' ACT2FN offers")])
    func activationsWithParametersOrUnknownAreRefused(name: String, message: String) throws {
        do {
            _ = try HFConfig.parse(configJSON: Self.config(denseActFn: name), path: "x/config.json")
            Issue.record("\(name) was accepted")
        } catch let error as FlintError {
            #expect(error.kind == .unsupported)
            #expect(error.message.contains("x/config.json: feed-forward activation \"\(name)\" (from dense_act_fn)"), "\(error.message)")
            #expect(error.message.contains(message), "\(error.message)")
        }
    }
}
