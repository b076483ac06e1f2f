// Byte layout constants and the metadata JSON of the .flint format (Formats/FLINT.md).

public enum FlintLayout {
    public static let magic: [UInt8] = [0x89, 0x46, 0x4C, 0x49, 0x4E, 0x54, 0x0D, 0x0A]  // "\x89FLINT\r\n"
    public static let formatVersion: UInt32 = 1
    public static let byteOrderMark: UInt32 = 0x0A0B_0C0D
    public static let headerSize = 128
    public static let alignment = 64
    public static let maxNameLength = 1024
    public static let maxDims = 8
    /// Features this reader implements (see `required_features` in the spec).
    public static let knownFeatures: Set<String> = [TokenizerInfo.jsonFeature, TokenizerInfo.addedTokensFeature,
                                                    TokenizerInfo.byt5Feature, TokenizerInfo.bpeFeature,
                                                    T5Config.perLayerRelativeBiasFeature, T5Config.extraActivationsFeature,
                                                    PackedInt8Geometry.requiredFeature, PackedInt4Geometry.requiredFeature,
                                                    GenerationDefaults.specialIdsFeature]

    /// Rounds `offset` up to the format's alignment.
    @inline(__always) public static func aligned(_ offset: Int) -> Int {
        (offset + alignment - 1) / alignment * alignment
    }
}

/// The tokenizer descriptor stored in metadata (Formats/FLINT.md, "Tokenizer section").
public struct TokenizerInfo: Codable, Sendable, Equatable {
    /// The tokenizer section holds a sentencepiece `spiece.model` (transformers' slow T5Tokenizer).
    public static let sentencepiece = "sentencepiece"
    /// The tokenizer section holds a Hugging Face `tokenizer.json` (the fast tokenizer of `tokenizers`).
    public static let tokenizersJSON = "hf-tokenizers-json"
    /// `required_features` entry of files whose tokenizer section is a `tokenizer.json`.
    public static let jsonFeature = "tokenizer-json"
    /// `model` of a `tokenizer.json` whose model is BPE (absent: Unigram, the T5 / mT5 / UMT5 model).
    public static let bpeModel = "BPE"
    /// `required_features` entry of files whose `tokenizer.json` has a BPE model: readers that know only Unigram
    /// tokenizer.json files must not open them as if they could tokenize.
    public static let bpeFeature = "tokenizer-bpe"
    /// `required_features` entry of sentencepiece files with an explicit added-token table.
    public static let addedTokensFeature = "tokenizer-added-tokens"
    /// transformers' `ByT5Tokenizer` (google/byt5-*): UTF-8 bytes with ids `byte + 3`, no vocabulary file. The section
    /// holds `byt5SectionBytes` (a section is never empty when the metadata describes a tokenizer); the added tokens
    /// are in the metadata, always.
    public static let byt5 = "byt5"
    /// `required_features` entry of files whose tokenizer is `byt5`.
    public static let byt5Feature = "tokenizer-byt5"
    /// The tokenizer section of a `byt5` file: the ASCII bytes of `ByT5Tokenizer`.
    public static let byt5SectionBytes = Array("ByT5Tokenizer".utf8)

    public var type: String
    /// Number of sentinels `<extra_id_N>` (consecutive from 0) the tokenizer has.
    public var extraIds: Int
    /// sentencepiece and byt5: every added token with its id and flags, as transformers' `added_tokens_decoder`
    /// after loading the folder. Nil (sentencepiece only): `<pad>`, `</s>`, `<unk>` and `extraIds` sentinels
    /// (version 1 files). For byt5 always given, with pad, eos and unk at ids 0, 1 and 2.
    public var addedTokens: [AddedTokenInfo]?
    /// sentencepiece and byt5: `additional_special_tokens` (special tokens besides pad/eos/unk). Nil
    /// (sentencepiece only): the sentinels.
    public var additionalSpecialTokens: [String]?
    /// `clean_up_tokenization_spaces` of `tokenizer_config.json` (decode post-processing); nil means false.
    public var cleanUpTokenizationSpaces: Bool?
    /// hf-tokenizers-json: the `tokenizer.json`'s model type when it is not Unigram (`bpeModel`); nil for Unigram.
    public var model: String?

    public init(type: String = "sentencepiece", extraIds: Int = 100) {
        self.type = type
        self.extraIds = extraIds
    }

