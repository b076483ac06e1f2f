// Opening models named on the command line: .flint files (plain or .flint.zst) and Hugging Face folders.

import Foundation
import FlintFormat
import FlintPack
import FlintCheckpoint

/// Opens a .flint file; a .flint.zst is unpacked once to a cache file beside it (checksums verified first).
func openFlintFile(_ path: String) throws -> FlintFile {
    let resolved = try FlintPacker.resolveModelPath(path) { unpacked in
        try FlintFile(path: unpacked).verifyChecksums()
    }
    return try FlintFile(path: resolved)
}

/// Opens any model a command can run: a .flint / .flint.zst file, or a Hugging Face model folder (or a weights
/// file with config.json beside it).
func openModel(_ path: String) throws -> WeightSource {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw FlintError("\(path): no such file or folder")
    }
    if !isDirectory.boolValue, path.hasSuffix(".flint") || path.hasSuffix(".zst") || isFlintFile(path) {
        return try openFlintFile(path)
    }
    return try HFModelFolder(path: path)
}

/// Whether the file starts with the .flint magic (so a .flint file under another name is still recognised).
func isFlintFile(_ path: String) -> Bool {
    guard let handle = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? handle.close() }
    let head = handle.readData(ofLength: FlintLayout.magic.count)
    return Array(head) == FlintLayout.magic
}
