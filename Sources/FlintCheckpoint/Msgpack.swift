// A bounded msgpack decoder (https://github.com/msgpack/msgpack/blob/master/spec.md) for Flax checkpoints. It
// reads from a memory-mapped file and keeps bulk data (bin and ext payloads) as byte ranges of that file, so a
// multi-gigabyte checkpoint is parsed without copying any tensor bytes.
//
// Bounds: every length is checked against the bytes that remain before anything is allocated (an array or map
// of n entries needs at least n (or 2n) more bytes), nesting is limited to `maxDepth`, and strings must be
// valid UTF-8 (msgpack-python's `raw=False`, which flax uses, rejects them too). Memory: values are a flat
// enum (about 24 bytes; containers hold arrays, no per-value boxes), and one decode may make at most
// `maxValues` of them (an array's or map's slots are charged before they are allocated, and again as their
// values are decoded). A Flax parameter tree has a few values
// per parameter (t5-11b: about 600 parameters), so the default is far above any real file, while a file made
// of one huge array of small integers (one byte each) fails at once instead of growing to gigabytes.

/// A decoding failure at a byte offset of the input.
struct MsgpackError: Error {
    let message: String
    let offset: Int
}

/// One decoded msgpack value. `binary` and `ext` payloads are byte ranges `[offset, offset + count)` of the
/// decoded buffer (absolute, also inside ext payloads).
enum MsgpackValue {
    case none
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case float(Double)
    case string(String)
    case binary(offset: Int, count: Int)
    case array([MsgpackValue])
    case map([(key: MsgpackValue, value: MsgpackValue)])
    case ext(type: Int8, offset: Int, count: Int)

    var kindDescription: String {
        switch self {
        case .none: return "nil"
        case .bool: return "a boolean"
        case .int, .uint: return "an integer"
        case .float: return "a float"
        case .string: return "a string"
        case .binary(_, let n): return "binary data (\(n) bytes)"
        case .array(let a): return "an array of \(a.count)"
        case .map(let m): return "a map of \(m.count)"
        case .ext(let t, _, let n): return "ext type \(t) (\(n) bytes)"
        }
    }

    /// The value as a non-negative Int, nil for anything else (or too large).
    var nonNegativeInt: Int? {
        switch self {
        case .int(let v): return v >= 0 ? Int(v) : nil
        case .uint(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        default: return nil
        }
    }

    /// String keys and values of a map whose keys are all strings; nil when not a map or a key is not a string.
    var stringKeyedEntries: [(key: String, value: MsgpackValue)]? {
        guard case .map(let entries) = self else { return nil }
        var out: [(key: String, value: MsgpackValue)] = []
        out.reserveCapacity(entries.count)
        for e in entries {
            guard case .string(let k) = e.key else { return nil }
            out.append((k, e.value))
        }
        return out
    }
}

struct MsgpackDecoder {
    /// Deep enough for any parameter tree (Flax T5 nests about 8 levels, chunked arrays add 3).
    static let defaultMaxDepth = 64

    /// Values one decode may produce (about 24 MB of them).
    static let defaultMaxValues = 1_000_000

    let bytes: UnsafeRawBufferPointer
    let maxDepth: Int
    let maxValues: Int

