// A read-only view of a zip archive held in memory (a mapped file), enough for PyTorch's zip checkpoints:
// the central directory (with ZIP64 extensions) lists the entries, and entries stored without compression
// (method 0, which is how torch writes every record) are handed out as slices of the mapping, in place.
//
// Layout facts used (PKWARE APPNOTE 6.3.x): the end-of-central-directory record (EOCD, signature 0x06054b50,
// 22 bytes + comment ≤ 65535) is at the end of the file; when a count/size/offset field there is saturated
// (0xFFFF / 0xFFFFFFFF), a ZIP64 EOCD locator (0x07064b50, 20 bytes) sits just before it and points at the ZIP64
// EOCD record (0x06064b50) with 64-bit values. Central directory headers (0x02014b50, 46 bytes + name + extra +
// comment) give sizes and the local header offset, saturated ones continued in the ZIP64 extra field (id 1), in
// the order uncompressed size, compressed size, local header offset. The data starts after the local header
// (0x04034b50, 30 bytes + its own name and extra lengths, which may differ from the central directory's).
import FlintFormat

public struct ZipEntry: Sendable, Equatable {
    public let name: String
    /// 0 = stored; anything else is compressed.
    public let method: UInt16
    public let compressedSize: Int
    public let uncompressedSize: Int
    /// Offset of the local file header.
    public let localHeaderOffset: Int
    /// Offset of the entry's data (after the local header), validated to lie inside the archive.
    public let dataOffset: Int
}

public struct ZipArchive {
    /// Where the archive came from, for messages.
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    /// Entries in central directory order.
    public let entries: [ZipEntry]
    private let index: [String: Int]

    /// Reads the central directory of the archive in `bytes` (which must stay valid while this value is used).
    public init(path: String, bytes: UnsafeRawBufferPointer) throws {
        self.path = path
        self.bytes = bytes
        let size = bytes.count
        func u16(_ o: Int) -> Int { Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        func u32(_ o: Int) -> Int { Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        func u64(_ o: Int) throws -> Int {
            let v = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self))
            guard v <= UInt64(Int.max / 2) else {
                throw FlintError(.corrupt, "\(path): zip field at byte \(o) holds \(v), far beyond any file size (corrupt ZIP64 record)")
            }
            return Int(v)
        }

        // The EOCD: scan back from the end over at most the largest comment.
        guard size >= 22 else {
            throw FlintError(.corrupt, "\(path): \(size) bytes is too short for a zip archive (the end record alone is 22 bytes)")
        }
        var eocd = -1
        var p = size - 22
        let lowest = max(0, size - 22 - 65535)
        while p >= lowest {
            if u32(p) == 0x0605_4b50 && p + 22 + u16(p + 20) == size { eocd = p; break }
            p -= 1
        }
        if eocd < 0 {
            // A comment length that does not reach the end exactly still marks the record in sloppy writers.
            p = size - 22
            while p >= lowest { if u32(p) == 0x0605_4b50 { eocd = p; break }; p -= 1 }
        }
        guard eocd >= 0 else {
            throw FlintError(.corrupt, "\(path): no zip end-of-central-directory record in the last \(size - lowest) bytes "
                + "(truncated file, or not a zip archive)")
        }
        var entryCount = u16(eocd + 10)
        var cdSize = u32(eocd + 12)
        var cdOffset = u32(eocd + 16)
        guard u16(eocd + 4) == 0 || u16(eocd + 4) == 0xFFFF else {
            throw FlintError(.unsupported, "\(path): multi-disk zip archives are not supported (disk number \(u16(eocd + 4)))")
        }
        if entryCount == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            let locator = eocd - 20
            guard locator >= 0, u32(locator) == 0x0706_4b50 else {
                throw FlintError(.corrupt, "\(path): zip end record at byte \(eocd) defers to ZIP64, but there is no ZIP64 "
                    + "locator (signature 0x07064b50) at byte \(locator)")
            }
            let record = try u64(locator + 8)
            guard record >= 0, record + 56 <= locator, u32(record) == 0x0606_4b50 else {
                throw FlintError(.corrupt, "\(path): ZIP64 locator at byte \(locator) points at byte \(record), where there is "
                    + "no ZIP64 end record (signature 0x06064b50)")
            }
            entryCount = try u64(record + 32)
            cdSize = try u64(record + 40)
            cdOffset = try u64(record + 48)
        }
        guard cdOffset <= eocd, cdSize <= eocd - cdOffset else {
            throw FlintError(.corrupt, "\(path): zip central directory [\(cdOffset), +\(cdSize)) does not fit before the end "
                + "record at byte \(eocd) (truncated or corrupt archive)")
        }
        // Each central directory header is at least 46 bytes: this bounds the count before any allocation.
        guard entryCount <= cdSize / 46 else {
            throw FlintError(.corrupt, "\(path): zip end record claims \(entryCount) entries, but the \(cdSize)-byte central "
                + "directory can hold at most \(cdSize / 46)")
        }

