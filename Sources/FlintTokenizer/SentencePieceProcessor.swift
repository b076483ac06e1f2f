import CSentencePiece
import FlintFormat
import Foundation

/// One loaded libsentencepiece model, reached through the C shim in CSentencePiece.
///
/// Immutable after loading; libsentencepiece's encode/decode are const and may run on several threads at once.
final class SentencePieceProcessor: @unchecked Sendable {
    private let handle: OpaquePointer
    /// Number of pieces in the model (ids 0..<pieceCount).
    let pieceCount: Int

    /// Loads a model from the serialized bytes of `spiece.model`.
    init(modelBytes: [UInt8]) throws {
        var error: UnsafeMutablePointer<CChar>? = nil
        let loaded = modelBytes.withUnsafeBytes { raw in
            csp_load_from_bytes(raw.baseAddress, raw.count, &error)
        }
        guard let loaded else {
            let detail = Self.takeMessage(error).trimmingCharacters(in: .whitespaces)
            // libsentencepiece reports a protobuf failure as a source location; say what it means.
            let reason = detail.contains("ParseFromArray") ? "the bytes are not a serialized ModelProto" : detail
            throw FlintError(.corrupt, "not a valid sentencepiece model (\(modelBytes.count) bytes): \(reason)")
        }
        handle = loaded
        pieceCount = Int(csp_piece_count(loaded))
    }

    deinit { csp_processor_free(handle) }

    /// The id of a piece; the model's unknown id when the piece is not in the vocabulary.
    func pieceToId(_ piece: String) -> Int {
        var piece = piece
        return Int(piece.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { csp_piece_to_id(handle, $0.baseAddress, $0.count) }
        })
    }

    /// The piece of an id, or nil when the id is outside 0..<pieceCount.
    func idToPiece(_ id: Int) -> String? {
        guard id >= 0, id < pieceCount else { return nil }
        var length = 0
        guard let bytes = csp_id_to_piece(handle, Int32(id), &length) else { return nil }
        defer { csp_free(bytes) }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: length), as: UTF8.self)
    }

    /// The normalized text that segmentation works on (see `csp_normalize`), as UTF-8 bytes.
    func normalize(_ text: String) throws -> [UInt8] {
        var text = text
        var normalized: UnsafeMutablePointer<CChar>? = nil
        var length = 0
        var error: UnsafeMutablePointer<CChar>? = nil
        let status = text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) {
                csp_normalize(handle, $0.baseAddress, $0.count, &normalized, &length, &error)
            }
        }
        guard status == 0, let normalized else {
            throw FlintError(.corrupt, "sentencepiece normalize failed: " + Self.takeMessage(error))
        }
        defer { csp_free(normalized) }
        return Array(UnsafeRawBufferPointer(start: normalized, count: length))
    }

    /// Reads and frees an error message handed out by the shim.
    private static func takeMessage(_ message: UnsafeMutablePointer<CChar>?) -> String {
        guard let message else { return "unknown error" }
        defer { csp_free(message) }
        return String(cString: message)
    }
}
