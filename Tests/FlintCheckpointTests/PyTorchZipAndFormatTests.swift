// The zip reader (incl. ZIP64, built by hand here since torch only writes ZIP64 past 4 GB) and the checkpoint
// format detection of model folders.
import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat

/// Writes zip archives the way torch's writer lays them out: stored entries, data aligned to 64 bytes by padding
/// the local header's extra field. With `zip64`, every size and offset goes through the ZIP64 extensions.
enum ZipBuilder {
    static func archive(_ entries: [(String, [UInt8])], zip64: Bool = false, method: [String: UInt16] = [:]) -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        for (name, data) in entries {
            let offset = out.count
            let nameBytes = Array(name.utf8)
            var extraLength = 0
            while (offset + 30 + nameBytes.count + 4 + extraLength) % 64 != 0 { extraLength += 1 }
            let m = method[name] ?? 0
            out += le(UInt32(0x0403_4b50)) + le(UInt16(zip64 ? 45 : 20)) + le(UInt16(0)) + le(m)
                + le(UInt32(0)) + le(UInt32(0))
                + le(UInt32(zip64 ? 0xFFFF_FFFF : UInt32(data.count))) + le(UInt32(zip64 ? 0xFFFF_FFFF : UInt32(data.count)))
                + le(UInt16(nameBytes.count)) + le(UInt16(4 + extraLength)) + nameBytes
                + le(UInt16(0x4646)) + le(UInt16(extraLength)) + [UInt8](repeating: 0, count: extraLength)
            out += data
            var extra: [UInt8] = []
            if zip64 { extra = le(UInt16(1)) + le(UInt16(24)) + le(UInt64(data.count)) + le(UInt64(data.count)) + le(UInt64(offset)) }
            let sat = UInt32(0xFFFF_FFFF)
            central += le(UInt32(0x0201_4b50)) + le(UInt16(45)) + le(UInt16(zip64 ? 45 : 20)) + le(UInt16(0)) + le(m)
                + le(UInt32(0)) + le(UInt32(0))
                + le(zip64 ? sat : UInt32(data.count)) + le(zip64 ? sat : UInt32(data.count))
                + le(UInt16(nameBytes.count)) + le(UInt16(extra.count)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0))
                + le(UInt32(0)) + le(zip64 ? sat : UInt32(offset)) + nameBytes + extra
        }
        let cdOffset = out.count
        out += central
        if zip64 {
            let record = out.count
            out += le(UInt32(0x0606_4b50)) + le(UInt64(44)) + le(UInt16(45)) + le(UInt16(45)) + le(UInt32(0)) + le(UInt32(0))
                + le(UInt64(entries.count)) + le(UInt64(entries.count)) + le(UInt64(central.count)) + le(UInt64(cdOffset))
            out += le(UInt32(0x0706_4b50)) + le(UInt32(0)) + le(UInt64(record)) + le(UInt32(1))
            out += le(UInt32(0x0605_4b50)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0xFFFF)) + le(UInt16(0xFFFF))
                + le(UInt32(0xFFFF_FFFF)) + le(UInt32(0xFFFF_FFFF)) + le(UInt16(0))
        } else {
            out += le(UInt32(0x0605_4b50)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(entries.count))
                + le(UInt16(entries.count)) + le(UInt32(central.count)) + le(UInt32(cdOffset)) + le(UInt16(0))
        }
        return out
    }

    /// The entries of an archive, through our reader.
    static func entries(of bytes: [UInt8]) throws -> [(String, [UInt8])] {
        try bytes.withUnsafeBytes { b in
            let zip = try ZipArchive(path: "x", bytes: b)
            return try zip.entries.map { ($0.name, Array(try zip.storedData($0))) }
        }
    }
}

