import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// The UMT5 config flag `relative_attention_bias_per_layer`: written only when true, and then only in a file that
/// lists the matching required feature (a reader that predates the flag refuses the file instead of reusing
/// block 0's bias everywhere).
@Suite struct PerLayerBiasFormatTests {
    func umt5Config() -> T5Config {
        var c = tinyConfig()
        c.relativeAttentionBiasPerLayer = true
        return c
    }

    @Test func configKeyIsWrittenOnlyWhenSet() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let t5 = String(decoding: try encoder.encode(tinyConfig()), as: UTF8.self)
        #expect(!t5.contains("relative_attention_bias_per_layer"))
        let umt5 = String(decoding: try encoder.encode(umt5Config()), as: UTF8.self)
        #expect(umt5.contains(#""relative_attention_bias_per_layer":true"#))
        // Both decode back to what was encoded; a config without the key is a T5 one.
        #expect(try JSONDecoder().decode(T5Config.self, from: Data(t5.utf8)) == tinyConfig())
        #expect(try JSONDecoder().decode(T5Config.self, from: Data(umt5.utf8)) == umt5Config())
        #expect(tinyConfig().requiredFeatures.isEmpty)
        #expect(umt5Config().requiredFeatures == [T5Config.perLayerRelativeBiasFeature])
    }

    @Test func fileWithTheFeatureReadsBack() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeOneTensorFile(dir + "/m.flint", config: umt5Config(), requiredFeatures: [T5Config.perLayerRelativeBiasFeature])
        let file = try FlintFile(path: dir + "/m.flint")
        #expect(file.config.relativeAttentionBiasPerLayer)
        #expect(file.metadata.requiredFeatures == ["per-layer-relative-attention-bias"])
    }

    @Test func flagWithoutTheRequiredFeatureIsRejected() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeOneTensorFile(dir + "/m.flint", config: umt5Config(), requiredFeatures: [])
        expectError(dir + "/m.flint", contains: "the config needs required_features to list \"per-layer-relative-attention-bias\"")
    }
}
