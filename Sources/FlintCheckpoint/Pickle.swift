// A restricted unpickler for PyTorch checkpoints. It decodes the pickle opcodes (CPython `Lib/pickle.py`,
// protocols 0–5, the subset a state dict uses) into a small value tree and never runs anything: a GLOBAL is
// only a name, checked against an allow-list (like `torch.load(weights_only=True)`), and REDUCE / NEWOBJ are
// interpreted for the few callables a state dict needs (OrderedDict, torch's tensor rebuilders). Any other
// global is refused with its name and offset, before anything else happens.
//
// Containers live in an arena and refer to each other by index, so no input — however deeply nested or
// self-referential — can make a recursive structure whose release would overflow the stack. Every length is
// checked against the bytes left, so no input can cause a huge allocation; each opcode consumes at least one
// byte, so the loop ends. Values are small (24 bytes: the rare large payloads are boxed) and every value made
// — pushed, copied into a container, memoised — is charged to a budget (`valueBudget`), so a few bytes that
// make many values (memo GETs feeding OrderedDict copies, millions of pickled Nones) fail fast with a clear
// error instead of growing to gigabytes.
import FlintFormat

/// A reference to a storage from a persistent id (`BINPERSID`): torch's
/// `("storage", torch.<Type>Storage, key, location, numel[, view_metadata])`.
public struct PickleStorageRef: Sendable, Equatable {
    /// The storage class name, e.g. `FloatStorage`.
    public let typeName: String
    /// The record key (`data/<key>` in the zip format; an index into the key list in the legacy format).
    public let key: String
    public let location: String
    /// Elements in the storage, as the persistent id says.
    public let elementCount: Int
    /// Legacy format only: a view into a root storage (`view_metadata = (view_key, offset, size)`).
    public let view: (key: String, offset: Int, size: Int)?

    public static func == (a: Self, b: Self) -> Bool {
        a.typeName == b.typeName && a.key == b.key && a.location == b.location && a.elementCount == b.elementCount
            && a.view?.key == b.view?.key && a.view?.offset == b.view?.offset && a.view?.size == b.view?.size
    }
}

/// A tensor from `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)`.
public struct PickleTensorRef: Sendable, Equatable {
    public let storage: PickleStorageRef
    /// In elements.
    public let storageOffset: Int
    public let shape: [Int]
    public let stride: [Int]
}

/// One decoded pickle value. Containers are indices into `PickleResult.objects`.
public enum PickleValue: Sendable, Equatable {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer too big for 64 bits: its little-endian two's-complement bytes (offset and length in the pickle).
    case bigInt(offset: Int, length: Int)
    case float(Double)
    case string(String)
    /// Bytes (offset and length in the pickle).
    case bytes(offset: Int, length: Int)
    /// An allowed global: `module.name`.
    indirect case global(module: String, name: String)
    indirect case storage(PickleStorageRef)
    indirect case tensor(PickleTensorRef)
    /// A tuple, list, dict or set in the arena.
    case object(Int)

    var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .global(let m, let n): return "\(m).\(n)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        case .object: return "container"
        }
    }
}

public enum PickleObject: Sendable {
    case tuple([PickleValue])
    case list([PickleValue])
    /// Insertion order kept (OrderedDict and dict alike).
    case dict([(key: PickleValue, value: PickleValue)])
    case set([PickleValue])

    var kind: String {
        switch self {
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .set: return "set"
        }
    }
}

public struct PickleResult: Sendable {
    public let value: PickleValue
    public let objects: [PickleObject]
    /// Offset just after the STOP opcode (the legacy format puts pickles one after another).
    public let endOffset: Int

    public func kind(of v: PickleValue) -> String {
        if case .object(let i) = v { return objects[i].kind }
        return v.kind
    }

    public func tuple(_ v: PickleValue) -> [PickleValue]? {
        if case .object(let i) = v, case .tuple(let items) = objects[i] { return items }
        return nil
    }

    public func dict(_ v: PickleValue) -> [(key: PickleValue, value: PickleValue)]? {
        if case .object(let i) = v, case .dict(let items) = objects[i] { return items }
        return nil
    }

    public func list(_ v: PickleValue) -> [PickleValue]? {
        if case .object(let i) = v, case .list(let items) = objects[i] { return items }
        return nil
    }
}

