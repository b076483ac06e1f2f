// Int8 embedding tables read in place from the mapped file.

import Foundation
import FlintFormat

/// An int8 embedding table (`[vocab, dim]`, e.g. `shared.weight`) read in place: one row is dequantized per lookup.
public final class Int8Embedding: @unchecked Sendable {
    public let rows: Int
    public let dimension: Int
    private let view: TensorView
    private let groupSize: Int
    private let groups: Int

    /// - Throws: FlintError naming the tensor when it is not a 2-D i8 tensor with matching scales.
    public init(_ view: TensorView) throws {
        try validateInt8Matrix(view, user: "Int8Embedding")
        self.view = view
        rows = view.shape[0]
        dimension = view.shape[1]
        let g = view.scheme.groupSize
        groupSize = g > 0 ? g : max(dimension, 1)
        groups = g > 0 ? (dimension + g - 1) / g : 1
    }

    /// Writes `q × scale` of row `index` into `out` (`dimension` floats).
    /// - Throws: FlintError naming the tensor when `index` is outside `0..<rows`.
    public func dequantizeRow(_ index: Int, into out: UnsafeMutablePointer<Float>) throws {
        guard index >= 0, index < rows else {
            throw FlintError("tensor \(view.name): row \(index) is outside 0..<\(rows)")
        }
        guard dimension > 0 else { return }
        let scales = view.scales.baseAddress! + index * groups
        if let packed = view.packedGeometry {
            // The row's bytes are spread over its block (4 per 64): gathered into `out` first, widened in place.
            let codes = UnsafeMutableRawPointer(out).assumingMemoryBound(to: Int8.self)
            packed.unpackRow(view.data, row: index, into: codes)
            // Back to front, so no code is overwritten (as a 4-byte float) before it is read.
            for i in stride(from: dimension - 1, through: 0, by: -1) {
                let g = i / groupSize
                out[i] = Float(codes[i]) * scales[g]
            }
            return
        }
        let q = view.data.baseAddress!.assumingMemoryBound(to: Int8.self) + index * dimension
        for g in 0..<groups {
            let start = g * groupSize
            let end = min(dimension, start + groupSize)
            let scale = scales[g]
            for i in start..<end { out[i] = Float(q[i]) * scale }
        }
    }
}
