import Foundation
import Testing
@testable import FlintPack
import TestSupport

/// One .zst unpacked twice in one process (one after another into the same output, and concurrently into two):
/// the zstd contexts are per call, so every copy is the original, and no temporary file is left behind.
@Test func twoUnpacksOfOneArchiveInOneProcess() throws {
    let dir = URL(fileURLWithPath: scratch("pack-twice"), isDirectory: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    var state: UInt64 = 0x2545_F491_4F6C_DD1D
    let original = Data((0..<(1 << 20) + 777).map { i -> UInt8 in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return i % 3 == 0 ? UInt8(i % 251) : UInt8(truncatingIfNeeded: state)
    })
    let input = dir.appendingPathComponent("m.flint").path
    try original.write(to: URL(fileURLWithPath: input))
    try FlintPacker.pack(input: input, output: input + ".zst", level: 3)

    let same = dir.appendingPathComponent("same.flint").path
    for _ in 0..<2 {
        try FlintPacker.unpack(input: input + ".zst", output: same)
        #expect(try Data(contentsOf: URL(fileURLWithPath: same)) == original)
    }
    let outputs = (0..<2).map { dir.appendingPathComponent("parallel-\($0).flint").path }
    let failures = UnsafeSendableBox<[String]>([])
    DispatchQueue.concurrentPerform(iterations: 2) { i in
        do { try FlintPacker.unpack(input: input + ".zst", output: outputs[i]) } catch { failures.append("\(i): \(error)") }
    }
    #expect(failures.value.isEmpty, "\(failures.value)")
    for output in outputs { #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == original, "\(output)") }
    let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }
    #expect(left.isEmpty, "temporary files left: \(left)")
}

/// A lock-protected value the concurrent closures can append to.
final class UnsafeSendableBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.lock(); defer { lock.unlock() }; return stored }
    func append<E>(_ element: E) where T == [E] { lock.lock(); stored.append(element); lock.unlock() }
}
