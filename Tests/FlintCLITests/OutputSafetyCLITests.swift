import Foundation
import Testing
import TestSupport
import FlintPack
#if canImport(Glibc)
import Glibc
#endif

/// Issue 13, items 4–7: outputs that would destroy inputs, existing outputs, litter, decompression bombs, FIFOs,
/// and a model file truncated under a running process.
@Suite struct OutputSafetyCLITests {
    func converted(_ dir: String) throws -> String {
        let out = dir + "/m.flint"
        let r = try flint("convert", flanTiny, "-o", out)
        #expect(r.status == 0, "\(r.stderr)")
        return out
    }

    func temporaries(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.contains(".tmp-") || $0.contains(".verify-") }
    }

    @Test(arguments: ["model.safetensors", "config.json", "spiece.model"])
    func convertRefusesToWriteOverAFileOfItsSource(file: String) throws {
        let model = try copyFixture(flanTiny)
        let before = snapshot(model)
        for force in [false, true] {
            let r = try measuredFlint(["convert", model, "-o", model + "/" + file] + (force ? ["--force"] : []))
            #expect(isCleanRefusal(r, naming: file, saying: "input"), "\(r)")
        }
        #expect(snapshot(model) == before)
    }

    @Test func exportPackAndUnpackRefuseTheirInputAsOutputAlsoThroughASymlink() throws {
        let dir = scratch()
        let m = try converted(dir)
        #expect(try flint("pack", m).status == 0)
        symlink(m, dir + "/link.flint")
        let before = snapshot(dir)
        for args in [["export", m, "-o", m], ["export", m, "-o", dir + "/link.flint", "--force"],
                     ["pack", m, "-o", m, "--force"], ["pack", m, "-o", dir + "/link.flint"],
                     ["unpack", m + ".zst", "-o", m + ".zst", "--force"]] {
            let r = try measuredFlint(args)
            #expect(isCleanRefusal(r, naming: args[3], saying: "input"), "\(args): \(r)")
        }
        #expect(snapshot(dir) == before)
    }

    @Test func verifyRefusesAReportPathThatIsAnInputButReplacesAnEarlierReport() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try converted(dir)
        let model = try copyFixture(flanTiny)
        defer { try? FileManager.default.removeItem(atPath: model) }
        let before = snapshot(dir), beforeModel = snapshot(model)
        for report in [m, model + "/config.json", model + "/model.safetensors"] {
            let r = try measuredFlint(["verify", m, "--reference", model, "--report", report, "--sensitivity", "never"])
            #expect(r.status == 2 && r.stderr.contains("input"), "\(report): \(r)")
        }
        #expect(snapshot(dir) == before)
        #expect(snapshot(model) == beforeModel)
        let report = dir + "/out/verify.md"
        for _ in 0..<2 {
            let r = try flint("verify", m, "--reference", flanTiny, "--report", report, "--sensitivity", "never")
            #expect(r.status == 0 || r.status == 1, "\(r.stderr)")
            #expect(FileManager.default.fileExists(atPath: report) && FileManager.default.fileExists(atPath: dir + "/out/verify-layers.svg"))
        }
    }

    @Test func anExistingOutputIsReplacedOnlyWithForce() throws {
        let dir = scratch()
        let m = try converted(dir)
        let other = dir + "/other.safetensors"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: other))
        #expect(try flint("pack", m).status == 0)
        for args in [["convert", flanTiny, "-o", other], ["export", m, "-o", other], ["pack", m, "-o", other],
                     ["unpack", m + ".zst", "-o", other]] {
            let r = try measuredFlint(args)
            #expect(isCleanRefusal(r, naming: other, saying: "--force"), "\(args): \(r)")
            #expect(try String(contentsOfFile: other, encoding: .utf8) == "keep me")
        }
        #expect(try flint("export", m, "-o", other, "--force").status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: other)).count > 1000)
        // The default outputs too: pack FILE → FILE.zst exists now; unpack FILE.zst → FILE exists.
        #expect(isCleanRefusal(try measuredFlint(["pack", m]), naming: m + ".zst", saying: "--force"))
        #expect(isCleanRefusal(try measuredFlint(["unpack", m + ".zst"]), naming: m, saying: "--force"))
        #expect(try flint("unpack", m + ".zst", "--force").status == 0)
        #expect(temporaries(dir).isEmpty)
    }

    @Test func aMissingOutputFolderIsRefusedBeforeAnyWork() throws {
        let dir = scratch()
        let r = try measuredFlint(["convert", flanTiny, "-o", dir + "/no/such/folder/m.flint"])
        #expect(isCleanRefusal(r, naming: "no/such/folder", saying: "does not exist"), "\(r)")
    }

    @Test func staleTemporariesOfDeadProcessesAreRemovedByTheNextRun() throws {
        let dir = scratch()
        // A pid that is certainly dead: a child that has exited and been reaped.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run(); p.waitUntilExit()
        let dead = p.processIdentifier
        let stale = [".m.flint.tmp-flint-\(dead)-0badf00d", ".m.flint.tmp-\(dead)-12345", "m.flint.zst.tmp-\(dead)",
                     ".other.safetensors.tmp-flint-\(dead)-deadbeef"]
        let alive = ".m.flint.tmp-flint-\(getpid())-00000001"  // this test process: alive, left alone
        let unrelated = "notes.tmp-\(dead)"
        for name in stale + [alive, unrelated] { FileManager.default.createFile(atPath: dir + "/" + name, contents: Data("x".utf8)) }
        #expect(try flint("convert", flanTiny, "-o", dir + "/m.flint").status == 0)
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: dir))
        #expect(left == [alive, unrelated, "m.flint"], "\(left)")
    }

    @Test func unpackStopsAtTheHeadersFileSize() throws {
        // A real .flint followed by 64 MB of zeros packs to a small .zst; unpacking must stop at file_size.
        let dir = scratch()
        let m = try converted(dir)
        let bomb = dir + "/bomb.flint"
        try FileManager.default.copyItem(atPath: m, toPath: bomb)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: bomb))
        try h.seekToEnd()
        let zeros = Data(count: 1 << 20)
        for _ in 0..<64 { try h.write(contentsOf: zeros) }
        try h.close()
        // `flint pack` validates first and refuses this file; libzstd (FlintPacker) packs anything.
        let packed = dir + "/bomb.flint.zst"
        #expect(try measuredFlint(["pack", bomb, "-o", packed]).status == 1)
        try FlintPacker.pack(input: bomb, output: packed, level: 1)
        let size = (try FileManager.default.attributesOfItem(atPath: packed)[.size] as? Int) ?? 0
        #expect(size < 1_000_000, "\(size)")
        // The frame records 64 MB + file_size, the header file_size: refused as soon as the header is out.
        let r = try measuredFlint(["unpack", packed, "-o", dir + "/out.flint"])
        #expect(isCleanRefusal(r, naming: packed, saying: "file_size"), "\(r)")
        // The peak is the unpacker's own (a Swift process maps a few MB at least), not zero, not the test's.
        #expect(r.maxRSSBytes > 4 << 20, "\(r.maxRSSBytes)")
        // Without a recorded content size (the zstd tool reading a pipe), decompression stops at file_size.
        if zstdToolCompress(bomb, packed) {
            let r2 = try measuredFlint(["unpack", packed, "-o", dir + "/out.flint"])
            #expect(isCleanRefusal(r2, naming: packed, saying: "more than"), "\(r2)")
        }
        // Not a .flint at all: refused after the first 128 bytes.
        try Data(count: 32 << 20).write(to: URL(fileURLWithPath: dir + "/zeros"))
        try FlintPacker.pack(input: dir + "/zeros", output: dir + "/zeros.flint.zst", level: 1)
        let r3 = try measuredFlint(["unpack", dir + "/zeros.flint.zst", "-o", dir + "/out.flint"])
        #expect(isCleanRefusal(r3, naming: "zeros.flint.zst", saying: "not a .flint"), "\(r3)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.flint"))
        #expect(temporaries(dir).isEmpty, "\(temporaries(dir))")
    }

    @Test func aFIFONamedLikeAModelIsRefusedWithoutHanging() throws {
        let model = scratch() + "/model"
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: flanTiny + "/config.json", toPath: model + "/config.json")
        #expect(mkfifo(model + "/model.safetensors", 0o644) == 0)
        for args in [["convert", model, "-o", model + "/../m.flint"], ["inspect", model + "/model.safetensors"],
                     ["run", model, "hello"]] {
            let r = try measuredFlint(args, timeout: 30)
            #expect(isCleanRefusal(r, naming: "model.safetensors", saying: "FIFO"), "\(args): \(r)")
        }
        let fifoFlint = scratch() + "/m.flint"
        #expect(mkfifo(fifoFlint, 0o644) == 0)
        let r = try measuredFlint(["inspect", fifoFlint], timeout: 30)
        #expect(isCleanRefusal(r, naming: fifoFlint, saying: "FIFO"), "\(r)")
    }

    @Test func aModelTruncatedWhileRunningIsAnErrorNotACrash() throws {
        let dir = scratch()
        let m = try converted(dir)
        let prompts = dir + "/prompts.txt"
        try String(repeating: "translate English to German: the house is wonderful and the garden is green\n", count: 4000)
            .write(toFile: prompts, atomically: true, encoding: .utf8)
        // Truncate once the first answers are out (the model is mapped and in use).
        let run = try measuredFlint(["run", m, "--input-file", prompts, "--max-tokens", "4"], timeout: 120) { stdoutBytes in
            guard stdoutBytes > 0 else { return false }
            truncate(m, 4096)
            return true
        }
        #expect(isCleanRefusal(run, naming: m, saying: "changed while in use"), "\(run.status) \(String(describing: run.signal)) \(run.stderr)")
    }
}

/// Compresses `input` to `output` without a recorded content size, with the system zstd tool when there is
/// one (false when not: the case is then not tested).
func zstdToolCompress(_ input: String, _ output: String) -> Bool {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/zstd") else { return false }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", "/usr/bin/zstd -q -f -1 < \"$0\" > \"$1\"", input, output]
    guard (try? p.run()) != nil else { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}
