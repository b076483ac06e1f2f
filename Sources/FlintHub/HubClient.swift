// Resolves hf:OWNER/NAME[@REVISION] to a local snapshot folder the checkpoint readers can open, downloading only
// what a conversion reads, the way huggingface_hub's snapshot_download / hf_hub_download do it:
//   1. GET {endpoint}/api/models/{repo}/revision/{revision} → the commit sha and the file list (siblings);
//   2. per file, HEAD {endpoint}/{repo}/resolve/{commit}/{file} without following redirects to another host →
//      ETag (X-Linked-Etag for LFS files), size (X-Linked-Size / Content-Length), X-Repo-Commit, Location;
//   3. GET the file (Location when the HEAD was redirected, e.g. to a CDN) into blobs/{etag}.incomplete, resuming
//      with `Range: bytes=N-` after a dropped connection, check its size (and sha256 when the etag is one),
//      rename it to blobs/{etag} and link snapshots/{commit}/{file} to it.
// A file the snapshot already has costs no request; a blob already downloaded (under another commit) is linked.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import FlintFormat
import FlintCheckpoint

/// How a file of the snapshot was obtained.
public enum HubFileOrigin: String, Sendable, Codable {
    /// Downloaded now (or finished from an interrupted download).
    case downloaded
    /// Already in the snapshot folder.
    case cached
    /// Its blob was in the cache (another revision had it); only the snapshot link was made.
    case linkedBlob = "linked-blob"
}

public struct HubFile: Sendable, Codable, Equatable {
    public var name: String
    public var bytes: Int64
    public var origin: HubFileOrigin
    /// Bytes that came over the network for it (less than `bytes` when an interrupted download was resumed).
    public var bytesTransferred: Int64
}

public struct HubSnapshot: Sendable {
    public var reference: HubReference
    /// The commit the revision resolved to.
    public var commit: String
    /// snapshots/{commit}: a model folder (symlinks into blobs/).
    public var folder: String
    public var files: [HubFile]
    /// True when no request was made (HF_HUB_OFFLINE, or the Hub unreachable and the cache complete).
    public var fromCacheOnly: Bool
}

/// What a conversion reads from a repository, besides the weights.
public enum HubFileSelection {
    public static let required = ["config.json"]
    public static let optional = [
        "generation_config.json", "spiece.model", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "added_tokens.json",
    ]
    /// RobertaTokenizer's files (CodeT5), read only when the repository has neither tokenizer.json nor spiece.model.
    public static let slowBPE = ["vocab.json", "merges.txt"]

    /// The optional files to take from a repository's file list.
    public static func optionalFiles(in files: Set<String>) -> [String] {
        let tokenizerFile = files.contains("tokenizer.json") || files.contains("spiece.model")
        return (optional + (tokenizerFile ? [] : slowBPE)).filter(files.contains)
    }

    /// The weight files to take from a repository's file list: ONE format, preferred safetensors > pytorch > h5 >
    /// msgpack (or `format` when given), the single file if present (transformers looks for it first), else the
    /// shard index (whose shards are read from the index once it is here). Nil when no format is present.
    public static func weights(in files: Set<String>, format: CheckpointFormat?) -> (format: CheckpointFormat, file: String, isIndex: Bool)? {
        for candidate in format.map({ [$0] }) ?? CheckpointFormat.allCases {
            if files.contains(candidate.singleFile) { return (candidate, candidate.singleFile, false) }
            if files.contains(candidate.indexFile) { return (candidate, candidate.indexFile, true) }
        }
        return nil
    }

    /// The shard file names a `*.index.json` lists (`weight_map` values), checked to be plain relative names.
    public static func shards(ofIndexAt path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = root["weight_map"] as? [String: Any] else {
            throw FlintError("\(path): not a shard index (a JSON object with a weight_map)")
        }
        var names = Set<String>()
        for (tensor, value) in map {
            guard let name = value as? String, isSafeRelativeName(name) else {
                throw FlintError("\(path): weight_map entry \(tensor) does not name a shard file in the repository")
            }
            names.insert(name)
        }
        guard !names.isEmpty else { throw FlintError("\(path): weight_map is empty") }
        return names.sorted()
    }

