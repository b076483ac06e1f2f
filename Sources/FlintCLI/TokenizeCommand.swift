// `flint tokenize`: text → T5 token ids and pieces, or ids → text, with the model's tokenizer (tokenizer.json or
// spiece.model, as AutoTokenizer would load it).
import ArgumentParser
import Foundation
import FlintCheckpoint
import FlintFormat
import FlintTokenizer

/// A tokenizer and the file it came from (for messages and `--json`).
struct LoadedTokenizer {
    let tokenizer: T5Tokenizer
    /// The path read (a folder's tokenizer file, or the .flint file).
    let path: String
    /// The tokenizer file's name (`tokenizer.json` or `spiece.model`; for a .flint file, the one embedded).
    var fileName: String {
        tokenizer.info.fileName
    }
}

/// The tokenizer of a model named on the command line: a model folder (tokenizer.json, else spiece.model with
/// tokenizer_config.json / special_tokens_map.json / added_tokens.json), a `.flint` file, a `tokenizer.json`,
/// a `spiece.model` (any `*.model`) file, or hf:OWNER/NAME[@REVISION].
func loadTokenizer(modelPath argument: String) throws -> LoadedTokenizer {
    let modelPath = try localModelPath(argument)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: modelPath, isDirectory: &isDirectory) else {
        throw FlintError("\(modelPath): no such file or folder")
    }
    if isDirectory.boolValue {
        guard let files = try TokenizerFiles.discover(inFolder: modelPath) else {
            throw FlintError("\(modelPath): the folder has no tokenizer "
                + (TokenizerFiles.unreadableTokenizerDescription(inFolder: modelPath).map { "Flint can read: \($0)" }
                   ?? "(tokenizer.json or spiece.model)"))
        }
        do {
            return LoadedTokenizer(tokenizer: try T5Tokenizer(bytes: files.bytes, info: files.info), path: files.path)
        } catch let error as FlintError {
            throw FlintError("\(files.path): \(error.message)")
        }
    }
    if modelPath.hasSuffix(".json") {
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: modelPath)))
        do {
            return LoadedTokenizer(tokenizer: try T5Tokenizer(tokenizerJSON: bytes), path: modelPath)
        } catch let error as FlintError {
            throw FlintError("\(modelPath): \(error.message)")
        }
    }
    if modelPath.hasSuffix(".model") {
        return LoadedTokenizer(tokenizer: try T5Tokenizer(contentsOf: modelPath), path: modelPath)
    }
    if modelPath.hasSuffix(".flint") || modelPath.hasSuffix(".zst") {
        let file = try openFlintFile(modelPath)
        guard let tokenizer = try T5Tokenizer.load(from: file) else {
            throw FlintError("\(modelPath): the file carries no tokenizer (it was converted from a folder without "
                             + "tokenizer.json or spiece.model)")
        }
        return LoadedTokenizer(tokenizer: tokenizer, path: modelPath)
    }
    throw FlintError("\(modelPath): expected a .flint file, a model folder, a tokenizer.json or a spiece.model file")
}

/// What `convert` embeds as the tokenizer, and whether it can be used (`"tokenizer"` in `convert --json`).
struct TokenizerStatus: Encodable {
    /// The file embedded, nil when the folder has none.
    var file: String?
    var type: String?
    var size: Int?
    var extra_ids: Int?
    /// Error when the tokenizer cannot be used (none found, or one this flint cannot read).
    var problem: String?

