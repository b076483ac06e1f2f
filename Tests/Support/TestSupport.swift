// What every test target needs to find the committed fixtures and to write scratch files that never outlive
// the test run.
//
// Scratch folders live under one root per test process, NSTemporaryDirectory()/flint-tests-<pid>/. The root is
// removed when the process exits, and the first use removes the roots of processes that are gone (a run that
// crashed or was killed), so /tmp does not fill up with test litter.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The package's root folder (this file is Tests/Support/TestSupport.swift).
public let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The path of a committed fixture: `fixturePath("models/demo")` is `<root>/Tests/Fixtures/models/demo`.
public func fixturePath(_ relative: String) -> String {
    packageRoot + "/Tests/Fixtures/" + relative
}

/// Whether a committed fixture exists (files that only `make fixtures` writes may be absent).
public func fixtureExists(_ relative: String) -> Bool {
    FileManager.default.fileExists(atPath: fixturePath(relative))
}

/// A new empty folder under this process's scratch root. Remove it with `defer` when the test is done; the
/// root goes when the process exits in any case.
public func scratch(_ label: String = "scratch") -> String {
    let dir = ScratchRoot.path + "/\(label)-\(UUID().uuidString)"
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    } catch {
        // The test then fails on its first write, naming the folder.
        FileHandle.standardError.write(Data("TestSupport: cannot create \(dir): \(error)\n".utf8))
    }
    return dir
}

/// This process's scratch root, created (and the roots of dead processes removed) on first use.
public enum ScratchRoot {
    static let prefix = "flint-tests-"

    public static let path: String = {
        let temporary = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
        removeRootsOfDeadProcesses(in: temporary)
        let root = temporary + prefix + "\(getpid())"
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: ScratchRoot.path) }
        return root
    }()

    /// Removes `flint-tests-<pid>` folders whose process no longer exists.
    static func removeRootsOfDeadProcesses(in temporary: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: temporary) else { return }
        for name in names where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(atPath: temporary + name)
            }
        }
    }
}

/// SplitMix64: a small seeded generator, so randomised tests draw the same values on every run and a failure
/// reproduces.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A value in 0..<n.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// The metadata JSON of a .flint file, read through the header's metadata offset and size (bytes 56 and 64)
/// alone, so a test sees what the writer stored whatever the reader would accept.
public func flintMetadata(_ path: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    func u64(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(data[at + $1]) << (8 * $1) } }
    guard data.count >= 128, u64(56) + u64(64) <= data.count,
          let metadata = try JSONSerialization.jsonObject(with: data.subdata(in: u64(56)..<(u64(56) + u64(64)))) as? [String: Any] else {
        throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: path])
    }
    return metadata
}
