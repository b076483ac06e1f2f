// What every libFuzzer harness in Fuzz/ shares: the scratch file for readers that take a path, the rule that
// every failure is a thrown FlintError, the libFuzzer driver hand-off and the replay tool of a plain build.
// Each harness keeps only its `fuzzOne` and the two symbols that must live in its own module
// (`LLVMFuzzerTestOneInput` and SwiftPM's `<module>_main` entry point).
import Foundation
import FlintFormat

/// One input must fail, if it fails, with a FlintError: anything else (a crash, another error type) is a finding.
public func expectFlintErrorsOnly(_ body: () throws -> Void) {
    do { try body() } catch is FlintError {} catch { fatalError("non-FlintError thrown: \(error)") }
}

/// The folder of this process's scratch files, removed when the process exits.
private let scratchFolder: String = {
    let dir = NSTemporaryDirectory() + "flint-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "flint-fuzz-\(getpid())") }
    return dir
}()

/// The input written to a per-process scratch file named `name` (readers recognise formats by file name).
public func withScratchFile(_ bytes: UnsafeRawBufferPointer, name: String, _ body: (String) throws -> Void) {
    let path = scratchFolder + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    expectFlintErrorsOnly { try body(path) }
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                                 _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// Hands the process to libFuzzer's driver (called from a harness's `<module>_main`, SwiftPM's entry point).
public func runFuzzerDriver(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                            _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, testOneInput)
}
#else
/// The plain build's replay tool: every file named on the command line goes through `fuzzOne` (a reproducer).
public func replayFiles(_ fuzzOne: (UnsafeRawBufferPointer) -> Void) throws {
    for path in CommandLine.arguments.dropFirst() {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        data.withUnsafeBytes { fuzzOne($0) }
        print("\(path): ok")
    }
}
#endif
