// The packed int4 layout (Formats/FLINT.md, layout 2): 4-bit weight codes laid out for the decode kernels — one
// 64-byte load holds 8 inputs of 16 output rows — followed by the f16 group scales in the order the kernels
// walk them, so an int4 matrix is read in place as two sequential streams.

/// Where each nibble and scale of a packed int4 matrix lives (Formats/FLINT.md, layout 2):
///
///     codes    ceil(rows / 16) blocks × 8 × paddedCols bytes; block b, chunk k (inputs 8k … 8k+7), byte 4l + j:
///              low nibble = u[16b + l][8k + j], high nibble = u[16b + l][8k + 4 + j]   (l 0…15, j 0…3)
///     scales   ceil(rows / 16) × groups × 16 f16 (little-endian): entry (b·groups + g)·16 + l = scale of
///              row 16b + l, group g
///
/// `u = q + 8` is the offset-binary code of the symmetric value `q` in [-8, 7]; `paddedCols` is `groups ×
/// groupSize`; padding rows and columns hold code 8 (q = 0) and padding scales are 0.
public struct PackedInt4Geometry: Sendable, Equatable {
    /// `required_features` entry of files with int4 tensors.
    public static let requiredFeature = "int4-packed16x8"
    /// The group sizes this version reads and writes.
    public static let groupSizes = [32, 64, 128]
    public static let blockRows = 16
    /// The code of q = 0.
    public static let zeroCode: UInt8 = 8

    public let rows: Int
    public let cols: Int
    public let groupSize: Int
    public let groups: Int

    /// The geometry of an int4 matrix `shape` under `scheme`, or nil: not 2-D, not `.int4Group`, or a group size
    /// other than 32, 64, 128.
    public init?(shape: [Int], scheme: QuantScheme) {
        guard shape.count == 2, shape[0] >= 1, shape[1] >= 1,
              case .int4Group(let g) = scheme, PackedInt4Geometry.groupSizes.contains(g) else { return nil }
        rows = shape[0]
        cols = shape[1]
        groupSize = g
        groups = (cols + g - 1) / g
        // Checked sizes: a hostile table may hold huge dims (each ≤ Int32.max).
        let blocks = (rows + 15) / 16
        let (w, o1) = blocks.multipliedReportingOverflow(by: 8 * groups * g)
        let (s, o2) = blocks.multipliedReportingOverflow(by: groups * 32)
        let (total, o3) = w.addingReportingOverflow(s)
        guard !o1, !o2, !o3, total <= Int.max / 4 else { return nil }
    }

    public var blocks: Int { (rows + 15) / 16 }
    public var paddedCols: Int { groups * groupSize }
    /// Bytes of one 16-row block of codes.
    public var blockBytes: Int { 8 * paddedCols }
    /// Bytes of all codes; the scales start here (a multiple of 256).
    public var codeBytes: Int { blocks * blockBytes }
    public var scaleCount: Int { blocks * groups * 16 }
    /// The whole data region: codes then scales.
    public var byteCount: Int { codeBytes + 2 * scaleCount }

    /// Byte holding element (row, col), and whether it is the high nibble.
    @inline(__always) public func location(row: Int, col: Int) -> (byte: Int, high: Bool) {
        ((row >> 4) * blockBytes + (col >> 3) * 64 + (row & 15) * 4 + (col & 3), col & 4 != 0)
    }

    /// Index (in f16 units, from `codeBytes`) of the scale of (row, group).
    @inline(__always) public func scaleIndex(row: Int, group: Int) -> Int {
        ((row >> 4) * groups + group) * 16 + (row & 15)
    }

    /// Packs row-major values `q` (`rows × cols`, each in -8…7) and f16 scale bits (`rows × groups`,
    /// row-major) into `out` (`byteCount` bytes).
    public func pack(_ q: UnsafeBufferPointer<Int8>, scaleBits: UnsafeBufferPointer<UInt16>,
                     into out: UnsafeMutableRawBufferPointer) {
        precondition(q.count == rows * cols && scaleBits.count == rows * groups && out.count == byteCount,
                     "PackedInt4Geometry.pack: size mismatch")
        let base = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // Every code starts as 8 | 8 << 4 (q = 0 in both nibbles: the padding), every scale as 0.
        base.initialize(repeating: PackedInt4Geometry.zeroCode * 17, count: codeBytes)
        (base + codeBytes).initialize(repeating: 0, count: 2 * scaleCount)
        for r in 0..<rows {
            let row = q.baseAddress! + r * cols
            for c in 0..<cols {
                let code = UInt8(truncatingIfNeeded: Int(row[c]) + 8) & 0x0F
                let (byte, high) = location(row: r, col: c)
                base[byte] = high ? (base[byte] & 0x0F) | (code << 4) : (base[byte] & 0xF0) | code
            }
            for g in 0..<groups {
                let bits = scaleBits[r * groups + g].littleEndian
                let at = codeBytes + 2 * scaleIndex(row: r, group: g)
                base[at] = UInt8(truncatingIfNeeded: bits)
                base[at + 1] = UInt8(truncatingIfNeeded: bits >> 8)
            }
        }
    }

    /// Value q (-8…7) of element (row, col) from packed bytes.
    @inline(__always) public func value(_ packed: UnsafeRawBufferPointer, row: Int, col: Int) -> Int8 {
        let (byte, high) = location(row: row, col: col)
        let b = packed[byte]
        return Int8(Int(high ? b >> 4 : b & 0x0F) - 8)
    }

    /// f16 bits of the scale of (row, group) from packed bytes.
    @inline(__always) public func scaleBits(_ packed: UnsafeRawBufferPointer, row: Int, group: Int) -> UInt16 {
        let at = codeBytes + 2 * scaleIndex(row: row, group: group)
        return UInt16(packed[at]) | UInt16(packed[at + 1]) << 8
    }

    /// The row-major values and scale bits back from packed bytes.
    public func unpack(_ packed: UnsafeRawBufferPointer, values q: UnsafeMutableBufferPointer<Int8>,
                       scaleBits: UnsafeMutableBufferPointer<UInt16>) {
        precondition(packed.count == byteCount && q.count == rows * cols && scaleBits.count == rows * groups,
                     "PackedInt4Geometry.unpack: size mismatch")
        for r in 0..<rows {
            for c in 0..<cols { q[r * cols + c] = value(packed, row: r, col: c) }
            for g in 0..<groups { scaleBits[r * groups + g] = self.scaleBits(packed, row: r, group: g) }
        }
    }
}
