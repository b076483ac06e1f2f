import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// A .flint file whose data section starts past 4 GiB (xl's int8 file is 2.9 GB, xxl's ≈ 11 GB): the sample
/// file's data section is moved 4.5 GiB further into a sparse file, its offsets patched, and every tensor, scale
/// and checksum reads back exactly — 64-bit offsets everywhere, nothing that touches the hole.
@Suite struct LargeOffsetFormatTests {
    @Test func dataSectionPastFourGiBReadsBack() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSample(dir + "/small.flint")
        var b = readBytes(dir + "/small.flint")
        let original = try FlintFile(path: dir + "/small.flint")
        let shift = 4_831_838_208   // 4.5 GiB, a multiple of the alignment
        let dataOffset = u64(b, 24), dataSize = u64(b, 32)
        #expect(dataOffset + dataSize <= u64(b, 40))   // the sample's data section comes before its table
        let data = Array(b[dataOffset..<(dataOffset + dataSize)])
        putU64(&b, 24, UInt64(dataOffset + shift))
        putU64(&b, 88, UInt64(dataOffset + shift + dataSize))   // file_size: the data section now ends the file
        for i in 0..<original.records.count {
            let f = dataOffsetField(b, record: i)
            putU64(&b, f, UInt64(u64(b, f) + shift))           // data_offset
            if u64(b, f + 24) > 0 { putU64(&b, f + 16, UInt64(u64(b, f + 16) + shift)) }  // scale_offset
        }
        fixSectionsChecksum(&b)
        let path = dir + "/big.flint"
        writeBytes(path, b)
        let fd = open(path, O_WRONLY)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(dataOffset + shift + dataSize)) == 0)
        let written = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, dataSize, off_t(dataOffset + shift)) }
        #expect(written == dataSize)

        let big = try FlintFile(path: path)
        #expect(big.header.dataOffset == dataOffset + shift && big.fileSize == dataOffset + shift + dataSize)
        for r in original.records {
            let a = try original.tensor(r.name), c = try big.tensor(r.name)
            #expect(big.record(r.name)!.dataOffset == r.dataOffset + shift)
            #expect(Array(a.data) == Array(c.data) && Array(a.scales) == Array(c.scales), "\(r.name)")
        }
        try big.verifyChecksums()
    }
}
