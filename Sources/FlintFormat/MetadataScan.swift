// Finds one top-level member of a JSON object without parsing the rest: the .flint reader uses it to leave the
// bulky `calibration` value of the metadata undecoded until someone asks for it (FlintFile.calibration()).
//
// The scan knows only what it needs: strings (with escapes) and the nesting of objects and arrays. It never
// accepts anything the JSON decoder would reject — the metadata minus that value is decoded normally, and the
// value itself when it is read — it only says where the value is. A key written with escapes ("\u0063…") is not
// recognised; the decoder then sees the member as usual (decoded eagerly: slower, still correct).
//
// Speed matters: the calibration value of flan-t5-xl is 6.3 MB of numbers that every open has to step over, so
// containers are skipped 8 bytes at a time (only `"`, `[`, `]`, `{` and `}` stop the scan) and strings with
// memchr, instead of a switch per byte.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum MetadataScan {
    /// The byte range of the value of member `key` of the top-level object in `json`, or nil (no such member,
    /// or not an object, or the value never ends).
    static func topLevelValue(_ key: String, in json: UnsafeRawBufferPointer) -> Range<Int>? {
        var scanner = Scanner(json)
        guard let start = scanner.findMember(key) else { return nil }
        guard scanner.skipValue() else { return nil }
        return start..<scanner.i
    }

    /// Where the value of member `key` of the top-level object in `json` starts, without stepping over the
    /// value itself (enough to tell `null` from anything else); nil when there is no such member.
    static func topLevelValueStart(_ key: String, in json: UnsafeRawBufferPointer) -> Int? {
        var scanner = Scanner(json)
        guard let start = scanner.findMember(key), start < json.count else { return nil }
        return start
    }

    /// Whether the value starting with `first` is `null`.
    static func isNull(_ first: UInt8) -> Bool { first == 0x6E }

    private struct Scanner {
        let p: UnsafePointer<UInt8>
        let n: Int
        var i = 0

        init(_ json: UnsafeRawBufferPointer) {
            // An empty buffer may have no base address; any valid pointer will do for zero bytes.
            p = json.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(bitPattern: 1)!
            n = json.count
        }

        mutating func skipSpace() {
            while i < n, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i += 1 }
        }

        /// Steps over the top-level members before `key` and returns where its value starts (i is there too).
        mutating func findMember(_ key: String) -> Int? {
            let target = Array(key.utf8)
            skipSpace()
            guard i < n, p[i] == 0x7B else { return nil }
            i += 1
            while true {
                skipSpace()
                guard i < n, p[i] == 0x22, let name = skipString() else { return nil }
                skipSpace()
                guard i < n, p[i] == 0x3A else { return nil }
                i += 1
                skipSpace()
                let start = i
                if name.count == target.count, target.withUnsafeBufferPointer({ t in
                    memcmp(p + name.lowerBound, t.baseAddress!, t.count) == 0 }) {
                    return start
                }
                guard skipValue() else { return nil }
                skipSpace()
                guard i < n, p[i] == 0x2C else { return nil }
                i += 1
            }
        }

        /// Skips a string starting at `i` (a quote); returns its content range, or nil when it never ends.
        mutating func skipString() -> Range<Int>? {
            let start = i + 1
            var from = start
            while from < n {
                guard let q = memchr(p + from, 0x22, n - from) else { return nil }
                let quote = p.distance(to: q.assumingMemoryBound(to: UInt8.self))
                // The quote closes the string unless an odd run of backslashes escapes it.
                var backslashes = 0
                while quote - backslashes - 1 >= start, p[quote - backslashes - 1] == 0x5C { backslashes += 1 }
                if backslashes % 2 == 0 {
                    i = quote + 1
                    return start..<quote
                }
                from = quote + 1
            }
            return nil
        }

        /// The first index ≥ i holding `"`, `[`, `]`, `{` or `}` (n when none), 8 bytes at a time.
        func nextStructural(from start: Int) -> Int {
            var j = start
            let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
            @inline(__always) func zeroBytes(_ v: UInt64) -> UInt64 { (v &- ones) & ~v & highs }
            while j + 8 <= n {
                let w = UInt64(littleEndian: UnsafeRawPointer(p + j).loadUnaligned(as: UInt64.self))
                // `[`/`{` and `]`/`}` differ only in bit 0x20, so setting it folds the four brackets into two.
                let folded = w | (0x20 &* ones)
                let hits = zeroBytes(w ^ (0x22 &* ones)) | zeroBytes(folded ^ (0x7B &* ones))
                    | zeroBytes(folded ^ (0x7D &* ones))
                // The lowest flag of each test is exact (false flags only lie above a real match), so the lowest
                // flag of their union is the first structural byte.
                if hits != 0 { return j + hits.trailingZeroBitCount / 8 }
                j += 8
            }
            while j < n {
                switch p[j] {
                case 0x22, 0x5B, 0x5D, 0x7B, 0x7D: return j
                default: j += 1
                }
            }
            return n
        }

        /// Skips one value starting at `i`; false when it never ends.
        mutating func skipValue() -> Bool {
            guard i < n else { return false }
            switch p[i] {
            case 0x22: return skipString() != nil
            case 0x7B, 0x5B:
                var depth = 0
                while true {
                    i = nextStructural(from: i)
                    guard i < n else { return false }
                    switch p[i] {
                    case 0x22:
                        if skipString() == nil { return false }
                        continue
                    case 0x7B, 0x5B: depth += 1
                    default:   // 0x7D, 0x5D
                        depth -= 1
                        if depth == 0 { i += 1; return true }
                    }
                    i += 1
                }
            default:
                // A number, true, false or null: up to the next delimiter.
                while i < n, p[i] != 0x2C, p[i] != 0x7D, p[i] != 0x5D,
                      p[i] != 0x20, p[i] != 0x0A, p[i] != 0x0D, p[i] != 0x09 { i += 1 }
                return true
            }
        }
    }
}
