// StreamedHalfLinear (half-precision weights widened tile by tile inside forward, for the block-streamed float
// reference) must give exactly FloatLinear's numbers over the widened matrix: calibration statistics and verify's
// reference must not depend on how the weight was widened.
import Foundation
import Testing
import FlintFormat
import FlintQuant
@testable import FlintKernels

@Suite struct StreamedHalfLinearTests {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 500 - 2
        }
    }

    /// (rows of x, outFeatures, inFeatures): several tiles of 64 W rows with a ragged last tile and an
    /// outFeatures that is not a multiple of 4; long rows (fewer W rows per tile); a matrix-vector product; more
    /// x rows than half weights multiply in registers (the widened-tile path).
    static let shapes = [(5, 150, 96), (1, 37, 100), (9, 130, 20_000), (4, 64, 33), (40, 70, 100)]

    @Test(arguments: KernelISA.allCases, shapes)
    func tilesGiveFloatLinearsNumbers(isa: KernelISA, shape: (Int, Int, Int)) throws {
        guard runsHere(isa) else { return }
        let (rows, n, k) = shape
        let x = random(rows * k, seed: 3)
        for storage in [StorageType.bf16, .f16] {
            let bits = random(n * k, seed: 4).map { storage == .bf16 ? HalfConversion.bf16Bits($0) : HalfConversion.f16Bits($0) }
            try bits.withUnsafeBytes { bytes in
                let view = TensorView(name: "w", storage: storage, shape: [n, k], data: bytes, owner: nil)
                let streamed = try StreamedHalfLinear(view, outFeatures: n, inFeatures: k, isa: isa)
                #expect(streamed.tileRows % 4 == 0 && streamed.tileRows <= 64)
                #expect(streamed.tileRows * k * 4 <= 4 << 20 || streamed.tileRows == 4)
                let widened = FloatLinear(weight: try TensorConversion.floatStorage(view), outFeatures: n, inFeatures: k,
                                          isa: isa)
                for pool in [nil, ThreadPool(threads: 2)] as [ThreadPool?] {
                    var expected = [Float](repeating: .nan, count: rows * n), got = expected
                    x.withUnsafeBufferPointer { xp in
                        expected.withUnsafeMutableBufferPointer { widened.forward(xp.baseAddress!, rows: rows, into: $0.baseAddress!, pool: pool) }
                        got.withUnsafeMutableBufferPointer { streamed.forward(xp.baseAddress!, rows: rows, into: $0.baseAddress!, pool: pool) }
                    }
                    #expect(got.map(\.bitPattern) == expected.map(\.bitPattern),
                            "\(storage) \(shape) isa \(isa) threads \(pool?.threadCount ?? 1)")
                }
            }
        }
    }

    @Test func refusesWhatItCannotStream() throws {
        let values = [Float](repeating: 1, count: 8)
        values.withUnsafeBytes { bytes in
            let f32 = TensorView(name: "w32", storage: .f32, shape: [2, 4], data: bytes, owner: nil)
            #expect(throws: FlintError.self) { try StreamedHalfLinear(f32, outFeatures: 2, inFeatures: 4) }
            let short = TensorView(name: "short", storage: .bf16, shape: [4, 4], data: UnsafeRawBufferPointer(rebasing: bytes[0..<16]), owner: nil)
            #expect(throws: FlintError.self) { try StreamedHalfLinear(short, outFeatures: 4, inFeatures: 4) }
        }
    }

    /// Both half formats (a `where` that covered only the last pattern of `case .f16, .bf16 where …` once sent
    /// only bf16 to its branch): widened at load where the kernels would widen every tile at each step (portable),
    /// used in place with their pages kept where they multiply in registers, and with their pages handed back only
    /// when streamed (handing them back in a resident model made every decode step fault them in again).
    @Test(arguments: [StorageType.f16, .bf16])
    func factoryChoosesHowHalfWeightsMultiply(_ storage: StorageType) throws {
        let one: UInt16 = storage == .f16 ? HalfConversion.f16Bits(1) : HalfConversion.bf16Bits(1)
        let bits = [UInt16](repeating: one, count: 8)
        try bits.withUnsafeBytes { bytes in
            let view = TensorView(name: "w", storage: storage, shape: [2, 4], data: bytes, owner: nil)
            #expect(try LinearFactory.make(view, expectedShape: [2, 4], isa: .portable) is FloatLinear, "\(storage)")
            for isa in KernelISA.allCases where isa.isSupported {
                let streamed = try LinearFactory.make(view, expectedShape: [2, 4], isa: isa, streamHalfPrecision: true)
                #expect((streamed as? StreamedHalfLinear)?.releasesPages == true, "\(storage) \(isa)")
                // AVX-512, AVX2 (with F16C) and NEON multiply half weights in registers.
                #expect(StreamedHalfLinear.multipliesInRegisters(on: isa) == (isa != .portable), "\(isa)")
                let resident = try LinearFactory.make(view, expectedShape: [2, 4], isa: isa)
                if isa == .portable {
                    #expect(resident is FloatLinear)
                } else {
                    #expect((resident as? StreamedHalfLinear)?.releasesPages == false, "\(storage) \(isa)")
                }
            }
        }
    }
}
