// Symmetric int8 quantization of a matrix (a tensor viewed as `rows × cols`, see `QuantScheme.matrixShape`).
//
// For each group of consecutive elements of a row (the whole row for `Int8RowQuantizer`, `groupSize` elements
// for `Int8GroupQuantizer`, the last group of a row possibly shorter):
//     scale = max|x| / 127            (Float32; an all-zero group gets scale 0)
//     q     = roundHalfToEven(x / scale), clamped to [-127, 127]   (q = 0 where scale is 0)
//     x̂     = q × scale
// Scales are row-major `[rows, ceil(cols / groupSize)]`, matching `QuantScheme.scaleCount(shape:)`.
// Non-finite inputs are refused with an error naming the tensor and the first bad element: a model with NaN
// weights must not silently turn into a model with zero weights.

import FlintFormat

/// Quantized values and their scales, as returned by `Int8Quantizer.quantize(_:rows:cols:tensorName:)`.
public struct QuantizedMatrix: Sendable, Equatable {
    public var rows: Int
    public var cols: Int
    /// `rows × cols` int8 values, row-major.
    public var values: [Int8]
    /// Row-major `[rows, groupsPerRow]` float32 scales.
    public var scales: [Float]

    public init(rows: Int, cols: Int, values: [Int8], scales: [Float]) {
        self.rows = rows
        self.cols = cols
        self.values = values
        self.scales = scales
    }
}

/// A symmetric int8 quantizer; `Int8RowQuantizer` and `Int8GroupQuantizer` are the two kinds.
public protocol Int8Quantizer: Sendable {
    /// The scheme recorded in the tensor table for tensors quantized by this quantizer.
    var scheme: QuantScheme { get }
    /// How many consecutive elements of a row share one scale, for rows of `cols` elements.
    func groupSize(cols: Int) -> Int
}

extension Int8Quantizer {
    /// Scales per row for rows of `cols` elements (as `QuantScheme.scaleCount(shape:)` counts them: a per-row
    /// scheme has one scale per row even for empty rows).
    public func groupsPerRow(cols: Int) -> Int {
        let g = groupSize(cols: cols)
        return g == 0 ? 1 : (cols + g - 1) / g
    }

    /// Number of scales for a `rows × cols` matrix.
    public func scaleCount(rows: Int, cols: Int) -> Int { rows * groupsPerRow(cols: cols) }

    /// Quantizes `values` (`rows × cols`, row-major) into caller-provided buffers: `quantized` of `rows × cols`
    /// and `scales` of `scaleCount(rows:cols:)`. Throws (naming `tensorName`) for non-finite values or buffer
    /// sizes that do not match; on error the buffers' contents are unspecified. When `values` are rows
    /// `firstRow...` of a larger matrix (a slab), messages count rows and elements from there.
    public func quantize(_ values: UnsafeBufferPointer<Float>, rows: Int, cols: Int, tensorName: String,
                         into quantized: UnsafeMutableBufferPointer<Int8>,
                         scales: UnsafeMutableBufferPointer<Float>, firstRow: Int = 0) throws {
        try checkShape(rows: rows, cols: cols, tensorName: tensorName)
        let count = rows * cols
        guard values.count == count, quantized.count == count else {
            throw FlintError("tensor \(tensorName): quantizing a \(rows)×\(cols) matrix needs \(count) values and \(count) output slots, got \(values.count) and \(quantized.count)")
        }
        let groups = groupsPerRow(cols: cols)
        guard scales.count == rows * groups else {
            throw FlintError("tensor \(tensorName): \(scheme) of a \(rows)×\(cols) matrix needs \(rows * groups) scales, got \(scales.count) slots")
        }
        guard count > 0, let src = values.baseAddress, let dst = quantized.baseAddress,
              let scaleOut = scales.baseAddress else {
            // No elements: every scale (one per empty row under a per-row scheme) is 0.
            if scales.count > 0 { scales.update(repeating: 0) }
            return
        }
        let g = groupSize(cols: cols)
        for row in 0..<rows {
            let rowStart = row * cols
            var start = 0
            var group = 0
            while start < cols {
                let length = Swift.min(g, cols - start)
                let offset = rowStart + start
                let scale = try Int8Quantization.quantizeGroup(src + offset, dst + offset, length) { i in
                    FlintError("tensor \(tensorName): element \(firstRow * cols + offset + i) (row \(firstRow + row), column \(start + i)) is \(src[offset + i]); a tensor with non-finite values cannot be quantized")
                }
                scaleOut[row * groups + group] = scale
                start += length
                group += 1
            }
        }
    }

    /// Quantizes `values` (`rows × cols`, row-major) into new arrays.
    public func quantize(_ values: UnsafeBufferPointer<Float>, rows: Int, cols: Int,
                         tensorName: String) throws -> QuantizedMatrix {
        try checkShape(rows: rows, cols: cols, tensorName: tensorName)
        guard values.count == rows * cols else {
            throw FlintError("tensor \(tensorName): a \(rows)×\(cols) matrix has \(rows * cols) values, got \(values.count)")
        }
        var q = [Int8](repeating: 0, count: rows * cols)
        var s = [Float](repeating: 0, count: scaleCount(rows: rows, cols: cols))
        try q.withUnsafeMutableBufferPointer { qb in
            try s.withUnsafeMutableBufferPointer { sb in
                try quantize(values, rows: rows, cols: cols, tensorName: tensorName, into: qb, scales: sb)
            }
        }
        return QuantizedMatrix(rows: rows, cols: cols, values: q, scales: s)
    }

