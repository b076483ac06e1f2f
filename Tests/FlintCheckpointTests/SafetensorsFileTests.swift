import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat

@Suite struct SafetensorsReading {
    @Test func readsF32F16BF16ZeroCopy() throws {
        let dir = TempDir()
        // F16 1.0 = 0x3C00, -2.0 = 0xC000; BF16 1.0 = 0x3F80, 0.5 = 0x3F00.
        let path = dir.write("m.safetensors", safetensorsBytes([
            .f32("a.weight", [2, 3], [1, -2, 3.5, 0, 1e-3, 65504]),
            .f16("b.weight", [2], [0x3C00, 0xC000]),
            .bf16("c.weight", [1, 2], [0x3F80, 0x3F00]),
        ], metadata: ["format": "pt"]))
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.format == "safetensors")
        #expect(file.tensorNames == ["a.weight", "b.weight", "c.weight"])
        #expect(file.tensorInfos.map(\.dtype) == ["F32", "F16", "BF16"])
        #expect(file.tensorInfos.map(\.storage) == [.f32, .f16, .bf16])
        #expect(file.tensorInfos.map(\.byteCount) == [24, 4, 4])
        #expect(file.tensorInfos[0].fileOffset == 8 + file.headerLength)

        let a = try file.tensor("a.weight")
        #expect(a.storage == .f32 && a.shape == [2, 3] && a.scheme == .none)
        #expect(a.floats == [1, -2, 3.5, 0, 1e-3, 65504])
        #expect(a.owner === file)
        let b = try file.tensor("b.weight")
        #expect(b.storage == .f16 && b.shape == [2] && b.halfBits == [0x3C00, 0xC000])
        let c = try file.tensor("c.weight")
        #expect(c.storage == .bf16 && c.shape == [1, 2] && c.halfBits == [0x3F80, 0x3F00])

        // The views point into the mapping: consecutive tensors are adjacent in memory.
        #expect(a.data.baseAddress! + 24 == b.data.baseAddress!)
        #expect(b.data.baseAddress! + 4 == c.data.baseAddress!)
    }

    @Test func keysFollowDataOrderNotHeaderOrder() throws {
        let dir = TempDir()
        let header = #"{"second":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"first":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let data = le(Float(1).bitPattern) + le(Float(2).bitPattern)
        let file = try SafetensorsFile(path: dir.write("m.safetensors", rawSafetensors(header: header, data: data)))
        #expect(file.tensorNames == ["first", "second"])
        #expect(try file.tensor("second").floats == [2])
    }

    @Test func headerPaddedWithSpacesAndEmptyFile() throws {
        let dir = TempDir()
        let file = try SafetensorsFile(path: dir.write("e.safetensors", rawSafetensors(header: "{}      ", data: [])))
        #expect(file.tensorInfos.isEmpty)
        #expect(file.metadata.isEmpty)
    }

    @Test func scalarAndZeroSizedTensors() throws {
        let dir = TempDir()
        let path = dir.write("m.safetensors", safetensorsBytes([
            .f32("scalar", [], [7]),
            STTensor(name: "empty", dtype: "F32", shape: [0, 5], bytes: []),
            .f32("after", [1], [9]),
        ]))
        let file = try SafetensorsFile(path: path)
        #expect(try file.tensor("scalar").floats == [7])
        #expect(try file.tensor("empty").elementCount == 0)
        #expect(try file.tensor("after").floats == [9])
    }

    @Test func misalignedDataIsCopiedToAlignedMemory() throws {
        let dir = TempDir()
        // Header padded so the data starts at an odd file offset.
        var header = #"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#
        while (8 + header.utf8.count) % 4 != 1 { header += " " }
        let bytes = rawSafetensors(header: header, data: [Float(1), 2, 3].flatMap { le($0.bitPattern) })
        let file = try SafetensorsFile(path: dir.write("m.safetensors", bytes))
        #expect((8 + file.headerLength) % 4 != 0)
        let x = try file.tensor("x")
        #expect(Int(bitPattern: x.data.baseAddress!) % 4 == 0)
        #expect(x.floats == [1, 2, 3])
        // The raw bytes are still the file's own.
        #expect(try file.rawBytes("x").elementsEqual(x.data))
    }

    @Test func otherDtypesAreListedButNotRead() throws {
        let dir = TempDir()
        let path = dir.write("m.safetensors", safetensorsBytes([.i64("position_ids", [0, 1, 2]), .f32("w", [1], [1])]))
        let file = try SafetensorsFile(path: path)
        let info = try #require(file.tensorInfo("position_ids"))
        #expect(info.dtype == "I64" && info.storage == nil && info.byteCount == 24 && info.shape == [3])
        let message = try #require(flintErrorMessage { try file.tensor("position_ids") })
        #expect(message.contains(path) && message.contains("'position_ids'") && message.contains("I64"))
        #expect(message.contains("F32, F16, BF16"))
        #expect(try file.rawBytes("position_ids").count == 24)
        #expect(try file.tensor("w").floats == [1])
    }

    @Test func missingTensorNamesFileAndTensor() throws {
        let dir = TempDir()
        let path = dir.write("m.safetensors", safetensorsBytes([.f32("w", [1], [1])]))
        let file = try SafetensorsFile(path: path)
        let message = try #require(flintErrorMessage { try file.tensor("nope") })
        #expect(message.contains(path) && message.contains("'nope'"))
    }
}

