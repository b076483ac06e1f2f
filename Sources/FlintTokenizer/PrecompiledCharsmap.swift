import FlintFormat

/// sentencepiece's `precompiled_charsmap`, the normalization table a `tokenizer.json` carries (base64) in its
/// `Precompiled` normalizer, applied the way the Hugging Face `tokenizers` library applies it.
///
/// Layout of the blob: a little-endian `u32` byte length T of the trie, then T/4 little-endian `u32` units of a
/// darts-clone double-array trie over UTF-8 bytes, then the replacement strings, each ended by a NUL byte. A trie
/// leaf's value is the byte offset of its replacement string in that string area.
///
/// How `tokenizers` uses it (normalizers/precompiled.rs): the text is cut into extended grapheme clusters; a
/// cluster shorter than 6 UTF-8 bytes is looked up whole, and the *first* (shortest) trie match along its bytes
/// replaces the whole cluster; otherwise (or with no match) each scalar of the cluster is looked up on its own
/// and replaced when it matches.
struct PrecompiledCharsmap {
    private let units: [UInt32]
    private let strings: [UInt8]

    init(blob: [UInt8]) throws {
        guard blob.count >= 4 else {
            throw FlintError(.corrupt, "precompiled_charsmap: \(blob.count) bytes, too short for its trie length field")
        }
        let trieSize = Int(UInt32(blob[0]) | UInt32(blob[1]) << 8 | UInt32(blob[2]) << 16 | UInt32(blob[3]) << 24)
        guard trieSize % 4 == 0, trieSize <= blob.count - 4 else {
            throw FlintError(.corrupt, "precompiled_charsmap: trie length \(trieSize) does not fit the \(blob.count)-byte blob")
        }
        var units: [UInt32] = []
        units.reserveCapacity(trieSize / 4)
        var p = 4
        while p < 4 + trieSize {
            units.append(UInt32(blob[p]) | UInt32(blob[p + 1]) << 8 | UInt32(blob[p + 2]) << 16 | UInt32(blob[p + 3]) << 24)
            p += 4
        }
        guard !units.isEmpty else { throw FlintError(.corrupt, "precompiled_charsmap: empty trie") }
        self.units = units
        self.strings = Array(blob[(4 + trieSize)...])
    }

    /// Checks a charsmap blob the way libsentencepiece will read it, before it does: darts-clone's prefix search
    /// reads `units[position ^ byte]` for any input byte without a bounds check, so every node reachable from the
    /// root must have its whole 256-unit neighbourhood inside the array, every leaf's value unit too, and every
    /// value must start a NUL-ended string inside the string area (sentencepiece reads it as a C string). A
    /// corrupted spiece.model then gets this error instead of a crash inside libsentencepiece (found by
    /// `make fuzz-smoke`: a SEGV in `Normalizer::NormalizePrefix`).
    static func validateTrie(_ blob: [UInt8], place: String) throws {
        let charsmap = try PrecompiledCharsmap(blob: blob)
        let units = charsmap.units, strings = charsmap.strings
        func corrupt(_ what: String) -> FlintError {
            FlintError(.corrupt, "spiece.model: \(place) precompiled_charsmap: \(what)")
        }
        var visited: Set<Int> = []
        var pending = [offset(units[0])]
        while let base = pending.popLast() {
            guard visited.insert(base).inserted else { continue }
            guard base >= 0, (base | 0xFF) < units.count else {
                throw corrupt("a trie node at unit \(base) reaches past the \(units.count)-unit array")
            }
            for byte in 0..<256 {
                let position = base ^ byte
                let unit = units[position]
                guard label(unit) == UInt32(byte) else { continue }
                let child = position ^ offset(unit)
                guard child >= 0, child < units.count else {
                    throw corrupt("unit \(position) points to \(child), past the \(units.count)-unit array")
                }
                if hasLeaf(unit) {
                    let start = value(units[child])
                    guard start < strings.count, strings[start...].contains(0) else {
                        throw corrupt("a replacement at byte \(start) is not a NUL-ended string of the \(strings.count)-byte area")
                    }
                }
                pending.append(child)
            }
        }
    }

    // darts-clone unit fields.
    @inline(__always) private static func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
    @inline(__always) private static func value(_ u: UInt32) -> Int { Int(u & 0x7FFF_FFFF) }
    @inline(__always) private static func label(_ u: UInt32) -> UInt32 { u & (0x8000_0000 | 0xFF) }
    @inline(__always) private static func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }

    /// The replacement for the shortest prefix of `key` that the trie holds, or nil. Malformed tries (positions
    /// outside the array, offsets outside the strings) give nil instead of trapping.
    private func firstMatch(_ key: some Collection<UInt8>) -> [UInt8]? {
        var position = Self.offset(units[0])
        for byte in key {
            if byte == 0 { return nil }
            position ^= Int(byte)
            guard position >= 0, position < units.count else { return nil }
            let unit = units[position]
            guard Self.label(unit) == UInt32(byte) else { return nil }
            position ^= Self.offset(unit)
            if Self.hasLeaf(unit) {
                guard position >= 0, position < units.count else { return nil }
                return string(at: Self.value(units[position]))
            }
        }
        return nil
    }

    private func string(at start: Int) -> [UInt8]? {
        guard start >= 0, start <= strings.count else { return nil }
        var end = start
        while end < strings.count && strings[end] != 0 { end += 1 }
        return Array(strings[start..<end])
    }

    /// The text with every grapheme cluster (or scalar) the table maps replaced, as `tokenizers` does.
    func normalize(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for cluster in text {
            let bytes = Array(cluster.utf8)
            if bytes.count < 6, let replacement = firstMatch(bytes) {
                out.append(contentsOf: replacement)
                continue
            }
            for scalar in cluster.unicodeScalars {
                let scalarBytes = Array(String(scalar).utf8)
                if let replacement = firstMatch(scalarBytes) {
                    out.append(contentsOf: replacement)
                } else {
                    out.append(contentsOf: scalarBytes)
                }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
