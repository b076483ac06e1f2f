// Opening a model by name: a .flint file (plain or .flint.zst), a Hugging Face model folder (or a weights file
// with config.json beside it), or a Hugging Face Hub repository (hf:OWNER/NAME[@REVISION], downloaded into the
// Hugging Face cache). The one path `FlintModel` and every `flint` command take.

import Foundation

extension FlintModel {
    /// Whether `argument` can be opened: an existing path, or an `hf:` reference (checked when it is resolved).
    public static func sourceExists(_ argument: String) -> Bool {
        HubReference.isReference(argument) || FileManager.default.fileExists(atPath: argument)
    }

    /// For `hf:OWNER/NAME[@REVISION]`: the snapshot in the Hugging Face cache holding the files a conversion
    /// reads, downloaded through `hub` when missing; nil for any other argument. The environment variables are
    /// huggingface_hub's: HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE.
    public static func resolveHubReference(_ argument: String, format: CheckpointFormat? = nil,
                                           hub: HubClient = HubClient()) throws -> HubSnapshot? {
        guard HubReference.isReference(argument) else { return nil }
        return try hub.snapshot(HubReference(parsing: argument), format: format)
    }

    /// Opens a .flint file; a .flint.zst is unpacked once to a cache file beside it (`<path>.unpacked.flint`,
    /// every checksum verified before it is used).
    public static func openFlintFile(_ path: String) throws -> FlintFile {
        let resolved = try FlintPacker.resolveModelPath(path, requireFlint: true) { unpacked in
            try FlintFile(path: unpacked).verifyChecksums()
        }
        return try FlintFile(path: resolved)
    }

    /// The weights of any model Flint runs: a .flint / .flint.zst file (memory-mapped, int8 in place), a Hugging
    /// Face model folder or a weights file with config.json beside it (read and converted to float in memory),
    /// or an `hf:OWNER/NAME[@REVISION]` repository (through `hub`).
    public static func openWeights(_ argument: String, hub: HubClient = HubClient()) throws -> WeightSource {
        let path = try resolveHubReference(argument, hub: hub)?.folder ?? argument
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FlintError("\(path): no such file or folder")
        }
        if !isDirectory.boolValue, path.hasSuffix(".flint") || path.hasSuffix(".zst") || isFlintFile(path) {
            return try openFlintFile(path)
        }
        return try HFModelFolder(path: path)
    }

    /// Whether the file starts with the .flint magic (so a .flint file under another name is still recognised).
    public static func isFlintFile(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = handle.readData(ofLength: FlintLayout.magic.count)
        return Array(head) == FlintLayout.magic
    }

    /// The tokenizer the weights carry (tokenizer.json or spiece.model), or an error naming the source.
    public static func tokenizer(for weights: WeightSource) throws -> T5Tokenizer {
        guard let tokenizer = try T5Tokenizer.load(from: weights) else {
            throw FlintError("\(weights.sourceDescription): no tokenizer (tokenizer.json or spiece.model) found with the model")
        }
        return tokenizer
    }
}
