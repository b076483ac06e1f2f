import Testing
import FlintFormat
@testable import FlintQuant

/// Tensor names and shapes of a tiny gated (FLAN-T5-like) model: 1 encoder and 1 decoder block.
private let gatedTensors: [(name: String, shape: [Int])] = [
    ("shared.weight", [32, 8]),
    ("encoder.block.0.layer.0.SelfAttention.q.weight", [8, 8]),
    ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [32, 2]),
    ("encoder.block.0.layer.0.layer_norm.weight", [8]),
    ("encoder.block.0.layer.1.DenseReluDense.wi_0.weight", [16, 8]),
    ("encoder.block.0.layer.1.DenseReluDense.wi_1.weight", [16, 8]),
    ("encoder.block.0.layer.1.DenseReluDense.wo.weight", [8, 16]),
    ("encoder.block.0.layer.1.layer_norm.weight", [8]),
    ("encoder.final_layer_norm.weight", [8]),
    ("decoder.block.0.layer.1.EncDecAttention.k.weight", [8, 8]),
    ("decoder.block.0.layer.2.DenseReluDense.wo.weight", [8, 16]),
    ("decoder.final_layer_norm.weight", [8]),
    ("lm_head.weight", [32, 8]),
]

private func decisions(_ plan: QuantPlan) -> [String: TensorDecision] {
    Dictionary(uniqueKeysWithValues: plan.decide(tensors: gatedTensors).map { ($0.name, $0) })
}

