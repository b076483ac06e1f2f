// `flint convert --quant int4-gG` end to end on the committed fixtures: the default int4 recipe's decisions, the
// stored bytes against the float source, and `flint export` giving float tensors back.
import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintQuant

@Suite struct Int4ConvertTests {
    @Test(arguments: [32, 64, 128])
    func int4ConvertThenExport(groupSize: Int) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try HFModelFolder(path: fixture("flan-tiny"))
        // As a smoothed conversion would (no float wo): the int4 defaults keep the embedding int8, wo is int4.
        let report = try Converter.convert(source, output: dir + "/m.flint",
                                           options: ConvertOptions(quant: .int4(groupSize), useDefaultKeep: false))
        let flint = try FlintFile(path: dir + "/m.flint")
        try flint.verifyChecksums()
        #expect(flint.metadata.requiredFeatures.contains(PackedInt4Geometry.requiredFeature))
        #expect(flint.metadata.provenance.quantization.scheme == "int4-g\(groupSize)")
        var int4Count = 0
        for r in flint.records {
            if r.name == "shared.weight" {
                #expect(r.storage == .i8 && r.scheme == .int8Row, "\(r.name): default int4 recipe keeps it int8")
                #expect(report.tensors.first { $0.name == r.name }?.keptBecause?.contains("default int4 recipe") == true)
            } else if r.shape.count == 2 && !r.name.hasSuffix("relative_attention_bias.weight") {
                #expect(r.storage == .i4 && r.scheme == .int4Group(groupSize) && r.layout == .int4Packed16x8, "\(r.name)")
                #expect(r.dataSize == PackedInt4Geometry(shape: r.shape, scheme: r.scheme)!.byteCount && r.scaleSize == 0)
                int4Count += 1
            } else {
                #expect(r.storage == .f32, "\(r.name)")
            }
        }
        #expect(int4Count > 0)
        #expect(report.keptFloat.allSatisfy { !$0.hasSuffix(".weight") || flint.record($0)?.storage == .f32 })

        // Export: every tensor comes back as float32, the int4 ones as q × scale, close to the source.
        _ = try Exporter.export(flint, to: dir + "/back.safetensors")
        let back = try SafetensorsFile(path: dir + "/back.safetensors")
        #expect(Set(back.tensorNames) == Set(source.tensorInfos.map(\.name)))
        for r in flint.records where r.storage == .i4 {
            let exported = try back.tensor(r.name)
            #expect(exported.storage == .f32 && exported.shape == r.shape)
            let values = Array(exported.data.bindMemory(to: Float.self))
            let original = try TensorDecoding.floats(try source.tensor(r.name))
            #expect(values == (try TensorDecoding.floats(try flint.tensor(r.name))), "\(r.name): export = dequantized file")
            let snr = QuantError.snrDB(original: original, reconstructed: values)
            #expect(snr > 14, "\(r.name): \(snr) dB against the source")
            let recorded = try #require(flint.metadata.quantizationError[r.name] ?? nil)
            #expect(abs(recorded - snr) < 1e-6, "\(r.name): recorded SNR \(recorded) vs measured \(snr)")
        }
    }

    @Test func int4FileIsAboutHalfTheInt8File() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try HFModelFolder(path: fixture("demo"))
        let int8 = try Converter.convert(source, output: dir + "/int8.flint", options: ConvertOptions(useDefaultKeep: false))
        let int4 = try Converter.convert(source, output: dir + "/int4.flint",
                                         options: ConvertOptions(quant: .int4(32), schemeRules: [try SchemeRule(parsing: "*=int4-g32")],
                                                                 useDefaultKeep: false))
        let weights8 = int8.tensors.filter { $0.scheme == "int8" }.reduce(0) { $0 + $1.bytesOut }
        let weights4 = int4.tensors.filter { $0.scheme == "int4-g32" }.reduce(0) { $0 + $1.bytesOut }
        let elements = int4.tensors.filter { $0.scheme == "int4-g32" }.reduce(0) { $0 + $1.bytesIn / 4 }
        // The demo's matrices are multiples of 128 wide: exactly 4.5 bits per weight at g32.
        #expect(Double(weights4 * 8) / Double(elements) == 4.5)
        #expect(Double(weights4) < 0.6 * Double(weights8))
    }
}
