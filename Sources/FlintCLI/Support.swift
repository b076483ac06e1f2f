// Shared pieces of the commands: error reporting, JSON output, the progress bar, byte formatting.

import ArgumentParser
import Foundation
import FlintFormat
import FlintCheckpoint
import FlintTokenizer

#if canImport(Glibc)
import Glibc
#endif

/// Runs a command body; a FlintError becomes one line on stderr and exit status 1 (usage errors are 64, from
/// ArgumentParser's validation).
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as FlintError {
        FileHandle.standardError.write(Data("flint: error: \(e.message)\n".utf8))
        throw ExitCode.failure
    }
}

/// Prints an Encodable value as pretty JSON on stdout.
/// A command's discussion as ArgumentParser should get it. The sources wrap prose at ~115 columns for reading;
/// ArgumentParser keeps every newline and wraps again at the terminal's width (80 columns when piped), which left
/// every paragraph of `--help` ragged. The lines of each prose paragraph are joined, so the parser's wrapping is
/// the only one; blank lines and indented lines (examples, tables) stay as written.
func helpDiscussion(_ text: String) -> String {
    var lines: [String] = []
    var continuesProse = false  // the last line is prose that a following prose line continues
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.isEmpty || line.first == " " {
            lines.append(String(line))
            continuesProse = false
        } else if continuesProse {
            lines[lines.count - 1] += " " + line
        } else {
            lines.append(String(line))
            continuesProse = true
        }
    }
    return lines.joined(separator: "\n")
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(value)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

func warn(_ message: String) {
    FileHandle.standardError.write(Data("flint: warning: \(message)\n".utf8))
}

/// Whether stderr is a terminal (progress is drawn only then).
var stderrIsTerminal: Bool { isatty(STDERR_FILENO) != 0 }

/// A one-line progress bar on stderr, drawn only on a terminal and at most ~20 times a second.
final class ProgressBar {
    private let label: String
    private let enabled: Bool
    private var lastDraw = Date.distantPast
    private var drawn = false

    init(_ label: String, enabled: Bool = stderrIsTerminal) {
        self.label = label
        self.enabled = enabled
    }

    func update(done: Int, total: Int, detail: String = "") {
        guard enabled, total > 0 else { return }
        let now = Date()
        guard done == total || now.timeIntervalSince(lastDraw) > 0.05 else { return }
        lastDraw = now
        let width = 30
        let filled = min(width, done * width / total)
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let pct = done * 100 / total
        var line = "\r\(label) \(bar) \(pct)% \(detail)"
        if line.count > 110 { line = String(line.prefix(110)) }
        FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
        drawn = true
    }

    /// Clears the line so the summary starts clean.
    func finish() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

/// "1.23 MB" style sizes (decimal units, like the sizes file managers show).
func formatBytes(_ n: Int64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"]
    var v = Double(n)
    var u = 0
    while v >= 1000, u < units.count - 1 { v /= 1000; u += 1 }
    return u == 0 ? "\(n) B" : String(format: "%.2f %@", v, units[u])
}

func fileSize(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
}

/// A JSON number that is null when not finite (an exact reconstruction has SNR +inf).
func finiteOrNil(_ x: Double?) -> Double? {
    guard let x, x.isFinite else { return nil }
    return (x * 100).rounded() / 100
}

/// Loads the folder's spiece.model with the tokenizer `run` will use, so a converted file never embeds an
/// empty or garbage tokenizer that fails only later; the error names the file.
func checkTokenizer(of folder: HFModelFolder) throws {
    guard let files = folder.tokenizerFiles else { return }
    do {
        _ = try T5Tokenizer(bytes: files.bytes, info: files.info)
    } catch let e as FlintError {
        let message = e.message.hasPrefix("tokenizer: ") ? String(e.message.dropFirst("tokenizer: ".count)) : e.message
        throw FlintError("\(files.path): \(message)")
    }
}
