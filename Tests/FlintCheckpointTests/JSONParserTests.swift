import Foundation
import Testing
@testable import FlintCheckpoint

@Suite struct JSONParsing {
    func parse(_ text: String) throws -> JSONValue { try JSONParser.parse(Data(text.utf8)) }
    func error(_ text: String) -> JSONParseError? {
        do { _ = try parse(text); return nil } catch let e as JSONParseError { return e } catch { return nil }
    }

    @Test func objectsKeepFileOrder() throws {
        guard case .object(let members) = try parse(#"{"z": 1, "a": [true, false, null], "m": {"k": "v"}}"#) else {
            Issue.record("not an object"); return
        }
        #expect(members.map(\.key) == ["z", "a", "m"])
    }

    @Test func stringsWithEscapesAndUnicode() throws {
        let v = try parse(#"["a\"b\\c\/d\n\t", "\u00e9\u4e2d", "😀", "\ud83d\ude00", "é"]"#)
        guard case .array(let items) = v else { Issue.record("not an array"); return }
        let strings = items.compactMap { if case .string(let s) = $0 { return s } else { return nil } }
        #expect(strings == ["a\"b\\c/d\n\t", "é中", "😀", "😀", "é"])
    }

    @Test func integersAreExactAndBounded() throws {
        #expect(try parse("9007199254740993").exactInteger == 9_007_199_254_740_993)  // not representable as Double
        #expect(try parse("-9223372036854775808").exactInteger == Int64.min)
        #expect(try parse("9223372036854775808").exactInteger == nil)
        #expect(try parse("1.0").exactInteger == nil)
        #expect(try parse("1e3").exactInteger == nil)
        #expect(try parse("1e-06").doubleValue == 1e-6)
    }

    @Test func rejectsMalformedInput() throws {
        #expect(error(#"{"a": 1,}"#)?.offset == 8)
        #expect(error(#"{"a": 1, "a": 2}"#)?.message == "duplicate key \"a\"")
        #expect(error("[01]")?.message.contains("leading zero") == true)
        #expect(error("\"abc")?.message == "unterminated string")
        #expect(error("\"a\u{01}\"")?.message.contains("control character") == true)
        #expect(error(#""\ud800""#)?.message.contains("unpaired surrogate") == true)
        #expect(error("{} x")?.message.contains("after the end") == true)
        #expect(error("")?.message.contains("end of input") == true)
        #expect(error("tru")?.message.contains("true") == true)
        // Deep nesting is refused instead of exhausting the stack.
        #expect(error(String(repeating: "[", count: 100_000))?.message.contains("nesting deeper") == true)
        #expect(error(String(repeating: "[", count: 60) + String(repeating: "]", count: 60)) == nil)
    }
}
