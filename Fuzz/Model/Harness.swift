// libFuzzer harness (built by `make fuzz` with -sanitize=fuzzer,address -DFUZZING); in a normal build the same
// code is a replay tool: `fuzz-model FILE…` runs each file through it (a crash reproducer).
import Foundation
import FlintFormat
import FlintT5
/// The input written to a per-process scratch file, for readers that take a path.
func withScratchFile(_ bytes: UnsafeRawBufferPointer, name: String, _ body: (String) throws -> Void) {
    let dir = NSTemporaryDirectory() + "flint-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    do { try body(path) } catch is FlintError {} catch { fatalError("non-FlintError thrown: \(error)") }
}
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

// SwiftPM links an executable's entry point as `<module>_main`; here it hands control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

@_cdecl("fuzz_model_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzerTestOneInput)
}
#else
@main struct Replay {
    static func main() throws {
        for path in CommandLine.arguments.dropFirst() {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            data.withUnsafeBytes { fuzzOne($0) }
            print("\(path): ok")
        }
    }
}
#endif
