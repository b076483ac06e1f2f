import Foundation
import Testing
import TestSupport
@testable import FlintFormat

/// The `calibration` metadata (most of a big model's metadata: per-channel smoothing scales) is located at open
/// but decoded only by `calibration()`, so opening a big calibrated file does not parse it.
@Suite struct LazyCalibrationTests {
    func summary(smoothed: Bool) -> CalibrationSummary {
        let fold = SmoothingFold(producer: "encoder.block.0.layer.0.layer_norm.weight", producerAxis: "element",
                                 consumers: ["encoder.block.0.layer.0.SelfAttention.q.weight"],
                                 scales: (0..<8).map { 1 + Float($0) / 8 }, activationMaxBefore: 40, activationMaxAfter: 6,
                                 minScale: 1, maxScale: 1.875)
        return CalibrationSummary(
            prompts: 3, promptSource: "test \"prompts\" {]", maxNewTokens: 123, percentile: 99.9,
            layers: ["b": CalibrationLayerSummary(rows: 10, absMax: 4, percentileMax: 3, medianChannelAbsMax: 1,
                                                  topChannels: [[2, 4], [0, 3]])],
            smoothing: smoothed ? SmoothingSummary(alpha: 0.5, folds: [fold]) : nil)
    }

    func write(_ path: String, calibration: CalibrationSummary?) throws {
        let w = try FlintWriter(path: path)
        let a: [Float] = (0..<15).map { Float($0) }
        try a.withUnsafeBytes { try w.addTensor(name: "a", storage: .f32, shape: [3, 5], scheme: .none, data: $0) }
        try w.finish(metadata: FlintMetadata(config: tinyConfig(), tokenizer: nil,
                                             provenance: Provenance(sourceFormat: "test", sourceFiles: [],
                                                                    quantization: QuantizationRecipe(scheme: "int8", keep: [], defaultKeep: true)),
                                             calibration: calibration),
                     tokenizer: nil)
    }

    @Test(arguments: [true, false])
    func calibrationIsDecodedOnDemand(smoothed: Bool) throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try write(dir + "/m.flint", calibration: summary(smoothed: smoothed))
        let f = try FlintFile(path: dir + "/m.flint")
        #expect(f.metadata.calibration == nil)
        #expect(f.isSmoothed == smoothed)
        #expect(try f.calibration() == summary(smoothed: smoothed))
        #expect(try f.calibration() == summary(smoothed: smoothed))   // kept
        #expect(f.config == tinyConfig())
        try write(dir + "/free.flint", calibration: nil)
        let free = try FlintFile(path: dir + "/free.flint")
        #expect(try free.calibration() == nil && !free.isSmoothed)
    }

    /// A calibration value that does not decode is an error naming the file and its offset, when it is read.
    @Test func badCalibrationIsAnErrorWhenRead() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.flint"
        try write(path, calibration: summary(smoothed: true))
        var bytes = readBytes(path)
        let text = Array("\"max_new_tokens\":123".utf8), bad = Array("\"max_new_tokens\":\"1\"".utf8)
        let at = try #require((0...(bytes.count - text.count)).first { Array(bytes[$0..<($0 + text.count)]) == text })
        bytes.replaceSubrange(at..<(at + text.count), with: bad)
        fixSectionsChecksum(&bytes)
        writeBytes(path, bytes)
        let f = try FlintFile(path: path)
        do {
            _ = try f.calibration()
            Issue.record("a string max_new_tokens was accepted")
        } catch let e as FlintError {
            #expect(e.message.contains(path) && e.message.contains("metadata calibration at offset")
                    && e.message.contains("max_new_tokens"), "\(e.message)")
        }
    }

    @Test func scanFindsTopLevelMembersOnly() {
        func find(_ key: String, _ json: String) -> String? {
            let bytes = Array(json.utf8)
            return bytes.withUnsafeBytes { b in
                MetadataScan.topLevelValue(key, in: b).map { String(decoding: bytes[$0], as: UTF8.self) }
            }
        }
        let json = #"{"a": {"calibration": 1}, "s": "\"calibration\": 2", "calibration" : {"x": ["}", "\\", {"y": [1]}], "z": null} , "b": 3}"#
        #expect(find("calibration", json) == #"{"x": ["}", "\\", {"y": [1]}], "z": null}"#)
        #expect(find("b", json) == "3")
        #expect(find("a", json) == #"{"calibration": 1}"#)
        #expect(find("missing", json) == nil)
        #expect(find("calibration", #"{"calibration": {"x": [1, 2}"#) == nil)   // never ends
        #expect(find("calibration", "[1, 2]") == nil)
        #expect(find("calibration", #"{"calibration":null}"#) == "null")
    }
}
