import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// A small two-tensor model config for format tests.
func tinyConfig() -> T5Config {
    T5Config(dModel: 8, dKV: 4, dFF: 16, numHeads: 2, numEncoderLayers: 1, numDecoderLayers: 1, vocabSize: 10,
             activation: .geluNew, isGatedFFN: true, tieWordEmbeddings: false, scaleDecoderOutputs: false)
}

/// A scratch folder under the test process's root (Tests/Support), removed when the process exits.
func tempDir() -> String { scratch("format") }

/// Writes a file with one f32 tensor `a` [3, 5], one int8 tensor `b` [4, 6] with row scales, one int8 g4 tensor
/// `c` [2, 6] and a tokenizer blob.
func writeSample(_ path: String, aliases: [String: String] = [:], requiredFeatures: [String] = []) throws {
    let w = try FlintWriter(path: path)
    let a: [Float] = (0..<15).map { Float($0) * 0.5 - 3 }
    try a.withUnsafeBytes { try w.addTensor(name: "a", storage: .f32, shape: [3, 5], scheme: .none, data: $0) }
    let b: [Int8] = (0..<24).map { Int8($0 - 12) }
    let bs: [Float] = [0.1, 0.2, 0.3, 0.4]
    try b.withUnsafeBytes { d in try bs.withUnsafeBytes { s in
        try w.addTensor(name: "b", storage: .i8, shape: [4, 6], scheme: .int8Row, data: d, scales: s) } }
    let c: [Int8] = (0..<12).map { Int8($0) }
    let cs: [Float] = [1, 2, 3, 4]  // 2 rows × ceil(6/4) groups
    try c.withUnsafeBytes { d in try cs.withUnsafeBytes { s in
        try w.addTensor(name: "c", storage: .i8, shape: [2, 6], scheme: .int8Group(4), data: d, scales: s) } }
    let meta = FlintMetadata(
        config: tinyConfig(), tokenizer: TokenizerInfo(),
        provenance: Provenance(sourceFormat: "safetensors", sourceFiles: [SourceFile(name: "model.safetensors", bytes: 123)],
                               quantization: QuantizationRecipe(scheme: "int8", keep: [], defaultKeep: true)),
        aliases: aliases, quantizationError: ["b": 40.5, "c": nil], requiredFeatures: requiredFeatures)
    try w.finish(metadata: meta, tokenizer: [1, 2, 3, 4, 5])
}

/// A file with one f32 tensor `a` [4] and the given config, required features and generation settings (the
/// metadata rules' tests vary only those).
func writeOneTensorFile(_ path: String, config: T5Config = tinyConfig(), requiredFeatures: [String] = [],
                        generation: GenerationDefaults? = nil) throws {
    let w = try FlintWriter(path: path)
    let a: [Float] = [1, 2, 3, 4]
    try a.withUnsafeBytes { try w.addTensor(name: "a", storage: .f32, shape: [4], scheme: .none, data: $0) }
    let meta = FlintMetadata(
        config: config, tokenizer: nil,
        provenance: Provenance(sourceFormat: "safetensors", sourceFiles: [],
                               quantization: QuantizationRecipe(scheme: "f32", keep: [], defaultKeep: true)),
        requiredFeatures: requiredFeatures, generation: generation)
    try w.finish(metadata: meta, tokenizer: nil)
}

func readBytes(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path)!) }
func writeBytes(_ path: String, _ bytes: [UInt8]) { FileManager.default.createFile(atPath: path, contents: Data(bytes)) }

func u64(_ b: [UInt8], _ off: Int) -> Int { b.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: off, as: UInt64.self))) } }
func putU64(_ b: inout [UInt8], _ off: Int, _ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<8 { b[off + i] = $0[i] } } }

/// Recomputes the sections checksum after a test edited the table or metadata, so the edit reaches the rule
/// under test instead of being caught by the checksum.
func fixSectionsChecksum(_ b: inout [UInt8]) {
    var h = XXH64()
    for (o, s) in [(40, 48), (56, 64), (72, 80)] {
        let off = u64(b, o), size = u64(b, s)
        b.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[off..<(off + size)])) }
    }
    putU64(&b, 96, h.finalize())
}

/// Offset of record `i`'s field block after the name (storage type byte).
func recordFieldOffset(_ b: [UInt8], record: Int) -> (start: Int, afterName: Int) {
    var p = u64(b, 40)
    for _ in 0..<record { p += Int(b[p]) | Int(b[p + 1]) << 8 | Int(b[p + 2]) << 16 }
    let nameLength = Int(b[p + 4]) | Int(b[p + 5]) << 8
    return (p, p + 6 + nameLength)
}