    static func isSafeRelativeName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix("/") && !name.contains("\\") && !name.contains("\0")
            && !name.split(separator: "/", omittingEmptySubsequences: false).contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }
}

public final class HubClient {
    public let settings: HubSettings
    /// Called while a file downloads: file name, bytes present so far, total bytes.
    public var progress: ((String, Int64, Int64) -> Void)?
    /// Called with a message the user should see (e.g. "Hub unreachable, using the cache").
    public var warning: ((String) -> Void)?
    /// How often a download that breaks or stalls is resumed before giving up.
    public var maxResumes = 5
    /// How often a metadata request (file list, HEAD) is tried while the Hub is unreachable or answers 5xx.
    public var metadataAttempts = 3
    /// Pause before a resume or a retry, growing with each attempt.
    public var retryDelay: Double = 0.5

    private let http = HubHTTP()

    public init(settings: HubSettings = HubSettings()) {
        self.settings = settings
    }

    // MARK: - Snapshot

    /// The snapshot folder for a reference with every file a conversion needs, downloading what is missing.
    public func snapshot(_ reference: HubReference, format: CheckpointFormat? = nil) throws -> HubSnapshot {
        let cache = HubCache(root: settings.cacheDirectory, reference: reference)
        if settings.offline {
            return try cachedSnapshot(cache, format: format, because: "HF_HUB_OFFLINE is set")
        }
        let info: (commit: String, files: [String])
        do {
            info = try repositoryInfo(reference)
        } catch let failure as Unreachable {
            // Like huggingface_hub: without the network, a snapshot already in the cache still serves.
            if let snapshot = try? cachedSnapshot(cache, format: format, because: failure.message) {
                warning?("\(failure.message); using the cached snapshot \(snapshot.commit) of \(reference)")
                return snapshot
            }
            throw FlintError(failure.message + "; \(reference) is not complete in the cache (\(cache.repoFolder)) "
                + "either. Check the connection, or set HF_ENDPOINT to a reachable mirror.")
        }
        let commit = info.commit
        let available = Set(info.files)
        var wanted = HubFileSelection.required + HubFileSelection.optionalFiles(in: available)
        for name in HubFileSelection.required where !available.contains(name) {
            throw FlintError("\(reference) (commit \(commit)) has no \(name): not a transformers model repository "
                + "(files: \(preview(info.files)))")
        }
        guard let weights = HubFileSelection.weights(in: available, format: format) else {
            let asked = format.map { "\($0.singleFile) or \($0.indexFile)" }
                ?? CheckpointFormat.allCases.map(\.singleFile).joined(separator: ", ")
            throw FlintError("\(reference) (commit \(commit)) has no weights Flint reads: expected \(asked) "
                + "(or a shard index); files: \(preview(info.files))")
        }
        wanted.append(weights.file)

        var files: [HubFile] = []
        for name in wanted { files.append(try fetch(name, commit: commit, cache: cache)) }
        if weights.isIndex {
            let shards = try HubFileSelection.shards(ofIndexAt: cache.pointerPath(commit: commit, file: weights.file))
            for shard in shards {
                guard available.contains(shard) else {
                    throw FlintError("\(reference): \(weights.file) lists the shard \(shard), which the repository "
                        + "does not have at commit \(commit)")
                }
                files.append(try fetch(shard, commit: commit, cache: cache))
            }
        }
        try cache.recordRef(reference.revision, commit: commit)
        return HubSnapshot(reference: reference, commit: commit, folder: cache.snapshotFolder(commit), files: files,
                           fromCacheOnly: false)
    }

