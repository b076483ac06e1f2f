// Format stability: committed .flint files that every future reader must keep reading, and a byte-exact writer.
//
// Tests/Fixtures/format-golden/flan-tiny.v<N>[-r<R>].flint is flan-tiny converted with `goldenRecipe` by a writer
// of format version N (revision R ≥ 2 when a later writer of the same version wrote different bytes, e.g. an
// optional metadata key old readers ignore); the .json beside it lists what a reader must find (config, every
// tensor's storage, scheme, shape and XXH64). The writer test compares the writer's output with the newest golden
// of its version and fails when it differs: bump the format version for a change old readers would misread, or
// (additive changes) add the next revision. Run `FLINT_FORMAT_GOLDEN_OUT=<dir> swift test --filter
// FormatGoldenTests` to get the new file and manifest in <dir>, and commit them next to the old ones: goldens are
// never replaced, so the reader test keeps proving that files from every earlier writer still open and mean the
// same numbers.
import Foundation
import Testing
import TestSupport
import FlintCheckpoint
import FlintConvert
import FlintFormat
import FlintQuant

let formatGoldenDirectory = packageRoot + "/Tests/Fixtures/format-golden"

/// What the goldens hold: int8 per-row weights (the default), one int8-g32 tensor whose rows end in a short group
/// (k = 40), lm_head in f16, norms and the position-bias tables kept f32 by the default keep-list, the tokenizer.
func goldenRecipe() throws -> ConvertOptions {
    ConvertOptions(quant: .int8(.int8Row),
                   keepRules: [try KeepRule(pattern: "lm_head.weight", storage: .f16)],
                   schemeRules: [try SchemeRule(pattern: "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
                                                form: .int8(.int8Group(32)))])
}

struct FormatGoldenError: Error, CustomStringConvertible {
    let description: String
}

/// The goldens present, oldest first (by format version, then revision; the first of a version is revision 1).
func formatGoldens() throws -> [(version: UInt32, revision: Int, flint: String, manifest: String)] {
    let names = try FileManager.default.contentsOfDirectory(atPath: formatGoldenDirectory)
    return names.compactMap { name -> (UInt32, Int, String, String)? in
        guard name.hasPrefix("flan-tiny.v"), name.hasSuffix(".flint") else { return nil }
        let tag = name.dropFirst("flan-tiny.v".count).dropLast(".flint".count).split(separator: "-", maxSplits: 1)
        guard let version = UInt32(tag[0]) else { return nil }
        var revision = 1
        if tag.count == 2 {
            guard tag[1].hasPrefix("r"), let r = Int(tag[1].dropFirst()), r >= 2 else { return nil }
            revision = r
        }
        let base = formatGoldenDirectory + "/" + name.dropLast(".flint".count)
        return (version, revision, base + ".flint", base + ".json")
    }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
}

/// The manifest a golden is checked against: config and every tensor's record.
func manifest(of file: FlintFile) -> [String: Any] {
    var tensors: [String: Any] = [:]
    for r in file.records {
        tensors[r.name] = ["storage": r.storage.name, "scheme": r.scheme.name, "shape": r.shape,
                           "checksum": hex(r.checksum)]
    }
    let c = file.config
    return ["format_version": Int(file.header.formatVersion),
            "config": ["d_model": c.dModel, "d_kv": c.dKV, "d_ff": c.dFF, "num_heads": c.numHeads,
                       "num_layers": c.numEncoderLayers, "num_decoder_layers": c.numDecoderLayers,
                       "vocab_size": c.vocabSize, "layer_norm_epsilon": c.layerNormEpsilon],
            "aliases": file.metadata.aliases, "required_features": file.metadata.requiredFeatures,
            "tokenizer_bytes": file.header.tokenizerSize, "tensors": tensors]
}

func jsonEqual(_ a: Any, _ b: Any) throws -> Bool {
    let options: JSONSerialization.WritingOptions = [.sortedKeys]
    return try JSONSerialization.data(withJSONObject: a, options: options)
        == JSONSerialization.data(withJSONObject: b, options: options)
}

