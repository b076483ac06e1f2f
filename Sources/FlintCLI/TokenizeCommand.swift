// `flint tokenize`: text → T5 token ids and pieces, or ids → text, with the model's sentencepiece vocabulary.
import ArgumentParser
import Foundation
import FlintFormat
import FlintTokenizer

/// The tokenizer of a model named on the command line: a model folder containing `spiece.model`, or a
/// `spiece.model` (any `*.model`) file. Other kinds of model path (such as `.flint` files) are added here.
func loadTokenizer(modelPath argument: String) throws -> T5Tokenizer {
    let modelPath = try localModelPath(argument)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: modelPath, isDirectory: &isDirectory) else {
        throw FlintError("\(modelPath): no such file or folder")
    }
    if isDirectory.boolValue {
        let spiece = URL(fileURLWithPath: modelPath).appendingPathComponent("spiece.model").path
        guard FileManager.default.fileExists(atPath: spiece) else {
            throw FlintError("\(modelPath): the folder has no spiece.model (the T5 sentencepiece vocabulary)")
        }
        return try T5Tokenizer(contentsOf: spiece)
    }
    if modelPath.hasSuffix(".model") {
        return try T5Tokenizer(contentsOf: modelPath)
    }
    if modelPath.hasSuffix(".flint") || modelPath.hasSuffix(".zst") {
        let file = try openFlintFile(modelPath)
        guard let bytes = file.tokenizerModel else {
            throw FlintError("\(modelPath): the file carries no tokenizer (it was converted from a folder without spiece.model)")
        }
        return try T5Tokenizer(modelBytes: bytes, extraIds: file.metadata.tokenizer?.extraIds ?? 100)
    }
    throw FlintError("\(modelPath): expected a .flint file, a model folder containing spiece.model, or a spiece.model file")
}

public struct TokenizeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Turn text into T5 token ids and pieces, or token ids back into text.",
        discussion: """
        Tokenization matches Hugging Face's T5Tokenizer: </s> is appended, <extra_id_N> sentinels and literal \
        </s>, <pad>, <unk> in the text become their ids. The ids are printed on one line and the pieces on the \
        next (--json: {"ids": [...], "pieces": [...]}).

        With --decode, TEXT is a list of token ids separated by commas or spaces, and the decoded text is printed \
        (--json: {"text": ...}). Ids the tokenizer does not have (the padding rows of a model's vocabulary, such \
        as 32100..<32128 for T5) are left out with a warning.

        Examples:
          flint tokenize ./flan-t5-small "translate English to German: The house."
          flint tokenize ./flan-t5-small/spiece.model "The <extra_id_0> park" --json
          flint tokenize ./flan-t5-small --decode "37, 629, 19, 1627, 5, 1"
          flint tokenize ./flan-t5-small --decode --skip-special "0 37 629 1"
        """)

    @Argument(help: "A model folder containing spiece.model, a spiece.model file, or hf:OWNER/NAME[@REVISION].")
    public var model: String

    @Argument(help: "The text to tokenize; with --decode, token ids separated by commas or spaces.")
    public var text: String

    @Flag(help: "Print the result as JSON.")
    public var json = false

    @Flag(help: "Decode TEXT (token ids) into text.")
    public var decode = false

    @Flag(help: "With --decode, leave out <pad>, </s>, <unk> and the sentinels.")
    public var skipSpecial = false

    public init() {}

    public func validate() throws {
        guard modelArgumentExists(model) else {
            throw ValidationError("\(model) does not exist")
        }
        if skipSpecial && !decode {
            throw ValidationError("--skip-special applies only with --decode")
        }
        if decode {
            _ = try Self.parseIds(text)
        }
    }

    public func run() throws {
        try reportingErrors {
            let tokenizer = try loadTokenizer(modelPath: model)
            if decode {
                try runDecode(tokenizer)
            } else {
                try runEncode(tokenizer)
            }
        }
    }

    private func runEncode(_ tokenizer: T5Tokenizer) throws {
        let ids = tokenizer.encode(text)
        // tokenize() keeps the surface of unknown pieces (where idToPiece would say <unk>); adding the appended
        // </s> lines the pieces up one to one with the ids.
        var pieces = tokenizer.tokenize(text)
        if ids.count > pieces.count { pieces.append(T5Tokenizer.eosToken) }
        if json {
            try Self.printCompactJSON(EncodeOutput(ids: ids, pieces: pieces))
        } else {
            print(ids.map(String.init).joined(separator: " "))
            print(pieces.joined(separator: " "))
        }
    }

    private func runDecode(_ tokenizer: T5Tokenizer) throws {
        let ids = try Self.parseIds(text)
        let unknown = ids.filter { $0 < 0 || $0 >= tokenizer.count }
        if !unknown.isEmpty {
            let listed = unknown.prefix(8).map(String.init).joined(separator: ", ") + (unknown.count > 8 ? ", …" : "")
            warn("\(unknown.count) id(s) outside the tokenizer's 0..<\(tokenizer.count) were left out: \(listed)")
        }
        let decoded = tokenizer.decode(ids, skipSpecialTokens: skipSpecial)
        if json {
            try Self.printCompactJSON(DecodeOutput(text: decoded))
        } else {
            print(decoded)
        }
    }

    /// Ids separated by commas and/or whitespace, optionally inside [ ] (as printed by --json).
    static func parseIds(_ list: String) throws -> [Int] {
        var body = list.trimmingCharacters(in: .whitespacesAndNewlines)
        if body.hasPrefix("[") && body.hasSuffix("]") { body = String(body.dropFirst().dropLast()) }
        let fields = body.split(whereSeparator: { $0 == "," || $0.isWhitespace })
        guard !fields.isEmpty else {
            throw ValidationError("--decode needs token ids, separated by commas or spaces (got \"\(list)\")")
        }
        return try fields.map { field in
            guard let id = Int(field) else {
                throw ValidationError("--decode: \"\(field)\" is not a token id (expected integers separated by "
                                      + "commas or spaces)")
            }
            return id
        }
    }

    private struct EncodeOutput: Encodable {
        let ids: [Int]
        let pieces: [String]
    }

    private struct DecodeOutput: Encodable {
        let text: String
    }

    /// One-line JSON, keys in a fixed order ("ids" before "pieces").
    private static func printCompactJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        FileHandle.standardOutput.write(try encoder.encode(value))
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}
