// What the engine reads weights from: a .flint file (FlintFile) or a Hugging Face model folder
// (FlintCheckpoint.HFModelFolder). Both hand out TensorViews under Hugging Face tensor names.

public protocol WeightSource: AnyObject, Sendable {
    /// The model's configuration.
    var config: T5Config { get }
    /// Every tensor name available, in a stable order.
    var tensorNames: [String] { get }
    /// The tensor under its Hugging Face name (e.g. `encoder.block.0.layer.0.SelfAttention.q.weight`).
    /// Tied aliases (`encoder.embed_tokens.weight` → `shared.weight`, and `lm_head.weight` for tied models) resolve.
    /// Throws a FlintError naming the tensor and the source when it is missing.
    func tensor(_ name: String) throws -> TensorView
    /// The tokenizer bytes (`spiece.model` or `tokenizer.json`, see `tokenizerInfo`), if the source carries one.
    var tokenizerModel: [UInt8]? { get }
    /// What `tokenizerModel` holds and the added tokens that go with it; nil when there is no tokenizer.
    var tokenizerInfo: TokenizerInfo? { get }
    /// A short description of where the weights come from, for messages (a path).
    var sourceDescription: String { get }
    /// Whether any tensor the model reads is stored int8 or int4 (told without materializing a tensor; decides
    /// e.g. the precision of the decoder's attention caches). Float checkpoints: false.
    var holdsQuantizedWeights: Bool { get }
    /// The generation settings the source carries (a .flint file's `generation`, a folder's generation_config.json);
    /// nil when it has none. Throws when a folder's file cannot be read.
    func generationDefaults() throws -> GenerationDefaults?
}

extension WeightSource {
    /// Sources that only know sentencepiece bytes: T5's defaults.
    public var tokenizerInfo: TokenizerInfo? { tokenizerModel == nil ? nil : TokenizerInfo() }

    public func hasTensor(_ name: String) -> Bool { (try? tensor(name)) != nil }

    /// Checkpoints in Hugging Face's formats hold float tensors only.
    public var holdsQuantizedWeights: Bool { false }

    /// Sources without generation settings.
    public func generationDefaults() throws -> GenerationDefaults? { nil }
}
