import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat

/// The one declaration of T5's tensors (FlintFormat's T5WeightLayout) against every committed checkpoint:
/// what transformers saved for each family and format is exactly what the layout declares.
@Suite struct T5WeightLayoutTests {
    static let folders = [
        "models/demo", "models/flan-tiny", "models/flan-long", "models/flan-tiny-bf16", "models/flan-tiny-f16",
        "models/flan-tiny-sharded", "models/t5-encoder", "models/t5-tiny", "models/t5-vocab32k", "models/umt5-tiny",
        "formats/flan-tiny-bin", "formats/flan-tiny-bin-legacy", "formats/flan-tiny-bin-sharded", "formats/flan-tiny-h5",
        "formats/flan-tiny-h5-sharded", "formats/flan-tiny-msgpack", "formats/flan-tiny-msgpack-sharded",
        "formats/t5-tiny-bin", "formats/t5-tiny-h5", "formats/t5-tiny-msgpack",
    ]

    static func path(_ relative: String) -> String { packageRoot + "/Tests/Fixtures/" + relative }

    /// The stored tensors the converter writes: aliases and tensors transformers ignores left out.
    static func written(_ folder: HFModelFolder) -> [(name: String, shape: [Int])] {
        folder.tensorInfos.filter { folder.aliases[$0.name] == nil && folder.ignoredTensors[$0.name] == nil }
            .map { ($0.name, $0.shape) }
    }

