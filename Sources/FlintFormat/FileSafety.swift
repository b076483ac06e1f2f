// What every command that reads model files or writes an output shares, so that no typo destroys an input, no
// interrupted command leaves litter, and no odd file (a FIFO, a device) hangs a reader:
//
// - `OutputTarget.check`: before any work, the output's folder must exist and be writable, the output must not
//   be a folder, must not be the same file (device + inode, symlinks followed) as any input, and must not exist
//   unless the command was given `--force`.
// - `TemporaryFiles`: every temporary output is named `.<name>.tmp-flint-<pid>-<random>` beside its
//   destination and registered while it exists; SIGINT and SIGTERM remove the registered files before the
//   process dies of the signal, and a later run writing into the same folder removes the temporaries of
//   processes that no longer exist (what SIGKILL or a power cut leaves).
// - `openRegularFile` / `readRegularFile`: inputs are opened with O_NONBLOCK and checked with fstat to be
//   regular files before a byte is read.
// - `MappedRegions`: a SIGBUS inside a mapped model file (the file was truncated under the running process)
//   becomes one error line naming the file, instead of a crash.
//
// The signal handlers only call async-signal-safe functions (unlink, write, _exit, signal, raise) on
// preallocated tables of C strings that are never freed while registered.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// MARK: Opening inputs

/// Opens `path` read-only without blocking (a FIFO or device would block `open` or `read` forever) and checks
/// it is a regular file. Returns the descriptor (blocking mode restored) and its status.
public func openRegularFile(_ path: String, what: String = "file") throws -> (fd: Int32, status: stat) {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
    guard fd >= 0 else {
        let code = errno
        throw FlintError(code == ENOENT ? .notFound : .io, "\(path): cannot open the \(what) (\(String(cString: strerror(code))))")
    }
    var st = stat()
    guard fstat(fd, &st) == 0 else {
        let message = String(cString: strerror(errno))
        close(fd)
        throw FlintError(.io, "\(path): cannot stat the \(what) (\(message))")
    }
    guard (st.st_mode & S_IFMT) == S_IFREG else {
        close(fd)
        throw FlintError(.invalidArgument, "\(path): not a regular file (\(fileKind(st.st_mode))); the \(what) must be a plain file")
    }
    let flags = fcntl(fd, F_GETFL)
    if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
    return (fd, st)
}

/// The whole content of a small regular file (config.json, spiece.model, an index), at most `limit` bytes.
public func readRegularFile(_ path: String, what: String = "file", limit: Int = 256 << 20) throws -> [UInt8] {
    let (fd, st) = try openRegularFile(path, what: what)
    defer { close(fd) }
    let size = Int(st.st_size)
    guard size <= limit else {
        throw FlintError(.corrupt, "\(path): \(size) bytes is more than a \(what) can be (at most \(limit))")
    }
    var bytes = [UInt8](repeating: 0, count: size)
    var done = 0
    while done < size {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
        if n < 0 {
            if errno == EINTR { continue }
            throw FlintError(.io, "\(path): cannot read the \(what) (\(String(cString: strerror(errno))))")
        }
        if n == 0 { break }
        done += n
    }
    return Array(bytes.prefix(done))
}

func fileKind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFDIR: return "a folder"
    case S_IFIFO: return "a FIFO"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFSOCK: return "a socket"
    case S_IFLNK: return "a symbolic link"
    default: return "not a regular file"
    }
}

// MARK: Outputs

public enum OutputTarget {
    /// Checks, before any work, that `output` can be written without destroying anything: its folder exists and
    /// is writable, it is not a folder, it is not the same file as any of `inputs` (device and inode after
    /// following symlinks; hard links count too), and it does not exist unless `force`.
    public static func check(_ output: String, inputs: [String], force: Bool) throws {
        guard !output.isEmpty, !output.hasSuffix("/") else { throw FlintError(.invalidArgument, "\(output): the output must name a file") }
        let folder = directory(of: output)
        var dst = stat()
        guard stat(folder, &dst) == 0 else {
            throw FlintError(.invalidArgument, "\(output): the output folder \(folder) does not exist")
        }
        guard (dst.st_mode & S_IFMT) == S_IFDIR else { throw FlintError(.io, "\(output): \(folder) is not a folder") }
        guard access(folder, W_OK) == 0 else {
            throw FlintError(.io, "\(output): the output folder \(folder) is not writable (\(String(cString: strerror(errno))))")
        }
        var st = stat()
        guard stat(output, &st) == 0 else { return }  // does not exist yet (or a dangling link: replaced)
        if (st.st_mode & S_IFMT) == S_IFDIR { throw FlintError(.invalidArgument, "\(output): is a folder; name the output file") }
        for input in inputs {
            var ist = stat()
            if stat(input, &ist) == 0, ist.st_dev == st.st_dev, ist.st_ino == st.st_ino {
                let via = input == output ? "" : " (\(input))"
                throw FlintError(.invalidArgument, "\(output): the output is an input file\(via); writing it would destroy the input. "
                                 + "Choose another output path")
            }
        }
        guard force else {
            throw FlintError(.invalidArgument, "\(output): already exists; pass --force to overwrite it")
        }
    }

