// libFuzzer harness (built by `make fuzz` with -sanitize=fuzzer,address -DFUZZING); in a normal build the same
// code is a replay tool: `fuzz-flintfile FILE…` runs each file through it (a crash reproducer).
import Foundation
import FlintFormat
import FuzzSupport

/// One input: every error must be a thrown FlintError, never a crash, a hang or a huge allocation.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    withScratchFile(bytes, name: "m.flint") { path in
        let f = try FlintFile(path: path)
        for name in f.tensorNames { _ = try f.tensor(name) }
        try f.verifyChecksums()
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("fuzz_flint_file_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzerDriver(argc, argv, fuzzerTestOneInput)
}
#else
@main struct Replay {
    static func main() throws { try replayFiles(fuzzOne) }
}
#endif
