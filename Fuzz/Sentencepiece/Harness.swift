// libFuzzer harness (built by `make fuzz` with -sanitize=fuzzer,address -DFUZZING); in a normal build the same
// code is a replay tool: `fuzz-sentencepiece FILE…` runs each file through it (a crash reproducer).
import Foundation
import FlintFormat
import FuzzSupport
import FlintTokenizer

/// One input: every error must be a thrown FlintError, never a crash, a hang or a huge allocation.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    expectFlintErrorsOnly {
        let t = try T5Tokenizer(modelBytes: Array(bytes))
        let ids = t.encode("Hello <extra_id_0> wörld, 12 3!")
        _ = t.decode(ids, skipSpecialTokens: false)
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("fuzz_sentencepiece_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzerDriver(argc, argv, fuzzerTestOneInput)
}
#else
@main struct Replay {
    static func main() throws { try replayFiles(fuzzOne) }
}
#endif
