// A Hugging Face model folder (config.json; weights as safetensors, PyTorch .bin, Keras .h5 or Flax msgpack,
// single or sharded; optional tokenizer files, see TokenizerFiles) as a WeightSource, plus what the converter needs to describe and
// deduplicate it. Which format is read is decided here (CheckpointFormat); the readers do the rest.
import Foundation
import FlintFormat

/// The checkpoint formats a model folder may hold, in the order of preference when it holds several.
public enum CheckpointFormat: String, Sendable, CaseIterable {
    case safetensors
    case pytorch
    case kerasH5 = "h5"
    case flaxMsgpack = "msgpack"

    /// The single-file name transformers' save_pretrained writes.
    public var singleFile: String {
        switch self {
        case .safetensors: return "model.safetensors"
        case .pytorch: return "pytorch_model.bin"
        case .kerasH5: return "tf_model.h5"
        case .flaxMsgpack: return "flax_model.msgpack"
        }
    }

    /// The shard index name.
    public var indexFile: String { singleFile + ".index.json" }

    public var displayName: String {
        switch self {
        case .safetensors: return "safetensors"
        case .pytorch: return "PyTorch .bin"
        case .kerasH5: return "Keras .h5"
        case .flaxMsgpack: return "Flax msgpack"
        }
    }

    /// The format of a weights file or shard index by its name, and whether it is an index.
    public static func of(fileName: String) -> (CheckpointFormat, isIndex: Bool)? {
        let isIndex = fileName.hasSuffix(".index.json")
        let base = isIndex ? String(fileName.dropLast(".index.json".count)) : fileName
        let byExtension: [(String, CheckpointFormat)] = [
            (".safetensors", .safetensors), (".bin", .pytorch), (".h5", .kerasH5), (".msgpack", .flaxMsgpack),
        ]
        guard let match = byExtension.first(where: { base.hasSuffix($0.0) }) else { return nil }
        return (match.1, isIndex)
    }
}

public final class HFModelFolder: WeightSource, @unchecked Sendable {
    /// The folder holding config.json (for a path to a .safetensors file, the file's folder).
    public let folder: String
    /// The path as given.
    public let path: String
    public let config: T5Config
    /// Everything else config.json said.
    public let configDetails: HFConfigDetails
    /// The reader's format name: `safetensors`, `pytorch` (zip), `pytorch-legacy`, or the Keras / Flax readers' names.
    public let sourceFormat: String
    /// The checkpoint format read.
    public let format: CheckpointFormat
    /// Other formats present in the folder and not read (a folder may carry the same weights several times).
    public let otherFormatsFound: [CheckpointFormat]
    /// When the folder held several formats: which files were found and which format is used, for the user.
    public let formatChoice: String?
    /// The files read, by file name, with their sizes: config.json, the shard index if any, the weight files.
    public let sourceFiles: [(name: String, bytes: Int64)]
    /// Every stored tensor, shard by shard (shards in file-name order), each in the order of its data.
    public let tensorInfos: [CheckpointTensorInfo]
    /// Stored tensors that are byte-identical copies of another stored tensor (tied embeddings):
    /// `encoder.embed_tokens.weight`, `decoder.embed_tokens.weight` or `lm_head.weight` → `shared.weight`.
    /// Only tensors with the same dtype and shape are compared; in a PyTorch .bin, names that view the same
    /// storage elements (torch.save stores tied weights once) are aliases without comparing bytes.
    public let aliases: [String: String]
    /// Stored tensors transformers does not use, with the reason (e.g. a tied model's stored `lm_head.weight`
    /// that differs from `shared.weight`: transformers ties it to `shared.weight` and ignores the copy).
    public let ignoredTensors: [String: String]
    /// The tokenizer the folder ships (tokenizer.json, else spiece.model with its configuration files), nil when
    /// it has none.
    public let tokenizerFiles: TokenizerFiles?
    public var tokenizerModel: [UInt8]? { tokenizerFiles?.bytes }
    public var tokenizerInfo: TokenizerInfo? { tokenizerFiles?.info }
    /// The checkpoint files, one reader per file.
    public let readers: [CheckpointReader]