    /// The snapshot as the cache has it, with no request: the revision's commit from refs/ (or the sha itself),
    /// and every file a conversion needs present.
    func cachedSnapshot(_ cache: HubCache, format: CheckpointFormat?, because why: String) throws -> HubSnapshot {
        let reference = cache.reference
        guard let commit = cache.cachedCommit(for: reference.revision) else {
            throw FlintError("\(why), and the cache has never resolved \(reference): no \(cache.refPath(reference.revision)). "
                + "Download it once with network access (unset HF_HUB_OFFLINE).")
        }
        let present = cache.snapshotFiles(commit: commit)
        guard !present.isEmpty else {
            throw FlintError("\(why), and the cache has no snapshot \(cache.snapshotFolder(commit)) for \(reference)")
        }
        let available = Set(present)
        var names = HubFileSelection.required
        for name in HubFileSelection.required where !available.contains(name) {
            throw FlintError("\(why), and the cached snapshot \(cache.snapshotFolder(commit)) has no \(name)")
        }
        names += HubFileSelection.optionalFiles(in: available)
        guard let weights = HubFileSelection.weights(in: available, format: format) else {
            throw FlintError("\(why), and the cached snapshot \(cache.snapshotFolder(commit)) has no weights"
                + (format.map { " in \($0.displayName) format" } ?? "") + " (files: \(preview(present)))")
        }
        names.append(weights.file)
        if weights.isIndex {
            for shard in try HubFileSelection.shards(ofIndexAt: cache.pointerPath(commit: commit, file: weights.file)) {
                guard available.contains(shard) else {
                    throw FlintError("\(why), and the cached snapshot \(cache.snapshotFolder(commit)) lacks the shard \(shard)")
                }
                names.append(shard)
            }
        }
        let files = names.map { name in
            HubFile(name: name, bytes: fileSize(cache.pointerPath(commit: commit, file: name)), origin: .cached, bytesTransferred: 0)
        }
        return HubSnapshot(reference: reference, commit: commit, folder: cache.snapshotFolder(commit), files: files,
                           fromCacheOnly: true)
    }

    // MARK: - Requests

    /// The Hub could not be reached (connection refused, DNS, timeout, 5xx): the cache may still serve.
    struct Unreachable: Error { let message: String }

    private var authorization: [String: String] {
        settings.token.map { ["Authorization": "Bearer \($0)"] } ?? [:]
    }

    private func url(_ path: String) throws -> URL {
        guard let url = URL(string: settings.endpoint + path), url.scheme == "http" || url.scheme == "https" else {
            throw FlintError("HF_ENDPOINT \(settings.endpoint) is not an http(s) address")
        }
        return url
    }