@Suite struct PyTorchZipAndFormatTests {
    @Test func zip64ArchiveOfARealCheckpoint() throws {
        // torch's records re-packed as ZIP64: the checkpoint must read the same, in place.
        let original = try FormatFixtures.bytes("flan-tiny-bin/pytorch_model.bin")
        let records = try ZipBuilder.entries(of: original)
        #expect(records.map(\.0).contains("pytorch_model/data.pkl") && records.count > 10)
        let dir = TempDir()
        let path = dir.write("pytorch_model.bin", ZipBuilder.archive(records, zip64: true))
        try ZipBuilder.archive(records, zip64: true).withUnsafeBytes { b in
            let zip = try ZipArchive(path: path, bytes: b)
            #expect(zip.entries.count == records.count)
            for e in zip.entries { #expect(e.dataOffset % 64 == 0 && e.localHeaderOffset != 0xFFFF_FFFF) }
        }
        let a = try PyTorchBinFile(path: FormatFixtures.path("flan-tiny-bin/pytorch_model.bin"))
        let b = try PyTorchBinFile(path: path)
        #expect(a.tensorNames == b.tensorNames)
        for name in a.tensorNames {
            #expect(viewBytes(try a.tensor(name)) == viewBytes(try b.tensor(name)), "\(name)")
            #expect(try b.tensor(name).owner === b, "\(name) should be a view into the mapping")
        }
    }

    @Test func zipErrors() throws {
        let dir = TempDir()
        let data = Array("little".utf8)
        // A compressed record is named.
        var records: [(String, [UInt8])] = try ZipBuilder.entries(of: FormatFixtures.bytes("flan-tiny-bin/pytorch_model.bin"))
        let deflated = dir.write("deflated.bin", ZipBuilder.archive(records, method: ["pytorch_model/data/3": 8]))
        let message = try #require(flintErrorMessage { try PyTorchBinFile(path: deflated) })
        #expect(message.contains("\"pytorch_model/data/3\" is compressed") && message.contains(deflated))
        let complete = records
        // A storage record missing.
        records.removeAll { $0.0 == "pytorch_model/data/2" }
        let missing = dir.write("missing.bin", ZipBuilder.archive(records))
        #expect(flintErrorMessage { try PyTorchBinFile(path: missing) }?.contains("no record \"pytorch_model/data/2\"") == true)
        // A storage record of the wrong size.
        let resized = complete.map { $0.0 == "pytorch_model/data/1" ? ($0.0, Array($0.1.dropLast(4))) : $0 }
        let short = dir.write("short.bin", ZipBuilder.archive(resized))
        #expect(flintErrorMessage { try PyTorchBinFile(path: short) }?.contains("\"pytorch_model/data/1\" holds") == true)
        // Big-endian checkpoints are refused.
        let big = complete.map { $0.0 == "pytorch_model/byteorder" ? ($0.0, Array("big".utf8)) : $0 }
        let bigPath = dir.write("big.bin", ZipBuilder.archive(big))
        #expect(flintErrorMessage { try PyTorchBinFile(path: bigPath) }?.contains("only little-endian") == true)
        // ZIP64 end record that points nowhere.
        var z64 = ZipBuilder.archive([("a", data)], zip64: true)
        let locator = z64.count - 22 - 20
        z64.replaceSubrange((locator + 8)..<(locator + 16), with: le(UInt64(3)))
        z64.withUnsafeBytes { b in
            #expect(flintErrorMessage { try ZipArchive(path: "z", bytes: b) }?.contains("no ZIP64 end record") == true)
        }
        // A central directory claiming more entries than it can hold.
        var many = ZipBuilder.archive([("a", data)])
        many.replaceSubrange((many.count - 12)..<(many.count - 10), with: le(UInt16(5000)))
        many.withUnsafeBytes { b in
            #expect(flintErrorMessage { try ZipArchive(path: "z", bytes: b) }?.contains("claims 5000 entries") == true)
        }
    }

    @Test func folderWithSeveralFormatsPrefersSafetensorsAndSaysSo() throws {
        let dir = TempDir()
        let flan = ModelFixtures.path("flan-tiny")
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: flan + "/" + f, toPath: dir.path + "/" + f)
        }
        try FileManager.default.copyItem(atPath: FormatFixtures.path("flan-tiny-bin/pytorch_model.bin"),
                                         toPath: dir.path + "/pytorch_model.bin")
        dir.write("flax_model.msgpack", [0x80])
        let folder = try HFModelFolder(path: dir.path)
        #expect(folder.format == .safetensors && folder.sourceFormat == "safetensors")
        #expect(folder.otherFormatsFound == [.pytorch, .flaxMsgpack])
        let note = try #require(folder.formatChoice)
        #expect(note.contains("model.safetensors") && note.contains("pytorch_model.bin") && note.contains("flax_model.msgpack")
                && note.contains("using safetensors"))

        let bin = try HFModelFolder(path: dir.path, format: .pytorch)
        #expect(bin.format == .pytorch && bin.sourceFormat == "pytorch" && bin.otherFormatsFound == [.safetensors, .flaxMsgpack])
        #expect(bin.formatChoice?.contains("as asked") == true)
        for name in folder.tensorNames {
            #expect(viewBytes(try folder.tensor(name)) == viewBytes(try bin.tensor(name)), "\(name)")
        }
        let h5 = try #require(flintErrorMessage { try HFModelFolder(path: dir.path, format: .kerasH5) })
        #expect(h5.contains("asked for Keras .h5") && h5.contains("model.safetensors (safetensors)")
                && h5.contains("pytorch_model.bin (PyTorch .bin)"))
        let wrongFile = try #require(flintErrorMessage { try HFModelFolder(path: dir.path + "/pytorch_model.bin", format: .safetensors) })
        #expect(wrongFile.contains("this is a PyTorch .bin file"))
        #expect(CheckpointFormat(rawValue: "h5") == .kerasH5 && CheckpointFormat(rawValue: "msgpack") == .flaxMsgpack)
    }

    /// Keras and Flax folders go to their readers (KerasH5Checkpoint / FlaxMsgpackCheckpoint); the folder then
    /// serves the same tensors as the safetensors original.
    @Test(arguments: [("flan-tiny-h5", CheckpointFormat.kerasH5, "flan-tiny"), ("flan-tiny-msgpack", .flaxMsgpack, "flan-tiny"),
                      ("flan-tiny-h5-sharded", .kerasH5, "flan-tiny"), ("flan-tiny-msgpack-sharded", .flaxMsgpack, "flan-tiny")])
    func kerasAndFlaxFoldersAreDetected(folderName: String, format: CheckpointFormat, source: String) throws {
        let folder = try HFModelFolder(path: FormatFixtures.path(folderName))
        let reference = try HFModelFolder(path: ModelFixtures.path(source))
        #expect(folder.format == format && folder.otherFormatsFound.isEmpty)
        #expect(folder.sourceFiles.contains { $0.name.hasSuffix(format == .kerasH5 ? ".h5" : ".msgpack") })
        for info in reference.tensorInfos {
            #expect(viewBytes(try folder.tensor(info.name)) == viewBytes(try reference.tensor(info.name)), "\(info.name)")
        }
    }

    @Test func folderWithoutWeightsListsWhatItExpects() throws {
        let dir = TempDir()
        dir.write("config.json", ConfigTexts.tiny())
        dir.write("pytorch_model-00001-of-00002.bin", [0x50])
        let message = try #require(flintErrorMessage { try HFModelFolder(path: dir.path) })
        #expect(message.contains("no checkpoint weights") && message.contains("pytorch_model.bin.index.json")
                && message.contains("pytorch_model-00001-of-00002.bin"))
    }
}