@Test func parsesEveryCLISchemeName() throws {
    #expect(try QuantRequest(cliName: "f32") == .float(.f32))
    #expect(try QuantRequest(cliName: "f16") == .float(.f16))
    #expect(try QuantRequest(cliName: "bf16") == .float(.bf16))
    #expect(try QuantRequest(cliName: "int8") == .int8(.int8Row))
    #expect(try QuantRequest(cliName: "int8-g32") == .int8(.int8Group(32)))
    #expect(try QuantRequest(cliName: "int8-g64") == .int8(.int8Group(64)))
    #expect(try QuantRequest(cliName: "int8-g128") == .int8(.int8Group(128)))
    for name in QuantRequest.validNames { #expect(try QuantRequest(cliName: name).name == name) }
    let error = try #require(throws: FlintError.self) { try QuantRequest(cliName: "int4") }
    #expect(error.message.contains("\"int4\""))
    #expect(error.message.contains("f32, f16, bf16, int8, int8-g32, int8-g64, int8-g128"))
}

@Test func parsesKeepRules() throws {
    let plain = try KeepRule(parsing: "lm_head.weight")
    #expect(plain.pattern == "lm_head.weight" && plain.storage == .f32)
    let typed = try KeepRule(parsing: "*.wo.weight=bf16")
    #expect(typed.pattern == "*.wo.weight" && typed.storage == .bf16 && typed.text == "*.wo.weight=bf16")
    #expect(try KeepRule(parsing: "x=f16").storage == .f16)
    #expect(throws: FlintError.self) { try KeepRule(parsing: "x=i8") }
    #expect(throws: FlintError.self) { try KeepRule(parsing: "x=f8") }
    #expect(throws: FlintError.self) { try KeepRule(parsing: "=f16") }
    #expect(throws: FlintError.self) { try KeepRule(parsing: "") }
}

@Test func globMatching() {
    #expect(globMatch(pattern: "*", name: "a.b.c"))
    #expect(globMatch(pattern: "*.wo.weight", name: "encoder.block.3.layer.1.DenseReluDense.wo.weight"))
    #expect(globMatch(pattern: "encoder.block.?.layer.*", name: "encoder.block.3.layer.1.x"))
    #expect(!globMatch(pattern: "encoder.block.?.layer.*", name: "encoder.block.12.layer.1.x"))
    #expect(globMatch(pattern: "a*b*c", name: "aXXbYYbc"))
    #expect(!globMatch(pattern: "a*b*c", name: "aXXbYYb"))
    #expect(globMatch(pattern: "shared.weight", name: "shared.weight"))
    #expect(!globMatch(pattern: "shared.weight", name: "shared.weight2"))
    #expect(!globMatch(pattern: "shared.weight", name: "xshared.weight"))
    #expect(globMatch(pattern: "**", name: ""))
    #expect(!globMatch(pattern: "?", name: ""))
    #expect(!globMatch(pattern: "*a*a*a*a*a*b", name: String(repeating: "a", count: 200)))
}

@Test func int8PlanForGatedModel() throws {
    let plan = QuantPlan(request: try QuantRequest(cliName: "int8-g64"), isGatedFFN: true)
    let d = decisions(plan)
    let q = QuantStored.int8(.int8Group(64))
    #expect(d["shared.weight"]!.form == q && d["shared.weight"]!.reason == nil)
    #expect(d["encoder.block.0.layer.0.SelfAttention.q.weight"]!.form == q)
    #expect(d["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"]!.form == q)
    #expect(d["lm_head.weight"]!.form == q)
    #expect(d["encoder.block.0.layer.0.layer_norm.weight"]! .form == .float(.f32))
    #expect(d["encoder.block.0.layer.0.layer_norm.weight"]!.reason == .layerNorm)
    #expect(d["encoder.final_layer_norm.weight"]!.reason == .layerNorm)
    #expect(d["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]!.form == .float(.f32))
    #expect(d["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]!.reason == .relativeAttentionBias)
    for wo in ["encoder.block.0.layer.1.DenseReluDense.wo.weight", "decoder.block.0.layer.2.DenseReluDense.wo.weight"] {
        #expect(d[wo]!.form == .float(.f32))
        #expect(d[wo]!.reason == .defaultKeepFeedForwardOutput)
    }
    #expect(plan.unmatchedKeepRules(tensorNames: gatedTensors.map(\.name)).isEmpty)
}

private typealias QuantStored = StoredForm

@Test func defaultKeepOnlyForGatedModelsAndCanBeTurnedOff() throws {
    let wo = "encoder.block.0.layer.1.DenseReluDense.wo.weight"
    let relu = QuantPlan(request: .int8(.int8Row), isGatedFFN: false)
    #expect(decisions(relu)[wo]!.form == .int8(.int8Row))
    let off = QuantPlan(request: .int8(.int8Row), useDefaultKeep: false, isGatedFFN: true)
    #expect(decisions(off)[wo]!.form == .int8(.int8Row) && decisions(off)[wo]!.reason == nil)
    // Norms stay float even with the defaults off.
    #expect(decisions(off)["decoder.final_layer_norm.weight"]!.form == .float(.f32))
    let config = T5Config(dModel: 8, dKV: 4, dFF: 16, numHeads: 2, numEncoderLayers: 1, numDecoderLayers: 1,
                          vocabSize: 32, activation: .geluNew, isGatedFFN: true, tieWordEmbeddings: false,
                          scaleDecoderOutputs: false)
    #expect(QuantPlan(request: .int8(.int8Row), config: config).isGatedFFN)
}

@Test func halfRequestsConvert2DTensorsAndKeepTheRestF32() throws {
    for request in [QuantRequest.float(.f16), .float(.bf16)] {
        guard case .float(let half) = request else { continue }
        let d = decisions(QuantPlan(request: request, isGatedFFN: true))
        #expect(d["shared.weight"]!.form == .float(half) && d["shared.weight"]!.reason == nil)
        #expect(d["encoder.block.0.layer.0.layer_norm.weight"]!.form == .float(.f32))
        #expect(d["encoder.block.0.layer.0.layer_norm.weight"]!.reason == .layerNorm)
        #expect(d["decoder.block.0.layer.2.DenseReluDense.wo.weight"]!.form == .float(.f32))
    }
    // An f32 request stores everything f32 and reports no reason (nothing differs from the request).
    let f32 = QuantPlan(request: .float(.f32), isGatedFFN: true).decide(tensors: gatedTensors)
    #expect(f32.allSatisfy { $0.form == .float(.f32) && $0.reason == nil })
}

@Test func keepRulesLaterWinsAndBeatDefaults() throws {
    let rules = try ["*.wo.weight=bf16", "decoder.*.wo.weight=f16", "*layer_norm.weight=f16", "lm_head.weight",
                     "*.q.weight", "encoder.*.q.weight=bf16"].map(KeepRule.init(parsing:))
    let plan = QuantPlan(request: .int8(.int8Row), keepRules: rules, isGatedFFN: true)
    let d = decisions(plan)
    // Explicit rule beats the default keep (which would be f32).
    #expect(d["encoder.block.0.layer.1.DenseReluDense.wo.weight"]!.form == .float(.bf16))
    #expect(d["encoder.block.0.layer.1.DenseReluDense.wo.weight"]!.reason == .keepRule(rules[0]))
    // Later rule beats an earlier one.
    #expect(d["decoder.block.0.layer.2.DenseReluDense.wo.weight"]!.form == .float(.f16))
    #expect(d["decoder.block.0.layer.2.DenseReluDense.wo.weight"]!.reason == .keepRule(rules[1]))
    #expect(d["encoder.block.0.layer.0.SelfAttention.q.weight"]!.form == .float(.bf16))
    // A rule naming a float type for an always-float tensor changes its type.
    #expect(d["decoder.final_layer_norm.weight"]!.form == .float(.f16))
    #expect(d["decoder.final_layer_norm.weight"]!.reason == .keepRule(rules[2]))
    #expect(d["lm_head.weight"]!.form == .float(.f32))
    #expect(d["lm_head.weight"]!.reason?.description == "keep rule lm_head.weight")
    #expect(d["shared.weight"]!.form == .int8(.int8Row))
    // Reversed order: the broad rule now comes last and wins.
    let reversed = QuantPlan(request: .int8(.int8Row), keepRules: [rules[1], rules[0]], isGatedFFN: true)
    #expect(decisions(reversed)["decoder.block.0.layer.2.DenseReluDense.wo.weight"]!.form == .float(.bf16))
}

@Test func reportsUnmatchedKeepRules() throws {
    let rules = try ["lm_head.weight", "encoder.block.0.layer.1.DenseReluDense.wo.weights", "*.k.weight=f16",
                     "decoder.block.?.layer.9.*"].map(KeepRule.init(parsing:))
    let plan = QuantPlan(request: .int8(.int8Row), keepRules: rules, isGatedFFN: true)
    _ = plan.decide(tensors: gatedTensors)
    let unmatched = plan.unmatchedKeepRules(tensorNames: gatedTensors.map(\.name))
    #expect(unmatched.map(\.text) == ["encoder.block.0.layer.1.DenseReluDense.wo.weights", "decoder.block.?.layer.9.*"])
}

@Test func nonMatrixTensorsStayFloat() {
    let plan = QuantPlan(request: .int8(.int8Row), isGatedFFN: false)
    let d3 = plan.decide(name: "some.conv.weight", shape: [4, 4, 4])
    #expect(d3.form == .float(.f32) && d3.reason == .notMatrix)
    let d1 = plan.decide(name: "some.bias", shape: [4])
    #expect(d1.form == .float(.f32) && d1.reason == .notMatrix)
}

@Test func schemeRulesOverrideTheRequestButNotKeepRulesOrNorms() throws {
    let rules = [try SchemeRule(parsing: "*.wo.weight=int8-g32"), try SchemeRule(parsing: "lm_head.weight=f16"),
                 try SchemeRule(parsing: "*layer_norm.weight=int8")]
    let plan = QuantPlan(request: .int8(.int8Row), keepRules: [try KeepRule(parsing: "decoder.*.wo.weight")],
                         schemeRules: rules, isGatedFFN: true)
    let d = decisions(plan)
    let encoderWo = d["encoder.block.0.layer.1.DenseReluDense.wo.weight"]!
    #expect(encoderWo.form == .int8(.int8Group(32)))
    #expect(encoderWo.reason == .schemeRule(rules[0]))
    #expect(d["decoder.block.0.layer.2.DenseReluDense.wo.weight"]!.form == .float(.f32))
    #expect(d["lm_head.weight"]!.form == .float(.f16))
    #expect(d["encoder.final_layer_norm.weight"]!.form == .float(.f32))
    #expect(d["shared.weight"]!.form == .int8(.int8Row) && d["shared.weight"]!.reason == nil)
    #expect(throws: FlintError.self) { try SchemeRule(parsing: "x=int4") }
    #expect(throws: FlintError.self) { try SchemeRule(parsing: "=int8") }
    #expect(throws: FlintError.self) { try SchemeRule(parsing: "noequals") }
}
