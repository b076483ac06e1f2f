// Widening a bf16/f16 tensor that lies in a mapped file hands the file's pages back at once: the float32 copy is
// all a layer uses, and calibrating or verifying bf16 flan-t5-xxl streams 0.5 GB decoder blocks whose source
// pages would otherwise stay resident beside their 1 GB copies until the block is dropped.
#if os(Linux)
import Foundation
import Testing
import FlintFormat
@testable import FlintKernels

/// Resident kilobytes of the mapping of this process that contains `address` (/proc/self/smaps "Rss:").
private func residentKB(containing address: UnsafeRawPointer) throws -> Int? {
    // /proc files report size 0, so read until end of file rather than by their size.
    let fd = open("/proc/self/smaps", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    let text = String(decoding: bytes, as: UTF8.self)
    let target = UInt(bitPattern: Int(bitPattern: address))
    var inside = false
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
            let bounds = range.split(separator: "-")
            if bounds.count == 2, let lo = UInt(bounds[0], radix: 16), let hi = UInt(bounds[1], radix: 16) {
                inside = lo <= target && target < hi
                continue
            }
        }
        if inside, fields.first == "Rss:", fields.count >= 2 { return Int(fields[1]) }
    }
    return nil
}

/// A rows × cols matrix of 1.0 in `storage`, written to a temporary file and mapped (the file is unlinked at once;
/// the mapping, which the view owns, stays valid).
private func mappedOnes(_ storage: StorageType, rows: Int, cols: Int, tag: String) throws -> TensorView {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-\(getpid())-\(storage).bin").path
    defer { unlink(path) }
    // 1.0 in bf16 is 0x3F80, in f16 0x3C00.
    let one: UInt16 = storage == .bf16 ? 0x3F80 : 0x3C00
    let bits = [UInt16](repeating: one.littleEndian, count: rows * cols)
    try bits.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
    let file = try MappedFile(path: path)
    return TensorView(name: "w", storage: storage, shape: [rows, cols], data: file.bytes, owner: file)
}

@Suite struct WidenedPagesTests {
    @Test(arguments: [StorageType.bf16, .f16])
    func wideningReleasesTheMappedSourcePages(_ storage: StorageType) throws {
        let rows = 512, cols = 1024  // 1 MiB of 16-bit values: 256 pages
        let view = try mappedOnes(storage, rows: rows, cols: cols, tag: "widen")
        let weight = view.data.baseAddress!
        // Touch every page first (the high byte of a value, never 0 here), as reading the tensor does.
        var sum = 0
        for offset in stride(from: 1, to: view.data.count, by: 4096) { sum &+= Int(view.data[offset]) }
        #expect(sum != 0)
        let before = try #require(try residentKB(containing: weight))
        #expect(before >= 1000, "the touched mapping should be resident (\(before) kB)")

        let widened = try TensorConversion.floatStorage(view)
        #expect(widened.buffer.allSatisfy { $0 == 1 })
        let after = try #require(try residentKB(containing: weight))
        #expect(after <= 8, "after widening the source mapping still holds \(after) kB resident")
    }

    /// A streamed half-precision linear (the block streamer's) widens a tile at a time inside forward and hands the
    /// stored pages back as it goes: after a multiply nothing of the 4 MiB weight is left resident, and nothing
    /// was widened at load (its only float32 memory is a tile per thread during forward).
    @Test(arguments: [StorageType.bf16, .f16])
    func streamedLinearReleasesTheMappedPagesItMultiplied(_ storage: StorageType) throws {
        let rows = 2048, cols = 1024  // 4 MiB of 16-bit values: half the per-thread release step
        let view = try mappedOnes(storage, rows: rows, cols: cols, tag: "stream")
        let weight = view.data.baseAddress!
        let linear = try LinearFactory.make(view, expectedShape: [rows, cols], streamHalfPrecision: true)
        #expect(linear is StreamedHalfLinear)
        let untouched = try residentKB(containing: weight) ?? 0
        #expect(untouched <= 8, "making the layer touched \(untouched) kB of the weight")
        for threads in [1, 2] {
            let x = [Float](repeating: 0.5, count: 3 * cols)
            var y = [Float](repeating: 0, count: 3 * rows)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { linear.forward(xp.baseAddress!, rows: 3, into: $0.baseAddress!, pool: ThreadPool(threads: threads)) }
            }
            #expect(y.allSatisfy { $0 == Float(cols) / 2 })
            let after = try #require(try residentKB(containing: weight))
            #expect(after <= 8, "after a multiply on \(threads) threads the weight still holds \(after) kB resident")
        }
    }

    /// A resident model's half-precision linear where the kernels multiply half weights in registers (AVX-512, AVX2,
    /// NEON): used in place, so making it touches none of the weight and a multiply leaves the pages it read mapped
    /// (handing them back, as the block streamer's does, would make every decode step of a resident model fault
    /// them in again).
    @Test(arguments: [StorageType.bf16, .f16], KernelISA.allCases.filter { $0.isSupported && StreamedHalfLinear.multipliesInRegisters(on: $0) })
    func inPlaceHalfLinearKeepsTheMappedPagesItMultiplied(_ storage: StorageType, isa: KernelISA) throws {
        let rows = 2048, cols = 1024  // 4 MiB of 16-bit values
        let view = try mappedOnes(storage, rows: rows, cols: cols, tag: "inplace-\(isa)")
        let weight = view.data.baseAddress!
        let linear = try LinearFactory.make(view, expectedShape: [rows, cols], isa: isa)
        #expect((linear as? StreamedHalfLinear)?.releasesPages == false)
        let untouched = try residentKB(containing: weight) ?? 0
        #expect(untouched <= 8, "making the layer touched \(untouched) kB of the weight")
        let x = [Float](repeating: 0.5, count: 3 * cols)
        var y = [Float](repeating: 0, count: 3 * rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { linear.forward(xp.baseAddress!, rows: 3, into: $0.baseAddress!, pool: ThreadPool(threads: 2)) }
        }
        #expect(y.allSatisfy { $0 == Float(cols) / 2 })
        let after = try #require(try residentKB(containing: weight))
        #expect(after >= rows * cols * 2 / 1024 * 9 / 10, "after a multiply only \(after) kB of the 4096 kB weight are resident")
    }
}
#endif