    /// Percent-encodes one path segment (a revision may contain '/', e.g. refs/pr/1, and is sent as one segment).
    private func segment(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    private func filePath(_ name: String) -> String {
        name.split(separator: "/").map { segment(String($0)) }.joined(separator: "/")
    }

    /// GET /api/models/{repo}/revision/{revision}: the commit sha and the repository's files.
    func repositoryInfo(_ reference: HubReference) throws -> (commit: String, files: [String]) {
        let target = try url("/api/models/\(reference.repoID)/revision/\(segment(reference.revision))")
        let response = try requestWithRetries("GET", target, headers: authorization.merging(["Accept": "application/json"]) { $1 },
                                              followRedirects: true)
        try check(response, asking: target, reference: reference, file: nil)
        guard let root = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any],
              let commit = root["sha"] as? String, HubReference.isCommitHash(commit) else {
            throw FlintError("\(target.absoluteString): the answer is not the Hub's model info (a JSON object with a "
                + "40-digit \"sha\"): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
        }
        let siblings = (root["siblings"] as? [[String: Any]] ?? []).compactMap { $0["rfilename"] as? String }
        return (commit, siblings)
    }

    /// A metadata request, tried `metadataAttempts` times while the Hub is unreachable or answers 5xx (as
    /// huggingface_hub's http_backoff does); then the last failure is thrown as `Unreachable`.
    private func requestWithRetries(_ method: String, _ target: URL, headers: [String: String],
                                    followRedirects: Bool) throws -> HTTPResponse {
        var lastFailure = ""
        for attempt in 1...max(1, metadataAttempts) {
            do {
                let response = try http.perform(method, target, headers: headers, timeout: settings.metadataTimeout,
                                                followRedirects: followRedirects)
                guard (500..<600).contains(response.status) else { return response }
                lastFailure = "\(target.absoluteString) answered \(response.status)\(serverMessage(response))"
            } catch let failure as HTTPTransportError {
                lastFailure = describe(failure)
            }
            if attempt < metadataAttempts { Thread.sleep(forTimeInterval: retryDelay * Double(attempt)) }
        }
        throw Unreachable(message: lastFailure)
    }

    /// Turns a 4xx answer into an error that says what is wrong and what to do.
    private func check(_ response: HTTPResponse, asking target: URL, reference: HubReference, file: String?) throws {
        let status = response.status
        guard status >= 400 else { return }
        let code = response.header("X-Error-Code")
        let what = file.map { "\($0) of \(reference)" } ?? "\(reference)"
        let tokenNote: String
        if let source = settings.tokenSource {
            tokenNote = "the token from \(source) was sent"
        } else {
            tokenNote = "no token was sent (set HF_TOKEN, or log in with `hf auth login`)"
        }
        let message: String
        switch (status, code) {
        case (_, "GatedRepo"), (403, _):
            message = "\(status) \(status == 403 ? "Forbidden" : "Unauthorized"): \(reference.repoID) is gated or "
                + "private and this token has no access; \(tokenNote). Accept the model's conditions at "
                + "\(settings.endpoint)/\(reference.repoID) with the account the token belongs to"
        case (401, _):
            message = "401 Unauthorized: \(reference.repoID) does not exist, or is private or gated; "
                + (settings.tokenSource == nil ? tokenNote : "\(tokenNote) and was refused (wrong or expired token?)")
        case (_, "RevisionNotFound"):
            message = "\(status): revision '\(reference.revision)' not found in \(reference.repoID)"
        case (_, "EntryNotFound"):
            message = "\(status): \(file ?? "the file") not found in \(reference.repoID)"
        case (_, "RepoNotFound"):
            message = "\(status): repository \(reference.repoID) not found"
        case (404, _):
            message = file == nil
                ? "404: repository \(reference.repoID) or its revision '\(reference.revision)' not found"
                : "404: \(file!) not found in \(reference.repoID)"
        default:
            message = "\(status) from the Hub"
        }
        throw FlintError("\(what): \(message) (\(target.absoluteString))\(serverMessage(response))")
    }

    private func serverMessage(_ response: HTTPResponse) -> String {
        if let m = response.header("X-Error-Message"), !m.isEmpty { return ": \(m)" }
        if let root = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any], let m = root["error"] as? String {
            return ": \(m)"
        }
        return ""
    }

    private func describe(_ failure: HTTPTransportError) -> String {
        switch failure {
        case .timedOut(let url, let seconds):
            return "no answer from \(url.absoluteString) within \(formatSeconds(seconds)) s (HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT)"
        case .network(let url, let reason, _):
            return "cannot reach \(url.absoluteString): \(reason)"
        case .sink(let error):
            return "cannot write the download: \(error)"
        }
    }

    // MARK: - One file

    struct FileMetadata {
        var etag: String
        var size: Int64?
        var commit: String?
        /// Where to GET the contents (the resolve URL, or where it redirected to).
        var location: URL
    }