/// Decodes one pickle. `where` names the pickle in messages (e.g. `model.bin: data.pkl`); offsets in messages
/// are relative to `bytes`. `persistentLoad` turns a persistent id into a value (torch: a storage reference).
public struct RestrictedUnpickler {
    /// The globals a PyTorch state dict may name, each with what it becomes.
    public static let allowedStorageTypes: [String: (dtype: String, bytes: Int)] = [
        "FloatStorage": ("F32", 4), "HalfStorage": ("F16", 2), "BFloat16Storage": ("BF16", 2),
        "DoubleStorage": ("F64", 8), "LongStorage": ("I64", 8), "IntStorage": ("I32", 4),
        "ShortStorage": ("I16", 2), "CharStorage": ("I8", 1), "ByteStorage": ("U8", 1), "BoolStorage": ("BOOL", 1),
        "ComplexFloatStorage": ("C64", 8), "ComplexDoubleStorage": ("C128", 16),
        "QInt8Storage": ("QINT8", 1), "QUInt8Storage": ("QUINT8", 1), "QInt32Storage": ("QINT32", 4),
        "QUInt4x2Storage": ("QUINT4X2", 1), "QUInt2x4Storage": ("QUINT2X4", 1),
        "Float8_e4m3fnStorage": ("F8_E4M3", 1), "Float8_e5m2Storage": ("F8_E5M2", 1),
        "UntypedStorage": ("U8", 1),
    ]
    static let allowedDTypes: Set<String> = [
        "float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long", "int32", "int",
        "int16", "short", "int8", "uint8", "bool", "complex64", "complex128",
    ]
    static let allowedCallables: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_tensor",
    ]

    static func isAllowed(module: String, name: String) -> Bool {
        if allowedCallables.contains("\(module).\(name)") { return true }
        if module == "torch" && (allowedStorageTypes[name] != nil || allowedDTypes.contains(name)) { return true }
        return false
    }

    let bytes: UnsafeRawBufferPointer
    let place: String
    let persistentLoad: (PickleValue, PickleResultBuilder) throws -> PickleValue

    public init(bytes: UnsafeRawBufferPointer, place: String,
                persistentLoad: @escaping (PickleValue, PickleResultBuilder) throws -> PickleValue) {
        self.bytes = bytes
        self.place = place
        self.persistentLoad = persistentLoad
    }

    /// Upper bound on the value stack plus mark stack, far above any state dict's needs.
    static let maxStackDepth = 1_000_000

    /// Values a pickle of `byteCount` bytes may make (each push, container slot, copy and memo entry counts
    /// one): 8 per byte, at least 256 Ki and at most 2 Mi, about 50 MB of values. A state dict needs a few
    /// dozen values per tensor (t5-11b: about 600 tensors), a tiny fraction of either bound.
    public static func valueBudget(byteCount: Int) -> Int {
        min(2 << 20, max(256 << 10, byteCount.multipliedReportingOverflow(by: 8).overflow ? Int.max : byteCount * 8))
    }

    public func load(from start: Int = 0) throws -> PickleResult {
        let b = PickleResultBuilder(bytes: bytes, place: place,
                                    budget: RestrictedUnpickler.valueBudget(byteCount: bytes.count - start))
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]
        var pos = start
        let end = bytes.count

        func fail(_ at: Int, _ message: String) -> FlintError {
            FlintError(.corrupt, "\(place) offset \(at): \(message)")
        }
        func need(_ n: Int, _ at: Int, _ what: String) throws {
            guard n >= 0, n <= end - pos else {
                throw fail(at, "\(what) needs \(n) bytes, but only \(end - pos) remain (truncated pickle)")
            }
        }
        func u8() throws -> Int { try need(1, pos, "opcode argument"); defer { pos += 1 }; return Int(bytes[pos]) }
        func le<T: FixedWidthInteger>(_ t: T.Type, _ at: Int) throws -> T {
            try need(MemoryLayout<T>.size, at, "argument")
            defer { pos += MemoryLayout<T>.size }
            return T(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: T.self))
        }
        func line(_ at: Int) throws -> String {
            guard let nl = bytes[pos..<end].firstIndex(of: 0x0A) else {
                throw fail(at, "text argument has no end of line (truncated pickle)")
            }
            let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<nl]), as: UTF8.self)
            pos = nl + 1
            return s
        }
        func utf8(_ n: Int, _ at: Int) throws -> String {
            try need(n, at, "string")
            guard let s = String(validating: UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)]), as: UTF8.self) else {
                throw fail(at, "string of \(n) bytes is not valid UTF-8")
            }
            pos += n
            return s
        }
        func pop(_ at: Int) throws -> PickleValue {
            guard let v = stack.popLast() else { throw fail(at, "stack underflow (corrupt pickle)") }
            if let m = marks.last, stack.count < m { throw fail(at, "an opcode reached below a MARK (corrupt pickle)") }
            return v
        }
        func push(_ v: PickleValue, _ at: Int) throws {
            try b.charge(1, at)
            guard stack.count + marks.count < RestrictedUnpickler.maxStackDepth else {
                throw fail(at, "pickle stack deeper than \(RestrictedUnpickler.maxStackDepth) values")
            }
            stack.append(v)
        }
        func popMark(_ at: Int) throws -> [PickleValue] {
            guard let m = marks.popLast() else { throw fail(at, "no MARK on the stack (corrupt pickle)") }
            let items = Array(stack[m...])
            stack.removeSubrange(m...)
            return items
        }
        func top(_ at: Int) throws -> PickleValue {
            guard let v = stack.last, stack.count > (marks.last ?? 0) else {
                throw fail(at, "stack underflow (corrupt pickle)")
            }
            return v
        }
        func int(_ s: String, _ at: Int) throws -> Int64 {
            var t = s
            if t.hasSuffix("L") { t.removeLast() }
            guard let v = Int64(t) else { throw fail(at, "integer \"\(s.prefix(40))\" out of range") }
            return v
        }
        func global(_ module: String, _ name: String, _ at: Int) throws -> PickleValue {
            guard RestrictedUnpickler.isAllowed(module: module, name: name) else {
                throw fail(at, "global \(module).\(name) is not allowed (only torch tensor rebuilders and "
                    + "OrderedDict are)")
            }
            return .global(module: module, name: name)
        }
        func setItems(_ target: PickleValue, _ pairs: [PickleValue], _ at: Int) throws {
            guard case .object(let i) = target, case .dict = b.objects[i] else {
                throw fail(at, "SETITEM(S) on a \(b.kind(of: target)), expected a dict")
            }
            guard pairs.count % 2 == 0 else { throw fail(at, "SETITEMS with an odd number of values") }
            try b.charge(pairs.count, at)
            // Out of the arena first, so the array is uniquely referenced while it grows (see appendItems).
            var current = b.objects[i]
            b.objects[i] = .tuple([])
            guard case .dict(var items) = current else { return }
            current = .tuple([])
            var k = 0
            while k < pairs.count {
                items.append((pairs[k], pairs[k + 1]))
                k += 2
            }
            b.objects[i] = .dict(items)
        }
        func appendItems(_ target: PickleValue, _ values: [PickleValue], _ at: Int) throws {
            guard case .object(let i) = target else { throw fail(at, "APPEND(S) on a \(b.kind(of: target)), expected a list") }
            try b.charge(values.count, at)
            // Take the container out of the arena so its array is uniquely referenced while it grows (a switch
            // over `b.objects[i]` would hold a second reference and copy the array on every APPEND: quadratic).
            var current = b.objects[i]
            b.objects[i] = .tuple([])
            if case .list(var items) = current {
                current = .tuple([])
                items += values
                b.objects[i] = .list(items)
            } else if case .set(var items) = current {
                current = .tuple([])
                items += values
                b.objects[i] = .set(items)
            } else {
                b.objects[i] = current
                throw fail(at, "APPEND(S)/ADDITEMS on a \(b.kind(of: target)), expected a list or set")
            }
        }

        while true {
            let at = pos
            b.currentOffset = at
            guard pos < end else { throw fail(at, "pickle ends without a STOP opcode (truncated)") }
            let op = bytes[pos]
            pos += 1
            switch op {
            case 0x80:  // PROTO
                let v = try u8()
                guard v <= 5 else { throw fail(at, "pickle protocol \(v) is newer than 5") }
            case 0x95:  // FRAME: a length hint only
                _ = try le(UInt64.self, at)
            case 0x2E:  // STOP
                guard marks.isEmpty, stack.count == 1 else {
                    throw fail(at, "STOP with \(stack.count) values and \(marks.count) marks on the stack, expected one value")
                }
                return PickleResult(value: stack[0], objects: b.objects, endOffset: pos)
            case 0x28:  // MARK
                guard stack.count + marks.count < RestrictedUnpickler.maxStackDepth else {
                    throw fail(at, "pickle stack deeper than \(RestrictedUnpickler.maxStackDepth) values")
                }
                marks.append(stack.count)
            case 0x30:  // POP
                if let m = marks.last, m == stack.count { marks.removeLast() } else { _ = try pop(at) }
            case 0x31:  // POP_MARK
                _ = try popMark(at)
            case 0x32:  // DUP
                try push(try top(at), at)
            case 0x4E: try push(.none, at)              // NONE
            case 0x88: try push(.bool(true), at)        // NEWTRUE
            case 0x89: try push(.bool(false), at)       // NEWFALSE
            case 0x4A: try push(.int(Int64(try le(Int32.self, at))), at)   // BININT
            case 0x4B: try push(.int(Int64(try u8())), at)                 // BININT1
            case 0x4D: try push(.int(Int64(try le(UInt16.self, at))), at)  // BININT2
            case 0x49:  // INT (text): also spells True/False as 01/00
                let s = try line(at)
                if s == "01" { try push(.bool(true), at) } else if s == "00" { try push(.bool(false), at) }
                else { try push(.int(try int(s, at)), at) }
            case 0x4C:  // LONG (text)
                try push(.int(try int(try line(at), at)), at)
            case 0x8A, 0x8B:  // LONG1, LONG4: little-endian two's complement
                let n = op == 0x8A ? try u8() : Int(try le(Int32.self, at))
                try need(n, at, "LONG")
                if n == 0 {
                    try push(.int(0), at)
                } else if n <= 8 {
                    var v: UInt64 = 0
                    for k in 0..<n { v |= UInt64(bytes[pos + k]) << (8 * UInt64(k)) }
                    if n < 8 && bytes[pos + n - 1] & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(n)) }
                    try push(.int(Int64(bitPattern: v)), at)
                } else {
                    try push(.bigInt(offset: pos, length: n), at)
                }
                pos += n
            case 0x47:  // BINFLOAT: big-endian double
                try need(8, at, "BINFLOAT")
                let bits = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
                pos += 8
                try push(.float(Double(bitPattern: bits)), at)
            case 0x46:  // FLOAT (text)
                let s = try line(at)
                guard let d = Double(s) else { throw fail(at, "FLOAT \"\(s.prefix(40))\" is not a number") }
                try push(.float(d), at)
            case 0x58: try push(.string(try utf8(Int(try le(UInt32.self, at)), at)), at)   // BINUNICODE
            case 0x8C: try push(.string(try utf8(try u8(), at)), at)                         // SHORT_BINUNICODE
            case 0x8D:  // BINUNICODE8
                let n = try le(UInt64.self, at)
                guard n <= UInt64(end - pos) else { throw fail(at, "BINUNICODE8 of \(n) bytes runs past the end") }
                try push(.string(try utf8(Int(n), at)), at)
            case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING (Python 2 str): kept as text when it is UTF-8
                let n = op == 0x55 ? try u8() : Int(try le(Int32.self, at))
                try need(n, at, "BINSTRING")
                let raw = UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
                if let s = String(validating: raw, as: UTF8.self) { try push(.string(s), at) }
                else { try push(.bytes(offset: pos, length: n), at) }
                pos += n
            case 0x42, 0x43, 0x8E, 0x96:  // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
                let n: UInt64
                switch op {
                case 0x42: n = UInt64(try le(UInt32.self, at))
                case 0x43: n = UInt64(try u8())
                default: n = try le(UInt64.self, at)
                }
                guard n <= UInt64(end - pos) else { throw fail(at, "bytes of \(n) bytes run past the end (truncated pickle)") }
                try push(.bytes(offset: pos, length: Int(n)), at)
                pos += Int(n)
            case 0x29: try push(try b.add(.tuple([])), at)                                   // EMPTY_TUPLE
            case 0x74: try push(try b.add(.tuple(try popMark(at))), at)                      // TUPLE
            case 0x85, 0x86, 0x87:                                                      // TUPLE1-3
                let n = Int(op) - 0x84
                var items: [PickleValue] = []
                for _ in 0..<n { items.append(try pop(at)) }
                try push(try b.add(.tuple(items.reversed())), at)
            case 0x5D: try push(try b.add(.list([])), at)                                    // EMPTY_LIST
            case 0x6C: try push(try b.add(.list(try popMark(at))), at)                       // LIST
            case 0x7D: try push(try b.add(.dict([])), at)                                    // EMPTY_DICT
            case 0x64:  // DICT
                let items = try popMark(at)
                let d = try b.add(.dict([]))
                try setItems(d, items, at)
                try push(d, at)
            case 0x8F: try push(try b.add(.set([])), at)                                     // EMPTY_SET
            case 0x91: try push(try b.add(.set(try popMark(at))), at)                        // FROZENSET
            case 0x61:  // APPEND
                let v = try pop(at)
                try appendItems(try top(at), [v], at)
            case 0x65, 0x90:  // APPENDS, ADDITEMS
                let items = try popMark(at)
                try appendItems(try top(at), items, at)
            case 0x73:  // SETITEM
                let v = try pop(at), k = try pop(at)
                try setItems(try top(at), [k, v], at)
            case 0x75:  // SETITEMS
                let items = try popMark(at)
                try setItems(try top(at), items, at)
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try line(at), name = try line(at)
                try push(try global(module, name, at), at)
            case 0x93:  // STACK_GLOBAL
                let n = try pop(at), m = try pop(at)
                guard case .string(let module) = m, case .string(let name) = n else {
                    throw fail(at, "STACK_GLOBAL needs two strings, got \(b.kind(of: m)) and \(b.kind(of: n))")
                }
                try push(try global(module, name, at), at)
            case 0x52:  // REDUCE
                let args = try pop(at), callable = try pop(at)
                try push(try b.call(callable, args, at), at)
            case 0x81:  // NEWOBJ: cls.__new__(cls, *args)
                let args = try pop(at), cls = try pop(at)
                try push(try b.call(cls, args, at), at)
            case 0x92:  // NEWOBJ_EX
                _ = try pop(at)  // kwargs
                let args = try pop(at), cls = try pop(at)
                try push(try b.call(cls, args, at), at)
            case 0x62:  // BUILD: state on an object; a state dict's OrderedDict gets `_metadata`, which we drop
                let state = try pop(at)
                let target = try top(at)
                switch target {
                case .object(let i):
                    if case .dict = b.objects[i] { break }
                    throw fail(at, "BUILD on a \(b.objects[i].kind) (only a dict's attributes can be set)")
                case .tensor:
                    break  // a tensor's Python attributes do not change its data
                default:
                    throw fail(at, "BUILD on a \(b.kind(of: target)) with a \(b.kind(of: state)) state")
                }
            case 0x51:  // BINPERSID
                let pid = try pop(at)
                try push(try persistentLoad(pid, b), at)
            case 0x50:  // PERSID (text)
                throw fail(at, "text persistent ids (PERSID) are not used by torch and are not supported")
            case 0x71:  // BINPUT
                try b.charge(2, at)
                memo[try u8()] = try top(at)
            case 0x72:  // LONG_BINPUT
                try b.charge(2, at)
                memo[Int(try le(UInt32.self, at))] = try top(at)
            case 0x70:  // PUT (text)
                let s = try line(at)
                guard let k = Int(s), k >= 0 else { throw fail(at, "PUT index \"\(s.prefix(40))\" is not a number") }
                try b.charge(2, at)
                memo[k] = try top(at)
            case 0x94:  // MEMOIZE
                try b.charge(2, at)
                memo[memo.count] = try top(at)
            case 0x68, 0x6A, 0x67:  // BINGET, LONG_BINGET, GET
                let k: Int
                switch op {
                case 0x68: k = try u8()
                case 0x6A: k = Int(try le(UInt32.self, at))
                default:
                    let s = try line(at)
                    guard let v = Int(s) else { throw fail(at, "GET index \"\(s.prefix(40))\" is not a number") }
                    k = v
                }
                guard let v = memo[k] else { throw fail(at, "memo entry \(k) was never stored (corrupt pickle)") }
                try push(v, at)
            default:
                throw fail(at, "pickle opcode 0x\(String(op, radix: 16)) is not supported (not used in PyTorch "
                    + "state dicts)")
            }
        }
    }
}

