// A Hugging Face model folder (config.json, safetensors weights single or sharded, optional spiece.model) as a
// WeightSource, plus what the converter needs to describe and deduplicate it.
import Foundation
import FlintFormat

public final class HFModelFolder: WeightSource, @unchecked Sendable {
    /// The folder holding config.json (for a path to a .safetensors file, the file's folder).
    public let folder: String
    /// The path as given.
    public let path: String
    public let config: T5Config
    /// Everything else config.json said.
    public let configDetails: HFConfigDetails
    /// `safetensors` (later readers add `pytorch`, `keras-h5`, `flax-msgpack`).
    public let sourceFormat: String
    /// The files read, by file name, with their sizes: config.json, the shard index if any, the weight files.
    public let sourceFiles: [(name: String, bytes: Int64)]
    /// Every stored tensor, shard by shard (shards in file-name order), each in the order of its data.
    public let tensorInfos: [CheckpointTensorInfo]
    /// Stored tensors that are byte-identical copies of another stored tensor (tied embeddings):
    /// `encoder.embed_tokens.weight`, `decoder.embed_tokens.weight` or `lm_head.weight` → `shared.weight`.
    /// Only tensors with the same dtype and shape are compared.
    public let aliases: [String: String]
    /// Stored tensors transformers does not use, with the reason (e.g. a tied model's stored `lm_head.weight`
    /// that differs from `shared.weight`: transformers ties it to `shared.weight` and ignores the copy).
    public let ignoredTensors: [String: String]
    public let tokenizerModel: [UInt8]?
    /// The checkpoint files, one reader per file.
    public let readers: [CheckpointReader]

    private let location: [String: Int]  // stored name → index into `readers`

    public var sourceDescription: String { path }
    /// The stored tensor names (tied aliases that are not stored resolve through `tensor(_:)` but are not listed).
    public var tensorNames: [String] { tensorInfos.map(\.name) }

    /// File names of the formats other readers will handle, with how to recognise them.
    static let otherFormats: [(file: String, format: String)] = [
        ("pytorch_model.bin", "PyTorch .bin"), ("pytorch_model.bin.index.json", "PyTorch .bin (sharded)"),
        ("tf_model.h5", "Keras .h5"), ("tf_model.h5.index.json", "Keras .h5 (sharded)"),
        ("flax_model.msgpack", "Flax msgpack"), ("flax_model.msgpack.index.json", "Flax msgpack (sharded)"),
    ]

    /// Opens a model folder, or a `.safetensors` / `.safetensors.index.json` file with config.json beside it.
    public init(path: String) throws {
        self.path = path
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FlintError("\(path): no such file or folder")
        }
        let folderURL: URL
        var weightsPath: String? = nil
        var indexPath: String? = nil
        if isDir.boolValue {
            folderURL = URL(fileURLWithPath: path, isDirectory: true)
            let single = folderURL.appendingPathComponent("model.safetensors").path
            let index = folderURL.appendingPathComponent("model.safetensors.index.json").path
            // transformers looks for the single file first, then the index.
            if fm.fileExists(atPath: single) { weightsPath = single }
            else if fm.fileExists(atPath: index) { indexPath = index }
        } else {
            let url = URL(fileURLWithPath: path)
            folderURL = url.deletingLastPathComponent()
            if path.hasSuffix(".safetensors.index.json") { indexPath = path }
            else if path.hasSuffix(".safetensors") { weightsPath = path }
            else {
                throw FlintError("\(path): expected a model folder, a .safetensors file or a "
                    + ".safetensors.index.json file")
            }
        }
        folder = folderURL.path

        let configPath = folderURL.appendingPathComponent("config.json").path
        guard fm.fileExists(atPath: configPath) else {
            throw FlintError("\(folder): no config.json (a Hugging Face model folder needs config.json beside "
                + "its weights)")
        }
        let details = try HFConfig.parseDetails(path: configPath)
        var files: [(name: String, bytes: Int64)] = [("config.json", HFModelFolder.fileSize(configPath))]

