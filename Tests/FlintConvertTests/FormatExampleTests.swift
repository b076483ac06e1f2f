// Formats/FLINT.md ends with a worked example: flan-tiny converted to int8. The numbers there are what a reader
// of the spec checks their own parser against, so they must be what the current writer produces. Only the layout
// numbers are checked (sections, offsets, sizes); they depend on the shapes, the recipe's storage choices and the
// layouts, not on the calibration statistics, whose JSON is most of the metadata section.
import Foundation
import Testing
import TestSupport
import FlintConvert
import FlintFormat

@Suite struct FormatExampleTests {
    @Test func theSpecExampleIsWhatTheWriterProduces() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // `flint convert … --quant int8`: every linear int8 (no default keep-list), packed layout 1.
        _ = try Converter.convert(source: fixture("flan-tiny"), output: dir + "/flan-tiny.flint",
                                  options: ConvertOptions(quant: .int8(.int8Row), useDefaultKeep: false))
        let file = try FlintFile(path: dir + "/flan-tiny.flint")
        let h = file.header
        #expect(h.formatVersion == 1)
        #expect(h.tensorCount == 52)
        #expect((h.dataOffset, h.dataSize) == (128, 194_560))
        #expect((h.tableOffset, h.tableSize) == (194_688, 6099))
        #expect(h.metadataOffset == 200_787)
        #expect(h.tokenizerSize == 255_783)
        #expect(h.tokenizerOffset == h.metadataOffset + h.metadataSize)
        #expect(h.fileSize == h.tokenizerOffset + h.tokenizerSize)
        #expect(file.metadata.requiredFeatures == ["int8-packed16x4"])

        let first = try #require(file.records.first)
        #expect(first.name == "decoder.block.0.layer.0.SelfAttention.k.weight")
        #expect((first.storage, first.scheme, first.layout) == (.i8, .int8Row, .int8Packed16x4))
        #expect(first.shape == [32, 40])
        #expect((first.dataOffset, first.dataSize, first.scaleOffset, first.scaleSize) == (128, 1408, 179_072, 128))
        #expect(file.records[1].dataOffset == 1536)

        let norm = try #require(file.record("decoder.block.0.layer.0.layer_norm.weight"))
        #expect((norm.storage, norm.scheme, norm.layout) == (.f32, QuantScheme.none, .rowMajor))
        #expect((norm.dataOffset, norm.dataSize, norm.scaleOffset, norm.scaleSize) == (6592, 160, 0, 0))

        let shared = try #require(file.record("shared.weight"))
        #expect(shared.shape == [1104, 40])
        #expect((shared.dataOffset, shared.dataSize, shared.scaleOffset, shared.scaleSize) == (130_496, 48_576, 190_272, 4416))
        // The element regions end where the first scale region starts.
        #expect(file.records.map { $0.dataOffset + $0.dataSize }.max() == 179_072)
        #expect(file.records.filter { $0.scaleSize > 0 }.map(\.scaleOffset).min() == 179_072)
    }
}