    private let location: [String: Int]  // stored name → index into `readers`

    public var sourceDescription: String { path }
    /// The stored tensor names (tied aliases that are not stored resolve through `tensor(_:)` but are not listed).
    public var tensorNames: [String] { tensorInfos.map(\.name) }

    /// Opens a model folder, or a weights file (`.safetensors`, `.bin`, `.h5`, `.msgpack`, or a `*.index.json` of
    /// one of them) with config.json beside it. In a folder holding several formats the preference is safetensors > pytorch > h5 >
    /// msgpack (`otherFormatsFound` lists the rest); `format` picks one explicitly.
    public init(path: String, format requested: CheckpointFormat? = nil) throws {
        self.path = path
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FlintError(.notFound, "\(path): no such file or folder")
        }
        let folderURL: URL
        let chosen: CheckpointFormat
        var weightsPath: String? = nil
        var indexPath: String? = nil
        var others: [CheckpointFormat] = []
        var choiceNote: String? = nil
        if isDir.boolValue {
            folderURL = URL(fileURLWithPath: path, isDirectory: true)
            guard fm.fileExists(atPath: folderURL.appendingPathComponent("config.json").path) else {
                throw FlintError(.notFound, "\(folderURL.path): no config.json (a Hugging Face model folder needs config.json "
                    + "beside its weights)")
            }
            func has(_ file: String) -> Bool { fm.fileExists(atPath: folderURL.appendingPathComponent(file).path) }
            let found = CheckpointFormat.allCases.filter { has($0.singleFile) || has($0.indexFile) }
            let foundFiles = found.flatMap { f in [f.singleFile, f.indexFile].filter(has).map { "\($0) (\(f.displayName))" } }
            if let requested {
                guard found.contains(requested) else {
                    throw FlintError(.corrupt, "\(path): asked for \(requested.displayName) weights (\(requested.singleFile) or "
                        + "\(requested.indexFile)), but the folder has "
                        + (foundFiles.isEmpty ? "no checkpoint files" : foundFiles.joined(separator: ", ")))
                }
                chosen = requested
            } else if let first = found.first {
                chosen = first
            } else {
                let strays = ((try? fm.contentsOfDirectory(atPath: folderURL.path)) ?? [])
                    .filter { $0.hasSuffix(".safetensors") || $0.hasSuffix(".bin") || $0.hasSuffix(".h5") || $0.hasSuffix(".msgpack") }
                    .sorted()
                var message = "\(folderURL.path): no checkpoint weights: expected one of "
                    + CheckpointFormat.allCases.map { "\($0.singleFile) / \($0.indexFile)" }.joined(separator: ", ")
                if !strays.isEmpty {
                    message += "; other weight files here: " + strays.joined(separator: ", ")
                        + " (pass one of them as the path, or add its *.index.json)"
                }
                throw FlintError(message)
            }
            others = found.filter { $0 != chosen }
            if !others.isEmpty {
                choiceNote = "\(folderURL.path) holds several checkpoint formats: " + foundFiles.joined(separator: ", ")
                    + "; using \(chosen.displayName)" + (requested == nil
                        ? " (preferred order: safetensors, pytorch, h5, msgpack; the format option picks another)"
                        : " as asked")
            }
            // transformers looks for the single file first, then the index.
            if has(chosen.singleFile) { weightsPath = folderURL.appendingPathComponent(chosen.singleFile).path }
            else { indexPath = folderURL.appendingPathComponent(chosen.indexFile).path }
        } else {
            let url = URL(fileURLWithPath: path)
            folderURL = url.deletingLastPathComponent()
            guard let (format, isIndex) = CheckpointFormat.of(fileName: url.lastPathComponent) else {
                throw FlintError(.corrupt, "\(path): expected a model folder, or a weights file ending in .safetensors, .bin, "
                    + ".h5 or .msgpack (or such a name + .index.json)")
            }
            if let requested, requested != format {
                throw FlintError(.corrupt, "\(path): asked for \(requested.displayName) weights, but this is a "
                    + "\(format.displayName) file")
            }
            chosen = format
            if isIndex { indexPath = path } else { weightsPath = path }
        }
        folder = folderURL.path

