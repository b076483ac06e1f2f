import ArgumentParser
import Foundation
import FlintConvert
import FlintFormat
import FlintPack

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a .flint model back as float32 safetensors with Hugging Face tensor names.",
        discussion: helpDiscussion("""
        Int8 tensors are dequantized (q × scale); tied copies the source checkpoint stored are written back, so
        the result loads in Python tools as the original did. A float32 conversion exported again gives back
        every tensor bit for bit.

        Examples:
          flint export model.flint -o model.safetensors
          flint export model.flint -o out/model.safetensors --json
        """))

    @Argument(help: "A .flint file (or .flint.zst).")
    var file: String

    @OptionGroup var destination: OutputFileOptions<SafetensorsOutputFile>

    @OptionGroup var format: JSONOption

    var output: String { destination.output }

    func validate() throws {
        guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("\(file) does not exist") }
    }

    func run() throws {
        try reportingErrors {
            var inputs = [file]
            if file.hasSuffix(".zst") { inputs.append(FlintPacker.unpackedCachePath(for: file)) }
            try OutputTarget.check(output, inputs: inputs, force: destination.force)
            let f = try openFlintFile(file)
            let bar = ProgressBar("exporting")
            let report = try Exporter.export(f, to: output) { done, total, name in bar.update(done: done, total: total, detail: name) }
            bar.finish()
            if format.json {
                struct Out: Encodable { var output: String; var tensors: Int; var bytes_out: Int64 }
                try printJSON(Out(output: report.output, tensors: report.tensors, bytes_out: fileSize(report.output)))
            } else {
                print("wrote \(report.output): \(report.tensors) float32 tensors, \(formatBytes(fileSize(report.output)))")
            }
        }
    }
}
