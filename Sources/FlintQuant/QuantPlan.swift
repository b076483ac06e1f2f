// Deciding, for each tensor of a checkpoint, how it is stored in the .flint file.
//
// Order of precedence (first that applies decides):
//   1. Tensors that are always float — the float-only roles of T5WeightLayout (layer norms, the relative
//      attention bias) and anything not 2-D: f32, or the
//      float type of the last keep rule matching the name. They are tiny, and norms / bias feed every layer.
//   2. The last user keep rule matching the name (later rules win over earlier ones).
//   3. The last scheme rule matching the name (a per-tensor override: a finer int8 scheme or a float type; what
//      `flint convert --target-top1` moves sensitive tensors to).
//   4. The default keep (gated-GELU models only, unless turned off): `*.DenseReluDense.wo.weight` stays f32.
//      In FLAN-T5 / T5 v1.1 the input of `wo` reaches magnitudes over 1e5, and int8 `wo` breaks generation
//      (REFERENCE.md §1; transformers keeps `wo` in float32 for the same reason).
//   5. The requested scheme (f16/bf16 requests make 2-D tensors that float type; f32 keeps them f32).

import FlintFormat

/// The storage a conversion asks for: the CLI's `--quant` value.
public enum QuantRequest: Sendable, Equatable, CustomStringConvertible {
    case float(StorageType)
    case int8(QuantScheme)
    /// Int4 in groups of this many inputs (32, 64, 128), with the default int4 recipe (`QuantPlan`).
    case int4(Int)

    /// Every accepted CLI name, in the order error messages list them.
    public static let validNames = ["f32", "f16", "bf16", "int8", "int8-g32", "int8-g64", "int8-g128",
                                    "int4-g32", "int4-g64", "int4-g128"]

    /// Parses a CLI name (`f32`, `f16`, `bf16`, `int8`, `int8-g32`, `int8-g64`, `int8-g128`).
    public init(cliName: String) throws {
        switch cliName {
        case "f32": self = .float(.f32)
        case "f16": self = .float(.f16)
        case "bf16": self = .float(.bf16)
        case "int8": self = .int8(.int8Row)
        case "int8-g32": self = .int8(.int8Group(32))
        case "int8-g64": self = .int8(.int8Group(64))
        case "int8-g128": self = .int8(.int8Group(128))
        case "int4-g32": self = .int4(32)
        case "int4-g64": self = .int4(64)
        case "int4-g128": self = .int4(128)
        default:
            throw FlintError("unknown quantization scheme \"\(cliName)\"; valid schemes: \(QuantRequest.validNames.joined(separator: ", "))")
        }
    }

    /// The CLI name.
    public var name: String {
        switch self {
        case .float(let s): return s.name
        case .int8(let scheme): return scheme.name
        case .int4(let g): return QuantScheme.int4Group(g).name
        }
    }

    public var description: String { name }
}

/// How one tensor is stored.
public enum StoredForm: Sendable, Equatable, CustomStringConvertible {
    /// A float storage type (`f32`, `f16`, `bf16`), scheme `.none`.
    case float(StorageType)
    /// Int8 values with float32 scales.
    case int8(QuantScheme)
    /// Packed int4 codes with f16 scales, groups of this many inputs.
    case int4(Int)

    public var storage: StorageType {
        switch self {
        case .float(let s): return s
        case .int8: return .i8
        case .int4: return .i4
        }
    }

    public var scheme: QuantScheme {
        switch self {
        case .float: return .none
        case .int8(let scheme): return scheme
        case .int4(let g): return .int4Group(g)
        }
    }

    /// `f32`, `f16`, `bf16`, `int8`, `int8-g64`, `int4-g32`, …
    public var description: String {
        switch self {
        case .float(let s): return s.name
        case .int8(let scheme): return scheme.name
        case .int4(let g): return QuantScheme.int4Group(g).name
        }
    }
}

/// A `--keep GLOB[=f32|f16|bf16]` rule: tensors whose name matches stay in that float type (default f32).
/// `*` matches any run of characters (dots included), `?` exactly one; a pattern without either matches only
/// the exact name.
public struct KeepRule: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    public let storage: StorageType
    /// The rule as the user wrote it, for messages.
    public let text: String

    public init(pattern: String, storage: StorageType = .f32) throws {
        try KeepRule.validate(pattern: pattern, storage: storage, text: pattern)
        self.pattern = pattern
        self.storage = storage
        self.text = storage == .f32 ? pattern : "\(pattern)=\(storage.name)"
    }

    /// Parses `GLOB` or `GLOB=f32|f16|bf16`.
    public init(parsing text: String) throws {
        var pattern = text
        var storage = StorageType.f32
        if let eq = text.lastIndex(of: "=") {
            pattern = String(text[..<eq])
            let typeName = String(text[text.index(after: eq)...])
            guard let parsed = StorageType(name: typeName), parsed.isFloat else {
                throw FlintError("keep rule \"\(text)\": unknown float type \"\(typeName)\"; use GLOB, GLOB=f32, GLOB=f16 or GLOB=bf16")
            }
            storage = parsed
        }
        try KeepRule.validate(pattern: pattern, storage: storage, text: text)
        self.pattern = pattern
        self.storage = storage
        self.text = text
    }

    private static func validate(pattern: String, storage: StorageType, text: String) throws {
        guard !pattern.isEmpty else {
            throw FlintError("keep rule \"\(text)\": empty name pattern; use GLOB, GLOB=f32, GLOB=f16 or GLOB=bf16")
        }
        guard storage.isFloat else {
            throw FlintError("keep rule \"\(text)\": storage must be a float type (f32, f16, bf16), got \(storage)")
        }
    }

    public func matches(_ name: String) -> Bool { globMatch(pattern: pattern, name: name) }

    public var description: String { text }
}

