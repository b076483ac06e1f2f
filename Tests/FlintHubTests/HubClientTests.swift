import XCTest
import FlintFormat
@testable import FlintHub
import TestSupport

final class HubClientTests: XCTestCase {
    var hub: LoopbackHub!
    var cacheRoot: String!

    let commit = "0123456789abcdef0123456789abcdef01234567"
    let otherCommit = "fedcba9876543210fedcba9876543210fedcba98"

    override func setUpWithError() throws {
        hub = try LoopbackHub()
        cacheRoot = scratch("hub")
    }

    override func tearDown() {
        hub.stop()
        try? FileManager.default.removeItem(atPath: cacheRoot)
    }

    /// Deterministic pseudo-random bytes.
    func bytes(_ count: Int, seed: UInt64) -> Data {
        var state = seed
        var data = Data(count: count)
        data.withUnsafeMutableBytes { raw in
            let p = raw.bindMemory(to: UInt8.self)
            for i in 0..<count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                p[i] = UInt8(truncatingIfNeeded: state >> 33)
            }
        }
        return data
    }

    func t5Repo(id: String = "google/flan-t5-tiny", extra: [String: Data] = [:]) -> LoopbackHub.Repo {
        var files: [String: Data] = [
            "config.json": Data(#"{"model_type": "t5", "d_model": 8}"#.utf8),
            "generation_config.json": Data(#"{"decoder_start_token_id": 0}"#.utf8),
            "spiece.model": bytes(3000, seed: 1),
            "tokenizer.json": Data(#"{"model": {"type": "Unigram"}}"#.utf8),
            "tokenizer_config.json": Data("{}".utf8),
            "special_tokens_map.json": Data(#"{"eos_token": "</s>"}"#.utf8),
            "model.safetensors": bytes(200_000, seed: 2),
            "pytorch_model.bin": bytes(50_000, seed: 3),
            "README.md": Data("# tiny".utf8),
            "onnx/encoder_model.onnx": bytes(100, seed: 4),
        ]
        files.merge(extra) { $1 }
        return LoopbackHub.Repo(id: id, commit: commit, files: files,
                                lfs: ["spiece.model", "model.safetensors", "pytorch_model.bin", "onnx/encoder_model.onnx"])
    }

    func client(token: String? = nil, offline: Bool = false, endpoint: String? = nil, timeout: Double = 5) -> HubClient {
        let settings = HubSettings(endpoint: endpoint ?? hub.endpoint, cacheDirectory: cacheRoot, token: token,
                                   tokenSource: token == nil ? nil : "HF_TOKEN", offline: offline,
                                   metadataTimeout: timeout, downloadTimeout: timeout)
        let client = HubClient(settings: settings)
        client.retryDelay = 0.01
        return client
    }

    func reference(_ s: String = "hf:google/flan-t5-tiny") throws -> HubReference { try HubReference(parsing: s) }

    var repoFolder: String { cacheRoot + "/models--google--flan-t5-tiny" }

    func contentGETs() -> [LoopbackHub.Request] { hub.requests.filter { $0.method == "GET" && !$0.path.hasPrefix("/api/") } }

    func assertThrows(_ body: @autoclosure () throws -> Any, contains pieces: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected an error containing \(pieces)", file: file, line: line)
        } catch let error as FlintError {
            for piece in pieces {
                XCTAssertTrue(error.message.contains(piece), "'\(piece)' not in: \(error.message)", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    // MARK: -

    /// CodeT5's vocab.json + merges.txt are fetched only when the repository has no tokenizer.json or spiece.model.
    func testSlowBPEFilesOnlyWithoutAFastTokenizer() {
        XCTAssertEqual(HubFileSelection.optionalFiles(in: ["config.json", "vocab.json", "merges.txt", "tokenizer_config.json"]),
                       ["tokenizer_config.json", "vocab.json", "merges.txt"])
        XCTAssertEqual(HubFileSelection.optionalFiles(in: ["tokenizer.json", "vocab.json", "merges.txt"]), ["tokenizer.json"])
        XCTAssertEqual(HubFileSelection.optionalFiles(in: ["spiece.model", "vocab.json", "merges.txt"]), ["spiece.model"])
    }

    func testDownloadsOnlyWhatConversionNeedsIntoTheHuggingFaceLayout() throws {
        let repo = t5Repo()
        hub.add(repo)
        let snapshot = try client(token: "hf_secret").snapshot(try reference())

        XCTAssertEqual(snapshot.commit, commit)
        XCTAssertEqual(snapshot.folder, repoFolder + "/snapshots/" + commit)
        XCTAssertEqual(Set(snapshot.files.map(\.name)), [
            "config.json", "generation_config.json", "spiece.model", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "model.safetensors",
        ])
        XCTAssertTrue(snapshot.files.allSatisfy { $0.origin == .downloaded })
        let fm = FileManager.default
        for file in snapshot.files {
            let pointer = snapshot.folder + "/" + file.name
            XCTAssertEqual(fm.contents(atPath: pointer), repo.files[file.name], file.name)
            let isLFS = repo.lfs.contains(file.name)
            let etag = LoopbackHub.etag(of: repo.files[file.name]!, lfs: isLFS)
            XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: pointer), "../../blobs/" + etag, file.name)
            XCTAssertEqual(file.bytes, Int64(repo.files[file.name]!.count))
        }
        XCTAssertEqual(try String(contentsOfFile: repoFolder + "/refs/main", encoding: .utf8), commit)
        let blobs = try fm.contentsOfDirectory(atPath: repoFolder + "/blobs")
        XCTAssertEqual(blobs.count, 7)
        XCTAssertFalse(blobs.contains { $0.hasSuffix(".incomplete") })
        XCTAssertFalse(fm.fileExists(atPath: snapshot.folder + "/pytorch_model.bin"))
        XCTAssertFalse(fm.fileExists(atPath: snapshot.folder + "/README.md"))

        // The token goes to the Hub, never to the CDN host an LFS file redirects to.
        let cdn = hub.requests.filter { $0.path.hasPrefix("/cdn/") }
        XCTAssertEqual(cdn.count, 2)
        XCTAssertTrue(cdn.allSatisfy { $0.headers["authorization"] == nil })
        let unauthorized = hub.requests.filter { !$0.path.hasPrefix("/cdn/") && $0.headers["authorization"] != "Bearer hf_secret" }
        XCTAssertTrue(unauthorized.isEmpty, "\(unauthorized)")

        // Again: everything is in the snapshot, only the file list is asked for.
        hub.clearRequests()
        let again = try client(token: "hf_secret").snapshot(try reference())
        XCTAssertTrue(again.files.allSatisfy { $0.origin == .cached })
        XCTAssertEqual(hub.requests.map(\.path), ["/api/models/google/flan-t5-tiny/revision/main"])
    }

    func testShardedSafetensorsFetchesTheIndexAndEveryShard() throws {
        let index = #"{"metadata": {"total_size": 3}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#
        var repo = t5Repo(extra: [
            "model.safetensors.index.json": Data(index.utf8),
            "model-00001-of-00002.safetensors": bytes(5000, seed: 7),
            "model-00002-of-00002.safetensors": bytes(6000, seed: 8),
        ])
        repo.files["model.safetensors"] = nil
        repo.lfs.formUnion(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        hub.add(repo)
        let snapshot = try client().snapshot(try reference())
        let names = snapshot.files.map(\.name)
        XCTAssertTrue(names.contains("model.safetensors.index.json"))
        XCTAssertTrue(names.contains("model-00001-of-00002.safetensors"))
        XCTAssertTrue(names.contains("model-00002-of-00002.safetensors"))
        XCTAssertFalse(names.contains("pytorch_model.bin"))
        XCTAssertEqual(FileManager.default.contents(atPath: snapshot.folder + "/model-00002-of-00002.safetensors"),
                       repo.files["model-00002-of-00002.safetensors"])
    }

    func testFallsBackToPyTorchWhenThereIsNoSafetensorsAndHonoursAnAskedFormat() throws {
        var repo = t5Repo()
        repo.files["model.safetensors"] = nil
        hub.add(repo)
        let snapshot = try client().snapshot(try reference())
        XCTAssertTrue(snapshot.files.map(\.name).contains("pytorch_model.bin"))
        assertThrows(try client().snapshot(try reference(), format: .flaxMsgpack),
                     contains: ["has no weights", "flax_model.msgpack"])
    }

    func testDroppedConnectionIsResumedWithARangeRequest() throws {
        let repo = t5Repo()
        hub.add(repo)
        hub.dropConnection(of: "model.safetensors", after: 70_000)
        let client = client()
        var warnings: [String] = []
        client.warning = { warnings.append($0) }
        let snapshot = try client.snapshot(try reference())

        let weights = try XCTUnwrap(snapshot.files.first { $0.name == "model.safetensors" })
        XCTAssertEqual(weights.origin, .downloaded)
        XCTAssertEqual(weights.bytesTransferred, 200_000)  // 70 000 before the drop + 130 000 resumed, none twice
        XCTAssertEqual(FileManager.default.contents(atPath: snapshot.folder + "/model.safetensors"), repo.files["model.safetensors"])
        let gets = contentGETs().filter { $0.path.hasSuffix("model.safetensors") }
        XCTAssertEqual(gets.map { $0.headers["range"] }, [nil, "bytes=70000-"])
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains("resuming"), warnings[0])
    }

    func testAnIncompleteBlobLeftByAnEarlierRunIsResumed() throws {
        let repo = t5Repo()
        hub.add(repo)
        let data = repo.files["model.safetensors"]!
        let blobs = repoFolder + "/blobs"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        try data.prefix(123_456).write(to: URL(fileURLWithPath: blobs + "/" + LoopbackHub.etag(of: data, lfs: true) + ".incomplete"))

        let snapshot = try client().snapshot(try reference())
        let weights = try XCTUnwrap(snapshot.files.first { $0.name == "model.safetensors" })
        XCTAssertEqual(weights.bytesTransferred, Int64(data.count - 123_456))
        XCTAssertEqual(FileManager.default.contents(atPath: snapshot.folder + "/model.safetensors"), data)
        XCTAssertEqual(contentGETs().filter { $0.path.hasSuffix("model.safetensors") }.map { $0.headers["range"] }, ["bytes=123456-"])
    }

    func testAServerThatIgnoresRangeStartsTheFileOverAndA503IsRetried() throws {
        let repo = t5Repo()
        hub.add(repo)
        hub.ignoreRange()
        hub.dropConnection(of: "model.safetensors", after: 50_000)
        hub.failWith503("spiece.model", times: 2)
        let snapshot = try client().snapshot(try reference())
        let weights = try XCTUnwrap(snapshot.files.first { $0.name == "model.safetensors" })
        XCTAssertEqual(weights.bytesTransferred, 250_000)  // 50 000, then the whole file again
        XCTAssertEqual(FileManager.default.contents(atPath: snapshot.folder + "/model.safetensors"), repo.files["model.safetensors"])
        XCTAssertEqual(FileManager.default.contents(atPath: snapshot.folder + "/spiece.model"), repo.files["spiece.model"])
        XCTAssertEqual(contentGETs().filter { $0.path.hasSuffix("spiece.model") }.count, 3)
    }

    func testTransient503sOnTheFileListAndHEADsAreRetriedThenReported() throws {
        hub.add(t5Repo())
        hub.failMetadataWith503(times: 2)
        let snapshot = try client().snapshot(try reference())  // API: 503, 503, 200
        XCTAssertEqual(snapshot.files.count, 7)
        hub.failMetadataWith503(times: 1000)
        assertThrows(try client().snapshot(try reference("hf:google/flan-t5-tiny@\(otherCommit)")),
                     contains: ["answered 503: try again", "not complete in the cache"])
    }

    func testAStalledDownloadTimesOutAndIsResumed() throws {
        hub.add(t5Repo())
        hub.stall("model.safetensors", seconds: 4)
        let started = Date()
        let snapshot = try client(timeout: 1).snapshot(try reference())
        XCTAssertLessThan(Date().timeIntervalSince(started), 4)
        XCTAssertEqual(snapshot.files.first { $0.name == "model.safetensors" }?.origin, .downloaded)
    }

    func testCorruptedLFSDownloadIsRejectedAndNothingIsLeftInTheSnapshot() throws {
        hub.add(t5Repo())
        hub.corrupt("model.safetensors")
        assertThrows(try client().snapshot(try reference()), contains: ["model.safetensors", "sha256"])
        let blobs = (try? FileManager.default.contentsOfDirectory(atPath: repoFolder + "/blobs")) ?? []
        XCTAssertFalse(blobs.contains { $0.hasSuffix(".incomplete") })
        XCTAssertFalse(FileManager.default.fileExists(atPath: repoFolder + "/snapshots/\(commit)/model.safetensors"))
        XCTAssertFalse(blobs.contains(LoopbackHub.etag(of: t5Repo().files["model.safetensors"]!, lfs: true)))
    }

    func testTokensAreCheckedAndA401SaysWhatIsWrong() throws {
        hub.add(t5Repo())
        hub.requireToken("hf_right")
        assertThrows(try client(token: "hf_wrong").snapshot(try reference()),
                     contains: ["401", "google/flan-t5-tiny", "token from HF_TOKEN was sent", "Access to this model is restricted"])
        assertThrows(try client().snapshot(try reference()), contains: ["401", "no token was sent", "HF_TOKEN"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: repoFolder + "/snapshots"))

        // The token file under HF_HOME, as `hf auth login` writes it.
        let home = cacheRoot + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try "hf_right\n".write(toFile: home + "/token", atomically: true, encoding: .utf8)
        var settings = HubSettings(environment: ["HF_HOME": home, "HF_ENDPOINT": hub.endpoint + "/"])
        XCTAssertEqual(settings.token, "hf_right")
        XCTAssertEqual(settings.endpoint, hub.endpoint)
        settings.cacheDirectory = cacheRoot
        let snapshot = try HubClient(settings: settings).snapshot(try reference())
        XCTAssertEqual(snapshot.files.count, 7)
    }

    func testMissingRepositoryRevisionAndFileAre404sThatSaySo() throws {
        hub.add(t5Repo())
        assertThrows(try client().snapshot(try reference("hf:google/flan-t5-huge")),
                     contains: ["404", "repository google/flan-t5-huge not found"])
        assertThrows(try client().snapshot(try reference("hf:google/flan-t5-tiny@v9")),
                     contains: ["404", "revision 'v9' not found"])
        hub.hide("tokenizer.json")
        assertThrows(try client().snapshot(try reference()), contains: ["404", "tokenizer.json not found"])

        var noConfig = t5Repo(id: "someone/not-a-model")
        noConfig.files["config.json"] = nil
        hub.add(noConfig)
        assertThrows(try client().snapshot(try reference("hf:someone/not-a-model")), contains: ["has no config.json"])
    }

    func testATagIsResolvedAndRecordedUnderRefs() throws {
        var repo = t5Repo()
        repo.refs["v1.0"] = commit
        hub.add(repo)
        let snapshot = try client().snapshot(try reference("hf:google/flan-t5-tiny@v1.0"))
        XCTAssertEqual(snapshot.commit, commit)
        XCTAssertEqual(try String(contentsOfFile: repoFolder + "/refs/v1.0", encoding: .utf8), commit)
        // A commit sha as the revision needs no ref.
        _ = try client().snapshot(try reference("hf:google/flan-t5-tiny@\(commit)"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: repoFolder + "/refs/\(commit)"))
    }

    func testOfflineUsesTheCacheOnly() throws {
        hub.add(t5Repo())
        assertThrows(try client(offline: true).snapshot(try reference()),
                     contains: ["HF_HUB_OFFLINE", "never resolved hf:google/flan-t5-tiny", "refs/main"])
        XCTAssertTrue(hub.requests.isEmpty)

        _ = try client().snapshot(try reference())
        hub.clearRequests()
        let offline = try client(offline: true).snapshot(try reference())
        XCTAssertTrue(offline.fromCacheOnly)
        XCTAssertEqual(offline.commit, commit)
        XCTAssertEqual(offline.files.count, 7)
        XCTAssertTrue(hub.requests.isEmpty)
        XCTAssertTrue(HubSettings(environment: ["HF_HUB_OFFLINE": "yes"]).offline)
        XCTAssertTrue(HubSettings(environment: ["TRANSFORMERS_OFFLINE": "1"]).offline)
        XCTAssertFalse(HubSettings(environment: ["HF_HUB_OFFLINE": "0"]).offline)
    }

    func testAnUnreachableHubFallsBackToACompleteCacheOrSaysItCannotConnect() throws {
        // A port nothing listens on.
        let closed = try LoopbackHub()
        let deadEndpoint = closed.endpoint
        closed.stop()
        assertThrows(try client(endpoint: deadEndpoint).snapshot(try reference()),
                     contains: ["cannot reach \(deadEndpoint)/api/models/google/flan-t5-tiny/revision/main", "not complete in the cache"])

        hub.add(t5Repo())
        _ = try client().snapshot(try reference())
        let fallback = client(endpoint: deadEndpoint)
        var warnings: [String] = []
        fallback.warning = { warnings.append($0) }
        let snapshot = try fallback.snapshot(try reference())
        XCTAssertTrue(snapshot.fromCacheOnly)
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains("using the cached snapshot"), warnings[0])
    }

    /// A cache written the way huggingface_hub writes it (blobs named by etag, relative symlinks, refs/main) is
    /// used without downloading, and a blob another commit already has is linked rather than fetched.
    func testReusesACacheLaidOutByHuggingFaceHub() throws {
        let repo = t5Repo()
        hub.add(repo)
        let fm = FileManager.default
        let snapshotFolder = repoFolder + "/snapshots/" + commit
        try fm.createDirectory(atPath: repoFolder + "/blobs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: snapshotFolder, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: repoFolder + "/refs", withIntermediateDirectories: true)
        try commit.write(toFile: repoFolder + "/refs/main", atomically: true, encoding: .utf8)
        for name in ["config.json", "generation_config.json", "spiece.model", "tokenizer.json", "tokenizer_config.json",
                     "special_tokens_map.json", "model.safetensors"] {
            let etag = LoopbackHub.etag(of: repo.files[name]!, lfs: repo.lfs.contains(name))
            try repo.files[name]!.write(to: URL(fileURLWithPath: repoFolder + "/blobs/" + etag))
            try fm.createSymbolicLink(atPath: snapshotFolder + "/" + name, withDestinationPath: "../../blobs/" + etag)
        }
        let snapshot = try client().snapshot(try reference())
        XCTAssertTrue(snapshot.files.allSatisfy { $0.origin == .cached })
        XCTAssertTrue(contentGETs().isEmpty)

        // main moves to a new commit with the same files: only HEADs, every blob linked, nothing downloaded.
        var moved = repo
        moved.commit = otherCommit
        hub.add(moved)
        hub.clearRequests()
        let next = try client().snapshot(try reference())
        XCTAssertEqual(next.commit, otherCommit)
        XCTAssertTrue(next.files.allSatisfy { $0.origin == .linkedBlob }, "\(next.files)")
        XCTAssertTrue(contentGETs().isEmpty)
        XCTAssertEqual(try String(contentsOfFile: repoFolder + "/refs/main", encoding: .utf8), otherCommit)
        XCTAssertEqual(fm.contents(atPath: next.folder + "/model.safetensors"), repo.files["model.safetensors"])
    }

    func testReferencesAndSettingsParseLikeHuggingFaceHub() throws {
        let r = try HubReference(parsing: "hf:google/flan-t5-small@refs/pr/1")
        XCTAssertEqual(r.repoID, "google/flan-t5-small")
        XCTAssertEqual(r.revision, "refs/pr/1")
        XCTAssertEqual(r.cacheFolderName, "models--google--flan-t5-small")
        XCTAssertEqual(try HubReference(parsing: "hf:t5-small").cacheFolderName, "models--t5-small")
        XCTAssertEqual(try HubReference(parsing: "hf:t5-small").revision, "main")
        for bad in ["hf:", "hf:a/b/c", "hf:a--b/c", "hf:../x", "hf:a/b@", "hf:a/b@../../etc", "hf:a b/c", "google/flan"] {
            XCTAssertThrowsError(try HubReference(parsing: bad), bad)
        }
        let env = HubSettings(environment: ["HOME": "/home/u"])
        XCTAssertEqual(env.cacheDirectory, "/home/u/.cache/huggingface/hub")
        XCTAssertEqual(env.endpoint, "https://huggingface.co")
        XCTAssertEqual(HubSettings(environment: ["XDG_CACHE_HOME": "/x"]).cacheDirectory, "/x/huggingface/hub")
        XCTAssertEqual(HubSettings(environment: ["HF_HOME": "/h", "HF_HUB_CACHE": "/c"]).cacheDirectory, "/c")
        XCTAssertEqual(HubSettings(environment: ["HF_TOKEN": " t1 ", "HF_HOME": "/nonexistent"]).token, "t1")
        XCTAssertNil(HubSettings(environment: ["HF_HOME": "/nonexistent"]).token)
    }

    func testSHA256MatchesTheStandardVectors() {
        func hex(_ s: String) -> String { var d = SHA256Digest(); d.update(Array(s.utf8)); return d.finalizeHex() }
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Fed in uneven pieces, the same digest.
        var pieces = SHA256Digest()
        let text = Array(String(repeating: "a", count: 1000).utf8)
        pieces.update(text[0..<1]); pieces.update(text[1..<63]); pieces.update(text[63..<200]); pieces.update(text[200...])
        XCTAssertEqual(pieces.finalizeHex(), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}
