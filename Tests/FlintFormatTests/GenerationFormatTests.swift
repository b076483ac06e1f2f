import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// `eos_token_id` and `decoder_start_token_id` in `generation` came after the first version-1 files: a reader that
/// predates them would ignore the keys and end (or start) sequences on other tokens, so a file storing them lists
/// `generation-special-ids` and older readers refuse it by that name.
@Suite struct GenerationFormatTests {
    @Test func theWriterListsTheFeatureAndTheIdsReadBack() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var g = GenerationDefaults()
        g.eosTokenIds = [1, 7]
        g.decoderStartTokenId = 3
        try writeOneTensorFile(dir + "/m.flint", generation: g)
        let file = try FlintFile(path: dir + "/m.flint")
        #expect(file.metadata.generation?.eosTokenIds == [1, 7] && file.metadata.generation?.decoderStartTokenId == 3)
        #expect(file.metadata.requiredFeatures == ["generation-special-ids"])
        // Other settings alone need no feature.
        var plain = GenerationDefaults()
        plain.numBeams = 4
        try writeOneTensorFile(dir + "/plain.flint", generation: plain)
        #expect(try FlintFile(path: dir + "/plain.flint").metadata.requiredFeatures.isEmpty)
    }

    /// A file whose `required_features` does not list the feature (a writer that forgot it) is refused.
    @Test func idsWithoutTheFeatureAreRejected() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.flint"
        var g = GenerationDefaults()
        g.eosTokenIds = [1, 7]
        try writeOneTensorFile(path, generation: g)
        var b = readBytes(path)
        let listed = Array(#"["generation-special-ids"]"#.utf8)
        let start = u64(b, 56), end = start + u64(b, 64)
        let at = try #require((start...(end - listed.count)).first { Array(b[$0..<($0 + listed.count)]) == listed })
        // The same length, so no offset moves: an empty list padded with spaces.
        b.replaceSubrange(at..<(at + listed.count), with: Array(("[" + String(repeating: " ", count: listed.count - 2) + "]").utf8))
        fixSectionsChecksum(&b)
        writeBytes(path, b)
        expectError(path, contains: "the generation settings need required_features to list \"generation-special-ids\"")
    }

    @Test func outOfRangeIdsAreRejected() throws {
        for (change, fragment) in [({ (g: inout GenerationDefaults) in g.eosTokenIds = [] }, "eos_token_id must name at least one token"),
                                   ({ (g: inout GenerationDefaults) in g.eosTokenIds = [1, 10] }, "token 10 is outside the vocabulary"),
                                   ({ (g: inout GenerationDefaults) in g.decoderStartTokenId = -2 }, "token -2 is outside the vocabulary")] {
            var g = GenerationDefaults()
            change(&g)
            #expect(throws: FlintError.self) { try g.validate(vocabSize: 10) }
            do { try g.validate(vocabSize: 10) } catch let e as FlintError { #expect(e.message.contains(fragment), "\(e.message)") }
        }
    }
}
