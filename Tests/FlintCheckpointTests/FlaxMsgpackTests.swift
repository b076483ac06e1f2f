// The Flax msgpack reader against files flax/transformers wrote (Tools/make_format_fixtures.py and
// Tools/make_tf_flax_fixtures.py: every tensor must equal the safetensors source's bytes), against hand-built
// files for chunked arrays and bfloat16, and against damaged files, which must give FlintErrors and never crash.
import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat
import TestSupport

enum ConvertedFixtures {
    static let root = URL(fileURLWithPath: fixturePath(""))
    static func format(_ name: String) -> String { root.appendingPathComponent("formats/" + name).path }
    static func model(_ name: String) -> String { root.appendingPathComponent("models/" + name).path }

    /// Every tensor the readers give equals the safetensors source's: same names, shapes and dtype (float32),
    /// bit-identical bytes, through both `tensor` and `rawBytes`.
    static func expectSameTensors(_ readers: [CheckpointReader], as source: String, format: String) throws {
        let reference = try SafetensorsFile(path: model(source) + "/model.safetensors")
        var seen = Set<String>()
        for reader in readers {
            #expect(reader.format == format)
            for info in reader.tensorInfos {
                #expect(seen.insert(info.name).inserted, "\(info.name) listed twice")
                let expected = try #require(reference.tensorInfo(info.name), "\(info.name) is not in the source")
                #expect(info.shape == expected.shape, "\(info.name)")
                #expect(info.storage == .f32 && info.dtype.hasPrefix("float32"), "\(info.name): \(info.dtype)")
                #expect(info.byteCount == expected.byteCount, "\(info.name)")
                let view = try reader.tensor(info.name)
                #expect(view.shape == expected.shape && view.storage == .f32)
                let want = Array(try reference.rawBytes(info.name))
                #expect(Array(view.data) == want, "\(info.name): bytes differ")
                #expect(Array(try reader.rawBytes(info.name)) == want, "\(info.name): rawBytes differ")
                #expect(Int(bitPattern: view.data.baseAddress) % 4 == 0, "\(info.name): view not aligned")
            }
        }
        #expect(seen == Set(reference.tensorNames))
    }
}

/// A msgpack writer for building test files.
indirect enum MP {
    case map([(String, MP)])
    case array([MP])
    case string(String)
    case int(Int64)
    case bool(Bool)
    case binary([UInt8])
    case ext(Int8, [UInt8])
    case raw([UInt8])  // bytes spliced in as they are

    static func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

    var bytes: [UInt8] {
        switch self {
        case .map(let entries):
            let head: [UInt8] = entries.count < 16 ? [0x80 | UInt8(entries.count)] : [0xdf] + MP.be(UInt32(entries.count))
            return head + entries.flatMap { MP.string($0.0).bytes + $0.1.bytes }
        case .array(let items):
            let head: [UInt8] = items.count < 16 ? [0x90 | UInt8(items.count)] : [0xdd] + MP.be(UInt32(items.count))
            return head + items.flatMap(\.bytes)
        case .string(let s):
            let u = Array(s.utf8)
            return (u.count < 32 ? [0xa0 | UInt8(u.count)] : [0xdb] + MP.be(UInt32(u.count))) + u
        case .int(let v):
            return v >= 0 && v < 128 ? [UInt8(v)] : [0xd3] + MP.be(v)
        case .bool(let b):
            return [b ? 0xc3 : 0xc2]
        case .binary(let b):
            return [0xc6] + MP.be(UInt32(b.count)) + b
        case .ext(let type, let payload):
            return [0xc9] + MP.be(UInt32(payload.count)) + [UInt8(bitPattern: type)] + payload
        case .raw(let b):
            return b
        }
    }

    /// A Flax array leaf: ext type 1 holding (shape, dtype name, bytes).
    static func flaxArray(_ shape: [Int], _ dtype: String, _ data: [UInt8]) -> MP {
        .ext(1, MP.array([.array(shape.map { .int(Int64($0)) }), .string(dtype), .binary(data)]).bytes)
    }
    static func f32(_ shape: [Int], _ values: [Float]) -> MP { flaxArray(shape, "float32", values.flatMap { le($0.bitPattern) }) }
}