        let configPath = folderURL.appendingPathComponent("config.json").path
        guard fm.fileExists(atPath: configPath) else {
            throw FlintError(.notFound, "\(folder): no config.json (a Hugging Face model folder needs config.json beside "
                + "its weights)")
        }
        let details = try HFConfig.parseDetails(path: configPath)
        var files: [(name: String, bytes: Int64)] = [("config.json", HFModelFolder.fileSize(configPath))]

        var readers: [CheckpointReader] = []
        var location: [String: Int] = [:]
        var infos: [CheckpointTensorInfo] = []
        switch chosen {
        case .safetensors, .pytorch:
            let open: (String) throws -> CheckpointReader = chosen == .safetensors
                ? { try SafetensorsFile(path: $0) } : { try PyTorchBinFile(path: $0) }
            if let weightsPath {
                let file = try open(weightsPath)
                readers = [file]
                for info in file.tensorInfos { location[info.name] = 0 }
                infos = file.tensorInfos
                files.append((URL(fileURLWithPath: weightsPath).lastPathComponent, file.fileSize))
            } else if let indexPath {
                let index = try ShardIndex(path: indexPath)
                files.append((URL(fileURLWithPath: indexPath).lastPathComponent, HFModelFolder.fileSize(indexPath)))
                let shardNames = Array(Set(index.weightMap.map(\.file))).sorted()
                var readerOf: [String: Int] = [:]
                for name in shardNames {
                    let shardPath = folderURL.appendingPathComponent(name).path
                    guard fm.fileExists(atPath: shardPath) else {
                        throw FlintError(.notFound, "\(indexPath): names shard \"\(name)\", which is not in \(folder)")
                    }
                    readerOf[name] = readers.count
                    let shard = try open(shardPath)
                    readers.append(shard)
                    files.append((name, shard.fileSize))
                }
                var listed = Set<String>()
                for (tensor, file) in index.weightMap {
                    let r = readerOf[file]!
                    guard readers[r].contains(tensor) else {
                        throw FlintError(.notFound, "\(indexPath): maps tensor '\(tensor)' to shard \"\(file)\", but that shard has "
                            + "no such tensor")
                    }
                    location[tensor] = r
                    listed.insert(tensor)
                }
                // The index is the authority: a shard's tensors that the index does not list are not part of the model.
                for reader in readers { infos += reader.tensorInfos.filter { listed.contains($0.name) } }
            }
        case .kerasH5, .flaxMsgpack:
            // These readers find their own shards from the index and name tensors the Hugging Face PyTorch way.
            let target = (weightsPath ?? indexPath)!
            readers = chosen == .kerasH5 ? try KerasH5Checkpoint.open(folder: target)
                : try FlaxMsgpackCheckpoint.open(folder: target)
            if let indexPath {
                files.append((URL(fileURLWithPath: indexPath).lastPathComponent, HFModelFolder.fileSize(indexPath)))
            }
            for (r, reader) in readers.enumerated() {
                files.append((URL(fileURLWithPath: reader.path).lastPathComponent, reader.fileSize))
                for info in reader.tensorInfos {
                    if let other = location[info.name] {
                        throw FlintError(.corrupt, "\(folder): tensor '\(info.name)' is stored in both \(readers[other].path) and "
                            + "\(reader.path)")
                    }
                    location[info.name] = r
                    infos.append(info)
                }
            }
        }

