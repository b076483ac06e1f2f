import ArgumentParser
import Foundation
import FlintFormat
import FlintPack

struct PackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Compress a .flint file with zstd for distribution (FILE.flint → FILE.flint.zst).",
        discussion: helpDiscussion("""
        The file is validated and its checksums verified first, so a damaged model is never packed. Commands
        that read a model accept the .flint.zst directly (it is unpacked once to a cache file beside it).

        Examples:
          flint pack model.flint
          flint pack model.flint -o dist/model.flint.zst --level 19
        """))

    @Argument(help: "The .flint file to pack.")
    var file: String

    @Option(name: .shortAndLong, help: "Output file (default: FILE.zst).")
    var output: String?

    @Option(help: "zstd compression level (1…19; int8 weights gain little from high levels).")
    var level: Int32 = FlintPacker.defaultLevel

    @OptionGroup var format: JSONOption

    @OptionGroup var overwrite: OverwriteOptions

    func validate() throws {
        guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("\(file) does not exist") }
        guard FlintPacker.levelRange.contains(level) else {
            throw ValidationError("--level must be in \(FlintPacker.levelRange.lowerBound)…\(FlintPacker.levelRange.upperBound)")
        }
    }

    func run() throws {
        try reportingErrors {
            let out = output ?? file + ".zst"
            try OutputTarget.check(out, inputs: [file], force: overwrite.force)
            try FlintFile(path: file).verifyChecksums()
            let bar = ProgressBar("packing")
            try FlintPacker.pack(input: file, output: out, level: level) { bar.update(done: Int($0), total: Int($1)) }
            bar.finish()
            let inBytes = fileSize(file), outBytes = fileSize(out)
            if format.json {
                struct Out: Encodable { var output: String; var bytes_in: Int64; var bytes_out: Int64 }
                try printJSON(Out(output: out, bytes_in: inBytes, bytes_out: outBytes))
            } else {
                print("wrote \(out): \(formatBytes(outBytes)) (\(String(format: "%.1f", Double(outBytes) * 100 / Double(max(inBytes, 1))))% of \(formatBytes(inBytes)))")
            }
        }
    }
}

struct UnpackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unpack",
        abstract: "Restore a .flint.zst to the .flint file it was packed from, checksums verified.",
        discussion: helpDiscussion("""
        The result is written to a temporary file, every tensor checksum is verified, and only then is it
        renamed into place.

        Examples:
          flint unpack model.flint.zst
          flint unpack model.flint.zst -o /models/model.flint
        """))

    @Argument(help: "The .flint.zst file.")
    var file: String

    @Option(name: .shortAndLong, help: "Output file (default: FILE without .zst).")
    var output: String?

    @OptionGroup var format: JSONOption

    @OptionGroup var overwrite: OverwriteOptions

    func validate() throws {
        guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("\(file) does not exist") }
        guard output != nil || file.hasSuffix(".zst") else { throw ValidationError("\(file) does not end in .zst: name the output with -o") }
    }

    func run() throws {
        try reportingErrors {
            let out = output ?? String(file.dropLast(4))
            try OutputTarget.check(out, inputs: [file], force: overwrite.force)
            let temporary = TemporaryFiles.name(for: out)
            TemporaryFiles.register(temporary)
            defer { TemporaryFiles.unregister(temporary) }
            let bar = ProgressBar("unpacking")
            do {
                try FlintPacker.unpack(input: file, output: temporary, requireFlint: true) { bar.update(done: Int($0), total: Int($1)) }
                bar.finish()
                try FlintFile(path: temporary).verifyChecksums()
                guard rename(temporary, out) == 0 else { throw FlintError("\(out): cannot rename \(temporary) into place") }
            } catch {
                TemporaryFiles.remove(temporary)
                throw error
            }
            if format.json {
                struct Out: Encodable { var output: String; var bytes_out: Int64; var checksums_verified: Bool }
                try printJSON(Out(output: out, bytes_out: fileSize(out), checksums_verified: true))
            } else {
                print("wrote \(out): \(formatBytes(fileSize(out))), all checksums verified")
            }
        }
    }
}
