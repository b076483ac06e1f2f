// The vocabulary every Flint module shares: how a tensor's bytes are stored and how to view them in place.

/// How the elements of a stored tensor are encoded. The raw values are the codes written in the `.flint`
/// tensor table (Formats/FLINT.md, "Storage types"); they never change meaning.
public enum StorageType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case bf16 = 2
    case i8 = 3
    /// 4-bit codes, two per byte, only in the packed int4 layout (Formats/FLINT.md layout 2), whose size rule
    /// replaces `elements × byteSize`.
    case i4 = 4

    /// Bytes per element (1 for `i4`, whose packed layout has its own size rule).
    public var byteSize: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .i8, .i4: return 1
        }
    }

    /// The name used in the spec, the CLI and JSON output.
    public var name: String {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        case .bf16: return "bf16"
        case .i8: return "i8"
        case .i4: return "i4"
        }
    }

    public init?(name: String) {
        guard let match = StorageType.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = match
    }

    public var isFloat: Bool { self != .i8 && self != .i4 }
    public var description: String { name }
}

/// How a stored tensor maps back to real numbers.
public enum QuantScheme: Sendable, Equatable, CustomStringConvertible {
    /// Stored as a float type; the values are the values.
    case none
    /// Symmetric int8, one float32 scale per output row (the first dimension): `x ≈ q × scale[row]`.
    case int8Row
    /// Symmetric int8, one float32 scale per `groupSize` consecutive elements of a row (along the input
    /// dimension); the last group of a row may be shorter.
    case int8Group(Int)
    /// Symmetric int4, one f16 scale per `groupSize` (32, 64 or 128) consecutive elements of a row, stored
    /// inside the tensor's packed data (`PackedInt4Geometry`), not in a separate scale region.
    case int4Group(Int)

    /// Scheme code as stored in the tensor table.
    public var code: UInt8 {
        switch self {
        case .none: return 0
        case .int8Row: return 1
        case .int8Group: return 2
        case .int4Group: return 3
        }
    }

    /// The group size (0 when not grouped).
    public var groupSize: Int {
        switch self {
        case .int8Group(let g), .int4Group(let g): return g
        case .none, .int8Row: return 0
        }
    }

    /// The CLI / JSON name: `float`, `int8`, `int8-g32`, …
    public var name: String {
        switch self {
        case .none: return "float"
        case .int8Row: return "int8"
        case .int8Group(let g): return "int8-g\(g)"
        case .int4Group(let g): return "int4-g\(g)"
        }
    }

    public var description: String { name }

    /// Whether the scheme is one of the int8 ones (`i8` storage, float32 scales in the scale region).
    public var isInt8: Bool {
        switch self {
        case .int8Row, .int8Group: return true
        case .none, .int4Group: return false
        }
    }

    /// Number of float32 scales a tensor of `shape` carries in its scale region under this scheme (0 for int4,
    /// whose f16 scales are part of the packed data).
    public func scaleCount(shape: [Int]) -> Int {
        switch self {
        case .none, .int4Group:
            return 0
        case .int8Row:
            let (rows, _) = QuantScheme.matrixShape(shape)
            return rows
        case .int8Group(let g):
            let (rows, cols) = QuantScheme.matrixShape(shape)
            return rows * ((cols + g - 1) / g)
        }
    }

    /// A tensor viewed as a matrix: the first dimension is rows, the rest is flattened into columns.
    /// A 1-D tensor is one row.
    public static func matrixShape(_ shape: [Int]) -> (rows: Int, cols: Int) {
        if shape.isEmpty { return (1, 1) }
        if shape.count == 1 { return (1, shape[0]) }
        return (shape[0], shape.dropFirst().reduce(1, *))
    }
}

/// A read-only view of one tensor's stored bytes, normally pointing into a memory-mapped file.
/// It is valid only while the object that produced it (the file) is alive; `owner` keeps it so.
public struct TensorView: @unchecked Sendable {
    public let name: String
    public let storage: StorageType
    public let shape: [Int]
    public let scheme: QuantScheme
    /// The element bytes: row-major (C order), or for `.int8Packed16x4` the packed blocks and weight sums
    /// (`PackedInt8Geometry`).
    public let data: UnsafeRawBufferPointer
    /// How `data` is ordered.
    public let layout: TensorLayout
    /// Float32 scales for int8 schemes (row-major `[rows, groupsPerRow]`), empty otherwise.
    public let scales: UnsafeBufferPointer<Float>
    /// Keeps the memory behind `data` and `scales` alive.
    public let owner: AnyObject?