/// A per-tensor storage override: tensors whose name matches (glob as in `KeepRule`) are stored as `form`
/// (for example `int8-g32` for a tensor per-row int8 hurts, or `f16`).
public struct SchemeRule: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    public let form: StoredForm

    public init(pattern: String, form: StoredForm) throws {
        guard !pattern.isEmpty else { throw FlintError("scheme rule: empty name pattern") }
        self.pattern = pattern
        self.form = form
    }

    /// Parses `GLOB=SCHEME` with any `--quant` name as the scheme (`*.wo.weight=int8-g32`, `lm_head.weight=f16`).
    public init(parsing text: String) throws {
        guard let eq = text.lastIndex(of: "="), eq != text.startIndex else {
            throw FlintError("scheme rule \"\(text)\": expected GLOB=SCHEME (SCHEME one of \(QuantRequest.validNames.joined(separator: ", ")))")
        }
        let request = try QuantRequest(cliName: String(text[text.index(after: eq)...]))
        switch request {
        case .float(let s): try self.init(pattern: String(text[..<eq]), form: .float(s))
        case .int8(let scheme): try self.init(pattern: String(text[..<eq]), form: .int8(scheme))
        case .int4(let g): try self.init(pattern: String(text[..<eq]), form: .int4(g))
        }
    }

    public func matches(_ name: String) -> Bool { globMatch(pattern: pattern, name: name) }

    public var description: String { "\(pattern)=\(form)" }
}

/// Why a tensor is not stored the way the request alone would store it.
public enum KeepReason: Sendable, Equatable, CustomStringConvertible {
    /// A user keep rule (the last one matching).
    case keepRule(KeepRule)
    /// `*layer_norm.weight` (including `final_layer_norm`).
    case layerNorm
    /// `*relative_attention_bias.weight`.
    case relativeAttentionBias
    /// Not a 2-D tensor.
    case notMatrix
    /// The default keep of gated-GELU models: `*.DenseReluDense.wo.weight`.
    case defaultKeepFeedForwardOutput
    /// A scheme rule (the last one matching).
    case schemeRule(SchemeRule)
    /// Another role `T5WeightLayout` declares float-only (its raw value).
    case floatOnlyRole(String)
    /// The default int4 recipe keeps the embedding (`shared.weight`) int8.
    case int4DefaultEmbedding

    /// A short text for messages and JSON (`kept_float`).
    public var description: String {
        switch self {
        case .keepRule(let rule): return "keep rule \(rule.text)"
        case .layerNorm: return "layer norm"
        case .relativeAttentionBias: return "relative attention bias"
        case .notMatrix: return "not a 2-D tensor"
        case .defaultKeepFeedForwardOutput: return "default keep (gated-GELU FFN output projection wo)"
        case .schemeRule(let rule): return "scheme rule \(rule)"
        case .floatOnlyRole(let role): return "\(role) (always float)"
        case .int4DefaultEmbedding: return "default int4 recipe (embedding int8)"
        }
    }
}

/// The decision for one tensor.
public struct TensorDecision: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let form: StoredForm
    /// Set when the form differs from what the requested scheme alone gives a 2-D tensor (a float form, or
    /// another int8 scheme by a scheme rule): the rule or built-in exception responsible. `nil` when the
    /// requested scheme applied.
    public let reason: KeepReason?

    public init(name: String, shape: [Int], form: StoredForm, reason: KeepReason?) {
        self.name = name
        self.shape = shape
        self.form = form
        self.reason = reason
    }
}

public struct QuantPlan: Sendable {
    public static let defaultKeepPattern = T5WeightLayout.feedForwardOutputPattern

    public let request: QuantRequest
    public let keepRules: [KeepRule]
    public let schemeRules: [SchemeRule]
    public let useDefaultKeep: Bool
    /// Whether the model has a gated FFN (`T5Config.isGatedFFN`), which is when the default keep applies.
    public let isGatedFFN: Bool

    public init(request: QuantRequest, keepRules: [KeepRule] = [], schemeRules: [SchemeRule] = [],
                useDefaultKeep: Bool = true, isGatedFFN: Bool) {
        self.request = request
        self.keepRules = keepRules
        self.schemeRules = schemeRules
        self.useDefaultKeep = useDefaultKeep
        self.isGatedFFN = isGatedFFN
    }