        // Tied embeddings: which stored tensors duplicate the embedding table.
        func bytesEqual(_ a: String, _ b: String) throws -> Bool {
            guard let ia = location[a], let ib = location[b],
                  let ta = readers[ia].tensorInfo(a), let tb = readers[ib].tensorInfo(b),
                  ta.dtype == tb.dtype, ta.shape == tb.shape else { return false }
            // torch.save stores tied weights once: names viewing the same storage elements are one tensor.
            if let file = readers[ia] as? PyTorchBinFile, file === readers[ib],
               let la = file.layout(a), let lb = file.layout(b), la == lb { return true }
            // Views, not rawBytes: a transposed (h5, msgpack) tensor's view owns its copy and frees it when the
            // comparison is done, where rawBytes would keep it for the reader's lifetime. Hash one tensor at a time
            // first, so two (vocab × d_model) copies are held together only when the tensors really are equal.
            func digest(_ reader: CheckpointReader, _ name: String) throws -> UInt64 {
                let view = try reader.tensor(name)
                defer { releaseMappedPages(view.data) }
                return XXH64.hash(view.data)
            }
            guard try digest(readers[ia], a) == digest(readers[ib], b) else { return false }
            let x = try readers[ia].tensor(a), y = try readers[ib].tensor(b)
            defer { releaseMappedPages(x.data); releaseMappedPages(y.data) }
            guard x.data.count == y.data.count else { return false }
            if x.data.count == 0 { return true }
            return memcmp(x.data.baseAddress!, y.data.baseAddress!, x.data.count) == 0
        }
        let embedding = T5WeightLayout.embeddingNames.first { location[$0] != nil }
        var aliases: [String: String] = [:]
        var ignored: [String: String] = [:]
        var hasDistinctLMHead = false
        if let embedding {
            for name in T5WeightLayout.tiedCopyNames where name != embedding && location[name] != nil {
                if try bytesEqual(name, embedding) {
                    aliases[name] = embedding
                } else if name == T5WeightLayout.outputProjectionName {
                    hasDistinctLMHead = true
                } else {
                    // transformers builds both stacks' embed_tokens on the shared module.
                    ignored[name] = "differs from \(embedding); transformers uses \(embedding) as the input embedding"
                }
            }
        } else {
            hasDistinctLMHead = location[T5WeightLayout.outputProjectionName] != nil
        }
        let config = details.resolved(hasDistinctLMHead: hasDistinctLMHead)
        let layout = config.weightLayout
        if hasDistinctLMHead && config.tieWordEmbeddings && !config.isEncoderOnly {
            ignored[T5WeightLayout.outputProjectionName] = "config.json ties the output projection to "
                + "\(embedding ?? T5WeightLayout.embeddingName) (tie_word_embeddings absent or true); transformers "
                + "ignores the stored copy"
        }
        for info in infos where aliases[info.name] == nil && ignored[info.name] == nil {
            if let reason = layout.ignoredReason(ofTensor: info.name) { ignored[info.name] = reason }
        }
        guard embedding != nil else {
            throw FlintError(.notFound, "\(folder): no embedding table stored (shared.weight, encoder.embed_tokens.weight or "
                + "decoder.embed_tokens.weight)")
        }
        if !config.isEncoderOnly && !config.tieWordEmbeddings && location[T5WeightLayout.outputProjectionName] == nil {
            throw FlintError(.notFound, "\(folder): config.json says the output projection is not tied "
                + "(tie_word_embeddings: false) but no lm_head.weight is stored")
        }