    public init(name: String, storage: StorageType, shape: [Int], scheme: QuantScheme = .none,
                data: UnsafeRawBufferPointer, scales: UnsafeBufferPointer<Float> = UnsafeBufferPointer(start: nil, count: 0),
                layout: TensorLayout = .rowMajor, owner: AnyObject?) {
        self.layout = layout
        self.name = name
        self.storage = storage
        self.shape = shape
        self.scheme = scheme
        self.data = data
        self.scales = scales
        self.owner = owner
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var rows: Int { QuantScheme.matrixShape(shape).rows }
    public var cols: Int { QuantScheme.matrixShape(shape).cols }

    /// The packed geometry of a `.int8Packed16x4` view whose byte count matches it; nil for any other view.
    public var packedGeometry: PackedInt8Geometry? {
        guard layout == .int8Packed16x4, storage == .i8,
              let g = PackedInt8Geometry(shape: shape, scheme: scheme), g.byteCount == data.count else { return nil }
        return g
    }

    /// The int8 values in row-major order: the bytes themselves for a row-major view, an unpacked copy for a
    /// packed one. Throws naming the tensor when a packed view's size does not match its shape.
    public func withRowMajorInt8<R>(_ body: (UnsafeBufferPointer<Int8>) throws -> R) throws -> R {
        switch layout {
        case .rowMajor:
            return try body(data.bindMemory(to: Int8.self))
        case .int4Packed16x8:
            throw FlintError("tensor \(name): \(storage) \(scheme) holds int4 codes, not int8 values")
        case .int8Packed16x4:
            guard let g = packedGeometry else {
                throw FlintError(.corrupt, "tensor \(name): packed16x4 \(storage) \(shape) \(scheme) needs \(PackedInt8Geometry(shape: shape, scheme: scheme)?.byteCount ?? -1) bytes, found \(data.count)")
            }
            let copy = UnsafeMutableBufferPointer<Int8>.allocate(capacity: g.rows * g.cols)
            defer { copy.deallocate() }
            g.unpack(data, into: copy)
            return try body(UnsafeBufferPointer(copy))
        }
    }
}

/// An error about bad input, always naming where (file, tensor, offset) and what was expected.
///
/// `kind` says what went wrong in a way callers and tests can branch on; `message` is for people. Errors made
/// without a kind (`FlintError("…")`) are `.other`.
public struct FlintError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// A file's bytes are not what its format says: bad magic, truncated, checksum mismatch, offsets or
        /// sizes out of range, malformed JSON / msgpack / pickle / protobuf.
        case corrupt
        /// Well-formed input Flint does not handle: a newer format version, an unknown required feature, a
        /// dtype or model type it does not compute, a pickle global outside the allow-list.
        case unsupported
        /// A tensor's shape (or element count) disagrees with the config or with what the reader expected.
        case shapeMismatch
        /// Something the input must contain is absent: a tensor, config.json, a shard, the embedding table.
        case notFound
        /// A config (config.json or a file's metadata config) with values no T5 model can have.
        case invalidConfig
        /// The operating system refused: a file cannot be opened, read, mapped, written or renamed.
        case io
        /// A caller's argument or option is out of range or malformed.
        case invalidArgument
        /// Not classified (errors made with `FlintError(message)`).
        case other
    }

    public let kind: Kind
    public let message: String

    /// An unclassified error (`kind` `.other`).
    public init(_ message: String) {
        self.kind = .other
        self.message = message
    }

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The same kind with a new message (for wrapping: `error.with("\(path): \(error.message)")`).
    public func with(message: String) -> FlintError { FlintError(kind, message) }

    public var description: String { message }

    /// Equal when the messages are: the kind classifies the message, and comparisons written before kinds
    /// existed (`FlintError("…") == error`) keep their meaning. Compare `kind` to test the classification.
    public static func == (a: FlintError, b: FlintError) -> Bool { a.message == b.message }
}
