import Foundation
import Testing
import TestSupport

/// A zip archive of stored (uncompressed) entries, as torch.save writes them. CRCs are left 0 (Flint's reader,
/// like torch's, does not need them to find records).
func storedZip(_ entries: [(name: String, bytes: [UInt8])]) -> [UInt8] {
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xff) } }
    var out: [UInt8] = []
    var central: [UInt8] = []
    for e in entries {
        let name = Array(e.name.utf8)
        let offset = out.count
        out += le32(0x04034b50) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0)
            + le32(e.bytes.count) + le32(e.bytes.count) + le16(name.count) + le16(0) + name + e.bytes
        central += le32(0x02014b50) + le16(20) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0)
            + le32(e.bytes.count) + le32(e.bytes.count) + le16(name.count) + le16(0) + le16(0) + le16(0) + le16(0)
            + le32(0) + le32(offset) + name
    }
    let centralOffset = out.count
    out += central
    out += le32(0x06054b50) + le16(0) + le16(0) + le16(entries.count) + le16(entries.count) + le32(central.count)
        + le32(centralOffset) + le16(0)
    return out
}

/// A model folder with flan-tiny's config.json and one hostile weights file.
func folderWithWeights(_ fileName: String, _ bytes: [UInt8]) throws -> String {
    let dir = scratch() + "/model"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: flanTiny + "/config.json", toPath: dir + "/config.json")
    try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + fileName))
    return dir
}

/// Issue 13, item 3: small files that ask the pickle and msgpack decoders for gigabytes.
@Suite struct HostileCheckpointCLITests {
    func expectRefusedCheaply(_ dir: String, file: String, saying what: String) throws {
        let before = snapshot(dir)
        let out = dir + "/../out.flint"
        let r = try measuredFlint(["convert", dir, "-o", out])
        #expect(isCleanRefusal(r, naming: file, saying: what), "status \(r.status) signal \(String(describing: r.signal)) RSS \(r.maxRSSBytes >> 20) MB: \(r.stderr)")
        #expect(r.maxRSSBytes < 256 << 20, "RSS \(r.maxRSSBytes >> 20) MB")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(snapshot(dir) == before)
    }

    @Test func memoisedOrderedDictCallsInAHalfMegabyteBin() throws {
        // OrderedDict(list of 1000 pairs), the list memoised, called again and again: 6 bytes per call, each call
        // a 1000-pair copy (the reported 2.3–8.9 GB).
        var p: [UInt8] = [0x80, 0x02, 0x63] + Array("collections\nOrderedDict\n".utf8) + [0x71, 1]
        p += [0x5D, 0x71, 0, 0x28]
        for _ in 0..<1000 { p += [0x8C, 1, 0x6B, 0x4E, 0x86] }  // ("k", None)
        p += [0x65, 0x30]  // APPENDS, POP (the list stays in the memo)
        p += [0x5D, 0x28]
        while p.count < 500_000 { p += [0x68, 1, 0x68, 0, 0x85, 0x52] }  // BINGET OrderedDict, BINGET list, TUPLE1, REDUCE
        p += [0x65, 0x2E]
        let dir = try folderWithWeights("pytorch_model.bin", storedZip([("archive/data.pkl", p), ("archive/byteorder", Array("little".utf8))]))
        try expectRefusedCheaply(dir, file: "pytorch_model.bin", saying: "values")
    }

    @Test(arguments: ["stack", "appended"])
    func twentyFourMegabytesOfPickledNones(layout: String) throws {
        // Either all on the stack under one MARK, or each APPENDed to one list as it comes (`N a`).
        var p: [UInt8] = [0x80, 0x02, 0x5D]
        if layout == "stack" {
            p += [0x28] + [UInt8](repeating: 0x4E, count: 24 << 20) + [0x65]
        } else {
            p.reserveCapacity(24 << 20 + 8)
            for _ in 0..<(12 << 20) { p += [0x4E, 0x61] }
        }
        p += [0x2E]
        let dir = try folderWithWeights("pytorch_model.bin", storedZip([("archive/data.pkl", p)]))
        try expectRefusedCheaply(dir, file: "pytorch_model.bin", saying: "values")
    }

    @Test(arguments: [50, 100])
    func msgpackArrayOfSmallInts(megabytes: Int) throws {
        let n = megabytes << 20
        let dir = try folderWithWeights("flax_model.msgpack", [0xdd, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)])
        // Appended in 1 MB pieces, so this test process itself stays small.
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/flax_model.msgpack"))
        try h.seekToEnd()
        let chunk = Data(repeating: 0x01, count: 1 << 20)
        for _ in 0..<megabytes { try h.write(contentsOf: chunk) }
        try h.close()
        try expectRefusedCheaply(dir, file: "flax_model.msgpack", saying: "values")
    }

    @Test func msgpackNestedArraysCannotDodgeTheBudget() throws {
        // 25 M one-element arrays, [[1], [1], …]: each slot is announced only one level down.
        let n = 25 << 20
        var m: [UInt8] = [0xdd, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
        m.reserveCapacity(5 + 2 * n)
        for _ in 0..<n { m += [0x91, 0x01] }
        let dir = try folderWithWeights("flax_model.msgpack", m)
        try expectRefusedCheaply(dir, file: "flax_model.msgpack", saying: "values")
    }
}