    init(folder: HFModelFolder) {
        guard let files = folder.tokenizerFiles else {
            let found = TokenizerFiles.unreadableTokenizerDescription(inFolder: folder.folder)
            problem = "\(folder.sourceDescription): "
                + (found.map { "no tokenizer Flint can read: \($0)" } ?? "no tokenizer (tokenizer.json or spiece.model) in the folder")
                + "; the .flint file will carry none, so `flint run` will only accept token ids"
            return
        }
        file = files.info.fileName
        type = files.info.type
        size = files.bytes.count
        do {
            let tokenizer = try T5Tokenizer(bytes: files.bytes, info: files.info)
            extra_ids = tokenizer.extraIds
        } catch let error as FlintError {
            problem = "\(files.path): the tokenizer cannot be used (\(error.message)); it is embedded as it is, "
                + "but flint cannot tokenize with it"
        } catch {
            problem = "\(files.path): the tokenizer cannot be used (\(error))"
        }
    }
}

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Turn text into T5 token ids and pieces, or token ids back into text.",
        discussion: helpDiscussion("""
        Tokenization matches what Hugging Face's AutoTokenizer loads for the model: the fast tokenizer of \
        tokenizer.json when the folder has one (normalizer, pre-tokenizer, Unigram model, post-processor and added \
        tokens as the tokenizers library runs them), else the slow T5Tokenizer of spiece.model with the sentinels \
        and added tokens of tokenizer_config.json / special_tokens_map.json / added_tokens.json; ByT5Tokenizer \
        (UTF-8 bytes, google/byt5-*) when the folder names it. </s> is appended; \
        sentinels and added tokens in the text become their ids. The ids are printed on one line and the pieces on \
        the next (--json: {"ids": [...], "pieces": [...], "tokenizer": "tokenizer.json" or "spiece.model"}, the file \
        used; for a .flint file, the one embedded).

        With --decode, TEXT is a list of token ids separated by commas or spaces, and the decoded text is printed \
        (--json: {"text": ..., "tokenizer": ...}). Ids the tokenizer does not have (the padding rows of a model's \
        vocabulary, such as 32100..<32128 for T5) are left out with a warning.

        Examples:
          flint tokenize ./flan-t5-small "translate English to German: The house."
          flint tokenize ./my-finetune/tokenizer.json "<user> hi <extra_id_0>" --json
          flint tokenize ./flan-t5-small/spiece.model "The <extra_id_0> park" --json
          flint tokenize model.flint --decode "37, 629, 19, 1627, 5, 1"
          flint tokenize ./flan-t5-small --decode --skip-special "0 37 629 1"
        """))

    @Argument(help: "A model folder, a .flint file, a tokenizer.json or spiece.model file, or hf:OWNER/NAME[@REVISION].")
    var model: String

    @Argument(help: "The text to tokenize; with --decode, token ids separated by commas or spaces.")
    var text: String

    @OptionGroup var format: JSONOption

    @Flag(help: "Decode TEXT (token ids) into text.")
    var decode = false

    @Flag(help: "With --decode, leave out the special tokens (<pad>, </s>, <unk>, sentinels, special added tokens).")
    var skipSpecial = false

    func validate() throws {
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

    func run() throws {
        try reportingErrors {
            let loaded = try loadTokenizer(modelPath: model)
            if decode {
                try runDecode(loaded)
            } else {
                try runEncode(loaded)
            }
        }
    }

    private func runEncode(_ loaded: LoadedTokenizer) throws {
        // Pieces keep the surface of unknown pieces (where idToPiece would say <unk>), one per id.
        let (ids, pieces) = loaded.tokenizer.encodeWithPieces(text)
        if format.json {
            try Self.printCompactJSON(EncodeOutput(ids: ids, pieces: pieces, tokenizer: loaded.fileName))
        } else {
            print(ids.map(String.init).joined(separator: " "))
            print(pieces.joined(separator: " "))
        }
    }

    private func runDecode(_ loaded: LoadedTokenizer) throws {
        let tokenizer = loaded.tokenizer
        let ids = try Self.parseIds(text)
        let unknown = ids.filter { tokenizer.idToPiece($0) == nil }
        if !unknown.isEmpty {
            let listed = unknown.prefix(8).map(String.init).joined(separator: ", ") + (unknown.count > 8 ? ", …" : "")
            warn("\(unknown.count) id(s) the tokenizer does not have (it has \(tokenizer.count) tokens) were left out: \(listed)")
        }
        let decoded = tokenizer.decode(ids, skipSpecialTokens: skipSpecial)
        if format.json {
            try Self.printCompactJSON(DecodeOutput(text: decoded, tokenizer: loaded.fileName))
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
        let tokenizer: String
    }

    private struct DecodeOutput: Encodable {
        let text: String
        let tokenizer: String
    }

    /// One-line JSON, keys in a fixed order ("ids" before "pieces").
    private static func printCompactJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        FileHandle.standardOutput.write(try encoder.encode(value))
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}
