// Opens the model folders that Tools/make_model_fixtures.py wrote with transformers' save_pretrained, and checks
// them against what transformers' naming and config.json say (not against anything our code printed).
import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat
import TestSupport

enum ModelFixtures {
    static let root = URL(fileURLWithPath: fixturePath("models"))
    static func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// The Hugging Face tensor names of a T5 checkpoint (REFERENCE.md §1), without tied copies.
    static func t5Names(encoderLayers: Int, decoderLayers: Int, gated: Bool, lmHead: Bool) -> Set<String> {
        var names: Set<String> = ["shared.weight", "encoder.final_layer_norm.weight",
                                  "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        let ffn = gated ? ["wi_0", "wi_1", "wo"] : ["wi", "wo"]
        for i in 0..<encoderLayers {
            let b = "encoder.block.\(i).layer"
            for p in ["q", "k", "v", "o"] { names.insert("\(b).0.SelfAttention.\(p).weight") }
            for w in ffn { names.insert("\(b).1.DenseReluDense.\(w).weight") }
            names.insert("\(b).0.layer_norm.weight"); names.insert("\(b).1.layer_norm.weight")
        }
        if decoderLayers > 0 {
            names.insert("decoder.final_layer_norm.weight")
            names.insert("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        }
        for i in 0..<decoderLayers {
            let b = "decoder.block.\(i).layer"
            for p in ["q", "k", "v", "o"] {
                names.insert("\(b).0.SelfAttention.\(p).weight"); names.insert("\(b).1.EncDecAttention.\(p).weight")
            }
            for w in ffn { names.insert("\(b).2.DenseReluDense.\(w).weight") }
            for l in 0..<3 { names.insert("\(b).\(l).layer_norm.weight") }
        }
        if lmHead { names.insert("lm_head.weight") }
        return names
    }

    static func fileBytes(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? -1
    }

    static func open(_ name: String) throws -> HFModelFolder {
        try #require(FileManager.default.fileExists(atPath: path(name) + "/config.json"),
                     "fixture \(name) missing: run Tools/make_model_fixtures.py")
        return try HFModelFolder(path: path(name))
    }
}

@Suite struct FixtureModelFolders {
    @Test func flanTiny() throws {
        let folder = try ModelFixtures.open("flan-tiny")
        let c = folder.config
        // config.json: d_model 40, d_kv 8, d_ff 72, 4 heads, 2+2 layers, vocab 1104, gated-gelu, untied.
        #expect(c.architecture == "encoder-decoder" && c.dModel == 40 && c.dKV == 8 && c.dFF == 72 && c.numHeads == 4)
        #expect(c.numEncoderLayers == 2 && c.numDecoderLayers == 2 && c.vocabSize == 1104)
        #expect(c.activation == .geluNew && c.isGatedFFN && !c.tieWordEmbeddings && !c.scaleDecoderOutputs)
        #expect(c.padTokenId == 0 && c.eosTokenId == 1 && c.decoderStartTokenId == 0 && c.layerNormEpsilon == 1e-6)

        #expect(Set(folder.tensorNames) == ModelFixtures.t5Names(encoderLayers: 2, decoderLayers: 2, gated: true, lmHead: true))
        #expect(folder.tensorNames.count == 52)
        #expect(folder.aliases.isEmpty && folder.ignoredTensors.isEmpty)
        #expect(folder.tensorInfos.allSatisfy { $0.dtype == "F32" && $0.storage == .f32 })
        #expect(folder.readers.first?.metadata["format"] == "pt")
        // total_size as transformers computed it for the sharded copy of these weights.
        #expect(folder.tensorInfos.reduce(0) { $0 + $1.byteCount } == 617_344)

        #expect(try folder.tensor("shared.weight").shape == [1104, 40])
        #expect(try folder.tensor("lm_head.weight").shape == [1104, 40])
        #expect(try folder.tensor("encoder.block.1.layer.0.SelfAttention.q.weight").shape == [32, 40])
        #expect(try folder.tensor("encoder.block.1.layer.0.SelfAttention.o.weight").shape == [40, 32])
        #expect(try folder.tensor("decoder.block.1.layer.2.DenseReluDense.wi_0.weight").shape == [72, 40])
        #expect(try folder.tensor("decoder.block.1.layer.2.DenseReluDense.wo.weight").shape == [40, 72])
        #expect(try folder.tensor("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").shape == [32, 4])
        // The distinct lm_head is used, not the embedding.
        #expect(try folder.tensor("lm_head.weight").data.baseAddress != folder.tensor("shared.weight").data.baseAddress)
        // Input embeddings are not stored and resolve to shared.weight.
        #expect(try folder.tensor("encoder.embed_tokens.weight").data.baseAddress == folder.tensor("shared.weight").data.baseAddress)

        #expect(folder.sourceFiles.map(\.name) == ["config.json", "model.safetensors"])
        #expect(folder.sourceFiles.map(\.bytes) == ["config.json", "model.safetensors"].map {
            ModelFixtures.fileBytes(ModelFixtures.path("flan-tiny") + "/" + $0) })
        let spiece = try #require(FileManager.default.contents(atPath: ModelFixtures.path("flan-tiny") + "/spiece.model"))
        #expect(folder.tokenizerModel == [UInt8](spiece))
    }

