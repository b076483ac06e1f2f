import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintQuant

func fixture(_ name: String) -> String { packageRoot + "/Tests/Fixtures/models/" + name }

func bytes(_ v: TensorView) -> [UInt8] { Array(v.data) }

@Suite struct ConvertTests {
    @Test(arguments: ["flan-tiny", "t5-tiny", "t5-encoder", "t5-vocab32k"])
    func float32ConvertThenExportIsBitIdentical(model: String) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try HFModelFolder(path: fixture(model))
        let report = try Converter.convert(source, output: dir + "/m.flint", options: ConvertOptions(quant: .float(.f32)))
        #expect(report.tensors.allSatisfy { $0.scheme == "f32" })
        let flint = try FlintFile(path: dir + "/m.flint")
        try flint.verifyChecksums()
        #expect(flint.config == source.config)
        #expect(flint.tokenizerModel == source.tokenizerModel)
        _ = try Exporter.export(flint, to: dir + "/back.safetensors")
        let back = try SafetensorsFile(path: dir + "/back.safetensors")
        // Every tensor the source stored comes back under its name with the same bytes.
        #expect(Set(back.tensorNames) == Set(source.tensorInfos.map(\.name)))
        for info in source.tensorInfos {
            let original = try source.tensor(info.name)
            let exported = try back.tensor(info.name)
            #expect(exported.shape == original.shape, "\(info.name)")
            #expect(original.storage == .f32, "fixture tensors are float32")
            #expect(bytes(exported) == bytes(original), "\(info.name) differs after f32 convert → export")
        }
    }

    @Test func int8IsSmallAndListsEveryTensor() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try HFModelFolder(path: fixture("flan-tiny"))
        let report = try Converter.convert(source, output: dir + "/m.flint", options: ConvertOptions())
        let flint = try FlintFile(path: dir + "/m.flint")
        try flint.verifyChecksums()
        var quantizedIn = 0, quantizedOut = 0
        for r in flint.records {
            if r.storage == .i8 {
                #expect(r.scheme == .int8Row)
                quantizedIn += r.elementCount * 4
                // The packed layout's padding and weight sums (4 bytes per row: 10 % of a 40-wide tiny row) are
                // kernel data, not int8 values: the share counts the values and scales.
                #expect(r.layout == .int8Packed16x4)
                quantizedOut += r.elementCount + r.scaleSize
                let snr = try #require(flint.metadata.quantizationError[r.name] ?? nil)
                #expect(snr > 30, "\(r.name) SNR \(snr) dB")
            }
        }
        #expect(quantizedIn > 0)
        #expect(Double(quantizedOut) < 0.30 * Double(quantizedIn), "int8 share \(quantizedOut) of \(quantizedIn)")
        // FLAN-style: the FFN output projections stay f32, norms and position bias stay float.
        for name in flint.tensorNames {
            let r = flint.record(name)!
            if name.hasSuffix("DenseReluDense.wo.weight") || name.contains("layer_norm") || name.contains("relative_attention_bias") {
                #expect(r.storage == .f32, "\(name) should stay f32")
            }
        }
        #expect(report.keptFloat.contains("encoder.block.0.layer.1.DenseReluDense.wo.weight"))
        #expect(flint.metadata.provenance.quantization.scheme == "int8")
        #expect(flint.metadata.provenance.sourceFormat == "safetensors")
    }

    @Test func groupSchemesAndNoDefaultKeep() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try HFModelFolder(path: fixture("flan-tiny"))
        // d_model 40 is not a multiple of 32: the last group of each row is short.
        _ = try Converter.convert(source, output: dir + "/g32.flint",
                                  options: ConvertOptions(quant: .int8(.int8Group(32)), useDefaultKeep: false))
        let flint = try FlintFile(path: dir + "/g32.flint")
        let wo = try flint.tensor("encoder.block.0.layer.1.DenseReluDense.wo.weight")
        #expect(wo.scheme == .int8Group(32))
        let q = try flint.tensor("encoder.block.0.layer.0.SelfAttention.q.weight")
        #expect(q.shape == [32, 40] && q.scales.count == 32 * 2)
        // Dequantized values are close to the originals.
        let original = try TensorDecoding.floats(try source.tensor(q.name))
        let restored = try TensorDecoding.floats(q)
        #expect(QuantError.snrDB(original: original, reconstructed: restored) > 35)
    }

    @Test func shardedAndSingleGiveTheSameTensors() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Converter.convert(source: fixture("flan-tiny"), output: dir + "/a.flint", options: ConvertOptions())
        _ = try Converter.convert(source: fixture("flan-tiny-sharded"), output: dir + "/b.flint", options: ConvertOptions())
        let a = try FlintFile(path: dir + "/a.flint"), b = try FlintFile(path: dir + "/b.flint")
        #expect(Set(a.tensorNames) == Set(b.tensorNames))
        for r in a.records { #expect(b.record(r.name)?.checksum == r.checksum, "\(r.name)") }
    }

    @Test func keepRulesAndHalfTypes() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = ConvertOptions(quant: .int8(.int8Row),
                                     keepRules: [try KeepRule(parsing: "shared.weight=f16"), try KeepRule(parsing: "*.EncDecAttention.*=bf16")])
        let report = try Converter.convert(source: fixture("flan-tiny"), output: dir + "/k.flint", options: options)
        let flint = try FlintFile(path: dir + "/k.flint")
        #expect(flint.record("shared.weight")?.storage == .f16)
        #expect(flint.record("decoder.block.1.layer.1.EncDecAttention.k.weight")?.storage == .bf16)
        let shared = try #require(report.tensors.first { $0.name == "shared.weight" })
        #expect(shared.snrDB.map { $0 > 50 } == true, "f16 keeps ~60 dB")
    }

    @Test func tiedModelStoresSharedOnce() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try HFModelFolder(path: fixture("t5-tiny"))
        _ = try Converter.convert(source, output: dir + "/t.flint", options: ConvertOptions())
        let flint = try FlintFile(path: dir + "/t.flint")
        #expect(flint.config.tieWordEmbeddings && flint.config.scaleDecoderOutputs)
        #expect(flint.record("lm_head.weight") == nil || flint.metadata.aliases["lm_head.weight"] != nil)
        #expect(try flint.tensor("lm_head.weight").name == "shared.weight")
    }

    @Test func missingSourceIsAClearError() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try Converter.convert(source: dir + "/nope", output: dir + "/x.flint", options: ConvertOptions())
            Issue.record("expected an error")
        } catch let e as FlintError {
            #expect(e.message.contains("nope"))
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.flint"))
    }
}
