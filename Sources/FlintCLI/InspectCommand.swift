import ArgumentParser
import Foundation
import FlintFormat

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a .flint file's config, generation settings, tokenizer, provenance and tensor table.",
        discussion: helpDiscussion("""
        The file is validated (header, tensor table, metadata) before anything is shown; --verify also reads
        every tensor and checks its XXH64 checksum.

        Examples:
          flint inspect model.flint
          flint inspect model.flint --json | jq '.tensors[] \\
              | select(.scheme != "float") | .name'
          flint inspect model.flint.zst --verify
          flint inspect model.flint --json | jq '.calibration.smoothing.folds[] \\
              | [.producer, .max_scale]'

        The generation settings are those of the model's generation_config.json that `flint run` follows with no
        flags (transformers' names); required features are what a reader must implement to use the file.
        A calibrated file also shows its calibration: the prompts, every smoothing fold (producer → consumers,
        scale range, largest input before → after) and, after the tensor table, each linear layer's input
        statistics (rows, abs max, percentile, median channel maximum, top channels).
        """))

    @Argument(help: "A .flint file (or .flint.zst).")
    var file: String

    @Flag(help: "Check every tensor's checksum (reads the whole file).")
    var verify = false

    @OptionGroup var format: JSONOption

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
            if format.json {
                try printJSON(try InspectJSON(f, verified: verify))
            } else {
                try printText(f)
            }
        }
    }

    private func printText(_ f: FlintFile) throws {
        let c = f.config
        let m = f.metadata
        let fileCalibration = try f.calibration()
        print("\(f.path): .flint format version \(f.header.formatVersion), \(formatBytes(Int64(f.fileSize)))")
        print("model      \(c.architecture), d_model \(c.dModel), d_kv \(c.dKV), d_ff \(c.dFF), heads \(c.numHeads), "
              + "layers \(c.numEncoderLayers)+\(c.numDecoderLayers), vocab \(c.vocabSize)")
        print("           ffn \(c.isGatedFFN ? "gated-" : "")\(c.activation.rawValue), "
              + (c.tieWordEmbeddings ? "tied embeddings" : "untied lm_head")
              + (c.scaleDecoderOutputs ? " (output × d_model^-0.5)" : "")
              + ", buckets \(c.relativeAttentionNumBuckets)/\(c.relativeAttentionMaxDistance), eps \(c.layerNormEpsilon)")
        print("           pad \(c.padTokenId), eos \(c.eosTokenId), decoder start \(c.decoderStartTokenId)")
        if let g = m.generation {
            // What `flint run` follows with no flags, in transformers' names (sorted).
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let settings = try JSONSerialization.jsonObject(with: try encoder.encode(g)) as? [String: Any] ?? [:]
            let text = settings.keys.sorted().map { key -> String in
                let value = settings[key]!
                let shown = (try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed]))
                    .map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
                return "\(key) \(shown)"
            }
            print("generation " + text.joined(separator: ", "))
        }
        if !m.requiredFeatures.isEmpty { print("features   " + m.requiredFeatures.joined(separator: ", ")) }
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
        if let calibration = fileCalibration { printCalibration(calibration) }
        if !m.aliases.isEmpty {
            print("aliases    " + m.aliases.sorted { $0.key < $1.key }.map { "\($0.key) → \($0.value)" }.joined(separator: ", "))
        }
        if verify { print("checksums  all \(f.records.count) tensors verified") }
        if let calibration = fileCalibration { printCalibrationLayers(calibration) }
        print("")
        let nameWidth = min(96, f.records.map(\.name.count).max() ?? 10)
        printStorageSummary(f)
        print("name".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  scheme    layout          shape            bytes      SNR dB")
        for r in f.records {
            let snr = m.quantizationError[r.name].flatMap { $0 }.map { String(format: "%6.1f", $0) } ?? ""
            let scheme = r.scheme == .none ? r.storage.name : r.scheme.name
            print(r.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
                  + scheme.padding(toLength: 9, withPad: " ", startingAt: 0) + " "
                  + r.layout.name.padding(toLength: 15, withPad: " ", startingAt: 0) + " "
                  + "\(r.shape)".padding(toLength: 16, withPad: " ", startingAt: 0) + " "
                  + String(r.dataSize + r.scaleSize).padding(toLength: 10, withPad: " ", startingAt: 0) + " " + snr)
        }
    }
}

