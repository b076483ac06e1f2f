// The same weights saved in the other checkpoint formats — PyTorch .bin layouts (Tools/make_pytorch_fixtures.py),
// Keras .h5 and Flax msgpack (Tools/make_format_fixtures.py), each checked there against the safetensors fixture
// by the writing library — convert to exactly the same .flint tensors as the safetensors folder.
import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintQuant

func formatFixture(_ name: String) -> String { packageRoot + "/Tests/Fixtures/formats/" + name }

@Suite struct FormatParityTests {
    /// name → (storage, scheme, shape, checksum of data and scales) of every tensor in a converted file.
    func converted(_ source: String, quant: QuantRequest, dir: String, name: String) throws
        -> (tensors: [String: String], aliases: [String: String], report: ConvertReport)
    {
        let report = try Converter.convert(source: source, output: dir + "/" + name, options: ConvertOptions(quant: quant))
        let flint = try FlintFile(path: dir + "/" + name)
        try flint.verifyChecksums()
        var tensors: [String: String] = [:]
        for r in flint.records {
            tensors[r.name] = "\(r.storage) \(r.scheme) \(r.shape) \(hex(r.checksum))"
        }
        return (tensors, flint.metadata.aliases, report)
    }

    @Test(arguments: [("flan-tiny-bin", "flan-tiny", "pytorch"), ("flan-tiny-bin-legacy", "flan-tiny", "pytorch-legacy"),
                      ("flan-tiny-bin-sharded", "flan-tiny", "pytorch"), ("t5-tiny-bin", "t5-tiny", "pytorch"),
                      ("flan-tiny-h5", "flan-tiny", "keras-h5"), ("flan-tiny-msgpack", "flan-tiny", "flax-msgpack"),
                      ("t5-tiny-h5", "t5-tiny", "keras-h5"), ("t5-tiny-msgpack", "t5-tiny", "flax-msgpack")])
    func convertsLikeSafetensors(bin: String, source: String, format: String) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for quant in [QuantRequest.int8(.int8Row), .float(.f32)] {
            let expected = try converted(fixture(source), quant: quant, dir: dir, name: "st.flint")
            let got = try converted(formatFixture(bin), quant: quant, dir: dir, name: "bin.flint")
            #expect(got.report.sourceFormat == format)
            #expect(expected.tensors.count > 10)
            #expect(got.tensors == expected.tensors, "\(bin) converts differently from \(source) (\(quant.name))")
            for (name, t) in got.tensors where expected.tensors[name] != t {
                Issue.record("\(bin) \(quant.name): \(name): \(t) vs \(expected.tensors[name] ?? "missing")")
            }
            // torch.save keeps the tied names (viewing shared's storage) that save_pretrained's safetensors drops:
            // they become aliases of shared.weight, which is what transformers ties them to.
            let tiedNames: Set<String> = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"]
            #expect(got.aliases.allSatisfy { tiedNames.contains($0.key) && $0.value == "shared.weight" })
            #expect(expected.aliases.allSatisfy { got.aliases[$0.key] == $0.value })
            if format.hasPrefix("pytorch") && !bin.hasSuffix("sharded") {
                #expect(got.aliases["encoder.embed_tokens.weight"] == "shared.weight")
            }
            #expect(got.report.ignored == expected.report.ignored)
        }
    }
}
