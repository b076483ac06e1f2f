// Reads the PyTorch .bin files that torch.save / save_pretrained wrote (Tools/make_pytorch_fixtures.py) and
// compares every tensor with the safetensors fixture of the same model, which torch.load confirmed equal.
import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat
import TestSupport

enum FormatFixtures {
    static let root = URL(fileURLWithPath: fixturePath("formats"))
    static func path(_ name: String) -> String { root.appendingPathComponent(name).path }
    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try #require(FileManager.default.contents(atPath: path(name)), "missing fixture \(name)"))
    }
}

func viewBytes(_ v: TensorView) -> [UInt8] { Array(v.data) }

@Suite struct PyTorchBinFileTests {
    /// Every stored tensor of the .bin folder equals the safetensors fixture's (tied names compare with
    /// shared.weight), and every safetensors tensor is present.
    func expectSameTensors(_ binFolder: String, as source: String) throws -> HFModelFolder {
        let bin = try HFModelFolder(path: FormatFixtures.path(binFolder))
        let reference = try HFModelFolder(path: ModelFixtures.path(source))
        #expect(bin.format == .pytorch)
        #expect(bin.config == reference.config)
        for info in reference.tensorInfos {
            let expected = try reference.tensor(info.name)
            let got = try bin.tensor(info.name)
            #expect(got.shape == expected.shape && got.storage == expected.storage, "\(info.name)")
            #expect(viewBytes(got) == viewBytes(expected), "\(binFolder): \(info.name) differs")
            #expect(Int(bitPattern: got.data.baseAddress) % got.storage.byteSize == 0, "\(info.name) unaligned")
        }
        for name in bin.tensorNames {
            let stored = try bin.tensor(name)
            let expected = try reference.tensor(name)
            #expect(viewBytes(stored) == viewBytes(expected), "\(binFolder): stored \(name) differs")
        }
        #expect(Set(bin.tensorNames).union(bin.aliases.keys).isSuperset(of: reference.tensorNames))
        return bin
    }

