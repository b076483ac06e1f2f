import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat

/// A safetensors shard whose last tensor starts past 4 GiB (flan-t5-xxl's shards are up to 5 GB; its f32
/// checkpoint is 44 GB): a 4.5 GiB tensor in a sparse hole comes first, the header's offsets exceed 2³², and the
/// tensor after it reads back exactly, in place from the mapping — 64-bit offsets in the JSON, the validation and
/// the view, and nothing that touches the hole.
@Suite struct LargeOffsetSafetensorsTests {
    @Test func tensorPastFourGiBReadsBackInPlace() throws {
        let dir = TempDir()
        let holeBytes = 4_831_838_208            // 4.5 GiB of f32
        let head: [Float] = [1.5, -2], tail: [Float] = [0.25, -7, 3e-5, 65504]
        let tailBegin = 8 + holeBytes, tailEnd = tailBegin + 4 * tail.count
        var header = #"{"__metadata__":{"format":"pt"},"#
            + #""a.head":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""b.hole":{"dtype":"F32","shape":[\#(holeBytes / 4)],"data_offsets":[8,\#(tailBegin)]},"#
            + #""c.tail":{"dtype":"F32","shape":[2,2],"data_offsets":[\#(tailBegin),\#(tailEnd)]}}"#
        // The reference writer pads the header with spaces so the data (and every f32 in it) is 8-byte aligned.
        while header.utf8.count % 8 != 0 { header += " " }
        let start = rawSafetensors(header: header, data: head.flatMap { le($0.bitPattern) })
        let path = dir.write("model-00002-of-00002.safetensors", start)
        let dataStart = 8 + header.utf8.count

        let fd = open(path, O_WRONLY)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(dataStart + tailEnd)) == 0)
        let tailBytes = tail.flatMap { le($0.bitPattern) }
        let written = tailBytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(dataStart + tailBegin)) }
        #expect(written == tailBytes.count)

        let file = try SafetensorsFile(path: path)
        #expect(file.fileSize == Int64(dataStart + tailEnd) && file.fileSize > 4 << 30)
        #expect(file.tensorNames == ["a.head", "b.hole", "c.tail"])
        let info = try #require(file.tensorInfo("c.tail"))
        #expect(info.fileOffset == dataStart + tailBegin && info.byteCount == 16)
        #expect(file.tensorInfo("b.hole")?.byteCount == holeBytes)

        let c = try file.tensor("c.tail")
        #expect(c.storage == .f32 && c.shape == [2, 2] && c.floats == tail)
        // In place: the view is the mapping itself at that offset (no aligned copy was needed or made).
        let mapped = try file.rawBytes("c.tail")
        #expect(c.owner === file && c.data.baseAddress == mapped.baseAddress)
        #expect(try file.tensor("a.head").floats == head)
    }
}