    /// The `required_features` a file carrying this tokenizer must list: readers that predate them would
    /// misread the section (a tokenizer.json fed to sentencepiece, added tokens ignored).
    /// The file name these bytes come from in a Hugging Face folder.
    public var fileName: String {
        switch type {
        case Self.tokenizersJSON: return "tokenizer.json"
        case Self.byt5: return "ByT5Tokenizer"
        default: return "spiece.model"
        }
    }

    public var requiredFeatures: [String] {
        if type == Self.tokenizersJSON { return [Self.jsonFeature] + (model == Self.bpeModel ? [Self.bpeFeature] : []) }
        if type == Self.byt5 { return [Self.byt5Feature] }
        if addedTokens != nil || additionalSpecialTokens != nil { return [Self.addedTokensFeature] }
        return []
    }

    enum CodingKeys: String, CodingKey {
        case type
        case extraIds = "extra_ids"
        case addedTokens = "added_tokens"
        case additionalSpecialTokens = "additional_special_tokens"
        case cleanUpTokenizationSpaces = "clean_up_tokenization_spaces"
        case model
    }
}

/// One added token of a tokenizer, with the flags of transformers' / tokenizers' `AddedToken`.
public struct AddedTokenInfo: Codable, Sendable, Equatable {
    public var id: Int
    public var content: String
    public var special: Bool
    public var lstrip: Bool
    public var rstrip: Bool
    public var singleWord: Bool
    public var normalized: Bool

    public init(id: Int, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false,
                singleWord: Bool = false, normalized: Bool? = nil) {
        self.id = id
        self.content = content
        self.special = special
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.singleWord = singleWord
        self.normalized = normalized ?? !special
    }

    enum CodingKeys: String, CodingKey {
        case id, content, special, lstrip, rstrip, normalized
        case singleWord = "single_word"
    }
}

/// One source file a model was converted from.
public struct SourceFile: Codable, Sendable, Equatable {
    public var name: String
    public var bytes: Int64
    public init(name: String, bytes: Int64) {
        self.name = name
        self.bytes = bytes
    }
}

/// The quantization recipe a file was made with.
public struct QuantizationRecipe: Codable, Sendable, Equatable {
    public var scheme: String
    public var keep: [String]
    public var defaultKeep: Bool
    /// Per-tensor storage overrides, `GLOB=SCHEME` (absent from older files: empty).
    public var schemeRules: [String]
    /// How `flint convert --target-top1 / --max-mean-kl` reached the recipe; nil when no search ran.
    public var search: RecipeSearchRecord?

    public init(scheme: String, keep: [String], defaultKeep: Bool, schemeRules: [String] = [],
                search: RecipeSearchRecord? = nil) {
        self.scheme = scheme
        self.keep = keep
        self.defaultKeep = defaultKeep
        self.schemeRules = schemeRules
        self.search = search
    }

    enum CodingKeys: String, CodingKey {
        case scheme, keep
        case defaultKeep = "default_keep"
        case schemeRules = "scheme_rules"
        case search
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        scheme = try c.decode(String.self, forKey: .scheme)
        keep = try c.decode([String].self, forKey: .keep)
        defaultKeep = try c.decode(Bool.self, forKey: .defaultKeep)
        schemeRules = try c.decodeIfPresent([String].self, forKey: .schemeRules) ?? []
        search = try c.decodeIfPresent(RecipeSearchRecord.self, forKey: .search)
    }

    /// `scheme_rules` and `search` are written only when there are any, so files converted without them keep
    /// their bytes.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scheme, forKey: .scheme)
        try c.encode(keep, forKey: .keep)
        try c.encode(defaultKeep, forKey: .defaultKeep)
        if !schemeRules.isEmpty { try c.encode(schemeRules, forKey: .schemeRules) }
        try c.encodeIfPresent(search, forKey: .search)
    }
}

/// The record of an automatic recipe search (`flint convert --target-top1 X / --max-mean-kl X`): the targets,
/// the teacher-forced quality against the float model on the search prompts before and after, and every tensor
/// moved to a finer form, in order, with what it cost.
public struct RecipeSearchRecord: Codable, Sendable, Equatable {
    public struct Quality: Codable, Sendable, Equatable {
        public var top1: Double
        public var meanKL: Double
        public init(top1: Double, meanKL: Double) {
            self.top1 = top1
            self.meanKL = meanKL
        }
        enum CodingKeys: String, CodingKey {
            case top1
            case meanKL = "mean_kl"
        }
    }

