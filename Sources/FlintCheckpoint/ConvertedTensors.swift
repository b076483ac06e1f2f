// What the Keras .h5 and Flax msgpack readers share: both store linear weights as `[in, out]` kernels that
// Hugging Face's PyTorch naming wants as `[out, in]` weights, so those tensors are materialised (one at a time,
// in a TensorBuffer the returned view owns) rather than viewed in place; and both shard the same way.
import Foundation
import FlintFormat

enum ConvertedTensors {
    /// The readers for a folder's weights in one format: the single `fileName`, or else the shards its
    /// `indexFileName` lists. A path to either file works too.
    static func openWeights(folder: String, fileName: String, indexFileName: String, description: String,
                            openFile: (String) throws -> CheckpointReader,
                            openIndex: (String, String) throws -> [CheckpointReader]) throws -> [CheckpointReader] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDir) else {
            throw FlintError(.notFound, "\(folder): no such file or folder")
        }
        if !isDir.boolValue {
            let dir = URL(fileURLWithPath: folder).deletingLastPathComponent().path
            if folder.hasSuffix(".index.json") { return try openIndex(folder, dir) }
            return [try openFile(folder)]
        }
        let dir = URL(fileURLWithPath: folder, isDirectory: true)
        let single = dir.appendingPathComponent(fileName).path
        if fm.fileExists(atPath: single) { return [try openFile(single)] }
        let index = dir.appendingPathComponent(indexFileName).path
        if fm.fileExists(atPath: index) { return try openIndex(index, dir.path) }
        throw FlintError(.notFound, "\(folder): no \(description) weights (\(fileName) or \(indexFileName))")
    }

    /// Element count of a shape, nil when it overflows.
    static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (m, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = m
        }
        return n
    }

    /// Byte count of `shape` × `elementSize`, nil on overflow.
    static func byteCount(_ shape: [Int], elementSize: Int) -> Int? {
        guard let n = elementCount(shape) else { return nil }
        let (b, overflow) = n.multipliedReportingOverflow(by: elementSize)
        return overflow ? nil : b
    }

    /// Writes the transpose of the row-major `rows × cols` matrix `source` into `destination` (`cols × rows`).
    /// Works in square tiles so both sides are read and written a cache line at a time.
    static func transpose(_ source: UnsafeRawBufferPointer, rows: Int, cols: Int, elementSize: Int,
                          into destination: UnsafeMutableRawBufferPointer) {
        precondition(source.count >= rows * cols * elementSize && destination.count >= rows * cols * elementSize)
        guard rows > 0, cols > 0 else { return }
        switch elementSize {
        case 4: tiled(source, rows, cols, destination, UInt32.self)
        case 2: tiled(source, rows, cols, destination, UInt16.self)
        case 8: tiled(source, rows, cols, destination, UInt64.self)
        case 1: tiled(source, rows, cols, destination, UInt8.self)
        default:
            for r in 0..<rows {
                for c in 0..<cols {
                    let from = (r * cols + c) * elementSize, to = (c * rows + r) * elementSize
                    for b in 0..<elementSize { destination[to + b] = source[from + b] }
                }
            }
        }
    }

    private static func tiled<T>(_ source: UnsafeRawBufferPointer, _ rows: Int, _ cols: Int,
                                 _ destination: UnsafeMutableRawBufferPointer, _: T.Type) {
        // The source may sit at any byte offset of a mapped file, so it is read unaligned.
        let dst = destination.baseAddress!.assumingMemoryBound(to: T.self)
        let src = source.baseAddress!
        let tile = 32
        var r0 = 0
        while r0 < rows {
            let r1 = min(r0 + tile, rows)
            var c0 = 0
            while c0 < cols {
                let c1 = min(c0 + tile, cols)
                for r in r0..<r1 {
                    for c in c0..<c1 {
                        dst[c * rows + r] = src.loadUnaligned(fromByteOffset: (r * cols + c) * MemoryLayout<T>.stride,
                                                              as: T.self)
                    }
                }
                c0 = c1
            }
            r0 = r1
        }
    }

    /// Opens the shards a `*.index.json` names (each once, in file-name order) with `open`, checks that every
    /// entry's tensor is in the shard it names (`ptName` turns an index key into the readers' tensor name), and
    /// refuses a tensor stored in two shards. Like transformers' TF and Flax loaders, every tensor of every
    /// listed shard is part of the model; the index decides only which files are read.
    static func openShards(indexPath: String, folder: String, format: String,
                           ptName: (String) throws -> String,
                           open: (String) throws -> CheckpointReader) throws -> [CheckpointReader] {
        let index = try ShardIndex(path: indexPath)
        let shardNames = Array(Set(index.weightMap.map(\.file))).sorted()
        let folderURL = URL(fileURLWithPath: folder, isDirectory: true)
        var readers: [CheckpointReader] = []
        var shardOf: [String: String] = [:]
        for name in shardNames {
            let shardPath = folderURL.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: shardPath) else {
                throw FlintError(.notFound, "\(indexPath): names shard \"\(name)\", which is not in \(folder)")
            }
            let reader = try open(shardPath)
            for info in reader.tensorInfos {
                if let other = shardOf.updateValue(name, forKey: info.name) {
                    throw FlintError(.corrupt, "\(indexPath): tensor '\(info.name)' is stored in two shards, \(other) and \(name)")
                }
            }
            readers.append(reader)
        }
        for (key, file) in index.weightMap {
            let name = try ptName(key)
            guard shardOf[name] == file else {
                let actual = shardOf[name].map { "it is in \($0)" } ?? "no shard has it"
                throw FlintError(.corrupt, "\(indexPath): maps \(format) weight '\(key)' (tensor '\(name)') to shard \"\(file)\", "
                    + "but \(actual)")
            }
        }
        return readers
    }
}
