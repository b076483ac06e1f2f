import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintVerify

/// `Tests/Fixtures/outliers/<name>`: transform.json + golden.json written by Tools/make_outlier_fixtures.py.
func outlierFixture(_ name: String) -> String { packageRoot + "/Tests/Fixtures/outliers/" + name }

/// Rebuilds an outlier variant of models/demo into a scratch folder (checksums checked) and returns the folder.
func materializeOutlierVariant(_ name: String) throws -> String {
    let out = scratch() + "/" + name
    try ModelVariant.materialize(transform: outlierFixture(name), base: try HFModelFolder(path: fixture("demo")), to: out)
    return out
}

@Suite struct OutlierFixtureTests {
    static let variants = ["outlier-s30", "outlier-s100", "outlier-s300", "outlier-block", "outlier-head"]

    /// The Swift rebuild gives numpy's weights bit for bit, and the float engine on them matches what
    /// transformers computed for the variant (first-step logits within 1e-4 relative, same greedy ids).
    @Test(arguments: variants)
    func rebuiltVariantMatchesTransformersGolden(name: String) throws {
        let folder = try materializeOutlierVariant(name)
        let report = try GoldenVerifier.verify(weights: try HFModelFolder(path: folder), goldenPath: folder + "/golden.json",
                                               tolerance: 1e-4, pool: nil)
        #expect(report.passed, "\(report.failures)")
        #expect(report.cases.count == 8)
    }

    /// The transform really creates outliers: some weight column of the s=300 variant is ~300× smaller than in
    /// the demo model, and a wrong checksum is caught.
    @Test func transformScalesColumnsAndChecksumsCatchMismatch() throws {
        let transform = try ChannelScalingFile.load(outlierFixture("outlier-s300") + "/transform.json")
        let op = try #require(transform.operations.first { $0.axis == .column && $0.tensor.hasSuffix("wo.weight") })
        let folder = try materializeOutlierVariant("outlier-s300")
        let variant = try HFModelFolder(path: folder), demo = try HFModelFolder(path: fixture("demo"))
        func column(_ source: HFModelFolder) throws -> [Float] {
            let v = try source.tensor(op.tensor)
            let p = v.data.bindMemory(to: Float.self)
            return (0..<v.shape[0]).map { p[$0 * v.shape[1] + op.channel] }
        }
        let before = try column(demo), after = try column(variant)
        for (a, b) in zip(before, after) { #expect(abs(b * 300 - a) <= abs(a) * 1e-6) }

        var broken = transform
        broken.checksums[op.tensor]! &+= 1
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = try JSONEncoder().encode(broken)
        FileManager.default.createFile(atPath: dir + "/transform.json", contents: data)
        #expect(throws: FlintError.self) {
            try ModelVariant.materialize(transform: dir, base: demo, to: dir + "/out")
        }
    }
}