    @Test func flanTinyShardedHasTheSameTensors() throws {
        let single = try ModelFixtures.open("flan-tiny")
        let sharded = try ModelFixtures.open("flan-tiny-sharded")
        #expect(sharded.readers.count == 4)
        #expect(sharded.config == single.config)
        #expect(Set(sharded.tensorNames) == Set(single.tensorNames))
        for name in single.tensorNames {
            let a = try single.tensor(name), b = try sharded.tensor(name)
            #expect(a.shape == b.shape && a.storage == b.storage, "\(name)")
            #expect(a.data.count == b.data.count && memcmp(a.data.baseAddress!, b.data.baseAddress!, a.data.count) == 0,
                    "\(name) bytes differ between flan-tiny and flan-tiny-sharded")
        }
        let index = try ShardIndex(path: ModelFixtures.path("flan-tiny-sharded") + "/model.safetensors.index.json")
        #expect(index.totalSize == Int64(sharded.tensorInfos.reduce(0) { $0 + $1.byteCount }))
        // Every tensor comes from the shard the index names.
        let mapped = Dictionary(uniqueKeysWithValues: index.weightMap.map { ($0.tensor, $0.file) })
        for info in sharded.tensorInfos {
            #expect(URL(fileURLWithPath: info.file).lastPathComponent == mapped[info.name], "\(info.name)")
        }
        #expect(sharded.sourceFiles.map(\.name) == ["config.json", "model.safetensors.index.json"]
                + (1...4).map { "model-0000\($0)-of-00004.safetensors" })
    }

    @Test func t5TinyIsTiedAndRescaled() throws {
        let folder = try ModelFixtures.open("t5-tiny")
        let c = folder.config
        // config.json has no tie_word_embeddings: original T5 → tied, decoder output scaled by d_model^-0.5.
        #expect(c.tieWordEmbeddings && c.scaleDecoderOutputs)
        #expect(c.activation == .relu && !c.isGatedFFN)
        #expect(c.dModel == 64 && c.dKV == 16 && c.numHeads == 4 && c.dFF == 128 && c.vocabSize == 1104)
        #expect(Set(folder.tensorNames) == ModelFixtures.t5Names(encoderLayers: 2, decoderLayers: 2, gated: false, lmHead: false))
        let shared = try folder.tensor("shared.weight")
        let lm = try folder.tensor("lm_head.weight")
        #expect(lm.shape == [1104, 64] && lm.data.baseAddress == shared.data.baseAddress && lm.name == "lm_head.weight")
        #expect(try folder.tensor("decoder.embed_tokens.weight").data.baseAddress == shared.data.baseAddress)
        #expect(try folder.tensor("encoder.block.0.layer.1.DenseReluDense.wi.weight").shape == [128, 64])
    }

    @Test func t5EncoderOnly() throws {
        let folder = try ModelFixtures.open("t5-encoder")
        let c = folder.config
        #expect(c.isEncoderOnly && c.dModel == 48 && c.dKV == 12 && c.dFF == 96 && c.activation == .geluNew && c.isGatedFFN)
        #expect(folder.configDetails.architectures == ["T5EncoderModel"] && !folder.configDetails.isEncoderDecoder)
        #expect(Set(folder.tensorNames) == ModelFixtures.t5Names(encoderLayers: 2, decoderLayers: 0, gated: true, lmHead: false))
        #expect(!folder.hasTensor("lm_head.weight"))
        #expect(try folder.tensor("encoder.embed_tokens.weight").shape == [1104, 48])
    }
}

