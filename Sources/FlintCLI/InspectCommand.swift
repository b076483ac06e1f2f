import ArgumentParser
import Foundation
import FlintFormat

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a .flint file's config, tokenizer, provenance and tensor table.",
        discussion: """
        The file is validated (header, tensor table, metadata) before anything is shown; --verify also reads
        every tensor and checks its XXH64 checksum.

        Examples:
          flint inspect model.flint
          flint inspect model.flint --json | jq '.tensors[] | select(.scheme != "float") | .name'
          flint inspect model.flint.zst --verify
        """)

    @Argument(help: "A .flint file (or .flint.zst).")
    var file: String

    @Flag(help: "Check every tensor's checksum (reads the whole file).")
    var verify = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("\(file) does not exist") }
    }

    func run() throws {
        try reportingErrors {
            let f = try openFlintFile(file)
            if verify {
                let bar = ProgressBar("verifying")
                try f.verifyChecksums { bar.update(done: $0, total: $1) }
                bar.finish()
            }
            if json {
                try printJSON(InspectJSON(f, verified: verify))
            } else {
                printText(f)
            }
        }
    }

    private func printText(_ f: FlintFile) {
        let c = f.config
        let m = f.metadata
        print("\(f.path): .flint format version \(f.header.formatVersion), \(formatBytes(Int64(f.fileSize)))")
        print("model      \(c.architecture), d_model \(c.dModel), d_kv \(c.dKV), d_ff \(c.dFF), heads \(c.numHeads), "
              + "layers \(c.numEncoderLayers)+\(c.numDecoderLayers), vocab \(c.vocabSize)")
        print("           ffn \(c.isGatedFFN ? "gated-" : "")\(c.activation.rawValue), "
              + (c.tieWordEmbeddings ? "tied embeddings" : "untied lm_head")
              + (c.scaleDecoderOutputs ? " (output × d_model^-0.5)" : "")
              + ", buckets \(c.relativeAttentionNumBuckets)/\(c.relativeAttentionMaxDistance), eps \(c.layerNormEpsilon)")
        print("           pad \(c.padTokenId), eos \(c.eosTokenId), decoder start \(c.decoderStartTokenId)")
        if let t = m.tokenizer {
            print("tokenizer  \(t.type), \(formatBytes(Int64(f.header.tokenizerSize))), \(t.extraIds) sentinels")
        } else {
            print("tokenizer  none")
        }
        let p = m.provenance
        print("source     \(p.sourceFormat): " + p.sourceFiles.map { "\($0.name) (\(formatBytes($0.bytes)))" }.joined(separator: ", "))
        print("recipe     \(p.quantization.scheme)" + (p.quantization.keep.isEmpty ? "" : ", keep \(p.quantization.keep.joined(separator: " "))")
              + (p.quantization.defaultKeep ? "" : ", no default keep") + " — \(p.tool)")
        if !p.quantization.schemeRules.isEmpty {
            print("           scheme rules \(p.quantization.schemeRules.joined(separator: " "))")
        }
        if let s = p.quantization.search {
            var target: [String] = []
            if let t = s.targetTop1 { target.append(String(format: "top-1 ≥ %.4g", t)) }
            if let k = s.maxMeanKL { target.append(String(format: "mean KL ≤ %.4g", k)) }
            print("search     \(target.joined(separator: ", ")) on \(s.prompts) prompts (\(s.promptSource)): \(s.met ? "met" : "NOT met"); "
                  + String(format: "top-1 %.4f → %.4f, mean KL %.3g → %.3g, ", s.before.top1, s.after.top1, s.before.meanKL, s.after.meanKL)
                  + "\(s.changes.count) changes, +\(formatBytes(Int64(s.changes.reduce(0) { $0 + $1.bytes })))")
            for c in s.changes {
                print("           \(c.tensor) \(c.from) → \(c.to) +\(formatBytes(Int64(c.bytes)))"
                      + String(format: " (alone it cost KL %.3g)", c.sensitivityKL))
            }
        }
        if !m.aliases.isEmpty {
            print("aliases    " + m.aliases.sorted { $0.key < $1.key }.map { "\($0.key) → \($0.value)" }.joined(separator: ", "))
        }
        if verify { print("checksums  all \(f.records.count) tensors verified") }
        print("")
        let nameWidth = min(96, f.records.map(\.name.count).max() ?? 10)
        print("name".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  scheme    shape            bytes      SNR dB")
        for r in f.records {
            let snr = m.quantizationError[r.name].flatMap { $0 }.map { String(format: "%6.1f", $0) } ?? ""
            let scheme = r.scheme == .none ? r.storage.name : r.scheme.name
            print(r.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
                  + scheme.padding(toLength: 9, withPad: " ", startingAt: 0) + " "
                  + "\(r.shape)".padding(toLength: 16, withPad: " ", startingAt: 0) + " "
                  + String(r.dataSize + r.scaleSize).padding(toLength: 10, withPad: " ", startingAt: 0) + " " + snr)
        }
    }
}

struct InspectJSON: Encodable {
    struct Tokenizer: Encodable { var type: String; var bytes: Int; var extra_ids: Int }
    struct Tensor: Encodable {
        var name: String
        var dtype: String
        var shape: [Int]
        var offset: Int
        var bytes: Int
        var scheme: String
        var group_size: Int
        var scale_offset: Int
        var scale_bytes: Int
        var checksum: String
    }
    var format_version: UInt32
    var file_bytes: Int
    var checksums_verified: Bool
    var config: T5Config
    var tokenizer: Tokenizer?
    var provenance: Provenance
    var aliases: [String: String]
    var tensors: [Tensor]

    init(_ f: FlintFile, verified: Bool) {
        format_version = f.header.formatVersion
        file_bytes = f.fileSize
        checksums_verified = verified
        config = f.config
        tokenizer = f.metadata.tokenizer.map { Tokenizer(type: $0.type, bytes: f.header.tokenizerSize, extra_ids: $0.extraIds) }
        provenance = f.metadata.provenance
        aliases = f.metadata.aliases
        tensors = f.records.map {
            Tensor(name: $0.name, dtype: $0.storage.name, shape: $0.shape, offset: $0.dataOffset, bytes: $0.dataSize,
                   scheme: $0.scheme.name, group_size: $0.scheme.groupSize, scale_offset: $0.scaleOffset,
                   scale_bytes: $0.scaleSize, checksum: String(format: "%016llx", $0.checksum))
        }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format_version, forKey: .format_version)
        try c.encode(file_bytes, forKey: .file_bytes)
        try c.encode(checksums_verified, forKey: .checksums_verified)
        try c.encode(config, forKey: .config)
        if let tokenizer { try c.encode(tokenizer, forKey: .tokenizer) } else { try c.encodeNil(forKey: .tokenizer) }
        try c.encode(provenance, forKey: .provenance)
        try c.encode(aliases, forKey: .aliases)
        try c.encode(tensors, forKey: .tensors)
    }
    enum CodingKeys: String, CodingKey { case format_version, file_bytes, checksums_verified, config, tokenizer, provenance, aliases, tensors }
}