    public struct Change: Codable, Sendable, Equatable {
        public var tensor: String
        /// The stored form before and after (`int8`, `int8-g32`, `f32`, …).
        public var from: String
        public var to: String
        /// Bytes the change added to the file (data and scales).
        public var bytes: Int
        /// Mean KL the model lost when only this tensor was in its `from` form (the measured sensitivity).
        public var sensitivityKL: Double
        /// The whole model's quality after this change.
        public var after: Quality

        public init(tensor: String, from: String, to: String, bytes: Int, sensitivityKL: Double, after: Quality) {
            self.tensor = tensor
            self.from = from
            self.to = to
            self.bytes = bytes
            self.sensitivityKL = sensitivityKL
            self.after = after
        }

        enum CodingKeys: String, CodingKey {
            case tensor, from, to, bytes, after
            case sensitivityKL = "sensitivity_kl"
        }
    }

    public var targetTop1: Double?
    public var maxMeanKL: Double?
    public var prompts: Int
    public var promptSource: String
    public var kernels: String
    public var before: Quality
    public var after: Quality
    public var met: Bool
    public var changes: [Change]

    public init(targetTop1: Double?, maxMeanKL: Double?, prompts: Int, promptSource: String, kernels: String,
                before: Quality, after: Quality, met: Bool, changes: [Change]) {
        self.targetTop1 = targetTop1
        self.maxMeanKL = maxMeanKL
        self.prompts = prompts
        self.promptSource = promptSource
        self.kernels = kernels
        self.before = before
        self.after = after
        self.met = met
        self.changes = changes
    }

    enum CodingKeys: String, CodingKey {
        case targetTop1 = "target_top1"
        case maxMeanKL = "max_mean_kl"
        case prompts
        case promptSource = "prompt_source"
        case kernels, before, after, met, changes
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if let targetTop1 { try c.encode(targetTop1, forKey: .targetTop1) } else { try c.encodeNil(forKey: .targetTop1) }
        if let maxMeanKL { try c.encode(maxMeanKL, forKey: .maxMeanKL) } else { try c.encodeNil(forKey: .maxMeanKL) }
        try c.encode(prompts, forKey: .prompts)
        try c.encode(promptSource, forKey: .promptSource)
        try c.encode(kernels, forKey: .kernels)
        try c.encode(before, forKey: .before)
        try c.encode(after, forKey: .after)
        try c.encode(met, forKey: .met)
        try c.encode(changes, forKey: .changes)
    }
}

/// Where a file came from.
public struct Provenance: Codable, Sendable, Equatable {
    public var tool: String
    public var sourceFormat: String
    public var sourceFiles: [SourceFile]
    public var quantization: QuantizationRecipe

    public init(tool: String = FlintVersion.toolName, sourceFormat: String, sourceFiles: [SourceFile],
                quantization: QuantizationRecipe) {
        self.tool = tool
        self.sourceFormat = sourceFormat
        self.sourceFiles = sourceFiles
        self.quantization = quantization
    }

    enum CodingKeys: String, CodingKey {
        case tool
        case sourceFormat = "source_format"
        case sourceFiles = "source_files"
        case quantization
    }
}

public enum FlintVersion {
    public static let version = "0.1.0"
    public static let toolName = "flint \(version)"
}

/// The metadata JSON object.
public struct FlintMetadata: Codable, Sendable, Equatable {
    public var requiredFeatures: [String]
    public var config: T5Config
    public var tokenizer: TokenizerInfo?
    public var provenance: Provenance
    public var aliases: [String: String]
    /// SNR in dB of each quantized tensor against its float original; nil when exact.
    public var quantizationError: [String: Double?]
    /// Activation statistics from calibration at conversion and the smoothing applied; nil for a data-free
    /// conversion (absent from the JSON then).
    public var calibration: CalibrationSummary?
    /// The model's generation settings from its generation_config.json (what `generate()` uses by default); nil
    /// (absent from the JSON) when the folder had none beyond the special ids.
    public var generation: GenerationDefaults?

