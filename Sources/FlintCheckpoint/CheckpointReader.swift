// The common shape of every checkpoint file reader (safetensors now; PyTorch .bin, Keras .h5 and Flax msgpack
// later): a list of tensor descriptions that costs nothing to produce, and views of tensor bytes on request.
import FlintFormat

/// One stored tensor as a checkpoint file describes it, before any of its bytes are read.
public struct CheckpointTensorInfo: Sendable, Equatable {
    /// The name under which the file stores the tensor (Hugging Face PyTorch naming for safetensors).
    public let name: String
    /// The element type exactly as the file spells it (`F32`, `BF16`, `I64`, …).
    public let dtype: String
    /// The element type as Flint stores it, or nil when Flint cannot read this dtype.
    public let storage: StorageType?
    /// Row-major shape; `[]` is a scalar.
    public let shape: [Int]
    /// Bytes of element data.
    public let byteCount: Int
    /// The file that holds the bytes.
    public let file: String
    /// Absolute byte offset of the data in `file`.
    public let fileOffset: Int

    public init(name: String, dtype: String, storage: StorageType?, shape: [Int], byteCount: Int,
                file: String, fileOffset: Int) {
        self.name = name
        self.dtype = dtype
        self.storage = storage
        self.shape = shape
        self.byteCount = byteCount
        self.file = file
        self.fileOffset = fileOffset
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A checkpoint file that lists its tensors and hands out views of them.
public protocol CheckpointReader: AnyObject, Sendable {
    /// The file's path.
    var path: String { get }
    /// The container format: `safetensors` (later also `pytorch`, `keras-h5`, `flax-msgpack`).
    var format: String { get }
    /// The file's size in bytes.
    var fileSize: Int64 { get }
    /// Free-form string metadata the file carries (safetensors `__metadata__`), empty when none.
    var metadata: [String: String] { get }
    /// Every stored tensor, in the order of its data in the file. Reading this touches no tensor bytes.
    var tensorInfos: [CheckpointTensorInfo] { get }
    /// The description of one stored tensor, nil when the file has no tensor of that name.
    func tensorInfo(_ name: String) -> CheckpointTensorInfo?
    /// A view of the tensor's elements (F32 / F16 / BF16). Throws a FlintError naming the file and the tensor
    /// when it is missing or stored in a dtype Flint does not read.
    func tensor(_ name: String) throws -> TensorView
    /// The tensor's stored bytes whatever its dtype (for hashing and duplicate detection). Valid while the
    /// reader is alive.
    func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer
}

extension CheckpointReader {
    public var tensorNames: [String] { tensorInfos.map(\.name) }
    public func contains(_ name: String) -> Bool { tensorInfo(name) != nil }
}

/// Element types that appear in checkpoint files, with their sizes, so any file can be validated even when
/// Flint cannot compute with some of its tensors.
enum CheckpointDType {
    /// Bits per element of every safetensors dtype (huggingface/safetensors `Dtype::bitsize`).
    static let safetensorsBits: [String: Int] = [
        "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
        "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
        "I32": 32, "U32": 32, "F32": 32, "C64": 64,
        "F64": 64, "I64": 64, "U64": 64,
        "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    ]

    /// The Flint storage type of a safetensors dtype, nil for the ones Flint does not read.
    static func storage(safetensors dtype: String) -> StorageType? {
        switch dtype {
        case "F32": return .f32
        case "F16": return .f16
        case "BF16": return .bf16
        default: return nil
        }
    }
}

