// A small HTTP/1.1 client over a plain socket, for the tests: it can send broken requests, read a stream event
// by event, and hang up in the middle — which URLSession cannot. Every call runs on its own thread (blocking
// reads must not occupy Swift's cooperative threads, which the in-process server needs), and every socket has a
// receive timeout, so a test can fail but never hang.
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
private let socketSend = Glibc.send
private let streamSocket = Int32(SOCK_STREAM.rawValue)
#elseif canImport(Darwin)
import Darwin
private let socketSend = Darwin.send
private let streamSocket = SOCK_STREAM
private let MSG_NOSIGNAL: Int32 = 0
#endif

struct HTTPResult {
    var status: Int
    var headers: [String: String]
    var body: Data
    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] }
    /// The OpenAI error object's fields.
    var errorMessage: String? { (json?["error"] as? [String: Any])?["message"] as? String }
    var errorParam: String? { (json?["error"] as? [String: Any])?["param"] as? String }
}

struct TestClientError: Error, CustomStringConvertible {
    var description: String
}

/// Runs blocking work on a new thread and awaits it.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}

/// One TCP connection to 127.0.0.1:port.
final class TestConnection: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var eof = false

    init(port: Int, timeoutSeconds: Int = 120) throws {
        fd = socket(AF_INET, streamSocket, 0)
        guard fd >= 0 else { throw TestClientError(description: "socket: errno \(errno)") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestClientError(description: "connect to port \(port): errno \(errno)")
        }
    }

    deinit { close(fd) }

    /// Closes the connection at once (a client that goes away).
    func hangUp() { shutdown(fd, Int32(SHUT_RDWR)) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { socketSend(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw TestClientError(description: "send: errno \(errno)") }
            sent += n
        }
    }

    func sendRequest(_ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:]) throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        var all = headers
        if let body {
            if all["Content-Type"] == nil { all["Content-Type"] = "application/json" }
            if all["Content-Length"] == nil { all["Content-Length"] = String(body.count) }
        }
        for (name, value) in all.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        try send(Array(head.utf8) + Array(body ?? Data()))
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    private func fill() throws -> Bool {
        guard !eof else { return false }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { buffer += chunk[0..<n]; return true }
            if n == 0 { eof = true; return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw TestClientError(description: "no answer from the server within the receive timeout") }
            eof = true
            return false  // ECONNRESET and the like: the server closed the connection
        }
    }

    private func readLine() throws -> String? {
        while true {
            if let i = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(buffer[..<i])
                buffer.removeFirst(i + 1)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard try fill() else { return nil }
        }
    }

    private func read(count: Int) throws -> [UInt8] {
        while buffer.count < count { guard try fill() else { throw TestClientError(description: "connection closed in a body") } }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    /// The status line and headers.
    func readHead() throws -> (status: Int, headers: [String: String]) {
        guard let statusLine = try readLine() else { throw TestClientError(description: "connection closed before a response") }
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw TestClientError(description: "bad status line: \(statusLine)") }
        var headers: [String: String] = [:]
        while let line = try readLine(), !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers)
    }

    /// The next piece of a chunked body (nil after the last one).
    func readChunk() throws -> [UInt8]? {
        guard let sizeLine = try readLine(), let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else {
            throw TestClientError(description: "bad chunk size")
        }
        if size == 0 {
            _ = try readLine()
            return nil
        }
        let bytes = try read(count: size)
        _ = try readLine()
        return bytes
    }

    /// The whole body, for the framing the headers announce.
    func readBody(_ headers: [String: String]) throws -> Data {
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var body: [UInt8] = []
            while let chunk = try readChunk() { body += chunk }
            return Data(body)
        }
        if let length = headers["content-length"].flatMap({ Int($0) }) { return Data(try read(count: length)) }
        while try fill() {}
        defer { buffer = [] }
        return Data(buffer)
    }
}

/// One request on a new connection, its whole response read.
func http(_ port: Int, _ method: String, _ path: String, json: Any? = nil, raw: Data? = nil,
          headers: [String: String] = [:]) async throws -> HTTPResult {
    let body: Data? = try raw ?? json.map { try JSONSerialization.data(withJSONObject: $0) }
    let sendable = SendableBox((body, headers))
    return try await onThread {
        let (body, headers) = sendable.value
        let connection = try TestConnection(port: port)
        try connection.sendRequest(method, path, body: body, headers: headers)
        let (status, responseHeaders) = try connection.readHead()
        return HTTPResult(status: status, headers: responseHeaders, body: try connection.readBody(responseHeaders))
    }
}

/// A value handed to another thread (the tests' JSON objects are immutable once built).
struct SendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// The server-sent events of a streamed response: the JSON of each `data:` line, and whether `data: [DONE]` came.
struct EventStream {
    var events: [[String: Any]] = []
    var done = false

    /// Splits a complete SSE body into its events.
    init(_ body: Data) {
        for block in String(decoding: body, as: UTF8.self).components(separatedBy: "\n\n") where !block.isEmpty {
            for line in block.split(separator: "\n") where line.hasPrefix("data: ") {
                let payload = line.dropFirst("data: ".count)
                if payload == "[DONE]" { done = true; continue }
                if let object = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any] { events.append(object) }
            }
        }
    }

    /// The text of each choice, the pieces joined.
    var texts: [Int: String] {
        var texts: [Int: String] = [:]
        for event in events {
            for choice in event["choices"] as? [[String: Any]] ?? [] {
                let index = choice["index"] as? Int ?? -1
                texts[index, default: ""] += choice["text"] as? String ?? ""
            }
        }
        return texts
    }

    var finishReasons: [Int: String] {
        var reasons: [Int: String] = [:]
        for event in events {
            for choice in event["choices"] as? [[String: Any]] ?? [] {
                if let reason = choice["finish_reason"] as? String { reasons[choice["index"] as? Int ?? -1] = reason }
            }
        }
        return reasons
    }
}
