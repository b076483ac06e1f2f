// The README's "Use as a library" program is Examples/Library/main.swift, word for word; the package builds it
// (target flint-library-example) and this test runs it on the demo model.
import Foundation
import TestSupport
import Testing

@Suite struct LibraryExampleTests {
    static let examplePath = packageRoot + "/Examples/Library/main.swift"
    static let marker = "<!-- library-example: Examples/Library/main.swift -->"

    @Test func readmeShowsTheExampleThatIsBuilt() throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let example = try String(contentsOfFile: Self.examplePath, encoding: .utf8)
        let start = try #require(readme.range(of: Self.marker), "README.md lacks \(Self.marker)")
        let afterMarker = readme[start.upperBound...]
        let open = try #require(afterMarker.range(of: "```swift\n"))
        let close = try #require(afterMarker[open.upperBound...].range(of: "\n```"))
        let block = String(afterMarker[open.upperBound..<close.lowerBound]) + "\n"
        #expect(block == example, "README's library example differs from Examples/Library/main.swift")
    }

    @Test func exampleConvertsOpensAndAnswersTheDemo() throws {
        let binary = try #require(Self.exampleBinary(), "flint-library-example is not built next to the tests")
        let dir = scratch("library-example")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [fixturePath("models/demo"), dir + "/demo-int8.flint"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(String(decoding: data, as: UTF8.self) == "blue apple red\ndog cat\nthree two one\nstar moon sun\n")
        #expect(FileManager.default.fileExists(atPath: dir + "/demo-int8.flint"), "the example converts first")
    }

    /// The example executable, next to the test bundle (it is a directory on some platforms).
    static func exampleBinary() -> String? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("flint-library-example").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }
}
