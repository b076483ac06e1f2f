// libFuzzer harness (built by `make fuzz` with -sanitize=fuzzer,address -DFUZZING); in a normal build the same
// code is a replay tool: `fuzz-model FILE…` runs each file through it (a crash reproducer).
import Foundation
import FlintFormat
import FuzzSupport
import FlintT5
/// Makes a mutated .flint pass the header checks a fuzzer cannot solve (file_size, sections checksum), so
/// mutations reach the table, metadata, config and the model built from them.
func fixedUp(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    var b = Array(bytes)
    guard b.count >= 128 else { return b }
    func u64(_ o: Int) -> Int { Int(truncatingIfNeeded: b.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }) }
    func put(_ o: Int, _ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<8 { b[o + i] = $0[i] } } }
    put(88, UInt64(b.count))
    var sum = XXH64()
    for (off, size) in [(u64(40), u64(48)), (u64(56), u64(64)), (u64(72), u64(80))] {
        guard off >= 0, size >= 0, off <= b.count, size <= b.count - off else { return b }
        b.withUnsafeBytes { sum.update(UnsafeRawBufferPointer(rebasing: $0[off..<(off + size)])) }
    }
    put(96, sum.finalize())
    return b
}

/// One input: every error must be a thrown FlintError, never a crash, a hang or a huge allocation.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    let b = fixedUp(bytes)
    b.withUnsafeBytes { fixed in
        withScratchFile(fixed, name: "m.flint") { path in
            let f = try FlintFile(path: path)
            let model = try T5ForConditionalGeneration(weights: f, pool: nil)
            _ = try model.generate(inputIds: [5, 6, 1], options: GenerationOptions(maxNewTokens: 2))
        }
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("fuzz_model_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzerDriver(argc, argv, fuzzerTestOneInput)
}
#else
@main struct Replay {
    static func main() throws { try replayFiles(fuzzOne) }
}
#endif
