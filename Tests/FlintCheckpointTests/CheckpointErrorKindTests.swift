import Foundation
import Testing
@testable import FlintCheckpoint
import FlintFormat

/// Checkpoint readers classify their errors (FlintError.Kind) and keep their messages.
@Suite struct CheckpointErrorKindTests {
    func kind<T>(_ body: () throws -> T) -> FlintError.Kind? {
        do {
            _ = try body()
            return nil
        } catch let e as FlintError {
            return e.kind
        } catch {
            return nil
        }
    }

    @Test func folderAndConfigKinds() throws {
        let dir = TempDir()
        #expect(kind { try HFModelFolder(path: dir.path + "/absent") } == .notFound)
        #expect(kind { try HFModelFolder(path: dir.path) } == .notFound)  // no config.json
        dir.write("config.json", "{not json")
        #expect(kind { try HFConfig.parse(path: dir.path + "/config.json") } == .corrupt)
        dir.write("config.json", ConfigTexts.tiny().replacingOccurrences(of: "\"t5\"", with: "\"longt5\""))
        #expect(kind { try HFConfig.parse(path: dir.path + "/config.json") } == .unsupported)
        dir.write("config.json", ConfigTexts.tiny().replacingOccurrences(of: "\"num_heads\": 2", with: "\"num_heads\": \"two\""))
        #expect(kind { try HFConfig.parse(path: dir.path + "/config.json") } == .invalidConfig)
    }

    @Test func safetensorsKinds() throws {
        let dir = TempDir()
        let good = safetensorsBytes([.f32("a", [2], [1, 2])])
        let path = dir.write("m.safetensors", good)
        #expect(kind { try SafetensorsFile(path: path) } == nil)
        dir.write("m.safetensors", Array(good.dropLast(4)))
        #expect(kind { try SafetensorsFile(path: path) } == .corrupt)
        dir.write("m.safetensors", rawSafetensors(header: "{\"a\": ", data: []))
        #expect(kind { try SafetensorsFile(path: path) } == .corrupt)
        dir.write("m.safetensors", good)
        let file = try SafetensorsFile(path: path)
        #expect(kind { try file.tensor("b") } == .notFound)
    }
}