        var readers: [CheckpointReader] = []
        var location: [String: Int] = [:]
        var infos: [CheckpointTensorInfo] = []
        if let weightsPath {
            let file = try SafetensorsFile(path: weightsPath)
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
                    throw FlintError("\(indexPath): names shard \"\(name)\", which is not in \(folder)")
                }
                readerOf[name] = readers.count
                let shard = try SafetensorsFile(path: shardPath)
                readers.append(shard)
                files.append((name, shard.fileSize))
            }
            var listed = Set<String>()
            for (tensor, file) in index.weightMap {
                let r = readerOf[file]!
                guard readers[r].contains(tensor) else {
                    throw FlintError("\(indexPath): maps tensor '\(tensor)' to shard \"\(file)\", but that shard has "
                        + "no such tensor")
                }
                location[tensor] = r
                listed.insert(tensor)
            }
            // The index is the authority: a shard's tensors that the index does not list are not part of the model.
            for reader in readers { infos += reader.tensorInfos.filter { listed.contains($0.name) } }
        } else {
            let found = HFModelFolder.otherFormats.filter { fm.fileExists(atPath: folderURL.appendingPathComponent($0.file).path) }
            let strays = ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
            var message = "\(folder): no safetensors weights (model.safetensors or model.safetensors.index.json)"
            if !found.isEmpty {
                message += "; found " + found.map { "\($0.file) (\($0.format))" }.joined(separator: ", ")
                    + ", but this reader handles safetensors only (transformers' save_pretrained(..., "
                    + "safe_serialization=True) writes safetensors)"
            }
            if !strays.isEmpty {
                message += "; other .safetensors files here: " + strays.joined(separator: ", ")
                    + " (pass one of them as the path, or add model.safetensors.index.json)"
            }
            throw FlintError(message)
        }

        // Tied embeddings: which stored tensors duplicate the embedding table.
        func bytesEqual(_ a: String, _ b: String) throws -> Bool {
            guard let ia = location[a], let ib = location[b],
                  let ta = readers[ia].tensorInfo(a), let tb = readers[ib].tensorInfo(b),
                  ta.dtype == tb.dtype, ta.shape == tb.shape else { return false }
            let x = try readers[ia].rawBytes(a), y = try readers[ib].rawBytes(b)
            guard x.count == y.count else { return false }
            if x.count == 0 { return true }
            return memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0
        }
        let embedding = ["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
            .first { location[$0] != nil }
        var aliases: [String: String] = [:]
        var ignored: [String: String] = [:]
        var hasDistinctLMHead = false
        if let embedding {
            for name in ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"]
            where name != embedding && location[name] != nil {
                if try bytesEqual(name, embedding) {
                    aliases[name] = embedding
                } else if name == "lm_head.weight" {
                    hasDistinctLMHead = true
                } else {
                    // transformers builds both stacks' embed_tokens on the shared module.
                    ignored[name] = "differs from \(embedding); transformers uses \(embedding) as the input embedding"
                }
            }
        } else {
            hasDistinctLMHead = location["lm_head.weight"] != nil
        }
        let config = details.resolved(hasDistinctLMHead: hasDistinctLMHead)
        if hasDistinctLMHead && config.tieWordEmbeddings && !config.isEncoderOnly {
            ignored["lm_head.weight"] = "config.json ties the output projection to \(embedding ?? "shared.weight") "
                + "(tie_word_embeddings absent or true); transformers ignores the stored copy"
        }
        guard embedding != nil else {
            throw FlintError("\(folder): no embedding table stored (shared.weight, encoder.embed_tokens.weight or "
                + "decoder.embed_tokens.weight)")
        }
        if !config.isEncoderOnly && !config.tieWordEmbeddings && location["lm_head.weight"] == nil {
            throw FlintError("\(folder): config.json says the output projection is not tied "
                + "(tie_word_embeddings: false) but no lm_head.weight is stored")
        }

        self.config = config
        self.configDetails = details
        self.sourceFormat = "safetensors"
        self.sourceFiles = files
        self.tensorInfos = infos
        self.aliases = aliases
        self.ignoredTensors = ignored
        self.readers = readers
        self.location = location
        let spiece = folderURL.appendingPathComponent("spiece.model").path
        if fm.fileExists(atPath: spiece) {
            guard let data = fm.contents(atPath: spiece) else { throw FlintError("\(spiece): cannot read") }
            tokenizerModel = [UInt8](data)
        } else {
            tokenizerModel = nil
        }
    }

    /// The stored tensor a name resolves to (itself, or the embedding table for tied names), nil when none.
    public func storedName(for name: String) -> String? {
        let embedding = ["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
            .first { location[$0] != nil }
        switch name {
        case "encoder.embed_tokens.weight", "decoder.embed_tokens.weight":
            // Both stacks embed with the shared table.
            return embedding
        case "shared.weight":
            return embedding
        case "lm_head.weight":
            if config.tieWordEmbeddings && !config.isEncoderOnly { return embedding }
            return location[name] != nil ? name : nil
        default:
            return location[name] != nil ? name : nil
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
            throw FlintError("\(path): no tensor '\(name)' in this model folder (\(tensorInfos.count) tensors stored)")
        }
        let v = try readers[r].tensor(stored)
        if stored == name { return v }
        return TensorView(name: name, storage: v.storage, shape: v.shape, scheme: v.scheme, data: v.data,
                          scales: v.scales, owner: v.owner)
    }

    /// The stored bytes of a tensor (any dtype), tied aliases resolved.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let stored = storedName(for: name), let r = location[stored] else {
            throw FlintError("\(path): no tensor '\(name)' in this model folder")
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
            throw FlintError("\(path): cannot read the shard index")
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(data)
        } catch let e as JSONParseError {
            throw FlintError("\(path): shard index is not valid JSON: \(e.message) at byte \(e.offset)")
        }
        guard case .object(let members)? = json["weight_map"] else {
            throw FlintError("\(path): shard index needs a \"weight_map\" object {tensor name: shard file}, got "
                + (json["weight_map"]?.kindDescription ?? "nothing"))
        }
        var map: [(tensor: String, file: String)] = []
        for (tensor, value) in members {
            guard case .string(let file) = value else {
                throw FlintError("\(path): weight_map entry '\(tensor)' must be a shard file name, got \(value.kindDescription)")
            }
            // Shards live beside the index; a path could reach outside the model folder.
            guard !file.isEmpty, !file.contains("/"), !file.contains("\\"), file != ".", file != ".." else {
                throw FlintError("\(path): weight_map entry '\(tensor)' names \"\(file)\"; expected a file name in "
                    + "the same folder")
            }
            map.append((tensor, file))
        }
        guard !map.isEmpty else { throw FlintError("\(path): weight_map is empty") }
        weightMap = map
        if let total = json["metadata"]?["total_size"] {
            totalSize = total.exactInteger ?? total.doubleValue.flatMap { Int64(exactly: $0) }
        } else {
            totalSize = nil
        }
    }
}
