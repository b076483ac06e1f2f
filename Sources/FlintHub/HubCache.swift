// The hub cache as huggingface_hub lays it out (file_download.py), so either tool reuses the other's downloads:
//
//   {cache}/models--OWNER--NAME/
//     refs/{revision}                  the commit sha the branch or tag pointed to (no newline)
//     blobs/{etag}                     file contents, named by the git blob sha1 or, for LFS files, their sha256
//     blobs/{etag}.incomplete          a download under way or interrupted (resumed with an HTTP Range request)
//     snapshots/{commit}/{filename}    relative symlink → ../../blobs/{etag}
//   {cache}/.locks/models--OWNER--NAME/{etag}.lock   held (flock) while a blob is written
import Foundation
import FlintFormat
#if canImport(Glibc)
import Glibc
#endif

public struct HubCache: Sendable {
    public let root: String
    public let reference: HubReference

    public init(root: String, reference: HubReference) {
        self.root = root
        self.reference = reference
    }

    public var repoFolder: String { root + "/" + reference.cacheFolderName }
    public func blobPath(_ etag: String) -> String { repoFolder + "/blobs/" + etag }
    public func snapshotFolder(_ commit: String) -> String { repoFolder + "/snapshots/" + commit }
    public func pointerPath(commit: String, file: String) -> String { snapshotFolder(commit) + "/" + file }
    public func refPath(_ revision: String) -> String { repoFolder + "/refs/" + revision }
    public func lockPath(_ etag: String) -> String { root + "/.locks/" + reference.cacheFolderName + "/" + etag + ".lock" }

    /// The commit a revision stands for in the cache: the revision itself when it is a commit sha, else what
    /// refs/{revision} says (nil when the cache has never seen it).
    public func cachedCommit(for revision: String) -> String? {
        if HubReference.isCommitHash(revision) { return revision }
        guard let text = try? String(contentsOfFile: refPath(revision), encoding: .utf8) else { return nil }
        let commit = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return commit.isEmpty ? nil : commit
    }

    /// Records which commit a branch or tag points to (only when it changed, like huggingface_hub, so a
    /// read-only cache that is already right is not written to).
    public func recordRef(_ revision: String, commit: String) throws {
        guard revision != commit, cachedCommit(for: revision) != commit else { return }
        let path = refPath(revision)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try atomicWrite(Data(commit.utf8), to: path)
    }

    /// Whether the snapshot has this file (a symlink whose blob exists, or a plain file).
    public func snapshotHas(commit: String, file: String) -> Bool {
        FileManager.default.fileExists(atPath: pointerPath(commit: commit, file: file))
    }

    /// Points snapshots/{commit}/{file} at blobs/{etag} with a relative symlink (replacing a dangling one).
    public func link(commit: String, file: String, etag: String) throws {
        let pointer = pointerPath(commit: commit, file: file)
        let fm = FileManager.default
        try fm.createDirectory(atPath: (pointer as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let depth = file.split(separator: "/").count - 1
        let target = String(repeating: "../", count: depth + 2) + "blobs/" + etag
        var info = stat()
        if lstat(pointer, &info) == 0 {
            if (info.st_mode & S_IFMT) == S_IFLNK, (try? fm.destinationOfSymbolicLink(atPath: pointer)) == target,
               fm.fileExists(atPath: pointer) { return }
            try fm.removeItem(atPath: pointer)
        }
        try fm.createSymbolicLink(atPath: pointer, withDestinationPath: target)
    }

    /// Files of a snapshot folder, relative to it (symlinks followed; blobs that are missing are left out).
    public func snapshotFiles(commit: String) -> [String] {
        let folder = snapshotFolder(commit)
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var files: [String] = []
        while let relative = walker.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue {
                files.append(relative)
            }
        }
        return files.sorted()
    }
}

/// An exclusive advisory lock on a file (flock, as the `filelock` package huggingface_hub uses takes it), so two
/// downloads of one blob, by Flint or by Python, do not write the same .incomplete file at once.
final class FileLock {
    private let descriptor: Int32

    init(path: String, timeout: Double) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        descriptor = open(path, O_RDWR | O_CREAT, 0o644)
        guard descriptor >= 0 else { throw FlintError("\(path): cannot open the lock file (\(String(cString: strerror(errno))))") }
        let deadline = Date().addingTimeInterval(timeout)
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, Date() < deadline else {
                close(descriptor)
                throw FlintError("\(path): another download of this file holds the lock; waited \(Int(timeout)) s")
            }
            usleep(50_000)
        }
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}

/// Writes a small file through a temporary name and a rename, so readers never see half of it. The temporary is
/// registered for removal on SIGINT/SIGTERM, and one a killed process left is removed by the next write in that
/// folder (TemporaryFiles).
func atomicWrite(_ data: Data, to path: String) throws {
    let (temporary, fd) = try TemporaryFiles.create(besides: path)
    var failure: String?
    data.withUnsafeBytes { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { failure = String(cString: strerror(errno)); return }
            done += n
        }
    }
    if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
    if failure == nil && rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
    if let failure {
        TemporaryFiles.remove(temporary)
        throw FlintError("\(path): cannot write (\(failure))")
    }
    TemporaryFiles.unregister(temporary)
}