/// The arena being filled while unpickling, and the interpretation of the allowed callables.
public final class PickleResultBuilder {
    let bytes: UnsafeRawBufferPointer
    let place: String
    public internal(set) var objects: [PickleObject] = []
    /// Values that may still be made (see `RestrictedUnpickler.valueBudget`).
    private var budgetLeft: Int
    private let budget: Int
    /// The opcode being interpreted, for messages of checks that do not know it.
    var currentOffset = -1

    init(bytes: UnsafeRawBufferPointer, place: String, budget: Int) {
        self.bytes = bytes
        self.place = place
        self.budget = budget
        self.budgetLeft = budget
    }

    /// Takes `n` values from the budget; at `at` the pickle has made more values than any state dict does.
    func charge(_ n: Int, _ at: Int) throws {
        guard n <= budgetLeft else {
            throw fail(at >= 0 ? at : currentOffset, "the pickle makes more than \(budget) values from \(bytes.count) bytes (no state dict "
                + "needs this many; refusing it before it exhausts memory)")
        }
        budgetLeft -= n
    }

    /// A new container in the arena; its slots were charged when its items were pushed, the container itself
    /// costs a few values of memory.
    func add(_ o: PickleObject) throws -> PickleValue {
        try charge(4, -1)
        objects.append(o)
        return .object(objects.count - 1)
    }