    /// HEAD the resolve URL, following only redirects within the Hub (a renamed repository), not to a CDN, so the
    /// headers describing the file are the Hub's.
    func metadata(of file: String, commit: String, reference: HubReference) throws -> FileMetadata {
        var target = try url("/\(reference.repoID)/resolve/\(commit)/\(filePath(file))")
        let headers = authorization.merging(["Accept-Encoding": "identity"]) { $1 }
        for _ in 0..<5 {
            let response: HTTPResponse
            do {
                response = try requestWithRetries("HEAD", target, headers: headers, followRedirects: false)
            } catch let failure as Unreachable {
                throw FlintError("\(file) of \(reference): \(failure.message)")
            }
            try check(response, asking: target, reference: reference, file: file)
            var location: URL? = nil
            if (300..<400).contains(response.status) {
                guard let raw = response.header("Location"), let next = URL(string: raw, relativeTo: target)?.absoluteURL else {
                    throw FlintError("\(file) of \(reference): \(response.status) redirect without a Location (\(target.absoluteString))")
                }
                if URL(string: raw)?.host == nil {  // relative: the same Hub, follow it for the metadata
                    target = next
                    continue
                }
                location = next
            } else if response.status >= 500 {
                throw FlintError("\(file) of \(reference): \(target.absoluteString) answered \(response.status)\(serverMessage(response))")
            }
            let etag = normalizeETag(response.header("X-Linked-Etag") ?? response.header("ETag"))
            guard let etag, !etag.isEmpty, HubFileSelection.isSafeRelativeName(etag), !etag.contains("/") else {
                throw FlintError("\(file) of \(reference): the Hub sent no usable ETag (\(target.absoluteString)); "
                    + "is HF_ENDPOINT a Hugging Face Hub?")
            }
            let size = (response.header("X-Linked-Size") ?? response.header("Content-Length")).flatMap { Int64($0) }
            return FileMetadata(etag: etag, size: size, commit: response.header("X-Repo-Commit"),
                                location: location ?? target)
        }
        throw FlintError("\(file) of \(reference): too many redirects (last \(target.absoluteString))")
    }