    /// Every regular file directly in `folder` (the files a model folder's reader may open), with `folder`.
    public static func filesIn(_ folder: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else { return [folder] }
        let dir = isDirectory.boolValue ? folder : directory(of: folder)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return [folder] + names.map { dir + "/" + $0 }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

// MARK: Temporary files

public enum TemporaryFiles {
    static let marker = ".tmp-flint-"

    /// A fresh temporary name beside `path`: `.<name>.tmp-flint-<pid>-<8 hex digits>`.
    public static func name(for path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[...$0]) } ?? ""
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return "\(dir).\(base)\(marker)\(getpid())-\(String(repeating: "0", count: 8 - random.count))\(random)"
    }

    /// Creates (O_EXCL) and registers a temporary file beside `path`, first removing the stale temporaries of
    /// dead processes in that folder. Returns its name and descriptor.
    public static func create(besides path: String) throws -> (path: String, fd: Int32) {
        removeStale(in: OutputTarget.directory(of: path))
        let temp = name(for: path)
        register(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let message = String(cString: strerror(errno))
            unregister(temp)
            throw FlintError(.io, "\(path): cannot create the temporary file \(temp) (\(message))")
        }
        return (temp, fd)
    }

    // A fixed table of registered paths the signal handler can walk without locks or allocation. Slots hold
    // strdup'd C strings; a cleared slot's string is deliberately leaked (the handler may be reading it).
    static let slotCount = 256
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: slotCount)
        p.initialize(repeating: nil, count: slotCount)
        return p
    }()
    static let lock = NSLock()
    nonisolated(unsafe) static var handlersInstalled = false

    /// Registers `path` for removal on SIGINT/SIGTERM (and installs the handlers the first time).
    public static func register(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        installHandlersLocked()
        for i in 0..<slotCount where slots[i] == nil {
            slots[i] = strdup(path)
            return
        }
        // Table full: the file is still removed by the command on error, and as stale by a later run.
    }

    /// Forgets `path` (it was renamed into place or removed).
    public static func unregister(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        for i in 0..<slotCount {
            if let s = slots[i], String(cString: s) == path { slots[i] = nil; return }
        }
    }

    /// Removes `path` and forgets it.
    public static func remove(_ path: String) {
        unlink(path)
        unregister(path)
    }

    /// Unlinks every registered temporary file. Async-signal-safe.
    static func unlinkAllRegistered() {
        for i in 0..<slotCount {
            if let s = slots[i] { unlink(s) }
        }
    }

    private static func installHandlersLocked() {
        guard !handlersInstalled else { return }
        handlersInstalled = true
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            // Leave alone a signal the parent asked to ignore (nohup, background jobs) or one someone handles.
            var old = sigaction()
            guard sigaction(sig, nil, &old) == 0, isDefault(old) else { continue }
            var action = sigaction()
            #if canImport(Glibc)
            action.__sigaction_handler.sa_handler = { sig in
                TemporaryFiles.unlinkAllRegistered()
                signal(sig, SIG_DFL)
                raise(sig)
            }
            #else
            action.__sigaction_u.__sa_handler = { sig in
                TemporaryFiles.unlinkAllRegistered()
                signal(sig, SIG_DFL)
                raise(sig)
            }
            #endif
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(sig, &action, nil)
        }
    }

    private static func isDefault(_ a: sigaction) -> Bool {
        #if canImport(Glibc)
        return a.__sigaction_handler.sa_handler == nil
        #else
        return a.__sigaction_u.__sa_handler == nil
        #endif
    }

    /// Removes, in `folder`, the temporary files of flint processes that no longer exist: this version's
    /// `.<name>.tmp-flint-<pid>-<hex>` and the names earlier versions used (`.<name>.tmp-<pid>-<n>`,
    /// `<name>.tmp-<pid>`, `<name>.unpacked.flint.verify-<pid>`, for .flint, .safetensors and .zst outputs).
    /// A pid that is alive (or that we may not signal) is left alone.
    public static func removeStale(in folder: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names {
            guard let pid = staleCandidatePid(name), pid != getpid() else { continue }
            if kill(pid, 0) == -1 && errno == ESRCH {
                unlink((folder == "." ? "" : folder + "/") + name)
            }
        }
    }

    /// The pid in a temporary file name flint writes (or wrote), nil for any other name.
    static func staleCandidatePid(_ name: String) -> pid_t? {
        func digits(_ s: Substring) -> pid_t? {
            guard !s.isEmpty, s.count <= 10, s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return pid_t(s)
        }
        func isOutputName(_ s: Substring) -> Bool {
            s.hasSuffix(".flint") || s.hasSuffix(".safetensors") || s.hasSuffix(".zst")
        }
        if name.hasPrefix("."), let r = name.range(of: marker, options: .backwards) {
            let tail = name[r.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
            guard tail.count == 2, tail[1].count == 8, tail[1].allSatisfy(\.isHexDigit) else { return nil }
            return digits(tail[0])
        }
        if let r = name.range(of: ".unpacked.flint.verify-", options: .backwards) {
            return digits(name[r.upperBound...])
        }
        if let r = name.range(of: ".tmp-", options: .backwards) {
            let base = name[..<r.lowerBound]
            let tail = name[r.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
            if name.hasPrefix("."), tail.count == 2, isOutputName(base), digits(tail[1]) != nil {
                return digits(tail[0])  // .<name>.tmp-<pid>-<random>
            }
            if !name.hasPrefix("."), tail.count == 1, isOutputName(base) { return digits(tail[0]) }  // <name>.tmp-<pid>
        }
        return nil
    }
}

// MARK: SIGBUS on mapped files

/// The live read-only file mappings, for the SIGBUS handler: a fault inside one means the file shrank under us.
enum MappedRegions {
    static let slotCount = 64
    struct Slot { var start: UInt; var end: UInt; var path: UnsafeMutablePointer<CChar>?; var message: UnsafeMutablePointer<CChar>?; var messageLength: Int }
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Slot> = {
        let p = UnsafeMutablePointer<Slot>.allocate(capacity: slotCount)
        p.initialize(repeating: Slot(start: 0, end: 0, path: nil, message: nil, messageLength: 0), count: slotCount)
        return p
    }()
    static let lock = NSLock()
    nonisolated(unsafe) static var installed = false

    static func register(_ bytes: UnsafeRawBufferPointer, path: String) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        lock.lock(); defer { lock.unlock() }
        install()
        let text = "flint: error: \(path): the model file changed while in use (it was truncated or rewritten in "
            + "place); replace a model by renaming a new file over it, never by writing into it\n"
        for i in 0..<slotCount where slots[i].path == nil {
            // The message is prepared now: the handler may not allocate.
            slots[i] = Slot(start: UInt(bitPattern: base), end: UInt(bitPattern: base) + UInt(bytes.count),
                            path: strdup(path), message: strdup(text), messageLength: text.utf8.count)
            return
        }
    }

    static func unregister(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        lock.lock(); defer { lock.unlock() }
        for i in 0..<slotCount where slots[i].start == UInt(bitPattern: base) && slots[i].path != nil {
            // Strings leaked on purpose (see TemporaryFiles.slots).
            slots[i] = Slot(start: 0, end: 0, path: nil, message: nil, messageLength: 0)
            return
        }
    }

    private static func install() {
        guard !installed else { return }
        installed = true
        var action = sigaction()
        #if canImport(Glibc)
        action.__sigaction_handler.sa_sigaction = { sig, info, _ in
            let address = UInt(bitPattern: info?.pointee._sifields._sigfault.si_addr)
            for i in 0..<MappedRegions.slotCount {
                let s = MappedRegions.slots[i]
                if s.path != nil, let message = s.message, address >= s.start, address < s.end {
                    _ = write(STDERR_FILENO, message, s.messageLength)
                    TemporaryFiles.unlinkAllRegistered()
                    _exit(1)
                }
            }
            // Not ours: die of the signal as if no handler were installed.
            signal(sig, SIG_DFL)
            raise(sig)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_SIGINFO
        sigaction(SIGBUS, &action, nil)
        #endif
    }
}
