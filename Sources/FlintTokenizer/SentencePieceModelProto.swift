import FlintFormat

/// The parts of a sentencepiece `ModelProto` (sentencepiece_model.proto) that segmentation and decoding need and that
/// libsentencepiece's public C++ API does not expose: piece types (user-defined ones in particular), the
/// normalizer's whitespace flags, the unknown surface, byte fallback and the model type.
///
/// Parsed before libsentencepiece loads the same bytes: the parser checks every length, and the normalizer's and
/// denormalizer's charsmap tries (`PrecompiledCharsmap.validateTrie`), which libsentencepiece reads unchecked, so a
/// malformed buffer gives an error rather than a crash.
struct SentencePieceModelProto {
    enum PieceType: UInt64 {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    struct Piece {
        var bytes: [UInt8] = []
        var score: Float = 0
        var type: PieceType = .normal
    }

    var pieces: [Piece] = []
    /// TrainerSpec.model_type: 1 unigram (T5), 2 BPE, 3 word, 4 char.
    var modelType: UInt64 = 1
    var byteFallback = false
    /// TrainerSpec.unk_surface, what decoding writes for `<unk>` (default " ⁇ ").
    var unknownSurface: [UInt8] = Array(" \u{2047} ".utf8)
    var addDummyPrefix = true
    var removeExtraWhitespaces = true
    /// A denormalizer_spec with a non-empty precompiled_charsmap (decode would rewrite text through it).
    var hasDenormalizer = false

    init(bytes: [UInt8]) throws {
        var reader = ProtoReader(bytes: bytes[...], context: "ModelProto")
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .bytes(let message)):
                pieces.append(try Self.parsePiece(message))
            case (2, .bytes(let message)):
                try parseTrainerSpec(message)
            case (3, .bytes(let message)):
                try parseNormalizerSpec(message)
            case (5, .bytes(let message)):
                var denormalizer = ProtoReader(bytes: message, context: "denormalizer_spec")
                while let (f, v) = try denormalizer.next() {
                    if f == 2, case .bytes(let charsmap) = v {
                        hasDenormalizer = !charsmap.isEmpty
                        if !charsmap.isEmpty { try PrecompiledCharsmap.validateTrie(Array(charsmap), place: "denormalizer_spec") }
                    }
                }
            default:
                break
            }
        }
    }

    private static func parsePiece(_ message: ArraySlice<UInt8>) throws -> Piece {
        var piece = Piece()
        var reader = ProtoReader(bytes: message, context: "SentencePiece")
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .bytes(let text)): piece.bytes = Array(text)
            case (2, .fixed32(let bits)): piece.score = Float(bitPattern: bits)
            case (3, .varint(let raw)):
                guard let type = PieceType(rawValue: raw) else {
                    throw FlintError(.corrupt, "sentencepiece model: piece type \(raw) is not one sentencepiece defines")
                }
                piece.type = type
            default: break
            }
        }
        return piece
    }

    private mutating func parseTrainerSpec(_ message: ArraySlice<UInt8>) throws {
        var reader = ProtoReader(bytes: message, context: "trainer_spec")
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (3, .varint(let raw)): modelType = raw
            case (35, .varint(let raw)): byteFallback = raw != 0
            case (44, .bytes(let text)): unknownSurface = Array(text)
            default: break
            }
        }
    }

    private mutating func parseNormalizerSpec(_ message: ArraySlice<UInt8>) throws {
        var reader = ProtoReader(bytes: message, context: "normalizer_spec")
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (2, .bytes(let charsmap)) where !charsmap.isEmpty:
                try PrecompiledCharsmap.validateTrie(Array(charsmap), place: "normalizer_spec")
            case (3, .varint(let raw)): addDummyPrefix = raw != 0
            case (4, .varint(let raw)): removeExtraWhitespaces = raw != 0
            default: break
            }
        }
    }
}

/// A protobuf wire-format reader over a byte slice: yields (field number, value) pairs.
private struct ProtoReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    let bytes: ArraySlice<UInt8>
    let context: String
    private var position: Int

    init(bytes: ArraySlice<UInt8>, context: String) {
        self.bytes = bytes
        self.context = context
        self.position = bytes.startIndex
    }

    mutating func next() throws -> (UInt64, Value)? {
        guard position < bytes.endIndex else { return nil }
        let key = try readVarint()
        let field = key >> 3
        switch key & 7 {
        case 0:
            return (field, .varint(try readVarint()))
        case 1:
            let raw = try take(8)
            var value: UInt64 = 0
            for (i, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
            return (field, .fixed64(value))
        case 2:
            let length = try readVarint()
            guard length <= UInt64(bytes.endIndex - position) else { throw truncated() }
            return (field, .bytes(try take(Int(length))))
        case 5:
            let raw = try take(4)
            var value: UInt32 = 0
            for (i, byte) in raw.enumerated() { value |= UInt32(byte) << (8 * UInt32(i)) }
            return (field, .fixed32(value))
        default:
            throw FlintError(.unsupported, "sentencepiece model: unsupported protobuf wire type \(key & 7) in \(context) "
                             + "at byte \(position - bytes.startIndex)")
        }
    }

    private mutating func readVarint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < bytes.endIndex else { throw truncated() }
            let byte = bytes[position]
            position += 1
            guard shift < 64 else {
                throw FlintError(.corrupt, "sentencepiece model: varint longer than 10 bytes in \(context)")
            }
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
    }

    private mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count <= bytes.endIndex - position else { throw truncated() }
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    private func truncated() -> FlintError {
        FlintError(.corrupt, "sentencepiece model: \(context) is truncated at byte \(position - bytes.startIndex)")
    }
}
