import Testing
@testable import FlintCLI

/// `flint bench`'s peak RSS comes from /proc/self/status, where a value of 8 digits or more follows the tab with
/// no space: an int8 flan-t5-xxl run (10.8 GB) was reported as 0 MB.
@Suite struct StatusFieldTests {
    @Test func readsSmallAndLargeValues() {
        let status = "Name:\tflint\nVmPeak:\t13000000 kB\nVmHWM:\t10821744 kB\nVmRSS:\t   95812 kB\n"
        #expect(statusKilobytes(status, field: "VmHWM") == 10_821_744)
        #expect(statusKilobytes(status, field: "VmRSS") == 95_812)
        #expect(statusKilobytes(status, field: "VmSwap") == nil)
    }
}
