// The packed int8 layout in the file (FLINT.md "Tensor layouts"): what the writer stores, what the reader hands
// out, and the records a reader must reject.
import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// Offset of record i's layout byte (after storage type and scheme).
func layoutByteOffset(_ b: [UInt8], record: Int) -> Int { recordFieldOffset(b, record: record).afterName + 2 }

@Suite struct PackedLayoutFormatTests {
    @Test func writerPacksInt8MatricesAndAnnouncesTheFeature() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSample(dir + "/m.flint")
        let f = try FlintFile(path: dir + "/m.flint")
        #expect(f.metadata.requiredFeatures == [PackedInt8Geometry.requiredFeature])
        #expect(f.records.map(\.layout) == [.rowMajor, .int8Packed16x4, .int8Packed16x4])
        let b = try f.tensor("b")
        let geometry = try #require(b.packedGeometry)
        // [4, 6] per-row: one block of 16 × 8 bytes, then 16 int32 sums.
        #expect(b.layout == .int8Packed16x4 && b.data.count == 16 * 8 + 16 * 4 && geometry.groups == 1)
        #expect(try b.withRowMajorInt8 { Array($0) } == (0..<24).map { Int8($0 - 12) })
        let c = try f.tensor("c")
        #expect(try c.withRowMajorInt8 { Array($0) } == (0..<12).map { Int8($0) })
        // Sums of c ([2, 6] in groups of 4): row 0 = 0+1+2+3, 4+5; row 1 = 6+7+8+9, 10+11.
        let cg = try #require(c.packedGeometry)
        #expect(cg.groups == 2 && c.data.count == 16 * 8 + 2 * 16 * 4)
        let cSums = UnsafeRawBufferPointer(rebasing: c.data[cg.weightBytes...])
        #expect(cSums.load(fromByteOffset: 0, as: Int32.self) == 6)       // group 0, lane 0
        #expect(cSums.load(fromByteOffset: 4, as: Int32.self) == 30)      // group 0, lane 1
        #expect(cSums.load(fromByteOffset: 64, as: Int32.self) == 9)      // group 1, lane 0
        #expect(cSums.load(fromByteOffset: 68, as: Int32.self) == 21)     // group 1, lane 1
        try f.verifyChecksums()
    }

    @Test func rowMajorWriterKeepsVersion1Bytes() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try FlintWriter(path: dir + "/m.flint", int8Layout: .rowMajor)
        let q: [Int8] = (0..<24).map { Int8($0 - 12) }
        let s: [Float] = [1, 2, 3, 4]
        try q.withUnsafeBytes { d in try s.withUnsafeBytes { sc in
            try w.addTensor(name: "b", storage: .i8, shape: [4, 6], scheme: .int8Row, data: d, scales: sc) } }
        try w.finish(metadata: FlintMetadata(config: tinyConfig(), tokenizer: nil,
                                             provenance: Provenance(sourceFormat: "test", sourceFiles: [],
                                                                    quantization: QuantizationRecipe(scheme: "int8", keep: [], defaultKeep: true))),
                     tokenizer: nil)
        let f = try FlintFile(path: dir + "/m.flint")
        #expect(f.metadata.requiredFeatures.isEmpty && f.records[0].layout == .rowMajor && f.records[0].dataSize == 24)
    }

    @Test func rejectsBadPackedRecords() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.flint"
        try writeSample(path)
        let original = readBytes(path)

        var b = original
        b[layoutByteOffset(b, record: 1)] = 7
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "tensor \"b\" (record 1 at offset")
        expectError(path, contains: "unknown layout code 7")

        // The f32 tensor marked packed.
        b = original
        b[layoutByteOffset(b, record: 0)] = 1
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "layout packed16x4 needs a 2-D i8 tensor")

        // A packed tensor whose data_size is its row-major size (a file cut to the old layout's size).
        b = original
        putU64(&b, dataOffsetField(b, record: 1) + 8, 24)
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "data_size 24 but shape [4, 6] of i8 in layout packed16x4 needs 192 bytes")

        // A row-major record in a packed-sized region.
        b = original
        b[layoutByteOffset(b, record: 1)] = 0
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "data_size 192 but shape [4, 6] of i8 needs 24 bytes")

        // Packed tensors in a file that does not list the feature: old-reader protection must not be optional.
        b = original
        let feature = Array("\"\(PackedInt8Geometry.requiredFeature)\"".utf8)
        let replacement = Array("\"\(TokenizerInfo.addedTokensFeature)\"".utf8)
        let metadataStart = u64(b, 56), metadataEnd = metadataStart + u64(b, 64)
        let at = try #require((metadataStart..<metadataEnd).first { Array(b[$0..<($0 + feature.count)]) == feature })
        var patched = Array(b[metadataStart..<metadataEnd])
        let local = at - metadataStart
        patched.replaceSubrange(local..<(local + feature.count), with: replacement)
        b.replaceSubrange(metadataStart..<metadataEnd, with: patched)
        // The metadata grew: move the tokenizer section and the file size with it.
        let growth = replacement.count - feature.count
        putU64(&b, 64, UInt64(u64(b, 64) + growth))
        putU64(&b, 72, UInt64(u64(b, 72) + growth))
        putU64(&b, 88, UInt64(u64(b, 88) + growth))
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "tensor \"b\" is stored in layout packed16x4, but required_features does not list \"int8-packed16x4\"")
    }
}
