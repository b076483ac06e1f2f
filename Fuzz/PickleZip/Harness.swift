// libFuzzer harness (built by `make fuzz` with -sanitize=fuzzer,address -DFUZZING); in a normal build the same
// code is a replay tool: `fuzz-picklezip FILE…` runs each file through it (a crash reproducer).
import Foundation
import FlintFormat
import FlintCheckpoint
/// The input written to a per-process scratch file, for readers that take a path.
func withScratchFile(_ bytes: UnsafeRawBufferPointer, name: String, _ body: (String) throws -> Void) {
    let dir = NSTemporaryDirectory() + "flint-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    do { try body(path) } catch is FlintError {} catch { fatalError("non-FlintError thrown: \(error)") }
}

/// One input: every error must be a thrown FlintError, never a crash, a hang or a huge allocation.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    withScratchFile(bytes, name: "pytorch_model.bin") { path in
        let f = try PyTorchBinFile(path: path)
        for info in f.tensorInfos { _ = try? f.tensor(info.name) }
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

@_cdecl("fuzz_pickle_zip_main")
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
