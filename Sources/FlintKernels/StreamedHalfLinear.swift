// A half-precision weight multiplied straight from its stored bytes, in two roles:
//  - the block-streamed float reference (calibration, verify's streamed reference): widening a whole bf16 xxl
//    decoder block to float32 at load cost 1 GB of fresh memory per block, written once and read once per decode
//    step, and the 32128 × 4096 output head alone is 526 MB of float32. A few W rows at a time are widened (or,
//    at decode sizes on AVX-512, AVX2 and NEON, multiplied in registers) just before they are used, and the
//    stored pages are handed back as the pass moves on (`releasesPages`), so resident memory is the tiles plus the
//    pages in use;
//  - ordinary loads of f16 / bf16 files where the kernels multiply half weights in registers (AVX-512, AVX2 with
//    F16C, NEON): the mapped weights are used in place and stay resident, as int8 ones do. Widened to float32 at
//    load instead, a flan-t5-small f16 or bf16 file (172 MB) loaded in 174-786 ms and peaked at 353-359 MB with a
//    512-token prompt (over its 1.15 × file + 64 MB = 261 MB); in place it loads in 42-46 ms, peaks at 250-253
//    MB, and decodes 82-86 -> 120-125 tok/s at 1 thread, 151-164 -> 217-235 at 2 (half the bytes per step; AVX-512
//    on Zen 4, 3 alternating rounds), prefill unchanged. The AVX2 path (FLINT_ISA=avx2, same machine, f16): decode
//    90-92 -> 114-117 tok/s (1 thread), 157-171 -> 213-219 (2), load 181-191 -> 45-55 ms, peak RSS 356-358 ->
//    248-251 MB. Handing the pages back there would make every step fault them in.
internal import CFlintKernels
import FlintFormat
import FlintQuant