extension InspectCommand {
    /// One line per stored form: tensors, elements, bytes and bits per element (scales and packing included),
    /// so an int4 file's real cost per weight is visible.
    func printStorageSummary(_ f: FlintFile) {
        var totals: [String: (tensors: Int, elements: Int, bytes: Int)] = [:]
        for r in f.records {
            let key = r.scheme == .none ? r.storage.name : r.scheme.name
            let elements = r.shape.reduce(1, *)
            let t = totals[key] ?? (0, 0, 0)
            totals[key] = (t.tensors + 1, t.elements + elements, t.bytes + r.dataSize + r.scaleSize)
        }
        let parts = totals.sorted { $0.value.bytes > $1.value.bytes }.map { key, t in
            "\(key) \(t.tensors) tensors \(formatBytes(Int64(t.bytes)))"
                + String(format: " (%.2f bits/weight)", t.elements > 0 ? Double(t.bytes * 8) / Double(t.elements) : 0)
        }
        print("storage    " + parts.joined(separator: "; "))
    }

    /// The calibration line and the folds (what was smoothed, with its scale range).
    func printCalibration(_ c: CalibrationSummary) {
        let largest = c.layers.max { $0.value.absMax < $1.value.absMax }
        print("calibration \(c.prompts) prompts (\(c.promptSource)), \(c.maxNewTokens) new tokens each, \(c.layers.count) layers"
              + (largest.map { String(format: "; largest input %.4g at ", $0.value.absMax) + $0.key } ?? ""))
        guard let s = c.smoothing else {
            print("           no smoothing (statistics only)")
            return
        }
        let minScale = s.folds.map(\.minScale).min() ?? 1, maxScale = s.folds.map(\.maxScale).max() ?? 1
        let after = s.folds.map(\.activationMaxAfter).max() ?? 0
        print(String(format: "smoothing  α %.3g, %d folds, scales %.3g–%.3g; largest smoothed input %.4g", s.alpha, s.folds.count,
                     minScale, maxScale, after))
        for fold in s.folds {
            let consumers = fold.consumers.count <= 3 ? fold.consumers.map(Self.shortName).joined(separator: ", ")
                                                      : "\(fold.consumers.count) layers"
            print("           \(fold.producer) (\(fold.producerAxis)) → \(consumers): "
                  + String(format: "scales %.3g–%.3g, input max %.4g → %.4g", fold.minScale, fold.maxScale,
                           fold.activationMaxBefore, fold.activationMaxAfter))
        }
    }

    /// Every calibrated layer's input statistics, after the tensor table.
    func printCalibrationLayers(_ c: CalibrationSummary) {
        print("")
        let width = min(96, c.layers.keys.map(\.count).max() ?? 10)
        print("calibrated input".padding(toLength: width, withPad: " ", startingAt: 0)
              + "  rows     abs max    p\(String(format: "%g", c.percentile))     median   top channels")
        for (name, l) in c.layers.sorted(by: { Self.layerOrder($0.key) < Self.layerOrder($1.key) }) {
            let top = l.topChannels.map { $0.count == 2 ? String(format: "%d:%.3g", Int($0[0]), $0[1]) : "?" }.joined(separator: " ")
            print(name.padding(toLength: width, withPad: " ", startingAt: 0)
                  + "  " + String(l.rows).padding(toLength: 7, withPad: " ", startingAt: 0)
                  + String(format: " %10.4g %10.4g %10.4g   ", l.absMax, l.percentileMax, l.medianChannelAbsMax) + top)
        }
    }

    /// `encoder.block.0.layer.0.SelfAttention.q.weight` → `SelfAttention.q`.
    static func shortName(_ name: String) -> String {
        let parts = name.split(separator: ".")
        return parts.count >= 3 ? parts.suffix(3).prefix(2).joined(separator: ".") : name
    }

