// A copy of a Hugging Face model folder with channel scalings applied to its weights (a function-preserving
// transform): how the tests rebuild the outlier fixtures from models/demo, and how a smoothed float model can be
// written out for other tools to compare against.

import Foundation
import FlintCheckpoint
import FlintFormat
import FlintQuant

/// A committed transform: `Tests/Fixtures/outliers/<name>/transform.json`, written by
/// Tools/make_outlier_fixtures.py.
public struct ChannelScalingFile: Sendable, Codable {
    public var name: String
    public var description: String
    public var scale: Double
    public var operations: [ChannelScaling]
    /// Per changed tensor: the sum of its float32 bit patterns (as unsigned integers) after the transform, as
    /// numpy computed it — proves the Swift side rebuilt bit-identical weights.
    public var checksums: [String: UInt64]

    public static func load(_ path: String) throws -> ChannelScalingFile {
        guard let data = FileManager.default.contents(atPath: path) else { throw FlintError("\(path): cannot read") }
        do {
            return try JSONDecoder().decode(ChannelScalingFile.self, from: data)
        } catch {
            throw FlintError("\(path): not a channel-scaling transform (\(error))")
        }
    }

    /// The checksum `checksums` holds for a tensor's float32 values.
    public static func checksum(_ values: UnsafeBufferPointer<Float>) -> UInt64 {
        var sum: UInt64 = 0
        for v in values { sum &+= UInt64(v.bitPattern) }
        return sum
    }
}

public enum ModelVariant {
    /// Writes `output` (a new folder): `source`'s config.json, generation_config.json and spiece.model copied, and
    /// a model.safetensors holding every stored tensor, with `scalings` applied in order to the tensors they
    /// name (which must be float32). Returns the changed tensors' checksums (`ChannelScalingFile.checksum`).
    @discardableResult
    public static func write(_ source: HFModelFolder, scalings: [ChannelScaling], to output: String) throws -> [String: UInt64] {
        let byTensor = scalings.byTensor()
        let stored = source.tensorInfos.filter { source.aliases[$0.name] == nil }
        for name in byTensor.keys where !stored.contains(where: { $0.name == name }) {
            throw FlintError("\(source.path): no stored tensor \"\(name)\" to scale")
        }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        for file in ["config.json", "generation_config.json", "spiece.model"] {
            let from = source.folder + "/" + file, to = output + "/" + file
            guard FileManager.default.fileExists(atPath: from) else { continue }
            try? FileManager.default.removeItem(atPath: to)
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
        var entries: [SafetensorsWriter.Entry] = []
        for info in stored {
            let view = try source.tensor(info.name)
            let dtype: String
            switch view.storage {
            case .f32: dtype = "F32"
            case .f16: dtype = "F16"
            case .bf16: dtype = "BF16"
            case .i8, .i4: throw FlintError("\(source.path): tensor \"\(info.name)\" is \(view.storage == .i8 ? "int8" : "int4"); a model variant needs float weights")
            }
            if byTensor[info.name] != nil, view.storage != .f32 {
                throw FlintError("\(source.path): tensor \"\(info.name)\" is \(view.storage); channel scalings need float32")
            }
            entries.append(.init(name: info.name, dtype: dtype, shape: info.shape, byteCount: view.data.count))
        }
        let writer = try SafetensorsWriter(path: output + "/model.safetensors", entries: entries)
        var checksums: [String: UInt64] = [:]
        for info in stored {
            let view = try source.tensor(info.name)
            guard let ops = byTensor[info.name] else {
                try writer.write(view.data)
                continue
            }
            var values = [Float](repeating: 0, count: view.elementCount)
            values.withUnsafeMutableBytes { $0.copyMemory(from: view.data) }
            try values.withUnsafeMutableBufferPointer { buffer in
                for op in ops { try op.apply(to: buffer, shape: info.shape) }
            }
            checksums[info.name] = values.withUnsafeBufferPointer { ChannelScalingFile.checksum($0) }
            try values.withUnsafeBytes { try writer.write($0) }
        }
        try writer.finish()
        return checksums
    }

    /// Rebuilds a committed outlier fixture (`Tests/Fixtures/outliers/<name>`) from `base` into `output`, checks
    /// the weights against the transform's checksums, and copies its golden.json beside them.
    public static func materialize(transform path: String, base: HFModelFolder, to output: String) throws {
        let transform = try ChannelScalingFile.load(path + "/transform.json")
        let checksums = try write(base, scalings: transform.operations, to: output)
        for (tensor, expected) in transform.checksums where checksums[tensor] != expected {
            throw FlintError("\(path): tensor \"\(tensor)\" rebuilt with checksum \(checksums[tensor].map(String.init) ?? "none"), transform.json says \(expected)")
        }
        let golden = path + "/golden.json"
        if FileManager.default.fileExists(atPath: golden) {
            try? FileManager.default.removeItem(atPath: output + "/golden.json")
            try FileManager.default.copyItem(atPath: golden, toPath: output + "/golden.json")
        }
    }
}