/// What each fixture's config.json says (Tools/make_model_fixtures.py, train_demo.py), checked for every folder.
struct FixtureExpectation: Sendable, CustomTestStringConvertible {
    let name: String
    let dModel: Int, layers: Int, vocab: Int
    let gated: Bool, tied: Bool, encoderOnly: Bool
    var testDescription: String { name }
}

@Suite struct AllFixtureModelFolders {
    static let expectations = [
        FixtureExpectation(name: "flan-tiny", dModel: 40, layers: 2, vocab: 1104, gated: true, tied: false, encoderOnly: false),
        FixtureExpectation(name: "flan-tiny-sharded", dModel: 40, layers: 2, vocab: 1104, gated: true, tied: false, encoderOnly: false),
        FixtureExpectation(name: "t5-tiny", dModel: 64, layers: 2, vocab: 1104, gated: false, tied: true, encoderOnly: false),
        FixtureExpectation(name: "t5-vocab32k", dModel: 32, layers: 1, vocab: 32128, gated: false, tied: true, encoderOnly: false),
        FixtureExpectation(name: "t5-encoder", dModel: 48, layers: 2, vocab: 1104, gated: true, tied: false, encoderOnly: true),
        FixtureExpectation(name: "demo", dModel: 128, layers: 2, vocab: 1104, gated: true, tied: false, encoderOnly: false),
    ]

    @Test(arguments: expectations)
    func opensWithTheExpectedConfigAndTensors(_ e: FixtureExpectation) throws {
        let folder = try ModelFixtures.open(e.name)
        let c = folder.config
        #expect(c.dModel == e.dModel && c.numEncoderLayers == e.layers && c.vocabSize == e.vocab)
        #expect(c.isGatedFFN == e.gated && c.activation == (e.gated ? .geluNew : .relu))
        #expect(c.tieWordEmbeddings == e.tied && c.scaleDecoderOutputs == e.tied && c.isEncoderOnly == e.encoderOnly)
        let expected = ModelFixtures.t5Names(encoderLayers: e.layers, decoderLayers: e.encoderOnly ? 0 : e.layers,
                                             gated: e.gated, lmHead: !e.tied && !e.encoderOnly)
        #expect(Set(folder.tensorNames) == expected)
        #expect(folder.aliases.isEmpty && folder.ignoredTensors.isEmpty)
        // Every tensor can be viewed, and its view matches its description.
        for info in folder.tensorInfos {
            let v = try folder.tensor(info.name)
            #expect(v.storage == .f32 && v.shape == info.shape && v.data.count == info.byteCount, "\(info.name)")
        }
        #expect(try folder.tensor("shared.weight").shape == [e.vocab, e.dModel])
        if !e.encoderOnly { #expect(try folder.tensor("lm_head.weight").shape == [e.vocab, e.dModel]) }
        #expect(folder.tokenizerModel?.isEmpty == false)
    }
}