    /// Reconstructs `q × scale` for a `rows × cols` matrix into `output` (`rows × cols`).
    /// Throws (naming `tensorName`) when the buffer sizes do not match the shape.
    public func dequantize(_ quantized: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>,
                           rows: Int, cols: Int, tensorName: String,
                           into output: UnsafeMutableBufferPointer<Float>) throws {
        try checkShape(rows: rows, cols: cols, tensorName: tensorName)
        let count = rows * cols
        let groups = groupsPerRow(cols: cols)
        guard quantized.count == count, output.count == count, scales.count == rows * groups else {
            throw FlintError("tensor \(tensorName): dequantizing a \(rows)×\(cols) matrix (\(scheme)) needs \(count) values, \(rows * groups) scales and \(count) output slots, got \(quantized.count), \(scales.count) and \(output.count)")
        }
        guard count > 0, let src = quantized.baseAddress, let dst = output.baseAddress,
              let scaleIn = scales.baseAddress else { return }
        let g = groupSize(cols: cols)
        for row in 0..<rows {
            var start = 0
            var group = 0
            while start < cols {
                let length = Swift.min(g, cols - start)
                let offset = row * cols + start
                Int8Quantization.dequantizeGroup(src + offset, dst + offset, length, scale: scaleIn[row * groups + group])
                start += length
                group += 1
            }
        }
    }

    /// Reconstructs a `QuantizedMatrix` into a new array.
    public func dequantize(_ matrix: QuantizedMatrix, tensorName: String) throws -> [Float] {
        var out = [Float](repeating: 0, count: matrix.rows * matrix.cols)
        try matrix.values.withUnsafeBufferPointer { q in
            try matrix.scales.withUnsafeBufferPointer { s in
                try out.withUnsafeMutableBufferPointer { o in
                    try dequantize(q, scales: s, rows: matrix.rows, cols: matrix.cols, tensorName: tensorName, into: o)
                }
            }
        }
        return out
    }

    private func checkShape(rows: Int, cols: Int, tensorName: String) throws {
        guard rows >= 0, cols >= 0, rows.multipliedReportingOverflow(by: cols).overflow == false else {
            throw FlintError("tensor \(tensorName): invalid matrix shape \(rows)×\(cols)")
        }
    }
}

/// Symmetric int8 with one float32 scale per row (`QuantScheme.int8Row`).
public struct Int8RowQuantizer: Int8Quantizer {
    public init() {}
    public var scheme: QuantScheme { .int8Row }
    public func groupSize(cols: Int) -> Int { cols }
}

/// Symmetric int8 with one float32 scale per `groupSize` consecutive elements of a row
/// (`QuantScheme.int8Group(groupSize)`); the last group of a row may be shorter.
public struct Int8GroupQuantizer: Int8Quantizer {
    public let groupSize: Int

    /// Throws for a group size that is not positive.
    public init(groupSize: Int) throws {
        guard groupSize > 0 else { throw FlintError("int8 group size must be positive, got \(groupSize)") }
        self.groupSize = groupSize
    }

    public var scheme: QuantScheme { .int8Group(groupSize) }
    public func groupSize(cols: Int) -> Int { groupSize }
}

/// The quantizer for an int8 scheme (`.int8Row` or `.int8Group`); throws for `.none` or a bad group size.
public func makeInt8Quantizer(for scheme: QuantScheme) throws -> any Int8Quantizer {
    switch scheme {
    case .int8Row: return Int8RowQuantizer()
    case .int8Group(let g): return try Int8GroupQuantizer(groupSize: g)
    case .none, .int4Group: throw FlintError("scheme \(scheme) is not an int8 scheme")
    }
}

/// The per-group kernels, written so the compiler vectorizes them.
@usableFromInline
enum Int8Quantization {
    /// 1.5 × 2²³: adding it to a float of magnitude < 2²² leaves the value rounded to an integer (ties to even,
    /// the default rounding mode) in the low mantissa bits. Used instead of `rounded(.toNearestOrEven)`, which
    /// is a library call per element on baseline x86-64 (no SSE4.1 `roundps`).
    static let roundingMagic: Float = 12_582_912
    static let roundingMagicBits = Int32(bitPattern: roundingMagic.bitPattern)

    /// Quantizes `count` floats at `src` into `dst`; returns the scale. Calls `nonFinite(i)` for the error
    /// about the first non-finite element `i` of the group.
    @inline(__always)
    static func quantizeGroup(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Int8>, _ count: Int,
                              nonFinite: (Int) -> FlintError) throws -> Float {
        // max|x| on the bit patterns: with the sign cleared, the integer order of finite floats is their order,
        // and anything ≥ the Inf pattern is Inf or NaN, so one integer max finds both the scale and bad values.
        var maxBits: UInt32 = 0
        for i in 0..<count {
            let bits = src[i].bitPattern & 0x7FFF_FFFF
            maxBits = bits > maxBits ? bits : maxBits
        }
        if maxBits >= 0x7F80_0000 {
            var i = 0
            while src[i].isFinite { i += 1 }
            throw nonFinite(i)
        }
        let scale = Float(bitPattern: maxBits) / 127
        guard scale > 0 else {
            // An all-zero group, or one so tiny that max/127 underflows to zero: nothing to represent.
            dst.update(repeating: 0, count: count)
            return 0
        }
        let magic = roundingMagic
        let magicBits = roundingMagicBits
        for i in 0..<count {
            let r = Int32(bitPattern: (src[i] / scale + magic).bitPattern) &- magicBits
            dst[i] = Int8(truncatingIfNeeded: r < -127 ? -127 : (r > 127 ? 127 : r))
        }
        return scale
    }

    @inline(__always)
    static func dequantizeGroup(_ src: UnsafePointer<Int8>, _ dst: UnsafeMutablePointer<Float>, _ count: Int, scale: Float) {
        for i in 0..<count { dst[i] = Float(src[i]) * scale }
    }
}