@Suite struct FlaxMsgpackTests {
    @Test func flanTinyEqualsSafetensors() throws {
        let readers = try FlaxMsgpackCheckpoint.open(folder: ConvertedFixtures.format("flan-tiny-msgpack"))
        #expect(readers.count == 1)
        try ConvertedFixtures.expectSameTensors(readers, as: "flan-tiny", format: "flax-msgpack")
        // The file itself names a kernel [in, out]; the reader gives the PyTorch [out, in] weight.
        let lmHead = try #require(readers[0].tensorInfo("lm_head.weight"))
        #expect(lmHead.shape == [1104, 40])
    }

    @Test func shardedFlanTinyEqualsSafetensors() throws {
        let folder = ConvertedFixtures.format("flan-tiny-msgpack-sharded")
        let readers = try FlaxMsgpackCheckpoint.open(folder: folder)
        #expect(readers.count == 4)
        try ConvertedFixtures.expectSameTensors(readers, as: "flan-tiny", format: "flax-msgpack")
        // The index file itself works as the path too.
        #expect(try FlaxMsgpackCheckpoint.open(folder: folder + "/flax_model.msgpack.index.json").count == 4)
    }

    @Test func tiedT5TinyEqualsSafetensors() throws {
        let readers = try FlaxMsgpackCheckpoint.open(folder: ConvertedFixtures.format("t5-tiny-msgpack"))
        try ConvertedFixtures.expectSameTensors(readers, as: "t5-tiny", format: "flax-msgpack")
        #expect(readers[0].tensorInfo("lm_head.weight") == nil)
    }

