import Foundation
import Testing
@testable import FlintFormat
import TestSupport

/// MetadataScan steps over containers 8 bytes at a time: every structural byte (quote, bracket, brace) must be
/// found wherever it falls in a word, strings must end at the first unescaped quote (runs of backslashes),
/// and brackets inside strings must not count. Random documents, built with the byte range of every top-level
/// value known, are scanned at every alignment.
@Suite struct MetadataScanTests {

    static func string(_ r: inout SplitMix64) -> String {
        // Characters that matter to the scan, escaped the way JSON needs them.
        let pieces = ["a", "xyz", "[", "]", "{", "}", ",", ":", " ", "\\\"", "\\\\", "\\\\\\\"", "\\n", "é", "0.5"]
        return "\"" + (0..<r.below(12)).map { _ in pieces[r.below(pieces.count)] }.joined() + "\""
    }

    static func value(_ r: inout SplitMix64, depth: Int) -> String {
        switch depth > 3 ? r.below(4) : r.below(7) {
        case 0: return ["null", "true", "false"][r.below(3)]
        case 1: return String(Double(r.below(2_000_000)) / 1000 - 1000)
        case 2, 3: return string(&r)
        case 4:
            // A long number array, like the smoothing scales.
            return "[" + (0..<r.below(40)).map { _ in String(Float(r.below(100_000)) / 777) }.joined(separator: ",") + "]"
        case 5:
            return "[" + (0..<r.below(5)).map { _ in value(&r, depth: depth + 1) }.joined(separator: ", ") + "]"
        default:
            return "{" + (0..<r.below(5)).map { _ in string(&r) + ":" + value(&r, depth: depth + 1) }.joined(separator: ",") + "}"
        }
    }

    @Test func randomDocumentsAtEveryAlignment() throws {
        var r = SplitMix64(seed: 16)
        for document in 0..<200 {
            var text = "", ranges: [(key: String, range: Range<Int>)] = []
            let padding = String(repeating: " ", count: document % 9)
            text += padding + "{"
            for m in 0..<(1 + r.below(6)) {
                if m > 0 { text += [",", " ,", ",\n "][r.below(3)] }
                let key = "k\(m)"
                text += "\"\(key)\"" + [":", " : ", ":\t"][r.below(3)]
                let v = Self.value(&r, depth: 0)
                let start = text.utf8.count
                text += v
                ranges.append((key, start..<text.utf8.count))
            }
            text += "}"
            let bytes = Array(text.utf8)
            // The documents are valid JSON (so the ranges mean what the decoder would see).
            #expect((try? JSONSerialization.jsonObject(with: Data(bytes))) != nil, "document \(document): \(text)")
            bytes.withUnsafeBytes { b in
                for (key, range) in ranges {
                    #expect(MetadataScan.topLevelValue(key, in: b) == range, "document \(document) key \(key): \(text)")
                    #expect(MetadataScan.topLevelValueStart(key, in: b) == range.lowerBound)
                }
                #expect(MetadataScan.topLevelValue("absent", in: b) == nil)
                // Cut anywhere inside the last container value, the scan reports no end instead of reading on.
                if let (key, range) = ranges.last, range.count > 1, bytes[range.lowerBound] == 0x5B || bytes[range.lowerBound] == 0x7B {
                    let cut = range.lowerBound + 1 + r.below(range.count - 1)
                    let truncated = UnsafeRawBufferPointer(rebasing: b[..<cut])
                    #expect(MetadataScan.topLevelValue(key, in: truncated) == nil, "document \(document) cut at \(cut)")
                }
            }
        }
    }

    @Test func stringsEndAtTheFirstUnescapedQuote() {
        func find(_ json: String) -> String? {
            let bytes = Array(json.utf8)
            return bytes.withUnsafeBytes { b in
                MetadataScan.topLevelValue("v", in: b).map { String(decoding: bytes[$0], as: UTF8.self) }
            }
        }
        #expect(find(#"{"v": "a\\"}"#) == #""a\\""#)              // an even run: the quote closes
        #expect(find(#"{"v": "a\"b"}"#) == #""a\"b""#)            // an odd run: escaped
        #expect(find(#"{"v": "\\\"]"}"#) == #""\\\"]""#)
        #expect(find(#"{"v": ["\\", "]\"[", 1]}"#) == #"["\\", "]\"[", 1]"#)
        #expect(find(#"{"v": "never ends\"}"#) == nil)
        #expect(find(#"{"v": ""}"#) == #""""#)
        #expect(find("{\"v\": [] }") == "[]")
    }
}
