import Testing
import FlintFormat
@testable import FlintKernels

@Suite struct KernelISATests {
    @Test func supportedEndsWithPortableAndPreferredIsSupported() {
        let supported = KernelISA.supported
        #expect(supported.last == .portable)
        #expect(Set(supported).count == supported.count)
        #expect(supported.contains(KernelISA.preferred))
        for isa in KernelISA.allCases { #expect(isa.isSupported == supported.contains(isa), "\(isa)") }
        // Each architecture claims only its own paths; every AVX-512 VNNI CPU has AVX2 + FMA too.
        #if arch(x86_64)
        #expect(!supported.contains(.neon))
        if supported.contains(.avx512) { #expect(supported.contains(.avx2)) }
        #elseif arch(arm64)
        #expect(supported.contains(.neon) && !supported.contains(.avx2) && !supported.contains(.avx512))
        #endif
    }

    @Test func environmentOverride() {
        var warnings: [String] = []
        let both: [KernelISA] = [.avx512, .portable]
        #expect(KernelISA.preference(environment: nil, supported: both, warn: { warnings.append($0) }) == .avx512)
        #expect(KernelISA.preference(environment: "", supported: both, warn: { warnings.append($0) }) == .avx512)
        #expect(KernelISA.preference(environment: "portable", supported: both, warn: { warnings.append($0) }) == .portable)
        #expect(KernelISA.preference(environment: "AVX512", supported: both, warn: { warnings.append($0) }) == .avx512)
        #expect(warnings.isEmpty)
        // Named but not runnable here: clamped to portable, with a warning.
        #expect(KernelISA.preference(environment: "neon", supported: both, warn: { warnings.append($0) }) == .portable)
        #expect(warnings.count == 1 && warnings[0].contains("neon"))
        #expect(KernelISA.preference(environment: "avx512", supported: [.portable], warn: { warnings.append($0) }) == .portable)
        #expect(warnings.count == 2)
        // Unknown: ignored (the best supported), with a warning naming the value.
        #expect(KernelISA.preference(environment: "sse9", supported: both, warn: { warnings.append($0) }) == .avx512)
        #expect(warnings.count == 3 && warnings[2].contains("sse9"))
    }

    @Test func validateNamesTheISA() {
        for isa in KernelISA.allCases where !isa.isSupported {
            #expect(throws: FlintError.self) { try isa.validate() }
        }
        #expect(throws: Never.self) { try KernelISA.portable.validate() }
    }
}