    init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = MsgpackDecoder.defaultMaxDepth,
         maxValues: Int = MsgpackDecoder.defaultMaxValues) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.maxValues = maxValues
    }

    /// Decodes exactly one value spanning `range` (the whole buffer by default); trailing bytes are an error.
    func decodeSingle(in range: Range<Int>? = nil) throws -> MsgpackValue {
        let r = range ?? 0..<bytes.count
        var cursor = Cursor(bytes: bytes, position: r.lowerBound, end: r.upperBound, valuesLeft: maxValues)
        let value = try decode(&cursor, depth: 0)
        guard cursor.position == r.upperBound else {
            throw MsgpackError(message: "\(r.upperBound - cursor.position) extra bytes after the value that ends here",
                               offset: cursor.position)
        }
        return value
    }

    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var position: Int
        let end: Int
        /// The value budget still available to this decode.
        var valuesLeft: Int

        var remaining: Int { end - position }

        /// Takes `n` values from the budget, before they are allocated.
        mutating func charge(_ n: Int, _ start: Int, limit: Int) throws {
            guard n <= valuesLeft else {
                throw MsgpackError(message: "more than \(limit) values (no Flax checkpoint has this many; the file "
                                   + "is not a parameter tree)", offset: start)
            }
            valuesLeft -= n
        }

        mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
            guard n >= 0, n <= remaining else {
                throw MsgpackError(message: "truncated: \(what()) needs \(n) bytes, only \(remaining) remain",
                                   offset: position)
            }
        }

        mutating func byte() throws -> UInt8 {
            try need(1, "a type byte")
            let b = bytes[position]
            position += 1
            return b
        }

        mutating func bigEndian<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
            try need(MemoryLayout<T>.size, what())
            let v = T(bigEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
            position += MemoryLayout<T>.size
            return v
        }
    }

    private func decode(_ c: inout Cursor, depth: Int) throws -> MsgpackValue {
        guard depth <= maxDepth else {
            throw MsgpackError(message: "nesting deeper than \(maxDepth) levels", offset: c.position)
        }
        let start = c.position
        try c.charge(1, start, limit: maxValues)
        let t = try c.byte()
        switch t {
        case 0x00...0x7f: return .int(Int64(t))
        case 0xe0...0xff: return .int(Int64(Int8(bitPattern: t)))
        case 0x80...0x8f: return try map(&c, count: Int(t & 0x0f), depth: depth, start: start)
        case 0x90...0x9f: return try array(&c, count: Int(t & 0x0f), depth: depth, start: start)
        case 0xa0...0xbf: return try string(&c, count: Int(t & 0x1f), start: start)
        case 0xc0: return .none
        case 0xc2: return .bool(false)
        case 0xc3: return .bool(true)
        case 0xc4: return try binary(&c, count: Int(try c.bigEndian(UInt8.self, "a bin8 length")))
        case 0xc5: return try binary(&c, count: Int(try c.bigEndian(UInt16.self, "a bin16 length")))
        case 0xc6: return try binary(&c, count: Int(try c.bigEndian(UInt32.self, "a bin32 length")))
        case 0xc7: return try ext(&c, count: Int(try c.bigEndian(UInt8.self, "an ext8 length")))
        case 0xc8: return try ext(&c, count: Int(try c.bigEndian(UInt16.self, "an ext16 length")))
        case 0xc9: return try ext(&c, count: Int(try c.bigEndian(UInt32.self, "an ext32 length")))
        case 0xca: return .float(Double(Float(bitPattern: try c.bigEndian(UInt32.self, "a float32"))))
        case 0xcb: return .float(Double(bitPattern: try c.bigEndian(UInt64.self, "a float64")))
        case 0xcc: return .uint(UInt64(try c.bigEndian(UInt8.self, "a uint8")))
        case 0xcd: return .uint(UInt64(try c.bigEndian(UInt16.self, "a uint16")))
        case 0xce: return .uint(UInt64(try c.bigEndian(UInt32.self, "a uint32")))
        case 0xcf: return .uint(try c.bigEndian(UInt64.self, "a uint64"))
        case 0xd0: return .int(Int64(try c.bigEndian(Int8.self, "an int8")))
        case 0xd1: return .int(Int64(try c.bigEndian(Int16.self, "an int16")))
        case 0xd2: return .int(Int64(try c.bigEndian(Int32.self, "an int32")))
        case 0xd3: return .int(try c.bigEndian(Int64.self, "an int64"))
        case 0xd4: return try ext(&c, count: 1)
        case 0xd5: return try ext(&c, count: 2)
        case 0xd6: return try ext(&c, count: 4)
        case 0xd7: return try ext(&c, count: 8)
        case 0xd8: return try ext(&c, count: 16)
        case 0xd9: return try string(&c, count: Int(try c.bigEndian(UInt8.self, "a str8 length")), start: start)
        case 0xda: return try string(&c, count: Int(try c.bigEndian(UInt16.self, "a str16 length")), start: start)
        case 0xdb: return try string(&c, count: Int(try c.bigEndian(UInt32.self, "a str32 length")), start: start)
        case 0xdc: return try array(&c, count: Int(try c.bigEndian(UInt16.self, "an array16 length")), depth: depth, start: start)
        case 0xdd: return try array(&c, count: Int(try c.bigEndian(UInt32.self, "an array32 length")), depth: depth, start: start)
        case 0xde: return try map(&c, count: Int(try c.bigEndian(UInt16.self, "a map16 length")), depth: depth, start: start)
        case 0xdf: return try map(&c, count: Int(try c.bigEndian(UInt32.self, "a map32 length")), depth: depth, start: start)
        default:  // 0xc1 is the one byte msgpack never uses
            throw MsgpackError(message: "invalid type byte 0x\(String(t, radix: 16))", offset: start)
        }
    }

    private func binary(_ c: inout Cursor, count: Int) throws -> MsgpackValue {
        try c.need(count, "binary data")
        defer { c.position += count }
        return .binary(offset: c.position, count: count)
    }

    private func ext(_ c: inout Cursor, count: Int) throws -> MsgpackValue {
        let type = try c.bigEndian(Int8.self, "an ext type")
        try c.need(count, "an ext payload")
        defer { c.position += count }
        return .ext(type: type, offset: c.position, count: count)
    }

    private func string(_ c: inout Cursor, count: Int, start: Int) throws -> MsgpackValue {
        try c.need(count, "a string")
        let raw = UnsafeRawBufferPointer(rebasing: c.bytes[c.position..<(c.position + count)])
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw MsgpackError(message: "string of \(count) bytes is not valid UTF-8", offset: start)
        }
        c.position += count
        return .string(s)
    }

    private func array(_ c: inout Cursor, count: Int, depth: Int, start: Int) throws -> MsgpackValue {
        // Every element takes at least one byte: a count beyond the remaining bytes is a lie, refused before
        // any allocation.
        guard count <= c.remaining else {
            throw MsgpackError(message: "array of \(count) elements cannot fit in the \(c.remaining) bytes that remain",
                               offset: start)
        }
        try c.charge(count, start, limit: maxValues)
        var items: [MsgpackValue] = []
        items.reserveCapacity(count)
        for _ in 0..<count { items.append(try decode(&c, depth: depth + 1)) }
        return .array(items)
    }

    private func map(_ c: inout Cursor, count: Int, depth: Int, start: Int) throws -> MsgpackValue {
        guard count <= c.remaining / 2 else {
            throw MsgpackError(message: "map of \(count) entries cannot fit in the \(c.remaining) bytes that remain",
                               offset: start)
        }
        try c.charge(2 * count, start, limit: maxValues)
        var entries: [(key: MsgpackValue, value: MsgpackValue)] = []
        entries.reserveCapacity(count)
        var stringKeys = Set<String>()
        for _ in 0..<count {
            let keyOffset = c.position
            let key = try decode(&c, depth: depth + 1)
            if case .string(let k) = key, !stringKeys.insert(k).inserted {
                throw MsgpackError(message: "duplicate map key \"\(k)\"", offset: keyOffset)
            }
            entries.append((key, try decode(&c, depth: depth + 1)))
        }
        return .map(entries)
    }
}