    @Test func zipFormatMatchesSafetensors() throws {
        let bin = try expectSameTensors("flan-tiny-bin", as: "flan-tiny")
        #expect(bin.sourceFormat == "pytorch")
        // torch.save of the state dict keeps the tied embed_tokens names, all viewing shared's storage.
        #expect(bin.aliases == ["encoder.embed_tokens.weight": "shared.weight",
                                "decoder.embed_tokens.weight": "shared.weight"])
        let file = try #require(bin.readers.first as? PyTorchBinFile)
        #expect(file.layout("shared.weight") == file.layout("encoder.embed_tokens.weight"))
        #expect(file.layout("shared.weight") != file.layout("lm_head.weight"))
        #expect(file.metadata["archive"] == "pytorch_model")
        // The data is in place: views point into the mapping, in file order.
        let offsets = file.tensorInfos.map(\.fileOffset)
        #expect(offsets == offsets.sorted())
        let v = try file.tensor("lm_head.weight")
        let info = try #require(file.tensorInfo("lm_head.weight"))
        let raw = try file.rawBytes("lm_head.weight")
        #expect(v.data.baseAddress == raw.baseAddress && raw.count == info.byteCount)
        #expect(v.owner === file)
    }

    @Test func legacyFormatMatchesSafetensors() throws {
        let bin = try expectSameTensors("flan-tiny-bin-legacy", as: "flan-tiny")
        #expect(bin.sourceFormat == "pytorch-legacy")
        #expect(bin.aliases["encoder.embed_tokens.weight"] == "shared.weight")
    }

    @Test func shardedBinMatchesSafetensors() throws {
        let bin = try expectSameTensors("flan-tiny-bin-sharded", as: "flan-tiny")
        #expect(bin.readers.count > 1)
        #expect(bin.sourceFiles.contains { $0.name == "pytorch_model.bin.index.json" })
    }

    @Test func tiedModelSharesOneStorage() throws {
        let bin = try expectSameTensors("t5-tiny-bin", as: "t5-tiny")
        #expect(bin.aliases == ["encoder.embed_tokens.weight": "shared.weight",
                                "decoder.embed_tokens.weight": "shared.weight",
                                "lm_head.weight": "shared.weight"])
        let file = try #require(bin.readers.first as? PyTorchBinFile)
        #expect(file.layout("lm_head.weight") == file.layout("shared.weight"))
        #expect(bin.ignoredTensors.isEmpty)
    }

    @Test func singleBinFilePath() throws {
        let bin = try HFModelFolder(path: FormatFixtures.path("flan-tiny-bin") + "/pytorch_model.bin")
        #expect(bin.format == .pytorch && bin.otherFormatsFound.isEmpty && bin.formatChoice == nil)
        let index = try HFModelFolder(path: FormatFixtures.path("flan-tiny-bin-sharded") + "/pytorch_model.bin.index.json")
        #expect(index.readers.count > 1)
    }

    /// Views torch keeps as they are: transposes and column slices are materialised in C order, offsets honoured,
    /// compared with the contiguous copies torch wrote to expected.safetensors.
    @Test func stridedViewsAndDtypes() throws {
        let file = try PyTorchBinFile(path: FormatFixtures.path("strided/strided.bin"))
        let expected = try SafetensorsFile(path: FormatFixtures.path("strided/expected.safetensors"))
        #expect(file.layout("transposed")?.isContiguous == false)
        #expect(file.layout("column_slice")?.isContiguous == false)
        #expect(file.layout("row_slice")?.isContiguous == true && file.layout("row_slice")?.storageOffset == 6)
        #expect(file.layout("row_slice")?.storageKey == file.layout("base")?.storageKey)
        for name in ["transposed", "row_slice", "column_slice", "half", "bfloat16", "base"] {
            let got = try file.tensor(name)
            let want = try expected.tensor(name)
            #expect(got.shape == want.shape && got.storage == want.storage, "\(name)")
            #expect(viewBytes(got) == viewBytes(want), "\(name) differs")
            #expect(Array(try file.rawBytes(name)) == Array(try expected.rawBytes(name)), "\(name) raw differs")
        }
        #expect(file.tensorInfo("bfloat16")?.dtype == "BF16" && file.tensorInfo("half")?.dtype == "F16")
        #expect(Array(try file.rawBytes("int64")) == Array(try expected.rawBytes("int64")))
        let int64 = try #require(flintErrorMessage { try file.tensor("int64") })
        #expect(int64.contains("int64") && int64.contains("I64") && int64.contains("does not read"))
    }

    /// nn.Parameter values (`_rebuild_parameter`) under pickle protocols 4 (zip) and 5 (legacy).
    @Test(arguments: ["parameter_p4.bin", "parameter_p5_legacy.bin"])
    func parametersAndNewerProtocols(name: String) throws {
        let file = try PyTorchBinFile(path: FormatFixtures.path("strided/" + name))
        let expected = try SafetensorsFile(path: FormatFixtures.path("strided/expected.safetensors"))
        #expect(file.format == (name.contains("legacy") ? "pytorch-legacy" : "pytorch"))
        #expect(Set(file.tensorNames) == ["parameter", "transposed"])
        for tensor in ["parameter", "transposed"] {
            #expect(viewBytes(try file.tensor(tensor)) == viewBytes(try expected.tensor(tensor)), "\(tensor)")
        }
    }

    @Test func maliciousPicklesAreRefusedNamingTheGlobal() throws {
        let cases = [("os_system.bin", "os.system"), ("builtins_eval.bin", "builtins.eval"),
                     ("legacy_os_system.bin", "os.system")]
        for (name, global) in cases {
            let path = FormatFixtures.path("malicious/" + name)
            let message = try #require(flintErrorMessage { try PyTorchBinFile(path: path) })
            #expect(message.contains(path) && message.contains("global \(global) is not allowed")
                    && message.contains("offset"), "\(message)")
        }
        // Through a model folder too.
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny())
        dir.write("pytorch_model.bin", try FormatFixtures.bytes("malicious/os_system.bin"))
        let folder = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(folder.contains("os.system is not allowed"))
    }

    @Test func unpicklerRefusesEveryOtherGlobal() throws {
        for (module, name) in [("torch", "load"), ("torch._utils", "_rebuild_device_tensor_from_numpy"),
                                ("posix", "system"), ("subprocess", "Popen"), ("builtins", "getattr"),
                                ("torch.nn.parameter", "Parameter"), ("__builtin__", "eval")] {
            let pickle: [UInt8] = [0x80, 0x02] + Array("c\(module)\n\(name)\n".utf8) + [0x2E]
            let message = try #require(flintErrorMessage {
                try pickle.withUnsafeBytes {
                    try RestrictedUnpickler(bytes: $0, place: "x.pkl") { _, _ in .none }.load()
                }
            })
            #expect(message == "x.pkl offset 2: global \(module).\(name) is not allowed (only torch tensor rebuilders "
                    + "and OrderedDict are)")
        }
        // An allowed storage class used as a callable is refused too.
        let call: [UInt8] = [0x80, 0x02] + Array("ctorch\nFloatStorage\n".utf8) + [0x29, 0x52, 0x2E]
        let message = try #require(flintErrorMessage {
            try call.withUnsafeBytes { try RestrictedUnpickler(bytes: $0, place: "y") { _, _ in .none }.load() }
        })
        #expect(message.contains("torch.FloatStorage cannot be called"))
    }

    @Test func unpicklerValues() throws {
        // {"a": [1, -2, 3.5, True, None, (b"xy",)], "b": 2**70 } via protocol 4 opcodes, memo and frames.
        var p: [UInt8] = [0x80, 0x04, 0x95] + le(UInt64(0))
        p += [0x7D, 0x94]                                            // EMPTY_DICT, MEMOIZE
        p += [0x28, 0x8C, 1] + Array("a".utf8) + [0x94]              // MARK, "a"
        p += [0x5D, 0x94, 0x28, 0x4B, 1, 0x4A] + le(Int32(-2))       // EMPTY_LIST, MARK, 1, -2
        p += [0x47] + withUnsafeBytes(of: (3.5).bitPattern.bigEndian) { Array($0) }
        let xyOffset = p.count + 4
        p += [0x88, 0x4E, 0x43, 2] + Array("xy".utf8) + [0x85, 0x65]  // True, None, b"xy", TUPLE1, APPENDS
        p += [0x8C, 1] + Array("b".utf8) + [0x8A, 9] + [0, 0, 0, 0, 0, 0, 0, 0, 0x40] + [0x75, 0x2E]
        let r = try p.withUnsafeBytes { try RestrictedUnpickler(bytes: $0, place: "v") { _, _ in .none }.load() }
        let d = try #require(r.dict(r.value))
        #expect(d.count == 2 && d[0].key == .string("a") && d[1].key == .string("b"))
        let list = try #require(r.list(d[0].value))
        #expect(list.count == 6 && list[0] == .int(1) && list[1] == .int(-2) && list[2] == .float(3.5)
                && list[3] == .bool(true) && list[4] == .none)
        #expect(r.tuple(list[5]) == [.bytes(offset: xyOffset, length: 2)])
        if case .bigInt(_, let n) = d[1].value { #expect(n == 9) } else { Issue.record("expected a big int") }
        #expect(r.endOffset == p.count)
    }

    @Test func unpicklerBoundsAndCorruption() throws {
        func load(_ p: [UInt8]) -> String? {
            flintErrorMessage { try p.withUnsafeBytes { try RestrictedUnpickler(bytes: $0, place: "p") { _, _ in .none }.load() } }
        }
        #expect(load([0x80, 0x02, 0x58] + le(UInt32(0xFFFF_FFF0)) + [0x2E])?.contains("only 1 remain") == true)
        #expect(load([0x80, 0x02, 0x8D] + le(UInt64.max) + [0x2E])?.contains("runs past the end") == true)
        #expect(load([0x80, 0x02, 0x68, 7, 0x2E])?.contains("memo entry 7 was never stored") == true)
        #expect(load([0x80, 0x02, 0x52, 0x2E])?.contains("stack underflow") == true)
        #expect(load([0x80, 0x02, 0x4E])?.contains("without a STOP") == true)
        #expect(load([0x80, 0x02, 0x4E, 0x4E, 0x2E])?.contains("STOP with 2 values") == true)
        #expect(load([0x80, 0x06, 0x4E, 0x2E])?.contains("protocol 6") == true)
        #expect(load([0x80, 0x02, 0x01, 0x2E])?.contains("opcode 0x1 is not supported") == true)
        #expect(load([0x80, 0x02, 0x28, 0x65, 0x2E]) != nil)  // APPENDS with nothing under the mark
        // A million MARKs stop at the depth bound instead of growing without end.
        let marks = [UInt8](repeating: 0x28, count: RestrictedUnpickler.maxStackDepth + 10) + [0x2E]
        #expect(load(marks)?.contains("deeper than") == true)
        // A list appended to itself (a cycle) is just a value; nothing recurses over it.
        #expect(load([0x80, 0x02, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E]) == nil)
        // Deep nesting (100 000 lists in lists) decodes and is released without recursion.
        var deep: [UInt8] = [0x80, 0x02]
        for _ in 0..<100_000 { deep += [0x5D] }
        for _ in 0..<99_999 { deep += [0x61] }
        deep += [0x2E]
        #expect(load(deep) == nil)
    }

    @Test func truncatedZipCheckpointsAreRefused() throws {
        let bytes = try FormatFixtures.bytes("flan-tiny-bin/pytorch_model.bin")
        let dir = TempDir()
        let f = RewritableFile(in: dir, name: "cut.bin")
        var cuts = Array(stride(from: 0, to: bytes.count, by: max(1, bytes.count / 150)))
        cuts += Array(stride(from: 0, to: 13_000, by: 97)) + (1..<200).map { bytes.count - $0 }
        for cut in cuts {
            f.set(Array(bytes[..<cut]))
            let message = flintErrorMessage { try PyTorchBinFile(path: f.path) }
            #expect(message != nil && message?.hasPrefix("non-FlintError") == false, "cut at \(cut): \(message ?? "opened")")
            #expect(message?.contains(f.path) == true, "cut at \(cut): \(message ?? "")")
        }
    }

    @Test func truncatedLegacyCheckpointsAreRefused() throws {
        let bytes = try FormatFixtures.bytes("flan-tiny-bin-legacy/pytorch_model.bin")
        let dir = TempDir()
        let f = RewritableFile(in: dir, name: "cut.bin")
        var cuts = Array(stride(from: 0, to: bytes.count, by: max(1, bytes.count / 150)))
        cuts += Array(stride(from: 0, to: 14_000, by: 89)) + (1..<50).map { bytes.count - $0 }
        for cut in cuts {
            f.set(Array(bytes[..<cut]))
            let message = flintErrorMessage { try PyTorchBinFile(path: f.path) }
            #expect(message != nil && message?.hasPrefix("non-FlintError") == false, "cut at \(cut): \(message ?? "opened")")
        }
        f.set(bytes + [0])
        #expect(flintErrorMessage { try PyTorchBinFile(path: f.path) }?.contains("1 bytes after the last storage") == true)
    }

    /// Flipped bytes in the pickles and zip records: each variant either opens (a flip inside tensor data is
    /// invisible to a reader) and then hands out every tensor, or fails with a FlintError. Never a crash.
    @Test func corruptedCheckpointsNeverCrash() throws {
        let dir = TempDir()
        let f = RewritableFile(in: dir, name: "flip.bin")
        for fixture in ["flan-tiny-bin/pytorch_model.bin", "flan-tiny-bin-legacy/pytorch_model.bin",
                        "strided/strided.bin"] {
            let bytes = try FormatFixtures.bytes(fixture)
            var rng = SplitMix64(seed: 0x5EED)  // fixed: a failure reproduces
            // Metadata regions: the first 13 000 bytes (pickle(s), local headers) and the last 2 000 (central
            // directory, end records).
            var positions = (0..<300).map { _ in Int.random(in: 0..<min(13_000, bytes.count), using: &rng) }
            positions += (0..<150).map { _ in Int.random(in: max(0, bytes.count - 2_000)..<bytes.count, using: &rng) }
            for pos in positions {
                var b = bytes
                b[pos] ^= UInt8.random(in: 1...255, using: &rng)
                f.set(b)
                do {
                    let file = try PyTorchBinFile(path: f.path)
                    for info in file.tensorInfos {
                        _ = try? file.tensor(info.name)
                        _ = try file.rawBytes(info.name)
                    }
                } catch let e as FlintError {
                    #expect(e.message.contains(f.path), "\(fixture) flip at \(pos): \(e.message)")
                } catch {
                    Issue.record("\(fixture) flip at \(pos): non-FlintError \(error)")
                }
            }
        }
    }

    /// An input fuzz-pickle-zip found (libFuzzer, `make fuzz-smoke`): a legacy checkpoint whose empty tensor (shape
    /// [2, 0]) has a storage offset of 190 in a 12-element storage. Nothing of it is read, so its offset went
    /// unchecked, and its view sliced the mapping at byte 1245 of a 637-byte file (a crash). It opens, and the
    /// empty tensor is an empty view.
    @Test func anEmptyTensorPastItsStorageIsAnEmptyView() throws {
        let base64 =
            "gAWVDQAAAAAAAACKCmz8nEb5IGqoUBkugAWVBAAAAAAAAABN6QMugAWVWAAAAAAAAAB9lCiMEHByb3RvY29sX3ZlcnNpb26UTekD" +
            "jA1saXR0bGVfZW5kaWFulIiMCnR5cGVfc2l6ZXOUfZQojAVzaG9ydJRLAowDaW50lEsEjARsb25nlEsEdXUugAWVFgEAAAAAAAB9" +
            "lCiMCXBhcmFtZXRlcpSMDHRvcmNoLl91dGlsc5SMEl9yZWJ1aWxkX3BhcmFtZXRlcpSTlGgCjBJfcmVidWlsZF90ZW5zb3JfdjKU" +
            "k5QoKIwHc3RvcmFnZZSMBXRvcmNolIwMRmxvYXRTdG9yYWdllJOUjA45NDY3MTc4ODQ0ODExMpSMA2NwdZRLDE50lFFLvksCSwCG" +
            "lEsGSwGGlImMC2NvbGxlY3Rpb25zlIwLT3JkZXJlZERpY3SUk5QpUpR0lFKUiGgSKVKUh5RSlIwKdHJhbnNwb3NlZJRoBigoaAdo" +
            "CowOOTQ2NzE3ODkyODc1MzaUaAxLGE50lFFLAEsGSwSGlEsBSwaGlIloEilSlHSUUpR1LoAFlScAAAAAAAAAXZQojA45NDY3MTc4" +
            "ODQ0ODExMpSMDjk0NjcxNzg5Mjg3NTM2lGUuDAAAAAAAAAAAAIC/AABgvwAAQL8AACC/AAAAvwAAwL4AAIC+AAAAvgAAAAAAAAA+" +
            "AACAPgAAwD4YAAAAAAAAAAAAgL8AAGC/AABAvwAAIL8AAAC/AADAvgAAgL4AAAC+AAAAAAAAAD4AAIA+AADAPgAAAD8BACA/AABA" +
            "PwAAYD8AAIA/AACQPwAAoD8AALA/AADAPwAA0D8AAOA/AADwPw=="
        let dir = TempDir()
        let f = RewritableFile(in: dir, name: "pytorch_model.bin")
        f.set([UInt8](try #require(Data(base64Encoded: base64))))
        let file = try PyTorchBinFile(path: f.path)
        let empty = file.tensorInfos.filter { $0.byteCount == 0 }
        #expect(!empty.isEmpty)
        for info in empty {
            #expect(try file.rawBytes(info.name).isEmpty)
            #expect(try file.tensor(info.name).data.isEmpty, "\(info.name)")
        }
        for info in file.tensorInfos { _ = try? file.tensor(info.name) }
    }

    @Test func notACheckpoint() throws {
        let dir = TempDir()
        let plain = dir.write("plain.bin", [0x80, 0x02, 0x4B, 1, 0x2E])
        #expect(flintErrorMessage { try PyTorchBinFile(path: plain) }?.contains("legacy magic number") == true)
        let text = dir.write("text.bin", "hello")
        #expect(flintErrorMessage { try PyTorchBinFile(path: text) }?.contains("not a PyTorch checkpoint") == true)
        let empty = dir.write("empty.bin", [UInt8]())
        #expect(flintErrorMessage { try PyTorchBinFile(path: empty) }?.contains("not a PyTorch checkpoint") == true)
        // A zip without data.pkl.
        let zip = dir.write("other.zip", ZipBuilder.archive([("a.txt", Array("hi".utf8))]))
        #expect(flintErrorMessage { try PyTorchBinFile(path: zip) }?.contains("data.pkl") == true)
    }
}

