import Testing
@testable import FlintFormat

/// Config bounds (Formats/FLINT.md, "Limits"): every size a model derives from a config must stay bounded.
@Suite struct ConfigLimitsTests {
    static func base() -> T5Config {
        T5Config(dModel: 40, dKV: 8, dFF: 72, numHeads: 4, numEncoderLayers: 2, numDecoderLayers: 2, vocabSize: 1104,
                 activation: .geluNew, isGatedFFN: true, tieWordEmbeddings: false, scaleDecoderOutputs: false)
    }

    func rejection(_ change: (inout T5Config) -> Void) -> String? {
        var c = Self.base()
        change(&c)
        do { try c.validate(); return nil } catch let e as FlintError { return e.message } catch { return "\(error)" }
    }

    @Test func realConfigsPass() throws {
        try Self.base().validate()
        // t5-11b, the largest sizes of the family.
        var big = Self.base()
        big.dModel = 1024; big.dKV = 128; big.numHeads = 128; big.dFF = 65536; big.numEncoderLayers = 24
        big.numDecoderLayers = 24; big.vocabSize = 32128
        try big.validate()
        // UMT5-XXL vocabulary.
        big.vocabSize = 256384; big.dModel = 4096; big.dKV = 64; big.numHeads = 64; big.dFF = 10240
        try big.validate()
    }

    @Test func wrappingInnerSizeIsRejected() {
        // 8 × (2^61 + 64) wraps to 512 in unchecked arithmetic: the reported segfault.
        let m = rejection { $0.numHeads = 8; $0.dKV = (1 << 61) + 64 }
        #expect(m?.contains("d_kv") == true, "\(m ?? "accepted")")
        let product = rejection { $0.numHeads = 4096; $0.dKV = 4096 }
        #expect(product?.contains("num_heads × d_kv") == true, "\(product ?? "accepted")")
    }

    @Test(arguments: [
        ("d_model", { (c: inout T5Config) in c.dModel = 1 << 40 }),
        ("d_ff", { (c: inout T5Config) in c.dFF = Int.max }),
        ("num_heads", { (c: inout T5Config) in c.numHeads = 1 << 30 }),
        ("num_encoder_layers", { (c: inout T5Config) in c.numEncoderLayers = 1 << 60 }),
        ("num_decoder_layers", { (c: inout T5Config) in c.numDecoderLayers = 1_000_000_000 }),
        ("vocab_size", { (c: inout T5Config) in c.vocabSize = 1 << 40 }),
        ("relative_attention_num_buckets", { (c: inout T5Config) in c.relativeAttentionNumBuckets = 1 << 40 }),
        ("relative_attention_num_buckets", { (c: inout T5Config) in c.relativeAttentionNumBuckets = 2 }),
        ("relative_attention_max_distance", { (c: inout T5Config) in c.relativeAttentionMaxDistance = 1 << 40 }),
        ("relative_attention_max_distance", { (c: inout T5Config) in c.relativeAttentionMaxDistance = 16 }),
    ] as [(String, @Sendable (inout T5Config) -> Void)])
    func absurdSizesAreRejectedNamingTheField(field: String, change: @Sendable (inout T5Config) -> Void) {
        let m = rejection(change)
        #expect(m?.contains(field) == true, "\(m ?? "accepted")")
    }

    @Test func encoderOnlyMayHaveNoDecoder() throws {
        var c = Self.base()
        c.architecture = "encoder-only"; c.numDecoderLayers = 0
        try c.validate()
    }

    @Test func expectedShapesFollowTheConfig() {
        let c = Self.base()
        #expect(c.expectedShape(ofTensor: "shared.weight") == [1104, 40])
        #expect(c.expectedShape(ofTensor: "encoder.block.1.layer.0.SelfAttention.q.weight") == [32, 40])
        #expect(c.expectedShape(ofTensor: "decoder.block.0.layer.1.EncDecAttention.o.weight") == [40, 32])
        #expect(c.expectedShape(ofTensor: "decoder.block.1.layer.2.DenseReluDense.wo.weight") == [40, 72])
        #expect(c.expectedShape(ofTensor: "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight") == [32, 4])
        #expect(c.expectedShape(ofTensor: "encoder.block.5.layer.0.layer_norm.weight") == [])
        #expect(c.expectedShape(ofTensor: "something.else") == nil)
        #expect(throws: FlintError.self) {
            try c.checkTensorShapes([("shared.weight", [1104, 41])], source: "m")
        }
    }
}
