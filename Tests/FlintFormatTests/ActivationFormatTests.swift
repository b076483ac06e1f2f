import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// Activations beyond relu / gelu_new / gelu (SiLU for UL2 and Pile-T5, …) came after the first version-1 files: a
/// file using one lists `feed-forward-activations` in required_features, so an older reader refuses it by that
/// name instead of failing on (or, worse, guessing) the activation.
@Suite struct ActivationFormatTests {
    func config(_ activation: FeedForwardActivation) -> T5Config {
        var c = tinyConfig()
        c.activation = activation
        return c
    }

    @Test func onlyTheNewActivationsNeedTheFeature() {
        for activation in FeedForwardActivation.allCases {
            let needs = config(activation).requiredFeatures.contains(T5Config.extraActivationsFeature)
            #expect(needs == ![.relu, .geluNew, .gelu].contains(activation), "\(activation)")
        }
        #expect(FlintLayout.knownFeatures.contains("feed-forward-activations"))
    }

    @Test(arguments: FeedForwardActivation.allCases.filter { !FeedForwardActivation.original.contains($0) })
    func fileWithTheFeatureReadsBack(activation: FeedForwardActivation) throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeOneTensorFile(dir + "/m.flint", config: config(activation), requiredFeatures: config(activation).requiredFeatures)
        let file = try FlintFile(path: dir + "/m.flint")
        #expect(file.config.activation == activation)
        #expect(file.metadata.requiredFeatures == ["feed-forward-activations"])
    }

    @Test func newActivationWithoutTheFeatureIsRejected() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeOneTensorFile(dir + "/m.flint", config: config(.silu), requiredFeatures: [])
        expectError(dir + "/m.flint", contains: "the config needs required_features to list \"feed-forward-activations\"")
    }

    /// What a reader that predates the feature does: it does not know the name and refuses the file.
    @Test func unknownFeatureIsRejectedByName() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeOneTensorFile(dir + "/m.flint", config: tinyConfig(), requiredFeatures: ["feed-forward-activations-2"])
        expectError(dir + "/m.flint", contains: "feed-forward-activations-2")
    }
}