@Suite struct FormatGoldenTests {
    @Test func everyGoldenStillReadsAndMeansTheSameNumbers() throws {
        let goldens = try formatGoldens()
        #expect(goldens.map(\.version).contains(1), "the v1 golden must stay")
        let source = try HFModelFolder(path: fixture("flan-tiny"))
        for golden in goldens {
            let file = try FlintFile(path: golden.flint)
            try file.verifyChecksums()
            #expect(file.header.formatVersion == golden.version, "\(golden.flint) header says \(file.header.formatVersion)")
            let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: golden.manifest)))
            #expect(try jsonEqual(manifest(of: file), expected), "\(golden.flint) no longer reads as \(golden.manifest) records")

            // What the numbers mean, checked against the float source (not against an earlier run of ours).
            #expect(file.tokenizerModel == source.tokenizerModel, "tokenizer bytes")
            var sawGroup = false, sawRow = false, sawF16 = false, sawF32 = false
            for record in file.records {
                let stored = try file.tensor(record.name)
                let original = try TensorDecodingForTests.floats(try source.tensor(record.name))
                let values = try TensorDecodingForTests.floats(stored)
                try #require(values.count == original.count, "\(record.name): element count")
                switch record.scheme {
                case .none where record.storage == .f32:
                    sawF32 = true
                    #expect(values == original, "\(record.name): f32 must be the source bits")
                case .none:
                    sawF16 = sawF16 || record.storage == .f16
                    let rounded = original.map { record.storage == .f16 ? HalfConversion.floatFromF16(HalfConversion.f16Bits($0))
                                                                        : HalfConversion.floatFromBF16(HalfConversion.bf16Bits($0)) }
                    #expect(values == rounded, "\(record.name): \(record.storage) must be the source rounded")
                case .int4Group:
                    Issue.record("\(record.name): the format goldens hold no int4 tensors (Int4ConvertTests covers them)")
                case .int8Row, .int8Group:
                    if case .int8Group = record.scheme { sawGroup = true } else { sawRow = true }
                    // Symmetric int8: scale = max|x| / 127 per row or group, so every value is within scale / 2.
                    let cols = record.shape[1]
                    let group = record.scheme.groupSize > 0 ? record.scheme.groupSize : cols
                    let groups = (cols + group - 1) / group
                    for r in 0..<record.shape[0] {
                        for g in 0..<groups {
                            let range = (r * cols + g * group)..<(r * cols + min(cols, (g + 1) * group))
                            let scale = original[range].map(abs).max()! / 127
                            for i in range where abs(values[i] - original[i]) > scale * 0.5001 + 1e-12 {
                                Issue.record("\(record.name)[\(i)]: \(values[i]) vs source \(original[i]) (scale \(scale))")
                                break
                            }
                        }
                    }
                }
            }
            #expect(sawGroup && sawRow && sawF16 && sawF32, "\(golden.flint) covers int8, int8-gN, f16 and f32 tensors")
        }
    }

    @Test func writerIsByteExactAndMatchesTheGoldenOfItsVersion() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = dir + "/a.flint", second = dir + "/b.flint"
        _ = try Converter.convert(source: fixture("flan-tiny"), output: first, options: try goldenRecipe())
        _ = try Converter.convert(source: fixture("flan-tiny"), output: second, options: try goldenRecipe())
        let written = try Data(contentsOf: URL(fileURLWithPath: first))
        let rewritten = try Data(contentsOf: URL(fileURLWithPath: second))
        #expect(byteDifference(written, rewritten) == nil, "two conversions of one source differ")

        let file = try FlintFile(path: first)
        let version = file.header.formatVersion
        let sameVersion = try formatGoldens().filter { $0.version == version }
        if let out = ProcessInfo.processInfo.environment["FLINT_FORMAT_GOLDEN_OUT"] {
            let next = (sameVersion.last?.revision ?? 0) + 1
            let base = out + "/flan-tiny.v\(version)" + (next > 1 ? "-r\(next)" : "")
            try written.write(to: URL(fileURLWithPath: base + ".flint"))
            try JSONSerialization.data(withJSONObject: manifest(of: file), options: [.sortedKeys, .prettyPrinted])
                .write(to: URL(fileURLWithPath: base + ".json"))
        }
        guard let golden = sameVersion.last else {
            throw FormatGoldenError(description: "the writer now writes format version \(version) and there is no golden for it: add Tests/Fixtures/format-golden/flan-tiny.v\(version).flint and .json (see the top of this file) and keep the older ones")
        }
        let committed = try Data(contentsOf: URL(fileURLWithPath: golden.flint))
        let old = try FlintFile(path: golden.flint)
        if old.metadata.provenance.tool == file.metadata.provenance.tool {
            #expect(byteDifference(written, committed) == nil, "the writer's v\(version) output differs from \(golden.flint): a change old readers would misread needs a new format version; an additive one a new revision (see the top of this file)")
        } else {
            // A new tool version only changes the provenance string (and with it the header's offsets and checksum);
            // everything else must be the same bytes.
            func section(_ data: Data, _ offset: Int, _ size: Int) -> Data { data.subdata(in: offset..<(offset + size)) }
            #expect(section(written, file.header.dataOffset, file.header.dataSize)
                    == section(committed, old.header.dataOffset, old.header.dataSize), "data section")
            #expect(section(written, file.header.tokenizerOffset, file.header.tokenizerSize)
                    == section(committed, old.header.tokenizerOffset, old.header.tokenizerSize), "tokenizer section")
            #expect(file.records == old.records, "tensor table")
            var metadata = file.metadata
            metadata.provenance.tool = old.metadata.provenance.tool
            #expect(metadata == old.metadata, "metadata (apart from the tool version)")
        }
    }
}

/// Float values of a stored tensor (any storage), for comparisons.
enum TensorDecodingForTests {
    static func floats(_ view: TensorView) throws -> [Float] {
        var out: [Float] = []
        try TensorDecoding.floats(view, into: &out)
        return out
    }
}

/// Where two byte strings first differ, or nil when they are equal. `#expect(a == b)` on two Data values
/// would describe the difference element by element, which takes minutes for a 500 KB file.
func byteDifference(_ a: Data, _ b: Data) -> String? {
    if a == b { return nil }
    let common = min(a.count, b.count)
    let offset = (0..<common).first { a[a.startIndex + $0] != b[b.startIndex + $0] } ?? common
    return "\(a.count) vs \(b.count) bytes, first difference at offset \(offset)"
}