    @Test func shardIndexMustAgreeWithTheShards() throws {
        let source = ConvertedFixtures.format("flan-tiny-msgpack-sharded")
        let dir = TempDir()
        for name in try FileManager.default.contentsOfDirectory(atPath: source) where name.hasPrefix("flax_model-") {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: dir.path + "/" + name)
        }
        let index = try String(contentsOfFile: source + "/flax_model.msgpack.index.json", encoding: .utf8)
        // A tensor mapped to a shard that does not hold it.
        let wrong = index.replacingOccurrences(of: "\"shared/embedding\": \"flax_model-00004-of-00004.msgpack\"",
                                               with: "\"shared/embedding\": \"flax_model-00001-of-00004.msgpack\"")
        #expect(wrong != index)
        dir.write("flax_model.msgpack.index.json", wrong)
        let m1 = try #require(flintErrorMessage { try FlaxMsgpackCheckpoint.open(folder: dir.path) })
        #expect(m1.contains("shared/embedding") && m1.contains("shared.weight") && m1.contains("00004"))
        // A shard that is not there.
        try FileManager.default.removeItem(atPath: dir.path + "/flax_model-00003-of-00004.msgpack")
        dir.write("flax_model.msgpack.index.json", index)
        let m2 = try #require(flintErrorMessage { try FlaxMsgpackCheckpoint.open(folder: dir.path) })
        #expect(m2.contains("flax_model-00003-of-00004.msgpack"))
        let empty = TempDir()
        let m3 = try #require(flintErrorMessage { try FlaxMsgpackCheckpoint.open(folder: empty.path) })
        #expect(m3.contains("flax_model.msgpack"))
    }

    @Test func chunkedArraysAreJoinedAndKernelsTransposed() throws {
        // A [3, 5] kernel split into 1-D chunks of 4, 4, 4 and 3 elements (flax `_chunk` with a tiny chunk size),
        // and an unchunked-looking embedding chunked in two.
        let kernel: [Float] = (0..<15).map { Float($0) + 0.5 }
        func chunks(_ values: [Float], _ size: Int) -> MP {
            .map(stride(from: 0, to: values.count, by: size).enumerated().map { i, s in
                (String(i), MP.f32([min(size, values.count - s)], Array(values[s..<min(s + size, values.count)])))
            })
        }
        let embedding: [Float] = [1, 2, 3, 4, 5, 6]
        let file = MP.map([
            ("enc", .map([("dense", .map([("kernel", .map([
                ("__msgpack_chunked_array__", .bool(true)),
                ("shape", .map([("0", .int(3)), ("1", .int(5))])),
                ("chunks", chunks(kernel, 4)),
            ]))]))])),
            ("shared", .map([("embedding", .map([
                ("__msgpack_chunked_array__", .bool(true)),
                ("shape", .map([("0", .int(2)), ("1", .int(3))])),
                ("chunks", chunks(embedding, 4)),
            ]))])),
        ])
        let dir = TempDir()
        let reader = try FlaxMsgpackFile(path: dir.write("flax_model.msgpack", file.bytes))
        #expect(reader.tensorNames == ["enc.dense.weight", "shared.weight"])
        let w = try reader.tensor("enc.dense.weight")
        #expect(w.shape == [5, 3])
        // PyTorch weight[o][i] = kernel[i][o].
        #expect(w.floats == (0..<5).flatMap { o in (0..<3).map { i in kernel[i * 5 + o] } })
        let e = try reader.tensor("shared.weight")
        #expect(e.shape == [2, 3] && e.floats == embedding)
        #expect(Array(try reader.rawBytes("shared.weight")) == Array(e.data))

        // Chunks that do not add up to the shape.
        let short = MP.map([("x", .map([
            ("__msgpack_chunked_array__", .bool(true)),
            ("shape", .map([("0", .int(4)), ("1", .int(5))])),
            ("chunks", chunks(kernel, 4)),
        ]))])
        let m = try #require(flintErrorMessage { try FlaxMsgpackFile(path: dir.write("short.msgpack", short.bytes)) })
        #expect(m.contains("'x'") && m.contains("15"))
    }

    @Test func bfloat16AndOtherDtypes() throws {
        let bits: [UInt16] = [0x3f80, 0xbf80, 0x4000, 0x7f7f, 0x0001, 0x8000]  // 1, -1, 2, max, tiny, -0
        let file = MP.map([
            ("k", .map([("kernel", MP.flaxArray([2, 3], "bfloat16", bits.flatMap { le($0) }))])),
            ("n", .map([("scale", MP.flaxArray([6], "bfloat16", bits.flatMap { le($0) }))])),
            ("d", .map([("weight", MP.flaxArray([2], "float64", le(Double(1).bitPattern) + le(Double(2).bitPattern)))])),
        ])
        let dir = TempDir()
        let reader = try FlaxMsgpackFile(path: dir.write("m.msgpack", file.bytes))
        let k = try reader.tensor("k.weight")
        #expect(k.storage == .bf16 && k.shape == [3, 2])
        #expect(k.halfBits == [bits[0], bits[3], bits[1], bits[4], bits[2], bits[5]])
        let n = try reader.tensor("n.weight")
        #expect(n.storage == .bf16 && n.halfBits == bits)
        let d = try #require(reader.tensorInfo("d.weight"))
        #expect(d.dtype == "float64" && d.storage == nil && d.byteCount == 16)
        let m = try #require(flintErrorMessage { try reader.tensor("d.weight") })
        #expect(m.contains("float64") && m.contains("d.weight"))
    }

    @Test func unalignedDataIsCopiedToAlignedMemory() throws {
        // A one-character dtype-length change shifts the data by one byte: "float32" then a key of odd length.
        let values: [Float] = [1.5, -2.25, 3]
        for pad in 0..<4 {
            let file = MP.map([(String(repeating: "p", count: pad + 1), .map([("embedding", MP.f32([3], values))]))])
            let dir = TempDir()
            let reader = try FlaxMsgpackFile(path: dir.write("m.msgpack", file.bytes))
            let name = String(repeating: "p", count: pad + 1) + ".weight"
            let v = try reader.tensor(name)
            #expect(v.floats == values)
            #expect(Int(bitPattern: v.data.baseAddress) % 4 == 0)
        }
    }

    @Test func truncatedFilesAreRefusedAtEveryCut() throws {
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: ConvertedFixtures.format("flan-tiny-msgpack") + "/flax_model.msgpack")))
        let dir = TempDir()
        let file = RewritableFile(in: dir, name: "flax_model.msgpack")
        var cuts = Array(0..<300) + stride(from: 300, to: bytes.count, by: 997).map { $0 } + [bytes.count - 1]
        cuts = Array(Set(cuts)).sorted()
        for cut in cuts {
            file.set(Array(bytes[0..<cut]))
            let message = flintErrorMessage { try FlaxMsgpackFile(path: file.path) }
            #expect(message != nil, "a cut at \(cut) bytes was accepted")
            #expect(message?.hasPrefix(file.path) ?? false, "cut \(cut): \(message ?? "")")
        }
    }

    @Test func flippedBytesNeverCrash() throws {
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: ConvertedFixtures.format("flan-tiny-msgpack") + "/flax_model.msgpack")))
        let dir = TempDir()
        let file = RewritableFile(in: dir, name: "flax_model.msgpack")
        var rejected = 0
        var positions = Array(0..<200) + stride(from: 200, to: bytes.count, by: 4999).map { $0 }
        positions = Array(Set(positions)).sorted()
        for position in positions {
            for flip: UInt8 in [0xff, 0x10, 0x01] {
                var damaged = bytes
                damaged[position] ^= flip
                file.set(damaged)
                do {
                    let reader = try FlaxMsgpackFile(path: file.path)
                    // Accepted (the byte was tensor data, or a name changed): every tensor must still read.
                    for name in reader.tensorNames { _ = try? reader.tensor(name) }
                } catch let e as FlintError {
                    #expect(e.message.hasPrefix(file.path))
                    rejected += 1
                } catch {
                    Issue.record("flip at \(position): non-FlintError \(error)")
                }
            }
        }
        #expect(rejected >= 100)  // at least the 0xff flips of type bytes and key strings
    }

    @Test func absurdLengthsAndDepthsAreRefused() throws {
        let dir = TempDir()
        let cases: [(String, [UInt8], String)] = [
            ("map32 count", [0xdf] + MP.be(UInt32.max), "map of 4294967295 entries"),
            ("array32 count", [0x81, 0xa1, 0x61, 0xdd] + MP.be(UInt32.max), "array of 4294967295"),
            ("bin32 length", [0x81, 0xa1, 0x61, 0xc6] + MP.be(UInt32.max - 1), "binary data needs 4294967294"),
            ("str32 length", [0x81, 0xdb] + MP.be(UInt32(0x7fff_ffff)), "string needs 2147483647"),
            ("ext32 length", [0x81, 0xa1, 0x61, 0xc9] + MP.be(UInt32.max) + [1], "ext payload needs 4294967295"),
            ("deep nesting", Array(repeating: [0x81, 0xa1, 0x61], count: 100_000).flatMap { $0 },
             "nesting deeper than"),
            ("unused type byte", [0xc1], "invalid type byte 0xc1"),
            ("invalid UTF-8 key", [0x81, 0xa2, 0xff, 0xfe, 0xc0], "not valid UTF-8"),
            ("trailing bytes", MP.map([("a", MP.f32([1], [1]))]).bytes + [0x00], "extra bytes"),
            ("not a map", MP.array([.int(1)]).bytes, "must be a msgpack map"),
            ("leaf that is not an array", MP.map([("a", .int(3))]).bytes, "'a' is an integer"),
            ("other ext type", MP.map([("a", .ext(7, [1, 2]))]).bytes, "ext type 7"),
            ("shape larger than the data", MP.map([("a", MP.flaxArray([1 << 40, 1 << 20], "float32", [0, 0, 0, 0]))]).bytes,
             "holds 4"),
            ("shape overflow", MP.map([("a", MP.flaxArray([Int(Int64.max), 4], "float32", []))]).bytes, "overflows"),
            ("negative dimension", MP.map([("a", .ext(1, MP.array([.array([.int(-3)]), .string("float32"), .binary([])]).bytes))]).bytes,
             "non-negative"),
            ("unknown dtype", MP.map([("a", MP.flaxArray([1], "float8_e9", [0]))]).bytes, "unknown dtype \"float8_e9\""),
            ("payload of two", MP.map([("a", .ext(1, MP.array([.array([]), .string("float32")]).bytes))]).bytes,
             "(shape, dtype, data)"),
            ("duplicate key", [0x82, 0xa1, 0x61] + MP.f32([1], [1]).bytes + [0xa1, 0x61] + MP.f32([1], [1]).bytes,
             "duplicate map key \"a\""),
            ("two names for one tensor", MP.map([("a", .map([("kernel", MP.f32([1], [1])), ("weight", MP.f32([1], [1]))]))]).bytes,
             "'a.weight'"),
            ("empty file", [], "empty file"),
            ("no arrays", MP.map([("a", .map([]))]).bytes, "holds no arrays"),
        ]
        for (what, bytes, expected) in cases {
            let path = dir.write("case.msgpack", bytes)
            let message = flintErrorMessage { try FlaxMsgpackFile(path: path) }
            #expect(message?.contains(expected) ?? false, "\(what): \(message ?? "accepted")")
            #expect(message?.hasPrefix(path) ?? false, "\(what): message does not name the file")
        }
    }
}