    public init(request: QuantRequest, keepRules: [KeepRule] = [], schemeRules: [SchemeRule] = [],
                useDefaultKeep: Bool = true, config: T5Config) {
        self.init(request: request, keepRules: keepRules, schemeRules: schemeRules, useDefaultKeep: useDefaultKeep,
                  isGatedFFN: config.isGatedFFN)
    }

    /// The decision for one tensor.
    public func decide(name: String, shape: [Int]) -> TensorDecision {
        let requested: StoredForm
        switch request {
        case .float(let s): requested = .float(s)
        case .int8(let scheme): requested = .int8(scheme)
        case .int4(let g): requested = .int4(g)
        }
        let rule = keepRules.last(where: { $0.matches(name) })

        let form: StoredForm
        let cause: KeepReason
        if let builtIn = QuantPlan.alwaysFloatReason(name: name, shape: shape) {
            form = .float(rule?.storage ?? .f32)
            cause = rule.map { .keepRule($0) } ?? builtIn
        } else if let rule {
            form = .float(rule.storage)
            cause = .keepRule(rule)
        } else if let schemeRule = schemeRules.last(where: { $0.matches(name) }) {
            form = schemeRule.form
            cause = .schemeRule(schemeRule)
        } else if useDefaultKeep, isGatedFFN, globMatch(pattern: QuantPlan.defaultKeepPattern, name: name) {
            form = .float(.f32)
            cause = .defaultKeepFeedForwardOutput
        } else if case .int4 = request, let (int8Form, why) = QuantPlan.int4DefaultInt8(name: name) {
            form = int8Form
            cause = why
        } else {
            return TensorDecision(name: name, shape: shape, form: requested, reason: nil)
        }
        return TensorDecision(name: name, shape: shape, form: form, reason: form == requested ? nil : cause)
    }

    /// Decisions for every tensor, in the given order.
    public func decide(tensors: [(name: String, shape: [Int])]) -> [TensorDecision] {
        tensors.map { decide(name: $0.name, shape: $0.shape) }
    }

    /// The keep rules that match none of `tensorNames` (call with every tensor name of the model, after
    /// planning, and warn about each: a misspelt rule would otherwise silently keep nothing).
    public func unmatchedKeepRules<Names: Sequence>(tensorNames: Names) -> [KeepRule] where Names.Element == String {
        var matched = [Bool](repeating: false, count: keepRules.count)
        for name in tensorNames {
            for (i, rule) in keepRules.enumerated() where !matched[i] && rule.matches(name) {
                matched[i] = true
            }
        }
        return keepRules.indices.filter { !matched[$0] }.map { keepRules[$0] }
    }

    /// The default int4 recipe (`--quant int4-gG` without a scheme rule for the tensor): the embedding stays
    /// per-row int8 — it feeds every token's residual stream, and decoding reads one row of it per token — and
    /// every linear layer (attention, wi, wo, lm_head) is int4. The FFN output projections wo carry the model's
    /// largest activations: a calibrated conversion keeps a wo int8 (with a scheme rule) where its
    /// activation-aware int4 error is worse than the model's other int4 layers' (FlintCalibration,
    /// Int4ActivationWeights). For flan-t5-base this keeps the file under 170 MB.
    static func int4DefaultInt8(name: String) -> (StoredForm, KeepReason)? {
        if name == "shared.weight" || globMatch(pattern: "*embed_tokens.weight", name: name) {
            return (.int8(.int8Row), .int4DefaultEmbedding)
        }
        return nil
    }

    /// The reason a tensor is float whatever was requested, or nil.
    static func alwaysFloatReason(name: String, shape: [Int]) -> KeepReason? {
        // The layout's float-only roles (norms, the bias table).
        switch T5WeightLayout.floatOnlyRole(ofTensor: name) {
        case .layerNorm?: return .layerNorm
        case .relativeAttentionBias?: return .relativeAttentionBias
        case let role?: return .floatOnlyRole(role.rawValue)
        case nil: break
        }
        if shape.count != 2 { return .notMatrix }
        return nil
    }
}

/// Glob match over Unicode scalars: `*` any run (possibly empty, dots included), `?` exactly one scalar,
/// everything else literal. Greedy with single-point backtracking, so linear-ish and never exponential.
public func globMatch(pattern: String, name: String) -> Bool {
    let p = Array(pattern.unicodeScalars)
    let n = Array(name.unicodeScalars)
    var pi = 0, ni = 0
    var starP = -1, starN = 0
    while ni < n.count {
        if pi < p.count && (p[pi] == "?" || (p[pi] != "*" && p[pi] == n[ni])) {
            pi += 1
            ni += 1
        } else if pi < p.count && p[pi] == "*" {
            starP = pi
            starN = ni
            pi += 1
        } else if starP >= 0 {
            // Let the last `*` swallow one more character and retry from there.
            starN += 1
            ni = starN
            pi = starP + 1
        } else {
            return false
        }
    }
    while pi < p.count && p[pi] == "*" { pi += 1 }
    return pi == p.count
}