/// A f16 / bf16 linear weight widened tile by tile inside `forward`. Every output is the same float32 dot
/// product, summed in the same order, as `FloatLinear` over the widened matrix computes (tiles start at
/// multiples of the kernels' 4-column groups), so results are bit-identical; only memory and time differ.
public final class StreamedHalfLinear: LinearWeight, @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let isa: KernelISA
    /// W rows widened together: the kernels' 64-column cache block, fewer for very long rows (≤ 4 MB of float32
    /// per tile), always a multiple of 4.
    public let tileRows: Int
    /// Whether the stored pages are handed back after each multiply (block streaming) or stay mapped (a resident
    /// model using its weights in place).
    public let releasesPages: Bool
    /// Stored bytes multiplied before their mapped pages are handed back (per thread).
    static let releaseBytes = 8 << 20
    private let view: TensorView

    public init(_ view: TensorView, outFeatures: Int, inFeatures: Int, isa: KernelISA = .preferred,
                releasesPages: Bool = true) throws {
        guard view.storage == .f16 || view.storage == .bf16, view.scheme == .none, view.layout == .rowMajor else {
            throw FlintError("tensor \(view.name): StreamedHalfLinear needs plain f16 or bf16 storage, found \(view.storage) \(view.scheme)")
        }
        let (count, overflow) = outFeatures.multipliedReportingOverflow(by: inFeatures)
        guard outFeatures >= 0, inFeatures >= 0, !overflow, view.data.count == count * 2 else {
            throw FlintError("tensor \(view.name): \(view.storage) [\(outFeatures), \(inFeatures)] needs \(count * 2) bytes, found \(view.data.count)")
        }
        self.view = view
        self.releasesPages = releasesPages
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.isa = isa.runnable
        let fitting = (4 << 20) / max(1, inFeatures * 4)
        tileRows = max(4, min(64, fitting) / 4 * 4)
    }

    /// bf16 and f16 weights multiply in registers (`flint_bf16_xwt`, `flint_f16_xwt` and the AVX2 / NEON paths'
    /// kernels of those names) up to this many x rows:
    /// decode steps, where the weights' memory traffic is the cost. More rows are compute-bound, where widening a
    /// tile once and running the float32 kernel over it does fewer operations per multiply-add.
    static let inRegisterRows = 32
    static let halfInRegisters: Bool = flint_bf16_native_available() != 0

    /// Whether layers running `isa` multiply half weights in registers at decode sizes (so that using them in place
    /// costs no widening per step).
    public static func multipliesInRegisters(on isa: KernelISA) -> Bool {
        switch isa.runnable {
        case .avx512: return halfInRegisters
        case .avx2, .neon: return true  // the paths' own checks (AVX2 needs F16C) are part of `runnable`
        case .portable: return false
        }
    }

    /// The in-register kernel of `isa` (one where `multipliesInRegisters(on:)`) for this weight's storage.
    private static func inRegisterKernel(_ storage: StorageType, isa: KernelISA)
        -> (UnsafePointer<Float>?, Int64, Int64, UnsafePointer<UInt16>?, Int64, Int64, Int64, UnsafeMutablePointer<Float>?, Int64) -> Void {
        switch (isa, storage == .bf16) {
        case (.avx2, true): return flint_avx2_bf16_xwt
        case (.avx2, false): return flint_avx2_f16_xwt
        case (.neon, true): return flint_neon_bf16_xwt
        case (.neon, false): return flint_neon_f16_xwt
        case (_, true): return flint_bf16_xwt
        case (_, false): return flint_f16_xwt
        }
    }

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        guard rows > 0, outFeatures > 0 else { return }
        if Self.multipliesInRegisters(on: isa), rows <= Self.inRegisterRows,
           Int(bitPattern: view.data.baseAddress!) % 2 == 0 {
            return forwardInRegisters(x, rows: rows, into: y, pool: pool)
        }
        let tiles = (outFeatures + tileRows - 1) / tileRows
        let (k, n, tileRows, storage, isa, releasesPages) = (inFeatures, outFeatures, tileRows, view.storage, isa, releasesPages)
        let data = view.data
        let rowBytes = k * 2
        let work: (Range<Int>) -> Void = { range in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, tileRows * k))
            defer { scratch.deallocate() }
            var unreleased = range.lowerBound * tileRows * rowBytes
            for t in range {
                let first = t * tileRows, count = min(tileRows, n - first)
                let bytes = UnsafeRawBufferPointer(rebasing: data[(first * rowBytes)..<((first + count) * rowBytes)])
                // Sizes were checked at init: decode cannot fail here.
                try! HalfConversion.decode(bytes, storage: storage,
                                           into: UnsafeMutableBufferPointer(start: scratch, count: count * k))
                MatrixMultiply.multiplyTransposed(x: x, rows: rows, w: scratch, outFeatures: count, inFeatures: k,
                                                  y: y + first, yStride: n, pool: nil, isa: isa)
                let end = (first + count) * rowBytes
                if releasesPages, end - unreleased >= Self.releaseBytes || t == range.upperBound - 1 {
                    releaseMappedPages(UnsafeRawBufferPointer(rebasing: data[unreleased..<end]))
                    unreleased = end
                }
            }
        }
        if let pool, tiles > 1 {
            pool.parallelFor(tiles, minimumPerThread: 1, work)
        } else {
            work(0..<tiles)
        }
    }

    /// Slabs of W rows (about `releaseBytes` of half weights each, a multiple of 4 rows) multiplied in registers with the
    /// columns split over the pool as `MatrixMultiply` splits them, each slab's pages handed back after it when
    /// `releasesPages`.
    private func forwardInRegisters(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
                                    pool: ThreadPool?) {
        let (k, n) = (inFeatures, outFeatures)
        let rowBytes = k * 2
        let slabRows = max(4, Self.releaseBytes / max(1, rowBytes) / 4 * 4)
        let w = view.data.baseAddress!.assumingMemoryBound(to: UInt16.self)
        let multiply = Self.inRegisterKernel(view.storage, isa: isa)
        let minimumColumns = max(4, 65_536 / max(1, rows * k))
        var first = 0
        while first < n {
            let end = min(n, first + slabRows)
            let work: (Range<Int>) -> Void = { columns in
                multiply(x, Int64(rows), Int64(k), w, Int64(k), Int64(first + columns.lowerBound),
                         Int64(first + columns.upperBound), y, Int64(n))
            }
            if let pool {
                pool.parallelFor(end - first, granularity: 4, minimumPerThread: minimumColumns, work)
            } else {
                work(0..<(end - first))
            }
            if releasesPages {
                releaseMappedPages(UnsafeRawBufferPointer(rebasing: view.data[(first * rowBytes)..<(end * rowBytes)]))
            }
            first = end
        }
    }
}
