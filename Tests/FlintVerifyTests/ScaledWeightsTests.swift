import Foundation
import Testing
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintKernels
import FlintVerify

@Suite struct ScaledWeightsTests {
    /// Scaling the demo model with the outlier-s300 transform in memory gives the variant's weights bit for bit
    /// (the variant the fixture script made with numpy), and the untouched tensors are the base's own.
    @Test func scalingsReproduceTheOutlierVariant() throws {
        let demo = try HFModelFolder(path: fixture("demo"))
        let transform = try ChannelScalingFile.load(outlierFixture("outlier-s300") + "/transform.json")
        let scaled = ScaledWeights(base: demo, scalings: transform.operations)
        let variant = try HFModelFolder(path: try materializeOutlierVariant("outlier-s300"))
        let touched = Set(transform.operations.map(\.tensor))
        for name in demo.tensorNames {
            let a = try scaled.tensor(name), b = try variant.tensor(name)
            #expect(Sensitivity.identical(a, b), "\(name)")
            if !touched.contains(name) { #expect(a.data.baseAddress == (try demo.tensor(name)).data.baseAddress) }
        }
    }
}
