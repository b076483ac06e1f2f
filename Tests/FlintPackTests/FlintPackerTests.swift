import Foundation
import Testing
import FlintFormat
@testable import FlintPack
import TestSupport

/// A fresh scratch folder (TestSupport's per-process root), removed by the caller.
private func makeScratchDirectory() throws -> URL {
    URL(fileURLWithPath: scratch("pack"), isDirectory: true)
}

/// Bytes that are partly random (incompressible) and partly repetitive, like weights next to metadata.
private func sampleBytes(count: Int, seed: UInt64) -> Data {
    var state = seed | 1
    var bytes = [UInt8](repeating: 0, count: count)
    for i in stride(from: 0, to: count, by: 8) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        let word = (i / 65536) % 3 == 0 ? UInt64(i / 8 % 7) : state
        for b in 0..<min(8, count - i) { bytes[i + b] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(b))) }
    }
    return Data(bytes)
}

private func leftovers(in dir: URL) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") || $0.contains(".verify-") }
}

@Test func roundTripIsBitForBit() throws {
    let dir = try makeScratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let original = sampleBytes(count: 3 << 20 + 12345, seed: 42)
    let input = dir.appendingPathComponent("m.flint").path
    let packed = input + ".zst"
    let unpacked = dir.appendingPathComponent("back.flint").path
    try original.write(to: URL(fileURLWithPath: input))

    var packProgress: [(Int64, Int64)] = []
    try FlintPacker.pack(input: input, output: packed, level: 3) { packProgress.append(($0, $1)) }
    #expect(try FlintPacker.contentSize(ofPacked: packed) == Int64(original.count))
    let packedSize = try Data(contentsOf: URL(fileURLWithPath: packed)).count
    #expect(packedSize < original.count) // the repetitive third compresses
    #expect(packProgress.last! == (Int64(original.count), Int64(original.count)))
    #expect(zip(packProgress, packProgress.dropFirst()).allSatisfy { $0.0 <= $1.0 })

    var unpackProgress: [(Int64, Int64)] = []
    try FlintPacker.unpack(input: packed, output: unpacked) { unpackProgress.append(($0, $1)) }
    #expect(try Data(contentsOf: URL(fileURLWithPath: unpacked)) == original)
    #expect(unpackProgress.last! == (Int64(packedSize), Int64(packedSize)))
    #expect(try leftovers(in: dir).isEmpty)
}

@Test func emptyFileRoundTrips() throws {
    let dir = try makeScratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let input = dir.appendingPathComponent("empty").path
    _ = FileManager.default.createFile(atPath: input, contents: Data())
    try FlintPacker.pack(input: input, output: input + ".zst")
    #expect(try FlintPacker.contentSize(ofPacked: input + ".zst") == 0)
    try FlintPacker.unpack(input: input + ".zst", output: input + ".back")
    #expect(try Data(contentsOf: URL(fileURLWithPath: input + ".back")).isEmpty)
}

@Test func truncatedFrameIsAnErrorAndLeavesNoOutput() throws {
    let dir = try makeScratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let input = dir.appendingPathComponent("m.flint").path
    try sampleBytes(count: 1 << 20, seed: 7).write(to: URL(fileURLWithPath: input))
    try FlintPacker.pack(input: input, output: input + ".zst", level: 1)
    let packed = try Data(contentsOf: URL(fileURLWithPath: input + ".zst"))
    // Cut in the middle of the data, a few bytes before the end (inside the checksum), and inside the header.
    for keep in [packed.count / 2, packed.count - 3, 7] {
        let cut = dir.appendingPathComponent("cut-\(keep).zst").path
        try packed.prefix(keep).write(to: URL(fileURLWithPath: cut))
        let output = dir.appendingPathComponent("out-\(keep).flint").path
        let error = try #require(throws: FlintError.self) { try FlintPacker.unpack(input: cut, output: output) }
        #expect(error.message.contains(cut), "\(error.message)")
        #expect(error.message.contains("truncated"), "\(error.message)")
        #expect(!FileManager.default.fileExists(atPath: output))
    }
    #expect(try leftovers(in: dir).isEmpty)
}