    /// Encoder before decoder, blocks in numeric order, then the head.
    static func layerOrder(_ name: String) -> (Int, Int, String) {
        let parts = name.split(separator: ".")
        let stack = name.hasPrefix("encoder.") ? 0 : name.hasPrefix("decoder.") ? 1 : 2
        let block = parts.count > 2 ? Int(parts[2]) ?? 0 : 0
        return (stack, block, name)
    }
}

/// `inspect --json`'s calibration object: the stored summary without the per-channel fold scales (those are in
/// the file's metadata, for tools that rebuild the smoothed weights).
struct CalibrationInspectJSON: Encodable {
    struct Fold: Encodable {
        var producer: String, producer_axis: String, consumers: [String]
        var min_scale: Double, max_scale: Double, activation_max_before: Double, activation_max_after: Double
    }
    struct Smoothing: Encodable { var alpha: Double; var folds: [Fold] }
    var prompts: Int
    var prompt_source: String
    var max_new_tokens: Int
    var percentile: Double
    var layers: [String: CalibrationLayerSummary]
    var largest_input: Double
    var largest_input_layer: String?
    var smoothing: Smoothing?

    init(_ c: CalibrationSummary) {
        prompts = c.prompts
        prompt_source = c.promptSource
        max_new_tokens = c.maxNewTokens
        percentile = c.percentile
        layers = c.layers
        let largest = c.layers.max { $0.value.absMax < $1.value.absMax }
        largest_input = largest?.value.absMax ?? 0
        largest_input_layer = largest?.key
        smoothing = c.smoothing.map { s in
            Smoothing(alpha: s.alpha, folds: s.folds.map {
                Fold(producer: $0.producer, producer_axis: $0.producerAxis, consumers: $0.consumers,
                     min_scale: $0.minScale, max_scale: $0.maxScale, activation_max_before: $0.activationMaxBefore,
                     activation_max_after: $0.activationMaxAfter)
            })
        }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(prompts, forKey: .prompts)
        try c.encode(prompt_source, forKey: .prompt_source)
        try c.encode(max_new_tokens, forKey: .max_new_tokens)
        try c.encode(percentile, forKey: .percentile)
        try c.encode(layers, forKey: .layers)
        try c.encode(largest_input, forKey: .largest_input)
        try c.encode(largest_input_layer, forKey: .largest_input_layer)
        if let smoothing { try c.encode(smoothing, forKey: .smoothing) } else { try c.encodeNil(forKey: .smoothing) }
    }
    enum CodingKeys: String, CodingKey {
        case prompts, prompt_source, max_new_tokens, percentile, layers, largest_input, largest_input_layer, smoothing
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
        /// `row-major` or `packed16x4` (FLINT.md "Tensor layouts"); `bytes` is the stored size in that layout.
        var layout: String
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
    var calibration: CalibrationInspectJSON?
    var generation: GenerationDefaults?
    var required_features: [String]
    var tensors: [Tensor]

    init(_ f: FlintFile, verified: Bool) throws {
        format_version = f.header.formatVersion
        file_bytes = f.fileSize
        checksums_verified = verified
        config = f.config
        tokenizer = f.metadata.tokenizer.map { Tokenizer(type: $0.type, bytes: f.header.tokenizerSize, extra_ids: $0.extraIds) }
        provenance = f.metadata.provenance
        aliases = f.metadata.aliases
        calibration = try f.calibration().map(CalibrationInspectJSON.init)
        generation = f.metadata.generation
        required_features = f.metadata.requiredFeatures
        tensors = f.records.map {
            Tensor(name: $0.name, dtype: $0.storage.name, shape: $0.shape, offset: $0.dataOffset, bytes: $0.dataSize,
                   scheme: $0.scheme.name, layout: $0.layout.name, group_size: $0.scheme.groupSize, scale_offset: $0.scaleOffset,
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
        if let calibration { try c.encode(calibration, forKey: .calibration) } else { try c.encodeNil(forKey: .calibration) }
        if let generation { try c.encode(generation, forKey: .generation) } else { try c.encodeNil(forKey: .generation) }
        try c.encode(required_features, forKey: .required_features)
        try c.encode(tensors, forKey: .tensors)
    }
    enum CodingKeys: String, CodingKey {
        case format_version, file_bytes, checksums_verified, config, tokenizer, provenance, aliases, calibration, generation,
             required_features, tensors
    }
}