    public func kind(of v: PickleValue) -> String {
        if case .object(let i) = v { return objects[i].kind }
        return v.kind
    }

    public func tuple(_ v: PickleValue) -> [PickleValue]? {
        if case .object(let i) = v, case .tuple(let items) = objects[i] { return items }
        return nil
    }

    /// `at` < 0: no offset known (values checked after the opcode that made them).
    func fail(_ at: Int, _ message: String) -> FlintError {
        FlintError(at < 0 ? "\(place): \(message)" : "\(place) offset \(at): \(message)")
    }

    /// A non-negative integer that fits in Int.
    func count(_ v: PickleValue, _ what: String, _ at: Int) throws -> Int {
        guard case .int(let i) = v, i >= 0, i <= Int64(Int.max / 16) else {
            throw fail(at, "\(what) must be a non-negative integer, got \(describe(v))")
        }
        return Int(i)
    }

    func describe(_ v: PickleValue) -> String {
        switch v {
        case .int(let i): return "\(i)"
        case .string(let s): return "\"\(s.prefix(60))\""
        default: return kind(of: v)
        }
    }

    /// REDUCE / NEWOBJ of an allowed callable.
    func call(_ callable: PickleValue, _ args: PickleValue, _ at: Int) throws -> PickleValue {
        guard case .global(let module, let name) = callable else {
            throw fail(at, "REDUCE on a \(kind(of: callable)), which is not callable")
        }
        guard let a = tuple(args) else { throw fail(at, "\(module).\(name) called with a \(kind(of: args)), expected a tuple") }
        switch "\(module).\(name)" {
        case "collections.OrderedDict":
            // OrderedDict() or OrderedDict(list of pairs)
            let d = try add(.dict([]))
            if let first = a.first {
                guard case .object(let i) = first, case .list(let pairs) = objects[i] else {
                    if a.count == 1, case .object(let j) = first, case .dict(let items) = objects[j] {
                        try charge(2 * items.count, at)
                        if case .object(let k) = d { objects[k] = .dict(items) }
                        return d
                    }
                    throw fail(at, "OrderedDict called with a \(kind(of: first)), expected nothing or a list of pairs")
                }
                // A copy: OrderedDict(memoised list) repeated is how a small file asks for gigabytes.
                try charge(2 * pairs.count, at)
                var items: [(key: PickleValue, value: PickleValue)] = []
                for p in pairs {
                    guard let kv = tuple(p), kv.count == 2 else { throw fail(at, "OrderedDict item is not a pair") }
                    items.append((kv[0], kv[1]))
                }
                if case .object(let k) = d { objects[k] = .dict(items) }
            }
            return d
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
            guard a.count >= 4, case .storage(let storage) = a[0] else {
                throw fail(at, "\(name) needs (storage, storage_offset, size, stride, …), got \(a.count) arguments"
                    + (a.first.map { " starting with a \(kind(of: $0))" } ?? ""))
            }
            let offset = try count(a[1], "storage_offset", at)
            guard let size = tuple(a[2]), let stride = tuple(a[3]) else {
                throw fail(at, "\(name): size and stride must be tuples, got \(kind(of: a[2])) and \(kind(of: a[3]))")
            }
            guard size.count == stride.count, size.count <= 64 else {
                throw fail(at, "\(name): size has \(size.count) dimensions but stride has \(stride.count)")
            }
            let shape = try size.map { try count($0, "a size dimension", at) }
            let strides = try stride.map { try count($0, "a stride", at) }
            return .tensor(PickleTensorRef(storage: storage, storageOffset: offset, shape: shape, stride: strides))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            // (data, requires_grad, backward_hooks[, state]): the parameter's data is the tensor.
            guard let first = a.first, case .tensor = first else {
                throw fail(at, "\(name) needs a tensor as its first argument, got "
                    + (a.first.map { kind(of: $0) } ?? "nothing"))
            }
            return first
        default:
            throw fail(at, "\(module).\(name) cannot be called (it is allowed only as a type name)")
        }
    }
}
