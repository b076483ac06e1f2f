import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat

/// Tensors of a tiny model (d_model 4, vocab 6) with distinct values, enough to test naming and tying.
enum TinyWeights {
    static func values(_ count: Int, seed: Float) -> [Float] { (0..<count).map { seed + Float($0) * 0.25 } }
    static let shared = STTensor.f32("shared.weight", [6, 4], values(24, seed: 1))
    static let sharedCopy = { var t = shared; t.name = "encoder.embed_tokens.weight"; return t }()
    static let lmHeadCopy = { var t = shared; t.name = "lm_head.weight"; return t }()
    static let lmHead = STTensor.f32("lm_head.weight", [6, 4], values(24, seed: -3))
    static let q = STTensor.f32("encoder.block.0.layer.0.SelfAttention.q.weight", [4, 4], values(16, seed: 7))
    static let norm = STTensor.f32("encoder.final_layer_norm.weight", [4], [1, 1, 1, 1])
}

@Suite struct HFModelFolderReading {
    @Test func tiedOriginalT5ResolvesAliasesAndDetectsStoredCopies() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny())
        let weights = safetensorsBytes([TinyWeights.shared, TinyWeights.sharedCopy, TinyWeights.q, TinyWeights.norm])
        dir.write("model.safetensors", weights)
        dir.write("spiece.model", [1, 2, 3, 4, 5])
        let folder = try HFModelFolder(path: dir.path)

        #expect(folder.config.tieWordEmbeddings && folder.config.scaleDecoderOutputs)
        #expect(folder.sourceFormat == "safetensors")
        #expect(folder.tensorNames == ["shared.weight", "encoder.embed_tokens.weight",
                                       "encoder.block.0.layer.0.SelfAttention.q.weight", "encoder.final_layer_norm.weight"])
        #expect(folder.aliases == ["encoder.embed_tokens.weight": "shared.weight"])
        #expect(folder.ignoredTensors.isEmpty)
        #expect(folder.tokenizerModel == [1, 2, 3, 4, 5])
        #expect(folder.sourceFiles.map(\.name) == ["config.json", "model.safetensors"])
        #expect(folder.sourceFiles[1].bytes == Int64(weights.count))
        #expect(folder.sourceFiles[0].bytes == Int64(ConfigTexts.tiny().utf8.count))

        // Tied names resolve to the embedding table; the view carries the requested name.
        let lm = try folder.tensor("lm_head.weight")
        let shared = try folder.tensor("shared.weight")
        #expect(lm.name == "lm_head.weight" && lm.shape == [6, 4])
        #expect(lm.data.baseAddress == shared.data.baseAddress)
        #expect(try folder.tensor("decoder.embed_tokens.weight").data.baseAddress == shared.data.baseAddress)
        #expect(folder.storedName(for: "lm_head.weight") == "shared.weight")
        #expect(folder.storedName(for: "encoder.embed_tokens.weight") == "shared.weight")
        #expect(folder.hasTensor("lm_head.weight"))
        #expect(try folder.tensor("encoder.final_layer_norm.weight").floats == [1, 1, 1, 1])

        let missing = try #require(flintErrorMessage { try folder.tensor("decoder.final_layer_norm.weight") })
        #expect(missing.contains("'decoder.final_layer_norm.weight'") && missing.contains(dir.path))
        #expect(!folder.hasTensor("decoder.final_layer_norm.weight"))
    }

    @Test func flanStyleUntiedUsesItsOwnLMHead() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny(#""tie_word_embeddings": false, "feed_forward_proj": "gated-gelu""#))
        dir.write("model.safetensors", safetensorsBytes([TinyWeights.shared, TinyWeights.q, TinyWeights.lmHead]))
        let folder = try HFModelFolder(path: dir.path)
        #expect(!folder.config.tieWordEmbeddings && !folder.config.scaleDecoderOutputs)
        #expect(folder.aliases.isEmpty)
        #expect(try folder.tensor("lm_head.weight").floats == TinyWeights.lmHead.bytes.withUnsafeBytes { raw in
            (0..<24).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) } })
        #expect(folder.tokenizerModel == nil)
    }

    @Test func untiedConfigWithoutLMHeadIsRejected() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny(#""tie_word_embeddings": false"#))
        dir.write("model.safetensors", safetensorsBytes([TinyWeights.shared, TinyWeights.q]))
        let m = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(m.contains("lm_head.weight") && m.contains("tie_word_embeddings: false") && m.contains(dir.path))
    }

    @Test func legacyTiedConfigIgnoresADistinctStoredLMHead() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny())
        dir.write("model.safetensors", safetensorsBytes([TinyWeights.shared, TinyWeights.lmHead]))
        let folder = try HFModelFolder(path: dir.path)
        #expect(folder.config.tieWordEmbeddings)
        #expect(folder.ignoredTensors.keys.sorted() == ["lm_head.weight"])
        #expect(folder.storedName(for: "lm_head.weight") == "shared.weight")
    }

    @Test func transformers5ConfigIsTiedOrUntiedByTheWeights() throws {
        let config = ConfigTexts.tiny(#""tie_word_embeddings": true, "scale_decoder_outputs": false"#)
        let untiedDir = TempDir()
        untiedDir.write("config.json", config)
        untiedDir.write("model.safetensors", safetensorsBytes([TinyWeights.shared, TinyWeights.lmHead]))
        let untied = try HFModelFolder(path: untiedDir.path)
        #expect(!untied.config.tieWordEmbeddings && !untied.config.scaleDecoderOutputs)
        #expect(untied.storedName(for: "lm_head.weight") == "lm_head.weight")

        // An lm_head.weight stored as an exact copy of shared.weight is a tied alias, not a distinct head.
        let copyDir = TempDir()
        copyDir.write("config.json", config)
        copyDir.write("model.safetensors", safetensorsBytes([TinyWeights.shared, TinyWeights.lmHeadCopy]))
        let copy = try HFModelFolder(path: copyDir.path)
        #expect(copy.config.tieWordEmbeddings && !copy.config.scaleDecoderOutputs)
        #expect(copy.aliases == ["lm_head.weight": "shared.weight"])

        let t5Dir = TempDir()
        t5Dir.write("config.json", ConfigTexts.tiny(#""tie_word_embeddings": true, "scale_decoder_outputs": true"#))
        t5Dir.write("model.safetensors", safetensorsBytes([TinyWeights.shared]))
        let t5 = try HFModelFolder(path: t5Dir.path)
        #expect(t5.config.tieWordEmbeddings && t5.config.scaleDecoderOutputs)
    }

    @Test func singleSafetensorsFilePathWithConfigBeside() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny())
        let file = dir.write("weights-v2.safetensors", safetensorsBytes([TinyWeights.shared, TinyWeights.q]))
        let folder = try HFModelFolder(path: file)
        #expect(folder.tensorNames.count == 2)
        #expect(folder.sourceFiles.map(\.name) == ["config.json", "weights-v2.safetensors"])
        #expect(folder.sourceDescription == file)
    }

    @Test func shardedFolder() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny())
        dir.write("model-00001-of-00002.safetensors", safetensorsBytes([TinyWeights.shared, TinyWeights.norm]))
        dir.write("model-00002-of-00002.safetensors", safetensorsBytes([TinyWeights.q]))
        let index = """
        {"metadata": {"total_size": 176}, "weight_map": {
          "encoder.block.0.layer.0.SelfAttention.q.weight": "model-00002-of-00002.safetensors",
          "encoder.final_layer_norm.weight": "model-00001-of-00002.safetensors",
          "shared.weight": "model-00001-of-00002.safetensors"}}
        """
        dir.write("model.safetensors.index.json", index)
        let folder = try HFModelFolder(path: dir.path)
        #expect(folder.readers.count == 2)
        #expect(folder.tensorNames == ["shared.weight", "encoder.final_layer_norm.weight",
                                       "encoder.block.0.layer.0.SelfAttention.q.weight"])
        #expect(folder.sourceFiles.map(\.name) == ["config.json", "model.safetensors.index.json",
                                                   "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(try folder.tensor("encoder.block.0.layer.0.SelfAttention.q.weight").floats == TinyWeights.values(16, seed: 7))
        #expect(try folder.tensor("lm_head.weight").shape == [6, 4])
        #expect(folder.tensorInfo("encoder.block.0.layer.0.SelfAttention.q.weight")?.file.hasSuffix("model-00002-of-00002.safetensors") == true)
        // The index file itself may be given as the path.
        #expect(try HFModelFolder(path: dir.path + "/model.safetensors.index.json").tensorNames == folder.tensorNames)
    }

    @Test func shardedFolderErrors() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny())
        dir.write("a.safetensors", safetensorsBytes([TinyWeights.shared]))
        dir.write("model.safetensors.index.json", #"{"weight_map": {"shared.weight": "a.safetensors", "x.weight": "b.safetensors"}}"#)
        let missingShard = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(missingShard.contains("\"b.safetensors\"") && missingShard.contains("not in") && missingShard.contains("index.json"))

        dir.write("model.safetensors.index.json", #"{"weight_map": {"shared.weight": "a.safetensors", "x.weight": "a.safetensors"}}"#)
        let missingTensor = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(missingTensor.contains("'x.weight'") && missingTensor.contains("\"a.safetensors\"") && missingTensor.contains("no such tensor"))

        dir.write("model.safetensors.index.json", #"{"weight_map": {"shared.weight": "../a.safetensors"}}"#)
        let outside = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(outside.contains("../a.safetensors") && outside.contains("same folder"))

        dir.write("model.safetensors.index.json", #"{"metadata": {}}"#)
        let noMap = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(noMap.contains("weight_map"))
    }

    @Test func folderErrors() throws {
        let dir = TempDir()
        let noConfig = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(noConfig.contains("no config.json") && noConfig.contains(dir.path))

        dir.write("config.json", ConfigTexts.tiny())
        dir.write("pytorch_model.bin", [0x50, 0x4B])
        dir.write("flax_model.msgpack", [0x80])
        // With no safetensors, the PyTorch file is read (preferred over msgpack); this one is cut short.
        let other = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(other.contains("pytorch_model.bin") && other.contains("zip"))

        let nowhere = try #require(flintErrorMessage { try HFModelFolder(path: dir.path + "/missing") })
        #expect(nowhere.contains("no such file or folder"))

        dir.write("model.safetensors", safetensorsBytes([TinyWeights.q]))
        let noEmbedding = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(noEmbedding.contains("no embedding table"))

        // A bad weight file's error names that file.
        dir.write("model.safetensors", [1, 2, 3])
        let bad = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(bad.contains("model.safetensors") && bad.contains("truncated"))
    }

    @Test func encoderOnlyFolder() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny(#""architectures": ["T5EncoderModel"], "tie_word_embeddings": false"#)
            .replacingOccurrences(of: #""architectures": ["T5ForConditionalGeneration"], "#, with: ""))
        dir.write("model.safetensors", safetensorsBytes([TinyWeights.shared, TinyWeights.sharedCopy, TinyWeights.q]))
        let folder = try HFModelFolder(path: dir.path)
        #expect(folder.config.isEncoderOnly)
        #expect(folder.aliases == ["encoder.embed_tokens.weight": "shared.weight"])
        #expect(!folder.hasTensor("lm_head.weight"))
    }
}
