// Request bodies are read as generic JSON first, then checked field by field, so a wrong type or an unknown
// field gets a 400 that names the field (a Decodable struct would only say "data couldn't be read").
import Foundation

/// Any JSON value. Integers are kept apart from other numbers so `"max_tokens": 1.5` can be refused.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            // 3.0 is an integer to JSON's readers (Python's json gives a float, OpenAI clients send 1.0 for 1).
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// What the value is, for messages ("got a string").
    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .integer, .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A request body as a JSON object, read field by field. Every accessor names the field in its error; `finish`
/// refuses the fields nobody read (a misspelt option must not be silently ignored).
struct JSONFields {
    private var fields: [String: JSONValue]
    private var read: Set<String> = []

    /// Parses `body` as one JSON object (400 otherwise).
    init(body: Data) throws {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: body)
        } catch {
            throw APIError.badRequest("the request body is not valid JSON\(Self.position(of: error))")
        }
        guard case .object(let object) = value else {
            throw APIError.badRequest("the request body must be a JSON object, got \(value.kind)")
        }
        fields = object
    }

    init(object: [String: JSONValue]) { fields = object }

    private static func position(of error: Error) -> String {
        guard case DecodingError.dataCorrupted(let context) = error,
              let underlying = context.underlyingError as NSError?,
              let detail = underlying.userInfo[NSDebugDescriptionErrorKey] as? String else { return "" }
        return " (\(detail))"
    }

    /// The raw value, nil when absent or null (JSON null means "not given", as in OpenAI's API).
    mutating func value(_ name: String) -> JSONValue? {
        read.insert(name)
        guard let value = fields[name], value != .null else { return nil }
        return value
    }

    mutating func has(_ name: String) -> Bool { value(name) != nil }

    mutating func string(_ name: String) throws -> String? {
        guard let value = value(name) else { return nil }
        guard case .string(let s) = value else { throw APIError.wrongType(name, "a string", value) }
        return s
    }

    mutating func bool(_ name: String) throws -> Bool? {
        guard let value = value(name) else { return nil }
        guard case .bool(let b) = value else { throw APIError.wrongType(name, "a boolean", value) }
        return b
    }

    mutating func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let value = value(name) else { return nil }
        let n: Int
        switch value {
        case .integer(let i): n = i
        case .number(let d) where d.rounded() == d && abs(d) < 1e15: n = Int(d)
        default: throw APIError.wrongType(name, "an integer", value)
        }
        guard range.contains(n) else { throw APIError.outOfRange(name, "must be in \(range.lowerBound)…\(range.upperBound), got \(n)") }
        return n
    }

    mutating func number(_ name: String) throws -> Double? {
        guard let value = value(name) else { return nil }
        switch value {
        case .integer(let i): return Double(i)
        case .number(let d): return d
        default: throw APIError.wrongType(name, "a number", value)
        }
    }

    /// A field a client may send with its "off" value only (OpenAI fields this server does not implement):
    /// accepted when absent or equal to one of `neutral`, a 400 naming the field otherwise.
    mutating func unsupported(_ name: String, neutral: [JSONValue], because reason: String) throws {
        guard let value = value(name) else { return }
        guard neutral.contains(value) || neutral.contains(where: { Self.sameNumber($0, value) }) else {
            throw APIError.badRequest("'\(name)' is not supported: \(reason)", param: name)
        }
    }

    private static func sameNumber(_ a: JSONValue, _ b: JSONValue) -> Bool {
        func number(_ v: JSONValue) -> Double? {
            switch v { case .integer(let i): Double(i); case .number(let d): d; default: nil }
        }
        guard let x = number(a), let y = number(b) else { return false }
        return x == y
    }

    /// Refuses fields that were never read.
    func finish() throws {
        let unknown = fields.keys.filter { !read.contains($0) }.sorted()
        guard let first = unknown.first else { return }
        throw APIError.badRequest("unknown field '\(first)'" + (unknown.count > 1 ? " (and \(unknown.dropFirst().joined(separator: ", ")))" : ""),
                                  param: first)
    }
}

/// An error answered as OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`.
struct APIError: Error, CustomStringConvertible {
    var status: Int
    var message: String
    var type: String
    var param: String?
    var code: String?
    /// Retry-After and WWW-Authenticate headers of the response.
    var retryAfter: String? = nil
    var authenticate: String? = nil

    var description: String { message }

    static func badRequest(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: nil)
    }

    static func wrongType(_ name: String, _ expected: String, _ value: JSONValue) -> APIError {
        badRequest("'\(name)' must be \(expected), got \(value.kind)", param: name)
    }

    static func outOfRange(_ name: String, _ detail: String) -> APIError {
        badRequest("'\(name)' \(detail)", param: name)
    }
}
