// The packed int8 layout (Formats/FLINT.md, "Tensor layouts"): int8 matrices re-laid at conversion for the
// dot-product instructions, with the exact weight sums the W8A8 kernels need stored beside them, so a model
// loads without reading its weights.

/// How a tensor's element bytes are ordered. The raw values are the `layout` codes of the tensor table.
public enum TensorLayout: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Row-major (C order), the shape as stored.
    case rowMajor = 0
    /// Int8 matrices in blocks of 16 rows × 4 inputs, followed by the per-(row, group) weight sums.
    case int8Packed16x4 = 1
    /// Int4 codes in blocks of 16 rows × 8 inputs (two nibbles a byte), followed by the f16 group scales.
    case int4Packed16x8 = 2

    /// The name used in the spec, `inspect` and JSON output.
    public var name: String {
        switch self {
        case .rowMajor: return "row-major"
        case .int8Packed16x4: return "packed16x4"
        case .int4Packed16x8: return "int4-packed16x8"
        }
    }

    public var description: String { name }

    /// The `required_features` entry of files holding tensors in this layout (nil for row-major).
    public var requiredFeature: String? {
        switch self {
        case .rowMajor: return nil
        case .int8Packed16x4: return PackedInt8Geometry.requiredFeature
        case .int4Packed16x8: return PackedInt4Geometry.requiredFeature
        }
    }
}

/// Where each byte of a packed int8 matrix lives (Formats/FLINT.md, layout 1):
///
///     blocks   ceil(rows / 16) × 16 × paddedCols bytes; block b, quad q, lane l, byte j = q[16b + l][4q + j]
///     sums     ceil(rows / 16) × groups × 16 int32 (little-endian): Σ q over (row 16b + l, group g)
///
/// `paddedCols` is `cols` rounded up to 4; the padding bytes and the padding rows of the last block are zero.
public struct PackedInt8Geometry: Sendable, Equatable {
    /// `required_features` entry of files with packed tensors.
    public static let requiredFeature = "int8-packed16x4"
    public static let blockRows = 16
    public static let quad = 4

    public let rows: Int
    public let cols: Int
    /// Elements per scale group (`cols` for per-row scales) and groups per row.
    public let groupSize: Int
    public let groups: Int

    /// The geometry of an int8 matrix `shape` under `scheme`, or nil when it cannot be packed: not 2-D, not an
    /// int8 scheme, or groups that do not start on multiples of 4 inputs.
    public init?(shape: [Int], scheme: QuantScheme) {
        guard shape.count == 2, shape[0] >= 1, shape[1] >= 1 else { return nil }
        let (rows, cols) = (shape[0], shape[1])
        switch scheme {
        case .none, .int4Group:
            return nil
        case .int8Row:
            groupSize = cols
            groups = 1
        case .int8Group(let g):
            guard g >= 1 else { return nil }
            if g >= cols {
                groupSize = cols
                groups = 1
            } else {
                guard g % PackedInt8Geometry.quad == 0 else { return nil }
                groupSize = g
                groups = (cols + g - 1) / g
            }
        }
        self.rows = rows
        self.cols = cols
        // Checked sizes: a hostile table may hold huge dims (each ≤ Int32.max, the product checked by the reader).
        let blocks = (rows + 15) / 16
        let padded = (cols + 3) / 4 * 4
        let (w1, o1) = blocks.multipliedReportingOverflow(by: 16 * padded)
        let (s1, o2) = blocks.multipliedReportingOverflow(by: groups * 64)
        let (total, o3) = w1.addingReportingOverflow(s1)
        guard !o1, !o2, !o3, total <= Int.max / 4 else { return nil }
    }

    public var blocks: Int { (rows + 15) / 16 }
    public var paddedCols: Int { (cols + 3) / 4 * 4 }
    public var blockBytes: Int { 16 * paddedCols }
    /// Bytes of the weight blocks; the sums start here (a multiple of 64).
    public var weightBytes: Int { blocks * blockBytes }
    public var sumsCount: Int { blocks * groups * 16 }
    /// The whole data region: blocks then sums.
    public var byteCount: Int { weightBytes + sumsCount * 4 }

    /// Offset of element (row, col) in the blocks.
    @inline(__always) public func offset(row: Int, col: Int) -> Int {
        (row >> 4) * blockBytes + (col >> 2) * 64 + (row & 15) * 4 + (col & 3)
    }

    /// Packs a row-major `rows × cols` int8 matrix into `out` (`byteCount` bytes): blocks, then sums.
    public func pack(_ q: UnsafeBufferPointer<Int8>, into out: UnsafeMutableRawBufferPointer) {
        precondition(q.count == rows * cols && out.count == byteCount, "PackedInt8Geometry.pack: size mismatch")
        let base = out.baseAddress!
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        let blocksOut = base.assumingMemoryBound(to: Int8.self)
        for r in 0..<rows {
            let row = q.baseAddress! + r * cols
            for c in 0..<cols { blocksOut[offset(row: r, col: c)] = row[c] }
        }
        for r in 0..<rows {
            let row = q.baseAddress! + r * cols
            for g in 0..<groups {
                var sum: Int32 = 0
                for c in (g * groupSize)..<min(cols, (g + 1) * groupSize) { sum &+= Int32(row[c]) }
                let index = ((r >> 4) * groups + g) * 16 + (r & 15)
                base.storeBytes(of: sum.littleEndian, toByteOffset: weightBytes + 4 * index, as: Int32.self)
            }
        }
    }

    /// The row-major matrix back from packed bytes (`byteCount` of them) into `q` (`rows × cols`).
    public func unpack(_ packed: UnsafeRawBufferPointer, into q: UnsafeMutableBufferPointer<Int8>) {
        precondition(packed.count == byteCount && q.count == rows * cols, "PackedInt8Geometry.unpack: size mismatch")
        let blocksIn = packed.baseAddress!.assumingMemoryBound(to: Int8.self)
        for r in 0..<rows {
            let row = q.baseAddress! + r * cols
            for c in 0..<cols { row[c] = blocksIn[offset(row: r, col: c)] }
        }
    }

    /// Row `row` (`cols` values) from packed bytes.
    public func unpackRow(_ packed: UnsafeRawBufferPointer, row: Int, into out: UnsafeMutablePointer<Int8>) {
        let blocksIn = packed.baseAddress!.assumingMemoryBound(to: Int8.self)
        let start = (row >> 4) * blockBytes + (row & 15) * 4
        for c in 0..<cols { out[c] = blocksIn[start + (c >> 2) * 64 + (c & 3)] }
    }
}
