// The packed int4 layout in the file (FLINT.md layout 2, storage i4, scheme 3): where every nibble and scale lives,
// what the writer stores and announces, and the records a reader must reject.
import Foundation
import Testing
@testable import FlintFormat

/// Writes `a` (f32 [3, 5]) and `w`, an int4-g32 [19, 40] matrix with values (r·7 + c) mod 16 − 8 and
/// scale bits 0x3C00 + r·g (1.0 and up), returning the values and scale bits it packed.
private func writeInt4Sample(_ path: String) throws -> (q: [Int8], scales: [UInt16]) {
    let w = try FlintWriter(path: path)
    let a: [Float] = (0..<15).map { Float($0) }
    try a.withUnsafeBytes { try w.addTensor(name: "a", storage: .f32, shape: [3, 5], scheme: .none, data: $0) }
    let geometry = try #require(PackedInt4Geometry(shape: [19, 40], scheme: .int4Group(32)))
    let q: [Int8] = (0..<(19 * 40)).map { (i: Int) -> Int8 in
        let r = i / 40, c = i % 40
        return Int8((r * 7 + c) % 16 - 8)
    }
    let scales: [UInt16] = (0..<(19 * 2)).map { UInt16(0x3C00 + $0) }
    var packed = [UInt8](repeating: 0, count: geometry.byteCount)
    q.withUnsafeBufferPointer { qp in scales.withUnsafeBufferPointer { sp in
        packed.withUnsafeMutableBytes { geometry.pack(qp, scaleBits: sp, into: $0) } } }
    try packed.withUnsafeBytes {
        try w.addTensor(name: "w", storage: .i4, shape: [19, 40], scheme: .int4Group(32), data: $0, layout: .int4Packed16x8)
    }
    try w.finish(metadata: FlintMetadata(config: tinyConfig(), tokenizer: nil,
                                         provenance: Provenance(sourceFormat: "test", sourceFiles: [],
                                                                quantization: QuantizationRecipe(scheme: "int4-g32", keep: [], defaultKeep: true))),
                 tokenizer: nil)
    return (q, scales)
}

@Suite struct Int4FormatTests {
    @Test func geometryMatchesTheSpec() throws {
        // [19, 40] in groups of 32: 2 blocks of 16 rows, 2 groups (64 padded columns).
        let g = try #require(PackedInt4Geometry(shape: [19, 40], scheme: .int4Group(32)))
        #expect(g.blocks == 2 && g.groups == 2 && g.paddedCols == 64 && g.blockBytes == 512)
        #expect(g.codeBytes == 1024 && g.scaleCount == 64 && g.byteCount == 1024 + 128)
        // Element (17, 13): block 1, chunk 1, lane 1, j 1, high nibble (13 & 4).
        #expect(g.location(row: 17, col: 13) == (512 + 64 + 4 + 1, true))
        #expect(g.location(row: 2, col: 3) == (8 + 3, false))
        #expect(g.scaleIndex(row: 17, group: 1) == (1 * 2 + 1) * 16 + 1)
        // 4.5 bits per weight at g32 for a whole-block matrix.
        let big = try #require(PackedInt4Geometry(shape: [768, 2048], scheme: .int4Group(32)))
        #expect(Double(big.byteCount * 8) / Double(768 * 2048) == 4.5)
        #expect(PackedInt4Geometry(shape: [768, 2048], scheme: .int4Group(128))!.byteCount * 8 == 768 * 2048 * 4 + 768 * 16 * 16)
        // Only 2-D int4 with groups of 32, 64, 128.
        #expect(PackedInt4Geometry(shape: [4, 64], scheme: .int4Group(16)) == nil)
        #expect(PackedInt4Geometry(shape: [4, 64], scheme: .int8Group(32)) == nil)
        #expect(PackedInt4Geometry(shape: [64], scheme: .int4Group(32)) == nil)
    }

