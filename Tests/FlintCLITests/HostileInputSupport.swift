import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of one `flint` run measured from outside: exit status (or the signal that ended it), output, and
/// the child's own peak resident memory (VmHWM, sampled every 2 ms until it exits).
struct MeasuredRun {
    var status: Int32
    var signal: Int32?
    var stdout: String
    var stderr: String
    var maxRSSBytes: Int
    /// stderr's lines (the contract for a refused input: exactly one).
    var errorLines: [Substring] { stderr.split(separator: "\n") }
}

/// Runs `flint args…` with stdout and stderr captured in files (no pipe can fill up).
/// `whileRunning` is called with the bytes on stdout so far at each poll until it returns true.
func measuredFlint(_ args: [String], stdin: String? = nil, timeout: Double = 120,
                   whileRunning: ((Int) -> Bool)? = nil) throws -> MeasuredRun {
    let dir = NSTemporaryDirectory() + "flint-measured-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let outPath = dir + "/out", errPath = dir + "/err"
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, stdin ?? "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let argv = ([flintBinary()] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, flintBinary(), &actions, nil, argv, environ)
    guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
    var status: Int32 = 0
    var usage = rusage()
    let deadline = Date().addingTimeInterval(timeout)
    // Peak memory is the child's own VmHWM, polled: wait4's ru_maxrss would include this test process's peak,
    // which Linux carries into a vfork-spawned child's exec. Until the exec the child shares this process's memory
    // (and its /proc status says so, under this process's name), so only the status of the exec'd binary counts.
    let childName = String(URL(fileURLWithPath: flintBinary()).lastPathComponent.prefix(15))  // comm is 15 bytes
    var peakKB = 0
    var pendingCallback = whileRunning
    while true {
        if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
           status.split(separator: "\n").first(where: { $0.hasPrefix("Name:") })?.hasSuffix("\t" + childName) == true,
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
           let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") {
            peakKB = max(peakKB, kb)
        }
        let r = wait4(pid, &status, WNOHANG, &usage)
        if r == pid { break }
        if let callback = pendingCallback {
            var st = stat()
            if stat(outPath, &st) == 0, callback(Int(st.st_size)) { pendingCallback = nil }
        }
        if Date() > deadline {
            kill(pid, SIGKILL)
            _ = wait4(pid, &status, 0, &usage)
            break
        }
        usleep(2_000)
    }
    let exited = status & 0x7f == 0
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return MeasuredRun(status: exited ? (status >> 8) & 0xff : -1, signal: exited ? nil : status & 0x7f,
                       stdout: out, stderr: err, maxRSSBytes: peakKB * 1024)
}

/// Every file under `dir` (recursively), sorted, with its size and modification time, to show nothing was added,
/// removed or changed.
func snapshot(_ dir: String) -> [String: String] {
    var out: [String: String] = [:]
    let fm = FileManager.default
    guard let e = fm.enumerator(atPath: dir) else { return out }
    for case let name as String in e {
        var st = stat()
        guard lstat(dir + "/" + name, &st) == 0 else { continue }
        out[name] = "\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ino)"
    }
    return out
}

/// A copy of a fixture folder in a fresh scratch directory.
func copyFixture(_ source: String) throws -> String {
    let dir = scratch() + "/model"
    try FileManager.default.copyItem(atPath: source, toPath: dir)
    return dir
}

/// Rewrites keys of the JSON object in `path`.
func editJSON(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
    var object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    edit(&object)
    try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
}

/// The checks every refused hostile input must pass: exit 1, one line on stderr naming `names` and containing
/// `what`, no crash, bounded memory.
func isCleanRefusal(_ r: MeasuredRun, naming name: String, saying what: String, maxRSS: Int = 256 << 20) -> Bool {
    r.signal == nil && r.status == 1 && r.errorLines.count == 1 && r.stderr.contains(name) && r.stderr.contains(what)
        && r.maxRSSBytes < maxRSS
}