        var entries: [ZipEntry] = []
        entries.reserveCapacity(entryCount)
        var index: [String: Int] = [:]
        var o = cdOffset
        let cdEnd = cdOffset + cdSize
        for n in 0..<entryCount {
            guard o + 46 <= cdEnd, u32(o) == 0x0201_4b50 else {
                throw FlintError(.corrupt, "\(path): zip central directory entry \(n) at byte \(o): expected signature 0x02014b50 "
                    + "inside the directory [\(cdOffset), \(cdEnd))")
            }
            let flags = u16(o + 8)
            let method = UInt16(u16(o + 10))
            var compressed = u32(o + 20)
            var uncompressed = u32(o + 24)
            let nameLength = u16(o + 28), extraLength = u16(o + 30), commentLength = u16(o + 32)
            var localOffset = u32(o + 42)
            let nameStart = o + 46
            guard nameStart + nameLength + extraLength + commentLength <= cdEnd else {
                throw FlintError(.corrupt, "\(path): zip central directory entry \(n) at byte \(o) runs past the end of the directory")
            }
            let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<(nameStart + nameLength)])
            guard let name = String(validating: nameBytes, as: UTF8.self) else {
                throw FlintError(.corrupt, "\(path): zip entry \(n) at byte \(o) has a name that is not UTF-8")
            }
            guard flags & 1 == 0 else {
                throw FlintError(.corrupt, "\(path): zip entry \"\(name)\" is encrypted")
            }
            // ZIP64 extra field: 64-bit values for exactly the saturated 32-bit ones, in a fixed order.
            if compressed == 0xFFFF_FFFF || uncompressed == 0xFFFF_FFFF || localOffset == 0xFFFF_FFFF {
                var e = nameStart + nameLength
                let extraEnd = e + extraLength
                var found = false
                while e + 4 <= extraEnd {
                    let id = u16(e), length = u16(e + 2)
                    guard e + 4 + length <= extraEnd else { break }
                    if id == 1 {
                        var f = e + 4
                        let fEnd = f + length
                        func next() throws -> Int {
                            guard f + 8 <= fEnd else {
                                throw FlintError(.corrupt, "\(path): zip entry \"\(name)\": ZIP64 extra field is too short for "
                                    + "its saturated sizes/offset")
                            }
                            defer { f += 8 }
                            return try u64(f)
                        }
                        if uncompressed == 0xFFFF_FFFF { uncompressed = try next() }
                        if compressed == 0xFFFF_FFFF { compressed = try next() }
                        if localOffset == 0xFFFF_FFFF { localOffset = try next() }
                        found = true
                        break
                    }
                    e += 4 + length
                }
                guard found else {
                    throw FlintError(.corrupt, "\(path): zip entry \"\(name)\" has a saturated size or offset but no ZIP64 extra field")
                }
            }
            guard localOffset + 30 <= size, u32(localOffset) == 0x0403_4b50 else {
                throw FlintError(.corrupt, "\(path): zip entry \"\(name)\": no local file header (signature 0x04034b50) at "
                    + "byte \(localOffset)")
            }
            let dataOffset = localOffset + 30 + u16(localOffset + 26) + u16(localOffset + 28)
            guard dataOffset <= size, compressed <= size - dataOffset else {
                throw FlintError(.corrupt, "\(path): zip entry \"\(name)\": its \(compressed) bytes at byte \(dataOffset) run past "
                    + "the end of the \(size)-byte archive (truncated file?)")
            }
            if method == 0 && compressed != uncompressed {
                throw FlintError(.corrupt, "\(path): zip entry \"\(name)\" is stored uncompressed, but its sizes disagree "
                    + "(\(compressed) stored, \(uncompressed) declared)")
            }
            guard index[name] == nil else {
                throw FlintError(.corrupt, "\(path): zip archive has two entries named \"\(name)\"")
            }
            index[name] = entries.count
            entries.append(ZipEntry(name: name, method: method, compressedSize: compressed,
                                    uncompressedSize: uncompressed, localHeaderOffset: localOffset,
                                    dataOffset: dataOffset))
            o = nameStart + nameLength + extraLength + commentLength
        }
        self.entries = entries
        self.index = index
    }

    public func entry(_ name: String) -> ZipEntry? { index[name].map { entries[$0] } }

    /// The bytes of a stored (uncompressed) entry, in place.
    public func storedData(_ entry: ZipEntry) throws -> UnsafeRawBufferPointer {
        guard entry.method == 0 else {
            throw FlintError(.corrupt, "\(path): zip entry \"\(entry.name)\" is compressed (method \(entry.method)); only "
                + "stored entries (method 0, as torch.save writes them) can be read")
        }
        return UnsafeRawBufferPointer(rebasing: bytes[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)])
    }

    /// True when the bytes start like a zip archive (a local file header).
    public static func looksLikeZip(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && bytes.loadUnaligned(as: UInt32.self) == UInt32(0x0403_4b50).littleEndian
    }
}