@Suite struct SafetensorsRejection {
    /// Opens the bytes as a file and returns the error message (the test fails if opening succeeds).
    func reject(_ bytes: [UInt8], _ sourceLocation: SourceLocation = #_sourceLocation) throws -> (String, String) {
        let dir = TempDir()
        let path = dir.write("bad.safetensors", bytes)
        let message = try #require(flintErrorMessage { try SafetensorsFile(path: path) }, sourceLocation: sourceLocation)
        #expect(message.contains(path), "message must name the file: \(message)", sourceLocation: sourceLocation)
        return (message, path)
    }

    let twoFloats = le(Float(1).bitPattern) + le(Float(2).bitPattern)

    @Test func tooShortForTheHeaderLength() throws {
        let (m, _) = try reject([1, 0, 0])
        #expect(m.contains("truncated") && m.contains("3 bytes") && m.contains("8-byte header length"))
    }

    @Test func headerLengthOverTheLimit() throws {
        let (m, _) = try reject(rawSafetensors(header: "{}", data: [], declaredLength: 100_000_001))
        #expect(m.contains("100000001") && m.contains("exceeds the limit of 100000000"))
        let (huge, _) = try reject(rawSafetensors(header: "{}", data: [], declaredLength: UInt64.max))
        #expect(huge.contains("exceeds the limit"))
    }

    @Test func headerLengthBeyondTheFile() throws {
        let (m, _) = try reject(rawSafetensors(header: "{}", data: [], declaredLength: 50))
        #expect(m.contains("header length 50 runs beyond the end of the file") && m.contains("10 bytes"))
    }

