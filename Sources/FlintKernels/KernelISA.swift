// Which instruction set the kernels run on, chosen per call (or per layer / per model), never by a process-wide
// switch: a model built for `.portable` and one built for `.avx512` can run side by side in one process, which is
// how the tests hold every kernel path to the same goldens on one machine.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FlintFormat
internal import CFlintKernels

/// A family of kernel implementations. Every kernel entry point takes one; a kernel without an implementation for
/// the ISA it is given (for example a group size the vector kernel cannot handle) runs the portable Swift code, so
/// the answer is the same, only slower. An ISA this CPU cannot execute is never executed: callers that can throw
/// reject it (`validate()`), and the non-throwing hot loops fall back to portable.
public enum KernelISA: String, CaseIterable, Sendable, CustomStringConvertible {
    /// x86-64 AVX-512 F/BW/VL/DQ with VNNI (Ice Lake, Zen 4 and later): the C kernels in CFlintKernels.
    case avx512
    /// x86-64 AVX2 + FMA (x86-64-v3: most laptops and cloud VMs), int8 dot products with AVX-VNNI `vpdpbusd` on
    /// ymm registers where the CPU has it (Alder Lake, Zen 5 …): CFlintKernels/Avx2Kernels.c.
    case avx2
    /// AArch64 NEON, int8 dot products with `sdot` where the CPU has it (ARMv8.2+): CFlintKernels/NeonKernels.c.
    case neon
    /// The Swift kernels: every CPU, the reference the vector kernels are tested against.
    case portable

    public var description: String { rawValue }

    /// The ISAs this CPU and OS can run and Flint has kernels for, best first; `.portable` is always last.
    public static var supported: [KernelISA] { detected.supported }

    /// The ISA the kernels use unless told otherwise: the best supported one, or the one the environment variable
    /// `FLINT_ISA` (`avx512`, `avx2`, `neon`, `portable`) names. A named ISA this machine cannot run is clamped to
    /// `.portable`; an unknown name is ignored. Either case prints one warning on stderr per process.
    public static var preferred: KernelISA { detected.preferred }

    /// Whether this machine can run the ISA's kernels (`supported.contains(self)`), answered without allocating.
    public var isSupported: Bool {
        switch self {
        case .portable: return true
        case .avx512: return KernelISA.avx512Available
        case .avx2: return KernelISA.avx2Available
        case .neon: return KernelISA.neonAvailable
        }
    }

    /// A FlintError naming the ISA and what this machine supports when it is not supported here.
    public func validate() throws {
        guard isSupported else {
            throw FlintError("kernel ISA \(rawValue) is not supported on this machine (supported: \(KernelISA.supported.map(\.rawValue).joined(separator: ", ")))")
        }
    }

    /// `self` when supported, else `.portable` (for the non-throwing kernel calls).
    @inline(__always)
    var runnable: KernelISA { isSupported ? self : .portable }

    /// The AVX-512 kernels need both the float (F/DQ) and the int8 (BW/VL + VNNI) features; a CPU with AVX-512 F
    /// but no VNNI (Skylake-X) is treated as having none, so `.avx512` always means every AVX-512 kernel runs.
    static let avx512Available: Bool = flint_int8_native_available() != 0 && flint_f32_native_available() != 0

    static let avx2Available: Bool = flint_isa_supported(Int32(FLINT_ISA_AVX2)) != 0
    static let neonAvailable: Bool = flint_isa_supported(Int32(FLINT_ISA_NEON)) != 0

    /// Whether this ISA's W8A8 kernel uses a dot-product instruction here (AVX-512 VNNI, AVX-VNNI, `sdot`) rather
    /// than widening multiplies; false for portable and for ISAs this CPU lacks.
    public var hasDotProduct: Bool {
        switch self {
        case .portable: return false
        case .avx512: return isSupported
        case .avx2: return isSupported && flint_isa_has_dot_product(Int32(FLINT_ISA_AVX2)) != 0
        case .neon: return isSupported && flint_isa_has_dot_product(Int32(FLINT_ISA_NEON)) != 0
        }
    }

    /// A one-line description of what runs, e.g. `avx2 (AVX-VNNI dot products)`, for `flint --version` / bench.
    public var summary: String {
        switch self {
        case .portable: return "portable (Swift)"
        case .avx512: return "avx512 (AVX-512 VNNI)"
        case .avx2: return hasDotProduct ? "avx2 (AVX2 + FMA, AVX-VNNI dot products)" : "avx2 (AVX2 + FMA)"
        case .neon: return hasDotProduct ? "neon (NEON, sdot dot products)" : "neon (NEON)"
        }
    }

    /// The CPU's name as it reports it (the x86 brand string), or "unknown CPU".
    public static var cpuName: String { String(cString: flint_cpu_name()) }

    private static let detected: (supported: [KernelISA], preferred: KernelISA) = {
        let supported = allCases.filter { $0 != .portable && $0.isSupported } + [.portable]
        return (supported, preference(environment: getenv("FLINT_ISA").map { String(cString: $0) },
                                      supported: supported, warn: { warning in
                                          fputs("flint: warning: \(warning)\n", stderr)
                                      }))
    }()

    /// The ISA `FLINT_ISA=value` selects given `supported` (best first); `warn` receives the reason when the value
    /// is unknown or not supported here. Separate from the process environment so tests can check every case.
    static func preference(environment value: String?, supported: [KernelISA],
                           warn: (String) -> Void) -> KernelISA {
        let best = supported.first ?? .portable
        guard let value, !value.isEmpty else { return best }
        guard let named = KernelISA(rawValue: value.lowercased()) else {
            warn("FLINT_ISA=\(value) is not one of \(allCases.map(\.rawValue).joined(separator: ", ")); using \(best)")
            return best
        }
        guard supported.contains(named) else {
            warn("FLINT_ISA=\(value): this machine cannot run \(named) kernels; using portable")
            return .portable
        }
        return named
    }
}