    @Test func writerStoresPackedInt4AndAnnouncesTheFeature() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (q, scales) = try writeInt4Sample(dir + "/m.flint")
        let f = try FlintFile(path: dir + "/m.flint")
        #expect(f.metadata.requiredFeatures == [PackedInt4Geometry.requiredFeature])
        let r = try #require(f.record("w"))
        #expect(r.storage == .i4 && r.scheme == .int4Group(32) && r.layout == .int4Packed16x8)
        #expect(r.dataSize == 1152 && r.scaleSize == 0 && r.scaleOffset == 0)
        let view = try f.tensor("w")
        let g = try #require(PackedInt4Geometry(shape: view.shape, scheme: view.scheme))
        var values = [Int8](repeating: 0, count: 19 * 40)
        var bits = [UInt16](repeating: 0, count: 19 * 2)
        values.withUnsafeMutableBufferPointer { v in bits.withUnsafeMutableBufferPointer { s in g.unpack(view.data, values: v, scaleBits: s) } }
        #expect(values == q && bits == scales)
        // Padding: rows 19…31 and columns 40…63 hold code 8 (q = 0); padding scales are 0.
        #expect(view.data[g.location(row: 25, col: 3).byte] == 0x88)
        #expect(view.data[g.location(row: 0, col: 60).byte] == 0x88)
        #expect(g.scaleBits(view.data, row: 20, group: 0) == 0)
        // Spot check of one byte: (0, 0) low = q 0 + 8 = -8 + 8 → 0; (0, 4) high = (4 − 8) + 8 = 4.
        #expect(view.data[0] == 0x40)
        try f.verifyChecksums()
    }

    @Test func writerRefusesInconsistentInt4() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try FlintWriter(path: dir + "/m.flint")
        defer { w.abandon() }
        let bytes = [UInt8](repeating: 0x88, count: 1152)
        #expect(throws: FlintError.self) {
            try bytes.withUnsafeBytes { try w.addTensor(name: "x", storage: .i4, shape: [19, 40], scheme: .int4Group(32), data: $0) }
        }
        #expect(throws: FlintError.self) {
            try bytes.withUnsafeBytes { try w.addTensor(name: "y", storage: .i4, shape: [19, 40], scheme: .int4Group(64), data: $0, layout: .int4Packed16x8) }
        }
        #expect(throws: FlintError.self) {
            try bytes.withUnsafeBytes { try w.addTensor(name: "z", storage: .i8, shape: [19, 40], scheme: .int4Group(32), data: $0, layout: .int4Packed16x8) }
        }
    }

    @Test func rejectsBadInt4Records() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.flint"
        _ = try writeInt4Sample(path)
        let original = readBytes(path)
        let fields = recordFieldOffset(original, record: 1).afterName  // storage, scheme, layout, reserved, group_size

        func patched(_ change: (inout [UInt8]) -> Void) {
            var b = original
            change(&b)
            fixSectionsChecksum(&b)
            writeBytes(path, b)
        }
        patched { $0[fields + 4] = 48 }  // group_size 48
        expectError(path, contains: "scheme 3 (int4 groups) with group_size 48; expected one of 32, 64, 128")
        patched { $0[fields + 4] = 64 }  // group_size 64: the data size no longer matches
        expectError(path, contains: "data_size 1152 but shape [19, 40] of i4 in layout int4-packed16x8 needs 1088 bytes")
        patched { $0[fields + 2] = 0 }   // row-major int4 does not exist
        expectError(path, contains: "int4 needs storage i4, scheme int4-gG and layout int4-packed16x8")
        patched { $0[fields] = 3 }       // i8 codes with the int4 scheme
        expectError(path, contains: "scheme 3 (int4 groups) needs storage i4, found i8")
        patched { $0[fields + 1] = 2 }   // i4 codes with an int8 scheme
        expectError(path, contains: "scheme 2 (int8 groups) needs storage i8, found i4")
        patched { $0[fields + 1] = 0 }   // i4 with no scheme
        expectError(path, contains: "storage i4 needs a quantization scheme")
        patched { $0[fields] = 5 }
        expectError(path, contains: "unknown storage type code 5 (this flint knows 0…4)")
        patched { putU64(&$0, dataOffsetField($0, record: 1) + 8, 19 * 40 / 2) }  // data_size of an unpadded matrix
        expectError(path, contains: "needs 1152 bytes")

        // An int4 tensor in a file that does not list the feature.
        var b = original
        let feature = Array("\"\(PackedInt4Geometry.requiredFeature)\"".utf8)
        let replacement = Array("\"\(TokenizerInfo.addedTokensFeature)\"".utf8)
        let metadataStart = u64(b, 56), metadataEnd = metadataStart + u64(b, 64)
        let at = try #require((metadataStart..<metadataEnd).first { Array(b[$0..<($0 + feature.count)]) == feature })
        b.replaceSubrange(at..<(at + feature.count), with: replacement)
        let growth = replacement.count - feature.count
        putU64(&b, 64, UInt64(u64(b, 64) + growth))
        putU64(&b, 72, UInt64(u64(b, 72) + growth))
        putU64(&b, 88, UInt64(u64(b, 88) + growth))
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "tensor \"w\" is stored in layout int4-packed16x8, but required_features does not list \"int4-packed16x8\"")

        // A reader that predates int4 rejects the file by its feature: the feature name is what it checks.
        #expect(FlintLayout.knownFeatures.contains("int4-packed16x8"))
    }
}
