import Testing
import FlintKernels

/// Model tests run once per `KernelISA.allCases`. For an ISA this machine cannot run (or Flint has no kernels for
/// yet) this records a known issue naming the ISA and returns false: the output says "passed with N known issues"
/// and why, instead of passing a test that never ran.
func runsHere(_ isa: KernelISA, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
    if isa.isSupported { return true }
    withKnownIssue("skipped: kernel ISA \(isa) is not supported on this machine", sourceLocation: sourceLocation) {
        Issue.record("kernel ISA \(isa) is not in KernelISA.supported (\(KernelISA.supported.map(\.rawValue).joined(separator: ", ")))",
                     sourceLocation: sourceLocation)
    }
    return false
}

extension KernelISA: CustomTestStringConvertible {
    public var testDescription: String { rawValue }
}
