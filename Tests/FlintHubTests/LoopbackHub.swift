// A small Hub on 127.0.0.1 (ephemeral port) for the tests, speaking the protocol huggingface_hub uses: the model
// info API, resolve URLs with ETag / X-Linked-Etag / X-Linked-Size / X-Repo-Commit, a redirect to a "CDN" path
// for LFS files, Range requests (206), X-Error-Code on errors, and faults on demand (a connection dropped
// mid-file, a stall, corrupted bytes). One thread per connection, each answer closes its connection; every wait
// is bounded, and stop() ends the server.
import Foundation
@testable import FlintHub
#if canImport(Glibc)
import Glibc
#endif

final class LoopbackHub: @unchecked Sendable {
    struct Repo {
        var id: String
        var commit: String
        var files: [String: Data]
        var lfs: Set<String>
        /// Tags / branches besides main, to their commit.
        var refs: [String: String] = [:]
    }

    /// A repository holding a folder's files; weights and sentencepiece models are "LFS" files (redirected).
    static func repo(id: String, commit: String, folder: String, skipping skipped: Set<String> = []) throws -> Repo {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) where !skipped.contains(name) {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
        }
        let lfs = Set(files.keys.filter { name in [".safetensors", ".bin", ".model", ".h5", ".msgpack"].contains { name.hasSuffix($0) } })
        return Repo(id: id, commit: commit, files: files, lfs: lfs)
    }

    struct Request {
        var method: String
        var path: String
        var headers: [String: String]
    }

    private let lock = NSLock()
    private var _repos: [String: Repo] = [:]
    private var _requests: [Request] = []
    private var _dropAfter: [String: Int] = [:]
    private var _stallFirst: [String: Double] = [:]
    private var _corrupt: Set<String> = []
    private var _hidden: Set<String> = []
    private var _requiredToken: String?
    private var _ignoreRange = false
    private var _failures: [String: Int] = [:]
    private var _metadataFailures = 0
    private var listener: Int32 = -1
    private var running = true
    private var acceptThread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private(set) var port: UInt16 = 0

    var endpoint: String { "http://127.0.0.1:\(port)" }

    init() throws {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw FlintErrorForTests("socket failed") }
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else { throw FlintErrorForTests("bind/listen failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
        let thread = Thread { [self] in acceptLoop() }
        acceptThread = thread
        thread.start()
    }

    func stop() {
        lock.lock(); running = false; lock.unlock()
        _ = finished.wait(timeout: .now() + 5)
        close(listener)
    }

    // MARK: configuration (thread-safe)

    private func locked<T>(_ body: () -> T) -> T { lock.lock(); defer { lock.unlock() }; return body() }

    func add(_ repo: Repo) { locked { _repos[repo.id] = repo } }
    var requests: [Request] { locked { _requests } }
    func clearRequests() { locked { _requests.removeAll() } }
    /// The first GET of this file's contents sends `bytes` of the body, then drops the connection.
    func dropConnection(of file: String, after bytes: Int) { locked { _dropAfter[file] = bytes } }
    /// The first GET of this file's contents stalls this long before sending anything.
    func stall(_ file: String, seconds: Double) { locked { _stallFirst[file] = seconds } }
    /// GETs of this file's contents send one byte flipped (the sha256 check must catch it).
    func corrupt(_ file: String) { locked { _ = _corrupt.insert(file) } }
    /// The file is listed by the API but its resolve URL answers 404 EntryNotFound.
    func hide(_ file: String) { locked { _ = _hidden.insert(file) } }
    /// Range headers are ignored: the whole file comes back with 200 (as some proxies and CDNs do).
    func ignoreRange() { locked { _ignoreRange = true } }
    /// The next `count` GETs of this file's contents answer 503.
    func failWith503(_ file: String, times count: Int) { locked { _failures[file] = count } }
    /// The next `count` requests to the API or a resolve URL answer 503.
    func failMetadataWith503(times count: Int) { locked { _metadataFailures = count } }
    /// Every request must carry `Authorization: Bearer token` (else 401), as for a gated repository.
    func requireToken(_ token: String?) { locked { _requiredToken = token } }

    private static var etags: [Data: String] = [:]
    private static let etagLock = NSLock()

    static func etag(of data: Data, lfs: Bool) -> String {
        etagLock.lock()
        let known = etags[data]
        etagLock.unlock()
        let hex = known ?? sha256(data)
        if known == nil { etagLock.lock(); etags[data] = hex; etagLock.unlock() }
        return lfs ? hex : String(hex.prefix(40))  // a git blob id is 40 hex digits
    }

    private static func sha256(_ data: Data) -> String {
        var digest = SHA256Digest()
        digest.update(data)
        return digest.finalizeHex()
    }

    // MARK: serving

    private func acceptLoop() {
        defer { finished.signal() }
        while locked({ running }) {
            var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { continue }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            Thread.detachNewThread { [self] in
                serve(connection)
                close(connection)
            }
        }
    }

    private func readRequest(_ connection: Int32) -> Request? {
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while buffer.count < 64 * 1024 {
            let n = recv(connection, &chunk, chunk.count, 0)
            guard n > 0 else { return nil }
            buffer += chunk[0..<n]
            if let end = String(decoding: buffer, as: UTF8.self).range(of: "\r\n\r\n") {
                let head = String(decoding: buffer, as: UTF8.self)[..<end.lowerBound]
                let lines = head.components(separatedBy: "\r\n")
                let parts = lines[0].split(separator: " ")
                guard parts.count >= 2 else { return nil }
                var headers: [String: String] = [:]
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                return Request(method: String(parts[0]), path: String(parts[1]), headers: headers)
            }
        }
        return nil
    }

    private func send(_ connection: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(connection, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            offset += n
        }
    }

    private func respond(_ connection: Int32, _ status: Int, _ reason: String, headers: [String: String] = [:],
                         body: Data = Data(), sendBody: Bool = true, contentLength: Int? = nil) {
        var head = "HTTP/1.1 \(status) \(reason)\r\nConnection: close\r\n"
        head += "Content-Length: \(contentLength ?? body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        send(connection, Array(head.utf8) + (sendBody ? Array(body) : []))
    }

    private func error(_ connection: Int32, _ status: Int, code: String, message: String, head: Bool) {
        let body = Data("{\"error\":\"\(message)\"}".utf8)
        respond(connection, status, status == 401 ? "Unauthorized" : status == 403 ? "Forbidden" : status == 503 ? "Service Unavailable" : "Not Found",
                headers: ["X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"],
                body: body, sendBody: !head)
    }

    private func serve(_ connection: Int32) {
        guard let request = readRequest(connection) else { return }
        locked { _requests.append(request) }
        let path = request.path.removingPercentEncoding ?? request.path
        let isHead = request.method == "HEAD"

        if path.hasPrefix("/cdn/") {
            serveContent(connection, request, key: String(path.dropFirst(5)), head: isHead)
            return
        }
        let metadataFails: Bool = locked {
            guard _metadataFailures > 0 else { return false }
            _metadataFailures -= 1
            return true
        }
        if metadataFails { return error(connection, 503, code: "ServiceUnavailable", message: "try again", head: isHead) }
        if let required = locked({ _requiredToken }), request.headers["authorization"] != "Bearer \(required)" {
            error(connection, 401, code: "GatedRepo", message: "Access to this model is restricted. You must have access to it and be authenticated.", head: isHead)
            return
        }
        let repos = locked { _repos }
        if path.hasPrefix("/api/models/") {
            // /api/models/{owner}/{name}/revision/{revision}
            let rest = String(path.dropFirst("/api/models/".count))
            guard let marker = rest.range(of: "/revision/") else { return error(connection, 404, code: "RepoNotFound", message: "bad path", head: isHead) }
            let id = String(rest[..<marker.lowerBound]), revision = String(rest[marker.upperBound...])
            guard let repo = repos[id] else { return error(connection, 404, code: "RepoNotFound", message: "Repository not found", head: isHead) }
            guard let commit = commit(of: repo, revision) else {
                return error(connection, 404, code: "RevisionNotFound", message: "Invalid rev id: \(revision)", head: isHead)
            }
            let siblings = repo.files.keys.sorted().map { ["rfilename": $0] }
            let body = try! JSONSerialization.data(withJSONObject: ["id": repo.id, "sha": commit, "siblings": siblings] as [String: Any])
            respond(connection, 200, "OK", headers: ["Content-Type": "application/json"], body: body, sendBody: !isHead)
            return
        }
        // /{owner}/{name}/resolve/{revision}/{file}
        guard let marker = path.range(of: "/resolve/") else { return error(connection, 404, code: "RepoNotFound", message: "bad path", head: isHead) }
        let id = String(path[path.index(after: path.startIndex)..<marker.lowerBound])
        let tail = path[marker.upperBound...]
        guard let slash = tail.firstIndex(of: "/"), let repo = repos[id] else {
            return error(connection, 404, code: "RepoNotFound", message: "Repository not found", head: isHead)
        }
        let revision = String(tail[..<slash]), file = String(tail[tail.index(after: slash)...])
        guard let commit = commit(of: repo, revision) else {
            return error(connection, 404, code: "RevisionNotFound", message: "Invalid rev id: \(revision)", head: isHead)
        }
        guard let data = repo.files[file], !locked({ _hidden.contains(file) }) else {
            return error(connection, 404, code: "EntryNotFound", message: "\(file) does not exist on \(revision)", head: isHead)
        }
        if repo.lfs.contains(file) {
            let sha = LoopbackHub.etag(of: data, lfs: true)
            // An absolute redirect to another host name, as the Hub redirects LFS files to its CDN.
            respond(connection, 302, "Found", headers: [
                "Location": "http://localhost:\(port)/cdn/\(id)/\(file)",
                "X-Linked-Etag": "\"\(sha)\"", "X-Linked-Size": "\(data.count)", "X-Repo-Commit": commit,
                "ETag": "W/\"\(LoopbackHub.etag(of: Data(sha.utf8), lfs: false))\"",
            ], sendBody: false, contentLength: 0)
            return
        }
        respond(connection, 200, "OK", headers: [
            "ETag": "\"\(LoopbackHub.etag(of: data, lfs: false))\"", "X-Repo-Commit": commit,
        ], body: data, sendBody: !isHead)
    }

    private func commit(of repo: Repo, _ revision: String) -> String? {
        if revision == "main" || revision == repo.commit { return repo.commit }
        return repo.refs[revision]
    }

    /// The "CDN": `/cdn/{repo}/{file}`, with Range support and the injected faults.
    private func serveContent(_ connection: Int32, _ request: Request, key: String, head: Bool) {
        let repos = locked { _repos }
        guard let repo = repos.values.first(where: { key.hasPrefix($0.id + "/") }),
              var data = repo.files[String(key.dropFirst(repo.id.count + 1))] else {
            respond(connection, 404, "Not Found")
            return
        }
        let file = String(key.dropFirst(repo.id.count + 1))
        let failNow: Bool = locked {
            guard let left = _failures[file], left > 0 else { return false }
            _failures[file] = left - 1
            return true
        }
        if failNow { return respond(connection, 503, "Service Unavailable") }
        if locked({ _corrupt.contains(file) }), !data.isEmpty { data[data.startIndex] ^= 0xFF }
        if let seconds = locked({ _stallFirst.removeValue(forKey: file) }) {
            // Stalls without a byte, but stops early once the client has given up and closed the connection.
            let deadline = Date().addingTimeInterval(seconds)
            var probe: UInt8 = 0
            while Date() < deadline {
                var poller = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
                if poll(&poller, 1, 20) > 0, recv(connection, &probe, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0 { return }
            }
        }
        var start = 0
        var status = 200
        var headers = ["ETag": "\"\(LoopbackHub.etag(of: data, lfs: true))\"", "Accept-Ranges": "bytes"]
        if !locked({ _ignoreRange }), let range = request.headers["range"], range.hasPrefix("bytes="), range.hasSuffix("-"),
           let from = Int(range.dropFirst(6).dropLast()) {
            guard from < data.count else {
                respond(connection, 416, "Range Not Satisfiable", headers: ["Content-Range": "bytes */\(data.count)"])
                return
            }
            start = from
            status = 206
            headers["Content-Range"] = "bytes \(from)-\(data.count - 1)/\(data.count)"
        }
        let body = data.subdata(in: start..<data.count)
        if !head, let drop = locked({ _dropAfter.removeValue(forKey: file) }), drop < body.count {
            // Announce the whole body, send part of it, hang up.
            var text = "HTTP/1.1 \(status) \(status == 206 ? "Partial Content" : "OK")\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
            for (k, v) in headers { text += "\(k): \(v)\r\n" }
            send(connection, Array((text + "\r\n").utf8) + Array(body.prefix(drop)))
            shutdown(connection, Int32(SHUT_RDWR))
            return
        }
        respond(connection, status, status == 206 ? "Partial Content" : "OK", headers: headers, body: body, sendBody: !head)
    }
}

struct FlintErrorForTests: Error { let message: String; init(_ m: String) { message = m } }
