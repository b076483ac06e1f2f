// Prompt files as `run --input-file`, `run -` (stdin) and `verify --prompts` read them: one prompt per line
// (LF or CRLF), or JSON lines with a string "prompt" (or "text") field; empty lines are skipped.
import Foundation
import FlintFormat

enum PromptLines {
    /// One line of a prompt file: its prompt, or why the line is not one.
    struct Entry: Equatable {
        /// 1-based line number in the file.
        let line: Int
        let prompt: String?
        let error: String?
    }

    /// Every non-empty line of `text`, in order; a line that looks like JSON but has no string "prompt" / "text"
    /// is an entry with an error (`source` names the file in it) rather than a thrown error, so one bad line does
    /// not lose the others.
    static func parse(_ text: String, source: String) -> [Entry] {
        var entries: [Entry] = []
        // Splitting on Character.isNewline: "\r\n" is one Character in Swift, so splitting on "\n" alone would
        // leave a CRLF file in one piece.
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            if trimmed.hasPrefix("{") {
                if let obj = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any],
                   let prompt = (obj["prompt"] ?? obj["text"]) as? String {
                    entries.append(Entry(line: n + 1, prompt: prompt, error: nil))
                } else {
                    entries.append(Entry(line: n + 1, prompt: nil,
                                         error: "\(source): line \(n + 1) looks like JSON but has no string \"prompt\" or \"text\" field"))
                }
            } else {
                entries.append(Entry(line: n + 1, prompt: String(line), error: nil))
            }
        }
        return entries
    }

    /// The prompts of a file; throws on an unreadable file, a bad line, or no prompt at all.
    static func read(_ path: String) throws -> [String] {
        let entries = try readEntries(path)
        if let bad = entries.first(where: { $0.error != nil }) { throw FlintError(bad.error!) }
        return entries.compactMap(\.prompt)
    }

    /// The entries of a file (`-` reads stdin); throws on an unreadable file or one with no prompt line.
    static func readEntries(_ path: String) throws -> [Entry] {
        let name = path == "-" ? "stdin" : path
        let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: path)
        guard let data, let text = String(data: data, encoding: .utf8) else {
            throw FlintError("\(name): cannot be read as UTF-8 text")
        }
        let entries = parse(text, source: name)
        guard !entries.isEmpty else { throw FlintError("\(name): no prompts (every line is empty)") }
        return entries
    }
}
