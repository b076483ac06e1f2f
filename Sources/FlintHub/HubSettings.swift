// Where the Hub is and where its files go, read from the same environment variables huggingface_hub reads
// (constants.py), so a download by either tool is found by the other.
import Foundation
import FlintFormat

public struct HubSettings: Sendable {
    /// The Hub address without a trailing slash (`HF_ENDPOINT`, default https://huggingface.co).
    public var endpoint: String
    /// The hub cache: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, with `HF_HOME` defaulting
    /// to `$XDG_CACHE_HOME/huggingface` and that to `~/.cache/huggingface`.
    public var cacheDirectory: String
    /// The bearer token: `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`), else the file `HF_TOKEN_PATH`
    /// (default `$HF_HOME/token`, which `hf auth login` writes). Nil when none is set.
    public var token: String?
    /// Where the token came from, for error messages ("HF_TOKEN", a file path), nil when there is none.
    public var tokenSource: String?
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is 1 / ON / YES / TRUE: the cache only, no network access.
    public var offline: Bool
    /// Seconds to wait for the Hub to answer before giving up (`HF_HUB_ETAG_TIMEOUT`, default 10).
    public var metadataTimeout: Double
    /// Seconds a download may stall, without a byte arriving, before it is given up (`HF_HUB_DOWNLOAD_TIMEOUT`,
    /// default 10; a stalled download is resumed a few times before failing).
    public var downloadTimeout: Double

    public init(endpoint: String, cacheDirectory: String, token: String? = nil, tokenSource: String? = nil,
                offline: Bool = false, metadataTimeout: Double = 10, downloadTimeout: Double = 10) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.cacheDirectory = cacheDirectory
        self.token = token
        self.tokenSource = tokenSource
        self.offline = offline
        self.metadataTimeout = metadataTimeout
        self.downloadTimeout = downloadTimeout
    }

    /// The settings the environment gives, as huggingface_hub would read them.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        func value(_ name: String) -> String? {
            guard let v = environment[name], !v.isEmpty else { return nil }
            return v
        }
        func expand(_ path: String) -> String {
            path.hasPrefix("~") ? (environment["HOME"] ?? NSHomeDirectory()) + path.dropFirst() : path
        }
        let home = expand(value("HF_HOME")
            ?? ((value("XDG_CACHE_HOME") ?? "~/.cache") + "/huggingface"))
        let cache = expand(value("HF_HUB_CACHE") ?? value("HUGGINGFACE_HUB_CACHE") ?? home + "/hub")
        var token: String? = nil
        var source: String? = nil
        if let t = value("HF_TOKEN") { token = t; source = "HF_TOKEN" }
        else if let t = value("HUGGING_FACE_HUB_TOKEN") { token = t; source = "HUGGING_FACE_HUB_TOKEN" }
        else {
            let path = expand(value("HF_TOKEN_PATH") ?? home + "/token")
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if !t.isEmpty { token = t; source = path }
            }
        }
        token = token?.trimmingCharacters(in: .whitespacesAndNewlines)
        func isTrue(_ name: String) -> Bool {
            guard let v = value(name) else { return false }
            return ["1", "ON", "YES", "TRUE"].contains(v.uppercased())
        }
        func seconds(_ name: String) -> Double {
            guard let v = value(name), let s = Double(v), s > 0 else { return 10 }
            return s
        }
        self.init(endpoint: value("HF_ENDPOINT") ?? "https://huggingface.co", cacheDirectory: cache,
                  token: token, tokenSource: source, offline: isTrue("HF_HUB_OFFLINE") || isTrue("TRANSFORMERS_OFFLINE"),
                  metadataTimeout: seconds("HF_HUB_ETAG_TIMEOUT"), downloadTimeout: seconds("HF_HUB_DOWNLOAD_TIMEOUT"))
    }
}

/// `hf:OWNER/NAME[@REVISION]`: a model repository on the Hub and the branch, tag or commit to take.
public struct HubReference: Sendable, Equatable, CustomStringConvertible {
    public static let scheme = "hf:"

    /// `OWNER/NAME` (or a bare `NAME` for the few old repositories without an owner).
    public let repoID: String
    /// A branch, tag or commit sha; `main` when none is given.
    public let revision: String

    public var description: String { "\(HubReference.scheme)\(repoID)" + (revision == "main" ? "" : "@\(revision)") }

    /// Whether a command-line model argument names a Hub repository rather than a local path.
    public static func isReference(_ argument: String) -> Bool { argument.hasPrefix(scheme) }

    /// Parses `hf:OWNER/NAME[@REVISION]`, with the rules huggingface_hub's `validate_repo_id` applies: letters,
    /// digits, `-`, `_`, `.`; at most 96 characters per part; no `--` or `..`; no trailing `.git`.
    public init(parsing argument: String) throws {
        guard argument.hasPrefix(HubReference.scheme) else {
            throw FlintError("\(argument): a Hub model is written hf:OWNER/NAME[@REVISION]")
        }
        var rest = Substring(argument.dropFirst(HubReference.scheme.count))
        var revision = "main"
        if let at = rest.firstIndex(of: "@") {
            revision = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
            guard !revision.isEmpty else { throw FlintError("\(argument): empty revision after @") }
        }
        let repo = String(rest)
        let parts = repo.split(separator: "/", omittingEmptySubsequences: false)
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        let valid = (1...2).contains(parts.count) && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 96 && part.allSatisfy(allowed.contains)
                && !part.hasPrefix("-") && !part.hasPrefix(".") && !part.hasSuffix("-") && !part.hasSuffix(".")
        } && !repo.contains("--") && !repo.contains("..") && !repo.hasSuffix(".git")
        guard valid else {
            throw FlintError("\(argument): '\(repo)' is not a Hub repository id (expected OWNER/NAME: letters, digits, "
                + "'-', '_', '.', at most 96 characters each, no '--' or '..')")
        }
        // A revision names a file under refs/ in the cache: refuse anything that would step outside it.
        let revisionParts = revision.split(separator: "/", omittingEmptySubsequences: false)
        guard !revisionParts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
              !revision.contains("\\"), !revision.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw FlintError("\(argument): '\(revision)' is not a usable revision (a branch, tag or commit sha)")
        }
        self.repoID = repo
        self.revision = revision
    }

    public init(repoID: String, revision: String = "main") throws {
        try self.init(parsing: "\(HubReference.scheme)\(repoID)@\(revision)")
    }

    /// The cache folder name huggingface_hub uses: `models--OWNER--NAME`.
    public var cacheFolderName: String { (["models"] + repoID.split(separator: "/").map(String.init)).joined(separator: "--") }

    /// Whether the revision is a full commit sha (40 lowercase hex digits), which needs no refs/ lookup.
    public var revisionIsCommit: Bool { HubReference.isCommitHash(revision) }

    static func isCommitHash(_ s: String) -> Bool {
        s.utf8.count == 40 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