/// Offset of `data_offset` in record i (after the dims).
func dataOffsetField(_ b: [UInt8], record: Int) -> Int {
    let (_, f) = recordFieldOffset(b, record: record)
    let nDims = Int(b[f + 8])
    return f + 12 + 8 * nDims
}

func expectError(_ path: String, contains fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try FlintFile(path: path)
        Issue.record("expected an error containing \"\(fragment)\"", sourceLocation: sourceLocation)
    } catch let e as FlintError {
        #expect(e.message.contains(fragment), "\(e.message)", sourceLocation: sourceLocation)
        #expect(e.message.contains(path), "error should name the file: \(e.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct XXH64Tests {
    @Test func knownVectors() {
        #expect(XXH64.hash([]) == 0xEF46_DB37_51D8_E999)
        #expect(XXH64.hash(Array("abc".utf8)) == 0x44BC_2CF5_AD77_0999)
        // 39 bytes crosses a 32-byte stripe and exercises every tail path.
        #expect(XXH64.hash(Array("Nobody inspects the spammish repetition".utf8)) == 0xFBCEA83C8A378BF1)
    }

    @Test func streamingEqualsOneShot() {
        let bytes: [UInt8] = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = XXH64.hash(bytes)
        for split in [0, 1, 7, 31, 32, 33, 100, 999, 1000] {
            var h = XXH64()
            bytes.withUnsafeBytes { b in
                h.update(UnsafeRawBufferPointer(rebasing: b[0..<split]))
                // Feed the rest in uneven pieces.
                var p = split
                var step = 5
                while p < b.count { let e = min(b.count, p + step); h.update(UnsafeRawBufferPointer(rebasing: b[p..<e])); p = e; step = step * 3 % 41 + 1 }
            }
            #expect(h.finalize() == whole, "split at \(split)")
        }
    }
}

@Suite struct FlintFileTests {
    @Test func roundTrip() throws {
        let dir = tempDir()
        let path = dir + "/m.flint"
        try writeSample(path, aliases: ["encoder.embed_tokens.weight": "a"])
        let f = try FlintFile(path: path)
        #expect(f.header.formatVersion == 1)
        #expect(f.tensorNames == ["a", "b", "c"])
        #expect(f.config == tinyConfig())
        #expect(f.tokenizerModel == [1, 2, 3, 4, 5])
        #expect(f.metadata.quantizationError["b"] == 40.5)
        #expect(f.metadata.quantizationError["c"] == .some(nil))
        let a = try f.tensor("a")
        #expect(a.storage == .f32 && a.shape == [3, 5])
        #expect(Array(a.data.bindMemory(to: Float.self)) == (0..<15).map { Float($0) * 0.5 - 3 })
        let b = try f.tensor("b")
        #expect(b.scheme == .int8Row && Array(b.scales) == [0.1, 0.2, 0.3, 0.4])
        for r in f.records {
            #expect(r.dataOffset % 64 == 0)
            if r.scaleSize > 0 { #expect(r.scaleOffset % 64 == 0) }
        }
        let c = try f.tensor("c")
        #expect(c.scheme == .int8Group(4) && c.scales.count == 4)
        // Alias resolves to its target.
        #expect(try f.tensor("encoder.embed_tokens.weight").name == "a")
        try f.verifyChecksums()
        // No temporary file left beside the output.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["m.flint"])
        #expect(throws: FlintError.self) { try f.tensor("missing") }
    }

    @Test func writingIsDeterministic() throws {
        let dir = tempDir()
        try writeSample(dir + "/1.flint")
        try writeSample(dir + "/2.flint")
        #expect(readBytes(dir + "/1.flint") == readBytes(dir + "/2.flint"))
    }

    @Test func abandonedWriterLeavesNothing() throws {
        let dir = tempDir()
        do {
            let w = try FlintWriter(path: dir + "/x.flint")
            let d: [Float] = [1, 2]
            try d.withUnsafeBytes { try w.addTensor(name: "t", storage: .f32, shape: [2], scheme: .none, data: $0) }
            // Wrong byte count is refused and the writer can be abandoned.
            #expect(throws: FlintError.self) {
                try d.withUnsafeBytes { try w.addTensor(name: "u", storage: .f32, shape: [3], scheme: .none, data: $0) }
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    @Test func rejectsTruncated() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        b.removeLast(10)
        writeBytes(path, b)
        expectError(path, contains: "truncated")
        writeBytes(path, Array(b.prefix(50)))
        expectError(path, contains: "too short")
    }

    @Test func rejectsTrailingBytes() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        writeBytes(path, readBytes(path) + [0, 0, 0])
        expectError(path, contains: "trailing bytes")
    }

    @Test func rejectsBadMagicAndNewerVersion() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        b[1] = 0x47
        writeBytes(path, b)
        expectError(path, contains: "not a .flint file")
        b = readBytes(path); b[1] = 0x46; b[8] = 2
        writeBytes(path, b)
        expectError(path, contains: "format version 2")
    }

