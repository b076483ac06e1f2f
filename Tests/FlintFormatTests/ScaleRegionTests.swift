import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// The writer puts every tensor's int8 scales in one run after the last tensor's elements (FLINT.md, "Data
/// section"), so building the int8 layers at load — which reads every scale — is one sequential read instead of
/// one random read per tensor from a cold disk. The scales still belong to their tensors: values and checksums
/// read back.
@Suite struct ScaleRegionTests {
    @Test func scalesFollowTheLastTensorTogether() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.flint"
        try writeSample(path)   // a: f32, b: int8 row scales, c: int8 g4 (packed by default)
        let f = try FlintFile(path: path)
        let withScales = f.records.filter { $0.scaleSize > 0 }
        #expect(withScales.map(\.name) == ["b", "c"])
        let lastElements = f.records.map { $0.dataOffset + $0.dataSize }.max()!
        // In table order, each right after the previous (up to the 64-byte alignment), all after the elements.
        var expected = FlintLayout.aligned(lastElements)
        for r in withScales {
            #expect(r.scaleOffset == expected, "\(r.name)")
            expected = FlintLayout.aligned(r.scaleOffset + r.scaleSize)
        }
        #expect(withScales.last.map { $0.scaleOffset + $0.scaleSize } == f.header.dataOffset + f.header.dataSize)
        #expect(Array(try f.tensor("b").scales) == [0.1, 0.2, 0.3, 0.4])
        #expect(Array(try f.tensor("c").scales) == [1, 2, 3, 4])
        try f.verifyChecksums()
    }
}
