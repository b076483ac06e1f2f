// Opening models named on the command line: .flint files (plain or .flint.zst), Hugging Face folders, and
// Hugging Face Hub repositories (hf:OWNER/NAME[@REVISION], downloaded into the Hugging Face cache). The opening
// itself is the library's (`FlintModel.openWeights` and friends, module Flint), so the commands and programs
// that `import Flint` take one path; what is added here is the terminal side: download progress and messages.

import Foundation
import Flint
import FlintFormat
import FlintCheckpoint
import FlintHub
import FlintTokenizer

/// Whether a model argument can be opened: an existing path, or an `hf:` reference (checked when it is resolved).
func modelArgumentExists(_ argument: String) -> Bool {
    FlintModel.sourceExists(argument)
}

/// For `hf:OWNER/NAME[@REVISION]`: the snapshot folder in the Hugging Face cache with the files a conversion
/// reads, downloaded when missing (progress on a terminal); nil for any other argument. The environment
/// variables are huggingface_hub's: HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE.
func resolveHubModel(_ argument: String, format: CheckpointFormat? = nil) throws -> HubSnapshot? {
    let client = HubClient()
    let bar = ProgressBar("downloading")
    client.progress = { name, done, total in
        bar.update(done: Int(done), total: Int(total), detail: "\(name) \(formatBytes(done)) of \(formatBytes(total))")
    }
    client.warning = { message in bar.finish(); warn(message) }
    guard let snapshot = try FlintModel.resolveHubReference(argument, format: format, hub: client) else { return nil }
    bar.finish()
    let reference = snapshot.reference
    if stderrIsTerminal {
        let fetched = snapshot.files.filter { $0.origin == .downloaded }
        let bytes = fetched.reduce(Int64(0)) { $0 + $1.bytesTransferred }
        FileHandle.standardError.write(Data(("\(reference) at \(snapshot.commit.prefix(12)): "
            + (fetched.isEmpty ? "all \(snapshot.files.count) files in the cache"
               : "\(fetched.count) of \(snapshot.files.count) files downloaded (\(formatBytes(bytes)))")
            + " → \(snapshot.folder)\n").utf8))
    }
    return snapshot
}

/// A local path for a model argument: an `hf:` reference becomes its snapshot folder; other paths are unchanged.
func localModelPath(_ argument: String) throws -> String {
    try resolveHubModel(argument)?.folder ?? argument
}

/// How an `hf:` source was obtained, for `--json` output.
struct HubSourceJSON: Encodable {
    struct File: Encodable {
        var name: String
        var bytes: Int64
        /// downloaded, cached (already in the snapshot) or linked-blob (the blob was cached under another commit).
        var origin: String
        var bytes_transferred: Int64
    }
    var reference: String
    var repo: String
    var revision: String
    var commit: String
    var snapshot: String
    /// No request was made (HF_HUB_OFFLINE, or the Hub was unreachable and the cache complete).
    var cache_only: Bool
    var files: [File]

    init(_ s: HubSnapshot) {
        reference = s.reference.description
        repo = s.reference.repoID
        revision = s.reference.revision
        commit = s.commit
        snapshot = s.folder
        cache_only = s.fromCacheOnly
        files = s.files.map { File(name: $0.name, bytes: $0.bytes, origin: $0.origin.rawValue, bytes_transferred: $0.bytesTransferred) }
    }
}

/// Opens a .flint file; a .flint.zst is unpacked once to a cache file beside it (checksums verified first).
func openFlintFile(_ path: String) throws -> FlintFile {
    try FlintModel.openFlintFile(path)
}

/// Opens any model a command can run: a .flint / .flint.zst file, a Hugging Face model folder (or a weights
/// file with config.json beside it), or an `hf:OWNER/NAME[@REVISION]` Hub repository.
func openModel(_ argument: String) throws -> WeightSource {
    try FlintModel.openWeights(localModelPath(argument))
}

/// Whether the file starts with the .flint magic (so a .flint file under another name is still recognised).
func isFlintFile(_ path: String) -> Bool {
    FlintModel.isFlintFile(path)
}

/// The weights `run` and `embed` name (the same as `openModel`).
func loadWeights(path: String) throws -> WeightSource {
    try openModel(path)
}

/// The tokenizer carried by the weights (tokenizer.json or spiece.model), or an error naming the source.
func loadTokenizer(_ weights: WeightSource) throws -> T5Tokenizer {
    try FlintModel.tokenizer(for: weights)
}