        self.config = config
        self.configDetails = details
        self.sourceFormat = readers.first?.format ?? chosen.rawValue
        self.format = chosen
        self.otherFormatsFound = others
        self.formatChoice = choiceNote
        self.sourceFiles = files
        self.tensorInfos = infos
        self.aliases = aliases
        self.ignoredTensors = ignored
        self.readers = readers
        self.location = location
        tokenizerFiles = try TokenizerFiles.discover(inFolder: folderURL.path)
    }

    /// The stored tensor a name resolves to (itself, or the embedding table for tied names: the rule is
    /// `T5WeightLayout.storedName`), nil when none. Aliases and ignored tensors resolve as tied names do.
    public func storedName(for name: String) -> String? {
        config.weightLayout.storedName(for: name) { location[$0] != nil && aliases[$0] == nil && ignoredTensors[$0] == nil }
    }

    /// How this checkpoint's format names a Hugging Face tensor (the TF variable of a Keras file, the Flax
    /// parameter path), for messages about missing tensors; nil for formats that use the Hugging Face names.
    public var checkpointNaming: ((String) -> String)? {
        let layout = config.weightLayout
        switch format {
        case .kerasH5: return { "Keras " + layout.kerasName(ofTensor: $0) }
        case .flaxMsgpack: return { "Flax " + layout.flaxPath(ofTensor: $0) }
        case .safetensors, .pytorch: return nil
        }
    }

    /// The description of the tensor a name resolves to.
    public func tensorInfo(_ name: String) -> CheckpointTensorInfo? {
        guard let stored = storedName(for: name), let r = location[stored] else { return nil }
        return readers[r].tensorInfo(stored)
    }

    /// The tensor under its Hugging Face name, tied aliases resolved; the view carries the requested name.
    public func tensor(_ name: String) throws -> TensorView {
        guard let stored = storedName(for: name), let r = location[stored] else {
            throw FlintError(.notFound, "\(path): no tensor '\(name)' in this model folder (\(tensorInfos.count) tensors stored)")
        }
        let v = try readers[r].tensor(stored)
        if stored == name { return v }
        return TensorView(name: name, storage: v.storage, shape: v.shape, scheme: v.scheme, data: v.data,
                          scales: v.scales, layout: v.layout, owner: v.owner)
    }

    /// The stored bytes of a tensor (any dtype), tied aliases resolved.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let stored = storedName(for: name), let r = location[stored] else {
            throw FlintError(.notFound, "\(path): no tensor '\(name)' in this model folder")
        }
        return try readers[r].rawBytes(stored)
    }

    static func fileSize(_ path: String) -> Int64 {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        return (attributes?[.size] as? NSNumber)?.int64Value ?? 0
    }
}

/// A sharded checkpoint's `*.index.json`: `{"metadata": {...}, "weight_map": {tensor: shard file}}`. The same
/// shape serves safetensors, PyTorch .bin, Keras .h5 and Flax msgpack shards.
public struct ShardIndex: Sendable {
    public let path: String
    /// Tensor → shard file name, in the index's order.
    public let weightMap: [(tensor: String, file: String)]
    /// `metadata.total_size` when given (informational; transformers does not check it).
    public let totalSize: Int64?

    public init(path: String) throws {
        self.path = path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FlintError(.io, "\(path): cannot read the shard index")
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(data)
        } catch let e as JSONParseError {
            throw FlintError(.corrupt, "\(path): shard index is not valid JSON: \(e.message) at byte \(e.offset)")
        }
        guard case .object(let members)? = json["weight_map"] else {
            throw FlintError(.corrupt, "\(path): shard index needs a \"weight_map\" object {tensor name: shard file}, got "
                + (json["weight_map"]?.kindDescription ?? "nothing"))
        }
        var map: [(tensor: String, file: String)] = []
        for (tensor, value) in members {
            guard case .string(let file) = value else {
                throw FlintError(.corrupt, "\(path): weight_map entry '\(tensor)' must be a shard file name, got \(value.kindDescription)")
            }
            // Shards live beside the index; a path could reach outside the model folder.
            guard !file.isEmpty, !file.contains("/"), !file.contains("\\"), file != ".", file != ".." else {
                throw FlintError(.corrupt, "\(path): weight_map entry '\(tensor)' names \"\(file)\"; expected a file name in "
                    + "the same folder")
            }
            map.append((tensor, file))
        }
        guard !map.isEmpty else { throw FlintError(.corrupt, "\(path): weight_map is empty") }
        weightMap = map
        if let total = json["metadata"]?["total_size"] {
            totalSize = total.exactInteger ?? total.doubleValue.flatMap { Int64(exactly: $0) }
        } else {
            totalSize = nil
        }
    }
}