    public init(config: T5Config, tokenizer: TokenizerInfo?, provenance: Provenance,
                aliases: [String: String] = [:], quantizationError: [String: Double?] = [:],
                requiredFeatures: [String] = [], calibration: CalibrationSummary? = nil,
                generation: GenerationDefaults? = nil) {
        self.calibration = calibration
        self.generation = generation
        self.requiredFeatures = requiredFeatures
        self.config = config
        self.tokenizer = tokenizer
        self.provenance = provenance
        self.aliases = aliases
        self.quantizationError = quantizationError
    }

    enum CodingKeys: String, CodingKey {
        case requiredFeatures = "required_features"
        case config, tokenizer, provenance, aliases
        case quantizationError = "quantization_error"
        case calibration
        case generation
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(requiredFeatures, forKey: .requiredFeatures)
        try c.encode(config, forKey: .config)
        // `tokenizer: null` is written explicitly, as the spec says.
        if let tokenizer { try c.encode(tokenizer, forKey: .tokenizer) } else { try c.encodeNil(forKey: .tokenizer) }
        try c.encode(provenance, forKey: .provenance)
        try c.encode(aliases, forKey: .aliases)
        var errors = c.nestedContainer(keyedBy: AnyKey.self, forKey: .quantizationError)
        for (name, snr) in quantizationError {
            if let snr, snr.isFinite { try errors.encode(snr, forKey: AnyKey(name)) } else { try errors.encodeNil(forKey: AnyKey(name)) }
        }
        try c.encodeIfPresent(calibration, forKey: .calibration)
        try c.encodeIfPresent(generation, forKey: .generation)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        requiredFeatures = try c.decodeIfPresent([String].self, forKey: .requiredFeatures) ?? []
        config = try c.decode(T5Config.self, forKey: .config)
        tokenizer = try c.decodeIfPresent(TokenizerInfo.self, forKey: .tokenizer)
        provenance = try c.decode(Provenance.self, forKey: .provenance)
        aliases = try c.decodeIfPresent([String: String].self, forKey: .aliases) ?? [:]
        quantizationError = try c.decodeIfPresent([String: Double?].self, forKey: .quantizationError) ?? [:]
        calibration = try c.decodeIfPresent(CalibrationSummary.self, forKey: .calibration)
        generation = try c.decodeIfPresent(GenerationDefaults.self, forKey: .generation)
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// One record of the tensor table.
public struct TensorRecord: Sendable, Equatable {
    public var name: String
    public var storage: StorageType
    public var scheme: QuantScheme
    public var shape: [Int]
    public var layout: TensorLayout
    public var dataOffset: Int
    public var dataSize: Int
    public var scaleOffset: Int
    public var scaleSize: Int
    public var checksum: UInt64

    public init(name: String, storage: StorageType, scheme: QuantScheme, shape: [Int], layout: TensorLayout = .rowMajor,
                dataOffset: Int, dataSize: Int, scaleOffset: Int, scaleSize: Int, checksum: UInt64) {
        self.layout = layout
        self.name = name
        self.storage = storage
        self.scheme = scheme
        self.shape = shape
        self.dataOffset = dataOffset
        self.dataSize = dataSize
        self.scaleOffset = scaleOffset
        self.scaleSize = scaleSize
        self.checksum = checksum
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The record's serialized bytes (Formats/FLINT.md, "Tensor table").
    func serialized() -> [UInt8] {
        var out: [UInt8] = []
        let nameBytes = Array(name.utf8)
        let size = 4 + 2 + nameBytes.count + 1 + 1 + 2 + 4 + 4 + 8 * shape.count + 40
        out.reserveCapacity(size)
        out.appendLE(UInt32(size))
        out.appendLE(UInt16(nameBytes.count))
        out += nameBytes
        out.append(storage.rawValue)
        out.append(scheme.code)
        out.append(layout.rawValue)
        out.append(0)
        out.appendLE(UInt32(scheme.groupSize))
        out.appendLE(UInt32(shape.count))
        for d in shape { out.appendLE(UInt64(d)) }
        out.appendLE(UInt64(dataOffset))
        out.appendLE(UInt64(dataSize))
        out.appendLE(UInt64(scaleOffset))
        out.appendLE(UInt64(scaleSize))
        out.appendLE(checksum)
        return out
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}
