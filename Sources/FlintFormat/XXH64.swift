// XXH64 (xxHash, 64-bit, by Yann Collet): the checksum of the .flint format (Formats/FLINT.md).
// Chosen because it runs near memory bandwidth in plain code, so checking a GB of weights costs little.
// Streaming: feed the element bytes then the scale bytes of a tensor as one stream.

public struct XXH64 {
    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1: UInt64, v2: UInt64, v3: UInt64, v4: UInt64
    private let seed: UInt64
    private var totalLength: UInt64 = 0
    /// Bytes not yet consumed by a full 32-byte stripe.
    private var pending: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var pendingCount = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ XXH64.p1 &+ XXH64.p2
        v2 = seed &+ XXH64.p2
        v3 = seed
        v4 = seed &- XXH64.p1
    }

    /// One-shot hash.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var h = XXH64(seed: seed)
        h.update(bytes)
        return h.finalize()
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) private static func mergeRound(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* p1 &+ p4
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        totalLength &+= UInt64(bytes.count)
        var p = 0
        let n = bytes.count
        // Fill a partial stripe from the previous call first.
        if pendingCount > 0 {
            withUnsafeMutableBytes(of: &pending) { buf in
                let take = min(32 - pendingCount, n)
                buf.baseAddress!.advanced(by: pendingCount).copyMemory(from: base, byteCount: take)
                pendingCount += take
                p = take
            }
            if pendingCount < 32 { return }
            let (a, b, c, d) = pending
            v1 = XXH64.round(v1, UInt64(littleEndian: a))
            v2 = XXH64.round(v2, UInt64(littleEndian: b))
            v3 = XXH64.round(v3, UInt64(littleEndian: c))
            v4 = XXH64.round(v4, UInt64(littleEndian: d))
            pendingCount = 0
        }
        var a1 = v1, a2 = v2, a3 = v3, a4 = v4
        while n - p >= 32 {
            a1 = XXH64.round(a1, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: p, as: UInt64.self)))
            a2 = XXH64.round(a2, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: p + 8, as: UInt64.self)))
            a3 = XXH64.round(a3, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: p + 16, as: UInt64.self)))
            a4 = XXH64.round(a4, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: p + 24, as: UInt64.self)))
            p += 32
        }
        v1 = a1; v2 = a2; v3 = a3; v4 = a4
        if p < n {
            let rest = n - p
            withUnsafeMutableBytes(of: &pending) { buf in
                buf.baseAddress!.copyMemory(from: base.advanced(by: p), byteCount: rest)
            }
            pendingCount = rest
        }
    }

    public func finalize() -> UInt64 {
        var h: UInt64
        if totalLength >= 32 {
            h = XXH64.rotl(v1, 1) &+ XXH64.rotl(v2, 7) &+ XXH64.rotl(v3, 12) &+ XXH64.rotl(v4, 18)
            h = XXH64.mergeRound(h, v1)
            h = XXH64.mergeRound(h, v2)
            h = XXH64.mergeRound(h, v3)
            h = XXH64.mergeRound(h, v4)
        } else {
            h = seed &+ XXH64.p5
        }
        h &+= totalLength
        var tail = pending
        let count = pendingCount
        withUnsafeBytes(of: &tail) { buf in
            var p = 0
            while count - p >= 8 {
                let k = XXH64.round(0, UInt64(littleEndian: buf.loadUnaligned(fromByteOffset: p, as: UInt64.self)))
                h = XXH64.rotl(h ^ k, 27) &* XXH64.p1 &+ XXH64.p4
                p += 8
            }
            if count - p >= 4 {
                let k = UInt64(UInt32(littleEndian: buf.loadUnaligned(fromByteOffset: p, as: UInt32.self)))
                h = XXH64.rotl(h ^ (k &* XXH64.p1), 23) &* XXH64.p2 &+ XXH64.p3
                p += 4
            }
            while p < count {
                let k = UInt64(buf[p])
                h = XXH64.rotl(h ^ (k &* XXH64.p5), 11) &* XXH64.p1
                p += 1
            }
        }
        h ^= h >> 33
        h &*= XXH64.p2
        h ^= h >> 29
        h &*= XXH64.p3
        h ^= h >> 32
        return h
    }
}
