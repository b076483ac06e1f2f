// Finds one top-level member of a JSON object without parsing the rest: the .flint reader uses it to leave the
// bulky `calibration` value of the metadata undecoded until someone asks for it (FlintFile.calibration()).
//
// The scan knows only what it needs: strings (with escapes) and the nesting of objects and arrays. It never
// accepts anything the JSON decoder would reject — the metadata minus that value is decoded normally, and the
// value itself when it is read — it only says where the value is. A key written with escapes ("\u0063…") is not
// recognised; the decoder then sees the member as usual (decoded eagerly: slower, still correct).

enum MetadataScan {
    /// The byte range of the value of member `key` of the top-level object in `json`, or nil (no such member,
    /// or not an object).
    static func topLevelValue(_ key: String, in json: UnsafeRawBufferPointer) -> Range<Int>? {
        let target = Array(key.utf8)
        let n = json.count
        var i = 0
        func skipSpace() { while i < n, json[i] == 0x20 || json[i] == 0x0A || json[i] == 0x0D || json[i] == 0x09 { i += 1 } }
        /// Skips a string starting at `i` (a quote); returns its content range, or nil when it never ends.
        func skipString() -> Range<Int>? {
            let start = i + 1
            i += 1
            while i < n {
                switch json[i] {
                case 0x5C: i += 2                          // backslash: the next byte is escaped
                case 0x22: i += 1; return start..<(i - 1)  // closing quote
                default: i += 1
                }
            }
            return nil
        }
        /// Skips one value starting at `i`; false when it never ends.
        func skipValue() -> Bool {
            guard i < n else { return false }
            switch json[i] {
            case 0x22: return skipString() != nil
            case 0x7B, 0x5B:
                var depth = 0
                while i < n {
                    switch json[i] {
                    case 0x22: if skipString() == nil { return false }; continue
                    case 0x7B, 0x5B: depth += 1
                    case 0x7D, 0x5D:
                        depth -= 1
                        if depth == 0 { i += 1; return true }
                    default: break
                    }
                    i += 1
                }
                return false
            default:
                // A number, true, false or null: up to the next delimiter.
                while i < n, json[i] != 0x2C, json[i] != 0x7D, json[i] != 0x5D,
                      json[i] != 0x20, json[i] != 0x0A, json[i] != 0x0D, json[i] != 0x09 { i += 1 }
                return true
            }
        }
        skipSpace()
        guard i < n, json[i] == 0x7B else { return nil }
        i += 1
        while true {
            skipSpace()
            guard i < n, json[i] == 0x22, let name = skipString() else { return nil }
            skipSpace()
            guard i < n, json[i] == 0x3A else { return nil }
            i += 1
            skipSpace()
            let start = i
            guard skipValue() else { return nil }
            if name.count == target.count, zip(name, target).allSatisfy({ json[$0] == $1 }) { return start..<i }
            skipSpace()
            guard i < n, json[i] == 0x2C else { return nil }
            i += 1
        }
    }

    /// Whether the value starting with `first` is `null`.
    static func isNull(_ first: UInt8) -> Bool { first == 0x6E }
}