    @Test func rejectsCorruptedTableThroughSectionsChecksum() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        b[u64(b, 40) + 8] ^= 0x01
        writeBytes(path, b)
        expectError(path, contains: "sections checksum mismatch")
    }

    @Test func rejectsMisalignedTensor() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        let field = dataOffsetField(b, record: 0)
        putU64(&b, field, UInt64(u64(b, field) + 4))
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "is not aligned to 64")
    }

    @Test func rejectsOverlappingTensors() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        // Point tensor "b"'s data at tensor "a"'s.
        let aData = u64(b, dataOffsetField(b, record: 0))
        putU64(&b, dataOffsetField(b, record: 1), UInt64(aData))
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "overlaps")
    }

    @Test func rejectsOutOfBoundsTensor() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        putU64(&b, dataOffsetField(b, record: 2), UInt64(b.count + 64) / 64 * 64)
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "outside the data section")
    }

    @Test func rejectsWrongByteLength() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        let field = dataOffsetField(b, record: 0)
        putU64(&b, field + 8, 59)
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "data_size 59 but shape [3, 5] of f32 needs 60 bytes")
    }

    @Test func rejectsUnknownStorageAndScheme() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        let (_, f) = recordFieldOffset(b, record: 0)
        b[f] = 9
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "unknown storage type code 9")
        b[f] = 0; b[f + 1] = 1  // f32 storage with the int8 scheme
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "needs storage i8")
    }

    @Test func rejectsUnknownRequiredFeature() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path, requiredFeatures: ["int4-blocks"])
        expectError(path, contains: "requires features this flint does not implement: int4-blocks")
    }

    @Test func rejectsBadChecksumWhenAsked() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        let bData = u64(b, dataOffsetField(b, record: 1))
        b[bData + 3] ^= 0xFF
        writeBytes(path, b)
        // Opening does not read tensor bytes; verifying does.
        let f = try FlintFile(path: path)
        do {
            try f.verifyChecksums()
            Issue.record("checksum mismatch not detected")
        } catch let e as FlintError {
            #expect(e.message.contains("tensor \"b\"") && e.message.contains("checksum mismatch"), "\(e.message)")
        }
    }

    @Test func rejectsDuplicateNames() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        var b = readBytes(path)
        // Rename "b" to "a" (same length).
        let (start, _) = recordFieldOffset(b, record: 1)
        b[start + 6] = UInt8(ascii: "a")
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "duplicate tensor name \"a\"")
    }

    @Test func rejectsEmptyAndNonFlint() throws {
        let path = tempDir() + "/m.flint"
        writeBytes(path, [])
        expectError(path, contains: "too short")
        writeBytes(path, Array(repeating: 0x41, count: 300))
        expectError(path, contains: "not a .flint file")
    }
}

@Suite struct ReleaseMappedPagesTests {
    @Test func heapMemoryIsLeftAlone() {
        // A page-sized heap buffer: dropping its pages would zero it; the registry must refuse.
        let count = 3 * 4096
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 4096)
        defer { p.deallocate() }
        for i in 0..<count { p[i] = UInt8(truncatingIfNeeded: i % 251 + 1) }
        releaseMappedPages(UnsafeRawBufferPointer(p))
        #expect((0..<count).allSatisfy { p[$0] == UInt8(truncatingIfNeeded: $0 % 251 + 1) })
    }

    @Test func mappedPagesReadBackAfterRelease() throws {
        let path = tempDir() + "/m.flint"
        try writeSample(path)
        let f = try FlintFile(path: path)
        let before = Array(try f.tensor("b").data)
        releaseMappedPages(try f.tensor("b").data)
        #expect(Array(try f.tensor("b").data) == before)
        try f.verifyChecksums()
    }
}