    @Test func badJSON() throws {
        let (m, _) = try reject(rawSafetensors(header: #"{"w":{"dtype":"F32",}}"#, data: []))
        #expect(m.contains("not valid JSON") && m.contains("header byte 20"))
        let (notObject, _) = try reject(rawSafetensors(header: "[1, 2]", data: []))
        #expect(notObject.contains("must be a JSON object"))
        let (badUTF8, _) = try reject(le(UInt64(6)) + [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31] + [0x7D])
        #expect(badUTF8.contains("not valid JSON"))
    }

    @Test func duplicateNames() throws {
        let header = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let (m, _) = try reject(rawSafetensors(header: header, data: twoFloats))
        #expect(m.contains("duplicate") && m.contains("\"w\""))
    }

    @Test func overlappingOffsets() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let (m, _) = try reject(rawSafetensors(header: header, data: twoFloats))
        #expect(m.contains("tensor 'b'") && m.contains("overlap") && m.contains("'a'") && m.contains("[4, 8)"))
    }

    @Test func holeBetweenTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        let (m, _) = try reject(rawSafetensors(header: header, data: twoFloats + twoFloats.prefix(4)))
        #expect(m.contains("tensor 'b'") && m.contains("hole") && m.contains("[4, 8)"))
        // A hole at the very start of the data.
        let (start, _) = try reject(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: twoFloats))
        #expect(start.contains("tensor 'a'") && start.contains("hole") && start.contains("[0, 4)"))
    }

    @Test func byteLengthNotMatchingShape() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,8]}}"#
        let (m, _) = try reject(rawSafetensors(header: header, data: twoFloats))
        #expect(m.contains("tensor 'a'") && m.contains("span 8 bytes") && m.contains("needs 24 bytes"))
        let (f16, _) = try reject(rawSafetensors(header: #"{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#, data: twoFloats))
        #expect(f16.contains("tensor 'h'") && f16.contains("needs 6 bytes"))
    }

    @Test func offsetsEndingBeforeTheyBegin() throws {
        let header = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#
        let (m, _) = try reject(rawSafetensors(header: header, data: twoFloats))
        #expect(m.contains("tensor 'a'") && m.contains("end before they begin"))
    }

    @Test func dataNotEndingAtTheFileEnd() throws {
        let bytes = safetensorsBytes([.f32("a", [1], [1])]) + [0, 0, 0, 0]
        let (m, _) = try reject(bytes)
        #expect(m.contains("4 trailing bytes") && m.contains("end exactly at the end of the file"))
    }

    @Test func truncatedFile() throws {
        let bytes = safetensorsBytes([.f32("a", [1], [1]), .f32("b", [4], [1, 2, 3, 4])])
        let (m, _) = try reject(Array(bytes.dropLast(5)))
        #expect(m.contains("tensor 'b'") && m.contains("truncated") && m.contains("\(bytes.count - 5) bytes"))
        // Offsets consistent with a gigantic shape, near Int64.max, must not overflow while being reported.
        let header = #"{"a":{"dtype":"F32","shape":[2305843009213693951],"data_offsets":[0,9223372036854775804]}}"#
        let (huge, _) = try reject(rawSafetensors(header: header, data: twoFloats))
        #expect(huge.contains("tensor 'a'") && huge.contains("truncated") && huge.contains("holds only 8 bytes"))
    }

    @Test func negativeAndNonIntegerDimensions() throws {
        let (m, _) = try reject(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}}"#, data: twoFloats))
        #expect(m.contains("tensor 'a'") && m.contains("dimension 1 is -1") && m.contains("non-negative"))
        let (f, _) = try reject(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, data: twoFloats))
        #expect(f.contains("tensor 'a'") && f.contains("must be an integer"))
    }

    @Test func shapeProductOverflow() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#
        let (m, _) = try reject(rawSafetensors(header: header, data: twoFloats))
        #expect(m.contains("tensor 'a'") && m.contains("overflow"))
        let big = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999]}}"#
        let (o, _) = try reject(rawSafetensors(header: big, data: twoFloats))
        #expect(o.contains("tensor 'a'") && o.contains("data_offsets"))
    }

    @Test func malformedEntries() throws {
        let (dtype, _) = try reject(rawSafetensors(header: #"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#, data: twoFloats.prefix(4).map { $0 }))
        #expect(dtype.contains("tensor 'a'") && dtype.contains("unknown dtype \"Q4\""))
        let (noOffsets, _) = try reject(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[1]}}"#, data: []))
        #expect(noOffsets.contains("tensor 'a'") && noOffsets.contains("data_offsets"))
        let (meta, _) = try reject(rawSafetensors(header: #"{"__metadata__":{"format":1}}"#, data: []))
        #expect(meta.contains("__metadata__") && meta.contains("format"))
    }

    @Test func notAFileOrMissing() throws {
        let dir = TempDir()
        let missing = try #require(flintErrorMessage { try SafetensorsFile(path: dir.path + "/nope.safetensors") })
        #expect(missing.contains("nope.safetensors") && missing.contains("cannot open"))
        let folder = try #require(flintErrorMessage { try SafetensorsFile(path: dir.path) })
        #expect(folder.contains("not a regular file"))
    }
}

@Suite struct SafetensorsRobustness {
    /// Deterministic xorshift so failures reproduce.
    struct Rng { var s: UInt64; mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s } }

    @Test func everyTruncationAndRandomHeaderDamageGivesAnErrorNotACrash() throws {
        let dir = TempDir()
        let good = safetensorsBytes([.f32("a", [2, 2], [1, 2, 3, 4]), .f16("b", [3], [1, 2, 3]), .bf16("c", [1], [5])],
                                    metadata: ["format": "pt"])
        let file = RewritableFile(in: dir, name: "f.safetensors")
        let path = file.path
        var opened = 0
        for length in 0..<good.count {
            file.set(Array(good.prefix(length)))
            let m = try #require(flintErrorMessage { try SafetensorsFile(path: path) }, "prefix of \(length) bytes opened")
            #expect(m.contains(path))
        }
        var rng = Rng(s: 0x9E3779B97F4A7C15)
        let headerEnd = 8 + Int(good[0])
        for _ in 0..<400 {
            var bytes = good
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let at = Int(rng.next() % UInt64(headerEnd))
                bytes[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            file.set(bytes)
            do {
                let reader = try SafetensorsFile(path: path)
                opened += 1
                // Whatever survived must still describe the file exactly.
                #expect(reader.tensorInfos.reduce(0) { $0 + $1.byteCount } == bytes.count - 8 - reader.headerLength)
            } catch let e as FlintError {
                #expect(e.message.contains(path))
            }
        }
        #expect(opened < 400)
    }
}