@Test func garbageAndCorruptInputAreErrors() throws {
    let dir = try makeScratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let garbage = dir.appendingPathComponent("garbage.zst").path
    try Data("FLNT this is not zstd at all".utf8).write(to: URL(fileURLWithPath: garbage))
    let output = dir.appendingPathComponent("out.flint").path
    let notZstd = try #require(throws: FlintError.self) { try FlintPacker.unpack(input: garbage, output: output) }
    #expect(notZstd.message.contains(garbage) && notZstd.message.contains("not a zstd frame"), "\(notZstd.message)")
    #expect(throws: FlintError.self) { try FlintPacker.contentSize(ofPacked: garbage) }

    let empty = dir.appendingPathComponent("empty.zst").path
    _ = FileManager.default.createFile(atPath: empty, contents: Data())
    #expect(throws: FlintError.self) { try FlintPacker.unpack(input: empty, output: output) }

    // A valid header followed by flipped bits in the compressed data: zstd's own error string is included.
    let input = dir.appendingPathComponent("m.flint").path
    try sampleBytes(count: 1 << 20, seed: 9).write(to: URL(fileURLWithPath: input))
    try FlintPacker.pack(input: input, output: input + ".zst", level: 1)
    var packed = try Data(contentsOf: URL(fileURLWithPath: input + ".zst"))
    for i in stride(from: packed.count / 3, to: packed.count / 3 + 64, by: 1) { packed[i] ^= 0x5A }
    let corrupt = dir.appendingPathComponent("corrupt.zst").path
    try packed.write(to: URL(fileURLWithPath: corrupt))
    let corruptError = try #require(throws: FlintError.self) { try FlintPacker.unpack(input: corrupt, output: output) }
    #expect(corruptError.message.contains(corrupt) && corruptError.message.contains("corrupt"), "\(corruptError.message)")
    #expect(!FileManager.default.fileExists(atPath: output))

    let missing = dir.appendingPathComponent("missing.zst").path
    let missingError = try #require(throws: FlintError.self) { try FlintPacker.unpack(input: missing, output: output) }
    #expect(missingError.message.contains(missing))
    #expect(throws: FlintError.self) { try FlintPacker.pack(input: input, output: input + ".x", level: 1000) }
    #expect(throws: FlintError.self) { try FlintPacker.pack(input: input, output: input) }
    #expect(try leftovers(in: dir).isEmpty)
}

@Test func resolveModelPathUnpacksOnceAndReusesTheCache() throws {
    let dir = try makeScratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let model = dir.appendingPathComponent("m.flint").path
    let original = sampleBytes(count: 300_000, seed: 5)
    try original.write(to: URL(fileURLWithPath: model))
    let packed = model + ".zst"
    try FlintPacker.pack(input: model, output: packed, level: 3)

    // Plain paths pass through untouched, without verification.
    var verified: [String] = []
    #expect(try FlintPacker.resolveModelPath(model) { verified.append($0) } == model)
    #expect(verified.isEmpty)

    let cache = try FlintPacker.resolveModelPath(packed) { path in
        // Verification sees the complete file before it is published.
        let seen = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(seen == original)
        #expect(!FileManager.default.fileExists(atPath: packed + ".unpacked.flint"))
        verified.append(path)
    }
    #expect(cache == packed + ".unpacked.flint")
    #expect(verified.count == 1)
    #expect(try Data(contentsOf: URL(fileURLWithPath: cache)) == original)

    // Second call: the cache is reused, no unpacking or verification.
    #expect(try FlintPacker.resolveModelPath(packed) { verified.append($0) } == cache)
    #expect(verified.count == 1)

    // A cache of the wrong size (damaged) is replaced.
    try Data(original.prefix(1000)).write(to: URL(fileURLWithPath: cache))
    #expect(try FlintPacker.resolveModelPath(packed) { verified.append($0) } == cache)
    #expect(verified.count == 2)
    #expect(try Data(contentsOf: URL(fileURLWithPath: cache)) == original)

    // A .zst newer than the cache is unpacked again.
    let later = Date().addingTimeInterval(60)
    try FileManager.default.setAttributes([.modificationDate: later], ofItemAtPath: packed)
    _ = try FlintPacker.resolveModelPath(packed) { verified.append($0) }
    #expect(verified.count == 3)
    #expect(try leftovers(in: dir).isEmpty)
}

@Test func failedVerificationPublishesNothing() throws {
    let dir = try makeScratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let model = dir.appendingPathComponent("m.flint").path
    try sampleBytes(count: 10_000, seed: 1).write(to: URL(fileURLWithPath: model))
    try FlintPacker.pack(input: model, output: model + ".zst")
    #expect(throws: FlintError.self) {
        try FlintPacker.resolveModelPath(model + ".zst") { path in throw FlintError("\(path): checksum mismatch") }
    }
    #expect(!FileManager.default.fileExists(atPath: model + ".zst.unpacked.flint"))
    #expect(try leftovers(in: dir).isEmpty)
}
