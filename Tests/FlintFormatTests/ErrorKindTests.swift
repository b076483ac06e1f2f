import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// FlintError.Kind: what went wrong, for callers and tests to branch on, with today's messages unchanged.
@Suite struct ErrorKindTests {
    func kind(_ path: String) -> FlintError.Kind? {
        do {
            _ = try FlintFile(path: path)
            return nil
        } catch let e as FlintError {
            return e.kind
        } catch {
            return nil
        }
    }

    @Test func unclassifiedErrorsKeepComparingByMessage() {
        let plain = FlintError("m: bad")
        #expect(plain.kind == .other)
        #expect(FlintError(.corrupt, "m: bad") == plain)
        #expect(FlintError(.corrupt, "m: bad").with(message: "x: m: bad").kind == .corrupt)
    }

    @Test func readerKinds() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.flint"
        #expect(kind(dir + "/absent.flint") == .notFound)
        try writeSample(path)
        let good = readBytes(path)
        writeBytes(path, Array(good.dropLast(10)))
        #expect(kind(path) == .corrupt)  // truncated
        var b = good
        b[1] = 0x47
        writeBytes(path, b)
        #expect(kind(path) == .corrupt)  // bad magic
        b = good
        b[8] = 2
        writeBytes(path, b)
        #expect(kind(path) == .unsupported)  // newer format version
        b = good
        b[u64(b, 40) + 8] ^= 0x01
        writeBytes(path, b)
        #expect(kind(path) == .corrupt)  // sections checksum
        try writeSample(path, requiredFeatures: ["int4-blocks"])
        #expect(kind(path) == .unsupported)
        try writeSample(path)
        let file = try FlintFile(path: path)
        do {
            _ = try file.tensor("nope")
            Issue.record("found a tensor named nope")
        } catch let e as FlintError {
            #expect(e.kind == .notFound)
        }
    }

    @Test func configAndShapeKinds() throws {
        var c = tinyConfig()
        c.dModel = 0
        do { try c.validate(); Issue.record("accepted d_model 0") } catch let e as FlintError {
            #expect(e.kind == .invalidConfig)
            #expect(e.message == "config: d_model must be positive, got 0")
        }
        let layout = tinyConfig().weightLayout
        let stored = layout.tensors.map { ($0.name, $0.shape) }
        try layout.check(stored: stored, source: "m")
        var wrong = stored
        wrong[1].1 = [1]
        let shape = try #require(throws: FlintError.self) { try layout.check(stored: wrong, source: "m") }
        #expect(shape.kind == .shapeMismatch)
        let missing = try #require(throws: FlintError.self) { try layout.check(stored: Array(stored.dropFirst()), source: "m") }
        #expect(missing.kind == .notFound)
        let unknown = try #require(throws: FlintError.self) { try layout.check(stored: stored + [("x.weight", [1])], source: "m") }
        #expect(unknown.kind == .unsupported)
    }

    @Test func writerArgumentKinds() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try FlintWriter(path: dir + "/m.flint")
        let values: [Float] = [1, 2, 3]
        do {
            try values.withUnsafeBytes { try w.addTensor(name: "a", storage: .f32, shape: [4], scheme: .none, data: $0) }
            Issue.record("a 3-value tensor of shape [4] was accepted")
        } catch let e as FlintError {
            #expect(e.kind == .shapeMismatch)
        }
        do {
            try values.withUnsafeBytes { try w.addTensor(name: "", storage: .f32, shape: [3], scheme: .none, data: $0) }
            Issue.record("an empty name was accepted")
        } catch let e as FlintError {
            #expect(e.kind == .invalidArgument)
        }
    }
}