    /// `W/"abc"` and `"abc"` → `abc`, as huggingface_hub names blobs.
    func normalizeETag(_ raw: String?) -> String? {
        guard var s = raw?.trimmingCharacters(in: .whitespaces) else { return nil }
        if s.hasPrefix("W/") { s.removeFirst(2) }
        return s.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    func fetch(_ name: String, commit: String, cache: HubCache) throws -> HubFile {
        let reference = cache.reference
        guard HubFileSelection.isSafeRelativeName(name) else {
            throw FlintError("\(reference): refusing the file name \(name) (outside the snapshot folder)")
        }
        if cache.snapshotHas(commit: commit, file: name) {
            return HubFile(name: name, bytes: fileSize(cache.pointerPath(commit: commit, file: name)), origin: .cached,
                           bytesTransferred: 0)
        }
        let meta = try metadata(of: name, commit: commit, reference: reference)
        if let served = meta.commit, served != commit {
            throw FlintError("\(name) of \(reference): asked for commit \(commit), the Hub served \(served)")
        }
        let blob = cache.blobPath(meta.etag)
        try FileManager.default.createDirectory(atPath: cache.repoFolder + "/blobs", withIntermediateDirectories: true)
        let lock = try FileLock(path: cache.lockPath(meta.etag), timeout: 600)
        defer { withExtendedLifetime(lock) {} }
        if FileManager.default.fileExists(atPath: blob), meta.size == nil || fileSize(blob) == meta.size {
            try cache.link(commit: commit, file: name, etag: meta.etag)
            return HubFile(name: name, bytes: fileSize(blob), origin: .linkedBlob, bytesTransferred: 0)
        }
        let transferred = try download(name, from: meta.location, expectedSize: meta.size, etag: meta.etag,
                                       into: blob, reference: reference)
        try cache.link(commit: commit, file: name, etag: meta.etag)
        return HubFile(name: name, bytes: fileSize(blob), origin: .downloaded, bytesTransferred: transferred)
    }

    /// GET into `{blob}.incomplete` (resuming what an earlier attempt left there), verify, rename to `blob`.
    /// Returns the bytes transferred.
    func download(_ name: String, from source: URL, expectedSize: Int64?, etag: String, into blob: String,
                  reference: HubReference) throws -> Int64 {
        let partial = blob + ".incomplete"
        let fm = FileManager.default
        if !fm.fileExists(atPath: partial) { fm.createFile(atPath: partial, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: partial) else {
            throw FlintError("\(partial): cannot write to the hub cache")
        }
        defer { try? handle.close() }
        // The token is for the Hub only: a CDN the file redirected to gets no Authorization header.
        let endpointURL = URL(string: settings.endpoint)
        let sameHost = source.host == endpointURL?.host && source.port == endpointURL?.port
        var transferred: Int64 = 0
        var failures = 0
        var lastFailure = ""
        while true {
            var present = Int64(try handle.seekToEnd())
            if let expectedSize, present > expectedSize {
                try handle.truncate(atOffset: 0)
                present = 0
            }
            if let expectedSize, present == expectedSize, expectedSize > 0 { break }
            var headers = sameHost ? authorization : [:]
            headers["Accept-Encoding"] = "identity"
            if present > 0 { headers["Range"] = "bytes=\(present)-" }
            let total = expectedSize ?? 0
            var written = present
            progress?(name, written, total)
            let resumeFrom = present
            do {
                let response = try http.perform("GET", source, headers: headers, timeout: settings.downloadTimeout,
                                                followRedirects: true, onResponse: { response in
                    // A server that ignores Range answers 200 with the whole file: start over rather than append.
                    if response.status == 200, resumeFrom > 0 {
                        try handle.truncate(atOffset: 0)
                        written = 0
                    } else if response.status == 206 {
                        let range = response.header("Content-Range") ?? ""
                        guard range.hasPrefix("bytes \(resumeFrom)-") else {
                            throw FlintError("\(name): asked for bytes from \(resumeFrom), the server sent the range '\(range)'")
                        }
                    }
                }, sink: { data in
                    try handle.write(contentsOf: data)
                    written += Int64(data.count)
                    transferred += Int64(data.count)
                    self.progress?(name, written, total)
                })
                if response.status == 416 {  // the range is past the end: what we have is wrong, start over
                    try handle.truncate(atOffset: 0)
                    failures += 1
                    lastFailure = "416 Range Not Satisfiable"
                } else if (500..<600).contains(response.status) {
                    failures += 1
                    lastFailure = "\(response.status) from \(source.absoluteString)"
                } else {
                    try check(response, asking: source, reference: reference, file: name)
                    guard (200..<300).contains(response.status) else {
                        throw FlintError("\(name) of \(reference): unexpected \(response.status) from \(source.absoluteString)")
                    }
                    if expectedSize == nil { break }
                    let now = Int64(try handle.seekToEnd())
                    if now == expectedSize { break }
                    failures += 1
                    lastFailure = "the answer ended at \(now) of \(expectedSize!) bytes"
                }
            } catch HTTPTransportError.sink(let error) {
                throw (error as? FlintError) ?? FlintError("\(partial): cannot write (\(error))")
            } catch let failure as HTTPTransportError {
                // A dropped connection or a stall: keep what arrived and ask for the rest. Progress resets the count.
                let now = Int64((try? handle.seekToEnd()) ?? 0)
                failures = now > present ? 1 : failures + 1
                lastFailure = describe(failure)
            }
            guard failures <= maxResumes else {
                throw FlintError("\(name) of \(reference): download failed after \(maxResumes) resumes: \(lastFailure). "
                    + "What arrived is kept in \(partial) and is resumed on the next run.")
            }
            warning?("\(name): \(lastFailure); resuming (\(failures)/\(maxResumes))")
            Thread.sleep(forTimeInterval: retryDelay * Double(failures))
        }
        try handle.synchronize()
        let size = fileSize(partial)
        if let expectedSize, size != expectedSize {
            throw FlintError("\(name) of \(reference): downloaded \(size) bytes, the Hub said \(expectedSize)")
        }
        if etag.count == 64, etag.allSatisfy(\.isHexDigit) {
            let actual = try SHA256Digest.hexOfFile(at: partial)
            if actual != etag.lowercased() {
                try? fm.removeItem(atPath: partial)
                throw FlintError("\(name) of \(reference): the download's sha256 is \(actual), the Hub said \(etag); "
                    + "the partial file was removed, run again to download it afresh")
            }
        }
        if rename(partial, blob) != 0 {
            throw FlintError("\(blob): cannot move the download into place (\(String(cString: strerror(errno))))")
        }
        return transferred
    }
}

func fileSize(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
}

private func preview(_ names: [String]) -> String {
    names.isEmpty ? "none" : names.prefix(12).joined(separator: ", ") + (names.count > 12 ? ", … (\(names.count) files)" : "")
}

private func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s)
}
