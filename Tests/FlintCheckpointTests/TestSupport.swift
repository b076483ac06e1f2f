// Builds safetensors files and model folders inside the tests, so every rejection can be produced on purpose.
import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat
import TestSupport

/// One tensor to write: name, safetensors dtype, shape and raw little-endian element bytes.
struct STTensor {
    var name: String
    var dtype: String
    var shape: [Int]
    var bytes: [UInt8]

    static func f32(_ name: String, _ shape: [Int], _ values: [Float]) -> STTensor {
        STTensor(name: name, dtype: "F32", shape: shape, bytes: values.flatMap { le($0.bitPattern) })
    }
    static func f16(_ name: String, _ shape: [Int], _ bits: [UInt16]) -> STTensor {
        STTensor(name: name, dtype: "F16", shape: shape, bytes: bits.flatMap { le($0) })
    }
    static func bf16(_ name: String, _ shape: [Int], _ bits: [UInt16]) -> STTensor {
        STTensor(name: name, dtype: "BF16", shape: shape, bytes: bits.flatMap { le($0) })
    }
    static func i64(_ name: String, _ values: [Int64]) -> STTensor {
        STTensor(name: name, dtype: "I64", shape: [values.count], bytes: values.flatMap { le(UInt64(bitPattern: $0)) })
    }
}

func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

/// A minimal safetensors writer: tensors laid out in the given order, header padded with spaces to a multiple
/// of `alignment` (the reference writer uses 8).
func safetensorsBytes(_ tensors: [STTensor], metadata: [String: String]? = nil, alignment: Int = 8) -> [UInt8] {
    var entries: [String] = []
    if let metadata {
        let pairs = metadata.sorted(by: { $0.key < $1.key }).map { "\"\($0.key)\":\"\($0.value)\"" }
        entries.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
    }
    var offset = 0
    var data: [UInt8] = []
    for t in tensors {
        entries.append("\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],"
            + "\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}")
        offset += t.bytes.count
        data += t.bytes
    }
    var header = "{" + entries.joined(separator: ",") + "}"
    while header.utf8.count % alignment != 0 { header += " " }
    return rawSafetensors(header: header, data: data)
}

/// A file from a header text and data bytes, with an optional false header length.
func rawSafetensors(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    return le(declaredLength ?? UInt64(h.count)) + h + data
}

/// A fresh scratch folder (TestSupport's per-process root), removed when the value is deinitialised.
final class TempDir {
    let url: URL
    var path: String { url.path }

    init() {
        url = URL(fileURLWithPath: scratch("ckpt"), isDirectory: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) -> String {
        let p = url.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    @discardableResult
    func write(_ name: String, _ text: String) -> String { write(name, Array(text.utf8)) }
}

/// The error message a throwing expression produced, or nil if it did not throw a FlintError.
func flintErrorMessage<T>(_ body: () throws -> T) -> String? {
    do {
        _ = try body()
        return nil
    } catch let e as FlintError {
        return e.message
    } catch {
        return "non-FlintError: \(error)"
    }
}

extension TensorView {
    var floats: [Float] {
        guard storage == .f32 else {
            Issue.record("\(name): floats of a \(storage) tensor")
            return []
        }
        return (0..<elementCount).map { Float(bitPattern: data.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
    }
    var halfBits: [UInt16] {
        guard storage == .f16 || storage == .bf16 else {
            Issue.record("\(name): half bits of a \(storage) tensor")
            return []
        }
        return (0..<elementCount).map { data.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self) }
    }
}

// config.json texts as Hugging Face publishes them (trimmed of keys Flint ignores).
enum ConfigTexts {
    /// google-t5/t5-small: original T5, no tie_word_embeddings (→ tied, rescaled), relu.
    static let t5Small = """
    {
      "architectures": ["T5ForConditionalGeneration"],
      "d_ff": 2048, "d_kv": 64, "d_model": 512, "decoder_start_token_id": 0, "dropout_rate": 0.1,
      "eos_token_id": 1, "initializer_factor": 1.0, "is_encoder_decoder": true, "layer_norm_epsilon": 1e-06,
      "model_type": "t5", "n_positions": 512, "num_heads": 8, "num_layers": 6, "output_past": true,
      "pad_token_id": 0, "relative_attention_num_buckets": 32, "vocab_size": 32128
    }
    """
    /// google/flan-t5-small.
    static let flanSmall = """
    {
      "architectures": ["T5ForConditionalGeneration"],
      "d_ff": 1024, "d_kv": 64, "d_model": 512, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new",
      "dropout_rate": 0.1, "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0,
      "is_encoder_decoder": true, "is_gated_act": true, "layer_norm_epsilon": 1e-06, "model_type": "t5",
      "n_positions": 512, "num_decoder_layers": 8, "num_heads": 6, "num_layers": 8, "output_past": true,
      "pad_token_id": 0, "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
      "tie_word_embeddings": false, "torch_dtype": "float32", "transformers_version": "4.23.1",
      "use_cache": true, "vocab_size": 32128
    }
    """

    /// A tiny config for folder tests; `extra` is spliced in as more members.
    static func tiny(_ extra: String = "") -> String {
        """
        {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 4, "d_kv": 2,
         "d_ff": 8, "num_heads": 2, "num_layers": 1, "vocab_size": 6\(extra.isEmpty ? "" : ", " + extra)}
        """
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One file rewritten in place many times (pwrite + ftruncate): creating or truncating files with O_TRUNC is
/// slow on some filesystems, and the robustness tests write hundreds of variants.
final class RewritableFile {
    let path: String
    private let fd: Int32

    init(in dir: TempDir, name: String) {
        path = dir.path + "/" + name
        fd = open(path, O_RDWR | O_CREAT, 0o644)
        if fd < 0 { Issue.record("cannot create \(path)") }
    }

    deinit { close(fd) }

    func set(_ bytes: [UInt8]) {
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        if written != bytes.count || ftruncate(fd, off_t(bytes.count)) != 0 { Issue.record("cannot rewrite \(path)") }
    }
}