    @Test(arguments: folders)
    func everyFixtureStoresExactlyTheDeclaredTensors(relative: String) throws {
        let folder = try HFModelFolder(path: Self.path(relative))
        let layout = folder.config.weightLayout
        let stored = Self.written(folder)
        try layout.check(stored: stored, source: relative)
        // Same names, same shapes, nothing left over (the embedding may be stored under a tied name).
        let declared = Dictionary(uniqueKeysWithValues: layout.tensors.map { ($0.name, $0.shape) })
        #expect(stored.count == declared.count, "\(relative): \(stored.map(\.name))")
        for t in stored {
            let name = T5WeightLayout.embeddingNames.contains(t.name) ? T5WeightLayout.embeddingName : t.name
            #expect(declared[name] == t.shape, "\(relative): \(t.name) \(t.shape)")
        }
        // Every declared tensor resolves to a stored one, tied names included.
        for t in layout.tensors { #expect(folder.storedName(for: t.name) != nil, "\(relative): \(t.name)") }
        for name in T5WeightLayout.tiedCopyNames where layout.outputProjection == T5WeightLayout.embeddingName
            || name != T5WeightLayout.outputProjectionName {
            if folder.config.isEncoderOnly && name == T5WeightLayout.outputProjectionName { continue }
            #expect(folder.storedName(for: name) != nil, "\(relative): tied \(name)")
        }
    }

    @Test func variantsDeclareTheirOwnTensors() throws {
        let t5 = try HFModelFolder(path: Self.path("models/t5-tiny")).config.weightLayout
        let flan = try HFModelFolder(path: Self.path("models/flan-tiny")).config.weightLayout
        let umt5 = try HFModelFolder(path: Self.path("models/umt5-tiny")).config.weightLayout
        let encoder = try HFModelFolder(path: Self.path("models/t5-encoder")).config.weightLayout
        let names = { (l: T5WeightLayout) in Set(l.tensors.map(\.name)) }
        // T5 v1.0: ReLU `wi`, tied head (no lm_head; the head is shared.weight).
        #expect(names(t5).contains("encoder.block.0.layer.1.DenseReluDense.wi.weight"))
        #expect(!names(t5).contains("lm_head.weight"))
        #expect(t5.outputProjection == "shared.weight")
        // FLAN-T5 / v1.1: gated `wi_0` + `wi_1`, its own lm_head.
        #expect(names(flan).isSuperset(of: ["decoder.block.1.layer.2.DenseReluDense.wi_0.weight",
                                            "decoder.block.1.layer.2.DenseReluDense.wi_1.weight", "lm_head.weight"]))
        #expect(!names(flan).contains("decoder.block.1.layer.2.DenseReluDense.wi.weight"))
        #expect(flan.outputProjection == "lm_head.weight")
        // T5: a bias table in block 0 only; UMT5: in every self-attention layer.
        #expect(flan.tensors.filter { $0.role == .relativeAttentionBias }.map(\.block) == [0, 0])
        #expect(umt5.tensors.filter { $0.role == .relativeAttentionBias }.count
                == umt5.config.numEncoderLayers + umt5.config.numDecoderLayers)
        // Encoder-only: no decoder, no head.
        #expect(encoder.tensors.allSatisfy { $0.stack != .decoder && $0.role != .outputProjection })
        #expect(encoder.blockNames.allSatisfy { $0.hasPrefix("encoder.block.") })
        // Float-only roles are the norms and the bias table.
        for t in flan.tensors {
            #expect(t.isFloatOnly == (t.role == .layerNorm || t.role == .relativeAttentionBias), "\(t.name)")
        }
    }

    /// The Keras and Flax names the layout gives are the ones transformers wrote (the shard indexes list
    /// every variable), and map back to the Hugging Face names.
    @Test func kerasAndFlaxNamesMatchTheCheckpoints() throws {
        let layout = try HFModelFolder(path: Self.path("formats/flan-tiny-h5-sharded")).config.weightLayout
        func indexNames(_ relative: String) throws -> Set<String> {
            Set(try ShardIndex(path: Self.path(relative)).weightMap.map(\.tensor))
        }
        let keras = Set(layout.tensors.map { layout.kerasName(ofTensor: $0.name) })
        #expect(keras == (try indexNames("formats/flan-tiny-h5-sharded/tf_model.h5.index.json")))
        let flax = Set(layout.tensors.map { layout.flaxPath(ofTensor: $0.name) })
        #expect(flax == (try indexNames("formats/flan-tiny-msgpack-sharded/flax_model.msgpack.index.json")))
        for t in layout.tensors {
            #expect(T5WeightLayout.hfName(kerasVariable: layout.kerasName(ofTensor: t.name), dropsModelScope: true).name
                    == t.name || t.role == .embedding, "\(t.name)")
            let path = layout.flaxPath(ofTensor: t.name).split(separator: "/").map(String.init)
            #expect(T5WeightLayout.hfName(flaxPath: path).name == t.name, "\(t.name)")
        }
    }

    @Test func checkReportsEveryProblemInOneError() throws {
        let folder = try HFModelFolder(path: Self.path("models/flan-tiny"))
        var stored = Self.written(folder).filter {
            $0.name != "encoder.block.1.layer.0.SelfAttention.k.weight" && $0.name != "lm_head.weight"
        }
        stored.append(("encoder.block.0.layer.1.DenseReluDense.wi.weight", [64, 32]))  // a ReLU wi in a gated model
        stored.append(("pooler.dense.weight", [4, 4]))
        stored.append(("encoder.block.7.layer.0.layer_norm.weight", [32]))
        let error = try #require(throws: FlintError.self) {
            try folder.config.weightLayout.check(stored: stored, source: "m")
        }
        for part in ["2 tensors the model needs are missing", "encoder.block.1.layer.0.SelfAttention.k.weight",
                     "lm_head.weight", "2 tensors are not part of this model", "pooler.dense.weight",
                     "encoder.block.0.layer.1.DenseReluDense.wi.weight", "encoder.block.7.layer.0.layer_norm.weight",
                     "beyond the config's layer count"] {
            #expect(error.message.contains(part), "\(part) not in: \(error.message)")
        }
        // A Keras checkpoint's missing tensors are also named the way its file names them.
        let keras = try HFModelFolder(path: Self.path("formats/flan-tiny-h5"))
        let kerasError = try #require(throws: FlintError.self) {
            try keras.config.weightLayout.check(stored: Self.written(keras).filter { $0.name != "lm_head.weight" },
                                                source: "k", checkpointName: keras.checkpointNaming)
        }
        #expect(kerasError.message.contains("lm_head.weight (Keras tft5_for_conditional_generation/lm_head/kernel:0)"),
                "\(kerasError.message)")
    }

    /// Conversion refuses a checkpoint with missing and unknown tensors, naming all of them, and writes nothing.
    @Test func conversionNamesAllMissingAndUnexpectedTensors() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try HFModelFolder(path: fixture("flan-tiny"))
        let dropped: Set<String> = ["decoder.block.0.layer.1.EncDecAttention.v.weight", "decoder.final_layer_norm.weight"]
        let kept = source.tensorInfos.filter { !dropped.contains($0.name) }
        let extra = [Float](repeating: 1, count: 6)
        var entries = kept.map { SafetensorsWriter.Entry(name: $0.name, dtype: "F32", shape: $0.shape, byteCount: $0.byteCount) }
        entries.append(.init(name: "encoder.block.0.layer.0.SelfAttention.bias", dtype: "F32", shape: [6], byteCount: 24))
        try FileManager.default.createDirectory(atPath: dir + "/model", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: source.folder + "/config.json", toPath: dir + "/model/config.json")
        let writer = try SafetensorsWriter(path: dir + "/model/model.safetensors", entries: entries)
        for info in kept { try writer.write(try source.rawBytes(info.name)) }
        try extra.withUnsafeBytes { try writer.write($0) }
        try writer.finish()

        let error = try #require(throws: FlintError.self) {
            try Converter.convert(source: dir + "/model", output: dir + "/m.flint", options: ConvertOptions(quant: .int8(.int8Row)))
        }
        for part in dropped.sorted() + ["encoder.block.0.layer.0.SelfAttention.bias", dir + "/model"] {
            #expect(error.message.contains(part), "\(part) not in: \(error.message)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/m.flint"))
    }

    /// A bias table in a later block of a T5 checkpoint (only UMT5 has one per block) is dropped as transformers'
    /// T5 drops it (its T5Stack gives block 0 alone a relative_attention_bias): conversion succeeds without it,
    /// while block 0's table stays required.
    @Test func biasTablesOfLaterBlocksAreIgnoredLikeTransformers() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try HFModelFolder(path: fixture("flan-tiny"))
        let table = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        let stray = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"
        let layout = source.config.weightLayout
        #expect(layout.ignoredReason(ofTensor: table) == nil)
        #expect(layout.ignoredReason(ofTensor: stray)?.contains("block 0") == true)
        let info = try #require(source.tensorInfos.first { $0.name == table })
        var entries = source.tensorInfos.map { SafetensorsWriter.Entry(name: $0.name, dtype: "F32", shape: $0.shape, byteCount: $0.byteCount) }
        entries.append(.init(name: stray, dtype: "F32", shape: info.shape, byteCount: info.byteCount))
        try FileManager.default.createDirectory(atPath: dir + "/model", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: source.folder + "/config.json", toPath: dir + "/model/config.json")
        let writer = try SafetensorsWriter(path: dir + "/model/model.safetensors", entries: entries)
        for tensor in source.tensorInfos { try writer.write(try source.rawBytes(tensor.name)) }
        try writer.write(try source.rawBytes(table))
        try writer.finish()

        _ = try Converter.convert(source: dir + "/model", output: dir + "/m.flint", options: ConvertOptions(quant: .float(.f32)))
        let file = try FlintFile(path: dir + "/m.flint")
        #expect(file.tensorNames.contains(table))
        #expect(!file.tensorNames.contains(stray))

        // UMT5 declares a table per block: there the same name is a tensor of the model, not ignored.
        let umt5 = try HFModelFolder(path: Self.path("models/umt5-tiny")).config.weightLayout
        #expect(umt5.ignoredReason(ofTensor: stray) == nil)
    }

    @Test func tiedNamesResolveTheSameWayInFoldersAndFlintFiles() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = try HFModelFolder(path: fixture("t5-tiny"))
        _ = try Converter.convert(folder, output: dir + "/m.flint", options: ConvertOptions(quant: .float(.f32)))
        let file = try FlintFile(path: dir + "/m.flint")
        for name in T5WeightLayout.tiedCopyNames + [T5WeightLayout.embeddingName] {
            let a = try folder.tensor(name), b = try file.tensor(name)
            #expect(a.shape == b.shape && Array(a.data) == Array(b.data), "\(name)")
        }
        let layout = folder.config.weightLayout
        #expect(layout.storedName(for: "lm_head.weight", isStored: { $0 == "shared.weight" }) == "shared.weight")
        #expect(layout.storedName(for: "decoder.embed_tokens.weight", isStored: { $0 == "encoder.embed_tokens.weight" })
                == "encoder.embed_tokens.weight")
        let flan = try HFModelFolder(path: fixture("flan-tiny")).config.weightLayout
        #expect(flan.storedName(for: "lm_head.weight", isStored: { $0 == "shared.weight" }) == nil)
    }

    @Test func exportOrderIsHuggingFacesStateDictOrder() throws {
        let layout = try HFModelFolder(path: fixture("flan-tiny")).config.weightLayout
        let names = layout.tensors.map(\.name)
        #expect(layout.exportOrder(names.reversed() + ["zzz.extra", "aaa.extra"]) == names + ["aaa.extra", "zzz.extra"])
        var config = layout.config
        config.numEncoderLayers = 12
        let order = config.weightLayout.exportOrder(["encoder.block.10.layer.0.layer_norm.weight",
                                                     "encoder.block.2.layer.0.layer_norm.weight", "shared.weight"])
        #expect(order == ["shared.weight", "encoder.block.2.layer.0.layer_norm.weight",
                          "encoder.block.10.layer.0.layer_norm.weight"])
    }
}
