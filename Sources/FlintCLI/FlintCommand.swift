import ArgumentParser
import FlintFormat
import FlintKernels

public struct FlintCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "flint",
        abstract: "Convert, quantize, run and verify T5 / FLAN-T5 models in single memory-mapped .flint files.",
        // The kernel path this process runs (FLINT_ISA forces one, clamped to what the CPU has) and the ones it could.
        version: "\(FlintVersion.version)\nkernels: \(KernelISA.preferred.summary) on \(KernelISA.cpuName) "
            + "(supported: \(KernelISA.supported.map(\.rawValue).joined(separator: ", ")))",
        subcommands: [ConvertCommand.self, InspectCommand.self, ExportCommand.self, PackCommand.self, UnpackCommand.self, RunCommand.self, ServeCommand.self, EmbedCommand.self, TokenizeCommand.self, VerifyCommand.self, BenchCommand.self])
    public init() {}
}
