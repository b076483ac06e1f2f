// Opening models named on the command line: .flint files (plain or .flint.zst) and Hugging Face folders.

import Foundation
import FlintFormat
import FlintPack

/// Opens a .flint file; a .flint.zst is unpacked once to a cache file beside it (checksums verified first).
func openFlintFile(_ path: String) throws -> FlintFile {
    let resolved = try FlintPacker.resolveModelPath(path) { unpacked in
        try FlintFile(path: unpacked).verifyChecksums()
    }
    return try FlintFile(path: resolved)
}
