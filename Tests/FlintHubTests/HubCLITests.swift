// `flint convert / run / tokenize hf:OWNER/NAME` against the loopback Hub, run as the built executable with
// the Hugging Face environment variables pointing at the test server and a scratch HF_HOME.
import XCTest
@testable import FlintHub
import TestSupport

final class HubCLITests: XCTestCase {
    let commit = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
    var hub: LoopbackHub!
    var home: String!

    override func setUpWithError() throws {
        hub = try LoopbackHub()
        home = scratch("hub-cli")
        hub.add(try LoopbackHub.repo(id: "google/flan-tiny", commit: commit, folder: fixture))
    }

    override func tearDown() {
        hub.stop()
        try? FileManager.default.removeItem(atPath: home)
    }

    var fixture: String { packageRoot + "/Tests/Fixtures/models/flan-tiny" }

    func flintBinary() -> String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("flint").path) { break }
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("flint").path
    }

    struct Result { var status: Int32; var stdout: String; var stderr: String }

    /// Runs flint with HF_ENDPOINT / HF_HOME set for the test (and no HF_* variable of the caller's); gives up
    /// after 60 s.
    func flint(_ args: [String], env extra: [String: String] = [:]) throws -> Result {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("HF_") && !$0.key.hasPrefix("HUGGING") }
        env["HF_ENDPOINT"] = hub.endpoint
        env["HF_HOME"] = home
        env.merge(extra) { $1 }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: flintBinary())
        p.arguments = args
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let watchdog = DispatchWorkItem { if p.isRunning { p.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        watchdog.cancel()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func testConvertAndRunFromTheHubMatchTheLocalFolder() throws {
        let out = home + "/hub.flint"
        let converted = try flint(["convert", "hf:google/flan-tiny", "-o", out, "--json"])
        XCTAssertEqual(converted.status, 0, converted.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(converted.stdout.utf8)) as? [String: Any])
        let source = try XCTUnwrap(json["hub"] as? [String: Any])
        XCTAssertEqual(source["commit"] as? String, commit)
        XCTAssertEqual(source["repo"] as? String, "google/flan-tiny")
        XCTAssertEqual(source["snapshot"] as? String, home + "/hub/models--google--flan-tiny/snapshots/" + commit)
        let files = try XCTUnwrap(source["files"] as? [[String: Any]])
        XCTAssertEqual(Set(files.compactMap { $0["name"] as? String }),
                       ["config.json", "generation_config.json", "spiece.model", "model.safetensors"])  // not golden.json
        XCTAssertTrue(files.allSatisfy { $0["origin"] as? String == "downloaded" })
        XCTAssertTrue(converted.stderr.isEmpty, converted.stderr)  // piped: no progress bar

        // The same conversion from the folder gives a model that generates the same text.
        let local = try flint(["convert", fixture, "-o", home + "/local.flint"])
        XCTAssertEqual(local.status, 0, local.stderr)
        let prompt = "translate English to German: The house is small."
        let fromHub = try flint(["run", out, prompt, "--max-tokens", "6"])
        let fromFolder = try flint(["run", home + "/local.flint", prompt, "--max-tokens", "6"])
        XCTAssertEqual(fromHub.status, 0, fromHub.stderr)
        XCTAssertEqual(fromHub.stdout, fromFolder.stdout)

        // Again: everything comes from the cache; offline, `run` and `tokenize` take hf: too, with no request.
        let again = try flint(["convert", "hf:google/flan-tiny", "-o", home + "/again.flint", "--json"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let againFiles = try XCTUnwrap(((try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])?["hub"] as? [String: Any])?["files"] as? [[String: Any]])
        XCTAssertTrue(againFiles.allSatisfy { $0["origin"] as? String == "cached" })
        hub.clearRequests()
        let offlineRun = try flint(["run", "hf:google/flan-tiny", prompt, "--max-tokens", "6"], env: ["HF_HUB_OFFLINE": "1"])
        XCTAssertEqual(offlineRun.status, 0, offlineRun.stderr)
        let folderRun = try flint(["run", fixture, prompt, "--max-tokens", "6"])
        XCTAssertEqual(offlineRun.stdout, folderRun.stdout)
        let tokens = try flint(["tokenize", "hf:google/flan-tiny", "The house."], env: ["HF_HUB_OFFLINE": "1"])
        XCTAssertEqual(tokens.status, 0, tokens.stderr)
        XCTAssertEqual(tokens.stdout, try flint(["tokenize", fixture, "The house."]).stdout)
        XCTAssertTrue(hub.requests.isEmpty, "\(hub.requests.map(\.path))")
    }

    func testHubErrorsAreOneClearLineAndNothingIsWritten() throws {
        hub.requireToken("hf_right")
        let out = home + "/x.flint"
        let wrong = try flint(["convert", "hf:google/flan-tiny", "-o", out], env: ["HF_TOKEN": "hf_wrong"])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.hasPrefix("flint: error: hf:google/flan-tiny: 401"), wrong.stderr)
        XCTAssertTrue(wrong.stderr.contains("HF_TOKEN"), wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        hub.requireToken(nil)
        let missing = try flint(["convert", "hf:google/flan-huge", "-o", out])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("repository google/flan-huge not found"), missing.stderr)
        let bad = try flint(["convert", "hf:google//x", "-o", out])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("not a Hub repository id"), bad.stderr)
        let offline = try flint(["run", "hf:google/flan-tiny", "hello"], env: ["HF_HUB_OFFLINE": "1"])
        XCTAssertEqual(offline.status, 1)
        XCTAssertTrue(offline.stderr.contains("HF_HUB_OFFLINE"), offline.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
