import ArgumentParser
import FlintFormat

public struct FlintCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "flint",
        abstract: "Convert, quantize, run and verify T5 / FLAN-T5 models in single memory-mapped .flint files.",
        version: FlintVersion.version,
        subcommands: [ConvertCommand.self, InspectCommand.self, ExportCommand.self, PackCommand.self, UnpackCommand.self, RunCommand.self, EmbedCommand.self, TokenizeCommand.self, VerifyCommand.self, BenchCommand.self])
    public init() {}
}
