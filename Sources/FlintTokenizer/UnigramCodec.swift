import Foundation

/// Segmentation and piece decoding as sentencepiece 0.2.x does them, which is what transformers' slow T5Tokenizer
/// runs (the goldens come from sentencepiece 0.2.3).
///
/// Why not libsentencepiece's own Encode/Decode: the system library is 0.1.97. Its unigram Viterbi adds scores in
/// double precision (an `auto` that becomes double), 0.2.x in float, so equal-scoring segmentations ("0"+"00" vs
/// "00"+"0") break ties differently; and 0.2.x's DecodePieces strips the leading "▁" of every piece until the
/// output is non-empty, where 0.1.97 strips only the first piece's. Normalization is the same in both versions and
/// stays in the library (see `csp_normalize`).
struct UnigramCodec {
    private static let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]  // "▁" U+2581
    /// sentencepiece's kUnkPenalty.
    private static let unknownPenalty: Float = 10

    private let types: [SentencePieceModelProto.PieceType]
    private let scores: [Float]
    private let unknownId: Int  // -1 when the model has no unknown piece
    private let unknownScore: Float
    private let byteFallback: Bool
    private let unknownSurface: [UInt8]
    private let stripsLeadingSpaceOnDecode: Bool
    private let removesExtraWhitespaces: Bool
    private let unknownPieceText: [UInt8]
    /// The segmentation vocabulary (normal, user-defined and unused pieces, as sentencepiece's trie), sorted by
    /// bytes so a prefix walk is a narrowing binary search.
    private let sortedPieces: [[UInt8]]
    private let sortedIds: [Int32]

    init(model: SentencePieceModelProto) {
        types = model.pieces.map { $0.type }
        scores = model.pieces.map { $0.score }
        unknownId = model.pieces.firstIndex { $0.type == .unknown } ?? -1
        unknownPieceText = unknownId >= 0 ? model.pieces[unknownId].bytes : []
        var minimum = Float.greatestFiniteMagnitude
        for piece in model.pieces where piece.type == .normal { minimum = min(minimum, piece.score) }
        unknownScore = minimum - Self.unknownPenalty
        byteFallback = model.byteFallback
        unknownSurface = model.unknownSurface
        stripsLeadingSpaceOnDecode = model.addDummyPrefix || model.removeExtraWhitespaces
        removesExtraWhitespaces = model.removeExtraWhitespaces
        var entries: [([UInt8], Int32)] = []
        for (id, piece) in model.pieces.enumerated() {
            switch piece.type {
            case .normal, .userDefined, .unused:
                if piece.type == .unused && piece.bytes == [0] { continue }  // sentencepiece skips the "\0" piece
                entries.append((piece.bytes, Int32(id)))
            default:
                continue
            }
        }
        entries.sort { Self.bytesPrecede($0.0, $1.0) }
        sortedPieces = entries.map { $0.0 }
        sortedIds = entries.map { $0.1 }
    }

    private func isControl(_ id: Int) -> Bool { id >= 0 && id < types.count && types[id] == .control }
    private func isByte(_ id: Int) -> Bool { id >= 0 && id < types.count && types[id] == .byte }
    private func isUnknown(_ id: Int) -> Bool {
        id == unknownId || (id >= 0 && id < types.count && types[id] == .unknown)
    }

    // MARK: - Encoding

    /// sentencepiece 0.2.x `SentencePieceProcessor::EncodeOptimized` for pieces, from normalized text: the best
    /// segmentation, unknown runs merged into one piece (or spelled as byte pieces with byte fallback).
    func encodePieces(normalized: [UInt8]) -> [[UInt8]] {
        var output: [[UInt8]] = []
        var previousIsUnknown = false
        for (start, end, id) in segment(normalized) {
            let w = Array(normalized[start..<end])
            if isControl(id) {
                output.append(w)
                previousIsUnknown = false
                continue
            }
            let unknown = isUnknown(id)
            if unknown && byteFallback {
                for byte in w { output.append(Array(Self.bytePiece(byte).utf8)) }
            } else if previousIsUnknown && unknown {
                output[output.count - 1].append(contentsOf: w)
            } else {
                output.append(w)
            }
            previousIsUnknown = unknown
        }
        return output
    }

    /// sentencepiece 0.2.x `unigram::Model::EncodeOptimized`: Viterbi over UTF-8 byte positions with float scores;
    /// on equal scores the path found first (the earlier start) stays.
    private func segment(_ normalized: [UInt8]) -> [(start: Int, end: Int, id: Int)] {
        let size = normalized.count
        if size == 0 { return [] }
        var bestScore = [Float](repeating: 0, count: size + 1)
        var bestStart = [Int](repeating: -1, count: size + 1)
        var bestId = [Int](repeating: -1, count: size + 1)
        let scoreResetThreshold: Float = 100_000
        var maxFrontier = 0
        var startsAt = 0
        while startsAt < size {
            var scoreTillHere = bestScore[startsAt]
            if scoreTillHere < -scoreResetThreshold || scoreTillHere > scoreResetThreshold {
                // Rebase scores to keep float precision on long inputs, exactly where sentencepiece does.
                let offset = scoreTillHere
                if startsAt <= maxFrontier {
                    for i in startsAt...maxFrontier where i == startsAt || bestStart[i] != -1 {
                        bestScore[i] -= offset
                    }
                }
                scoreTillHere = 0
            }
            var hasSingleNode = false
            let characterLength = min(Self.oneCharLength(normalized[startsAt]), size - startsAt)
            // Walk the sorted vocabulary one byte at a time, like sentencepiece's trie traversal.
            var low = 0
            var high = sortedPieces.count
            var keyPosition = startsAt
            while keyPosition < size {
                let depth = keyPosition - startsAt
                let byte = normalized[keyPosition]
                low = firstIndex(in: low..<high) { piece in
                    piece.count > depth && piece[depth] >= byte
                }
                high = firstIndex(in: low..<high) { piece in
                    piece.count > depth && piece[depth] > byte
                }
                keyPosition += 1
                if low >= high { break }
                guard sortedPieces[low].count == depth + 1 else { continue }
                let id = Int(sortedIds[low])
                if types[id] == .unused { continue }
                maxFrontier = max(maxFrontier, keyPosition)
                let length = keyPosition - startsAt
                let score: Float = types[id] == .userDefined ? Float(0.1 * Double(length - 1)) : scores[id]
                let candidate = score + scoreTillHere
                if bestStart[keyPosition] == -1 || candidate > bestScore[keyPosition] {
                    bestScore[keyPosition] = candidate
                    bestStart[keyPosition] = startsAt
                    bestId[keyPosition] = id
                }
                if !hasSingleNode && length == characterLength { hasSingleNode = true }
            }
            if !hasSingleNode {
                let end = startsAt + characterLength
                maxFrontier = max(maxFrontier, end)
                let candidate = unknownScore + scoreTillHere
                if bestStart[end] == -1 || candidate > bestScore[end] {
                    bestScore[end] = candidate
                    bestStart[end] = startsAt
                    bestId[end] = unknownId
                }
            }
            startsAt += characterLength
        }
        var result: [(start: Int, end: Int, id: Int)] = []
        var end = size
        while end > 0 {
            let start = bestStart[end]
            result.append((start, end, bestId[end]))
            end = start
        }
        return result.reversed()
    }

    /// Byte-wise order (a prefix first), with memcmp: the generic lexicographicallyPrecedes is slow unoptimized.
    private static func bytesPrecede(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let common = min(pa.count, pb.count)
                let order = common == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, common)
                return order != 0 ? order < 0 : pa.count < pb.count
            }
        }
    }

    /// The first index in `range` whose piece satisfies a predicate that is false, then true, along the range.
    private func firstIndex(in range: Range<Int>, where predicate: ([UInt8]) -> Bool) -> Int {
        var low = range.lowerBound
        var high = range.upperBound
        while low < high {
            let middle = (low + high) / 2
            if predicate(sortedPieces[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// sentencepiece's `string_util::OneCharLen`: the UTF-8 length announced by a lead byte.
    private static func oneCharLength(_ byte: UInt8) -> Int {
        switch byte >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    private static func bytePiece(_ byte: UInt8) -> String {
        let hex = Array("0123456789ABCDEF")
        return "<0x\(hex[Int(byte >> 4)])\(hex[Int(byte & 0xF)])>"
    }

    // MARK: - Decoding

    /// sentencepiece 0.2.x `DecodeOptimized` over pieces (what `sp_model.decode(list_of_pieces)` runs).
    /// - Parameter pieceToId: the model's piece → id lookup (unknown id for pieces not in the vocabulary).
    func decodePieces(_ pieces: [String], pieceToId: (String) -> Int) -> String {
        var output: [UInt8] = []
        var byteQueue: [UInt8] = []
        var isBeginningWhitespace = true
        for piece in pieces {
            let id = pieceToId(piece)
            let pieceBytes = Array(piece.utf8)
            if isByte(id), let byte = Self.byteOfPiece(pieceBytes) {
                byteQueue.append(byte)
                continue
            }
            Self.flush(&byteQueue, into: &output)
            if !output.isEmpty { isBeginningWhitespace = false }
            if isControl(id) { continue }
            var text = pieceBytes[...]
            var hasBeginningWhitespace = false
            if isBeginningWhitespace && stripsLeadingSpaceOnDecode {
                if text.starts(with: Self.spaceSymbol) {
                    text = text.dropFirst(Self.spaceSymbol.count)
                    hasBeginningWhitespace = true
                }
                // With extra whitespace removal every leading "▁" goes until some text has been written.
                if removesExtraWhitespaces { hasBeginningWhitespace = false }
            }
            if isUnknown(id) {
                output.append(contentsOf: id >= 0 && pieceBytes == unknownPieceText ? unknownSurface : pieceBytes)
            } else {
                Self.appendReplacingSpaceSymbols(text, to: &output)
            }
            if hasBeginningWhitespace || !output.isEmpty { isBeginningWhitespace = false }
        }
        Self.flush(&byteQueue, into: &output)
        return String(decoding: output, as: UTF8.self)
    }

    private static func appendReplacingSpaceSymbols(_ text: ArraySlice<UInt8>, to output: inout [UInt8]) {
        var i = text.startIndex
        while i < text.endIndex {
            if text[i] == 0xE2, i + 2 < text.endIndex, text[i + 1] == 0x96, text[i + 2] == 0x81 {
                output.append(0x20)
                i += 3
            } else {
                output.append(text[i])
                i += 1
            }
        }
    }

    /// "<0xAB>" → 0xAB.
    private static func byteOfPiece(_ piece: [UInt8]) -> UInt8? {
        guard piece.count == 6, piece[0] == UInt8(ascii: "<"), piece[1] == UInt8(ascii: "0"),
              piece[2] == UInt8(ascii: "x"), piece[5] == UInt8(ascii: ">"),
              let high = hexValue(piece[3]), let low = hexValue(piece[4]) else { return nil }
        return high << 4 | low
    }

    /// Uppercase only, as sentencepiece's byte pieces.
    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Writes queued byte pieces as UTF-8, each invalid byte as U+FFFD (sentencepiece's ProcessByteQueue).
    private static func flush(_ queue: inout [UInt8], into output: inout [UInt8]) {
        var offset = 0
        while offset < queue.count {
            let length = validUTF8Length(queue, at: offset)
            if length == 0 {
                output.append(contentsOf: [0xEF, 0xBF, 0xBD])
                offset += 1
            } else {
                output.append(contentsOf: queue[offset..<(offset + length)])
                offset += length
            }
        }
        queue.removeAll()
    }

    /// sentencepiece's `DecodeUTF8` acceptance: the length of the valid character at `offset`, or 0.
    private static func validUTF8Length(_ bytes: [UInt8], at offset: Int) -> Int {
        let remaining = bytes.count - offset
        let b0 = UInt32(bytes[offset])
        func trail(_ k: Int) -> UInt32? {
            let b = bytes[offset + k]
            return b & 0xC0 == 0x80 ? UInt32(b & 0x3F) : nil
        }
        func valid(_ c: UInt32) -> Bool { c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF) }
        if b0 < 0x80 { return 1 }
        if remaining >= 2, b0 & 0xE0 == 0xC0, let t1 = trail(1) {
            let c = (b0 & 0x1F) << 6 | t1
            if c >= 0x80 && valid(c) { return 2 }
        } else if remaining >= 3, b0 & 0xF0 == 0xE0, let t1 = trail(1), let t2 = trail(2) {
            let c = (b0 & 0x0F) << 12 | t1 << 6 | t2
            if c >= 0x800 && valid(c) { return 3 }
        } else if remaining >= 4, b0 & 0xF8 == 0xF0, let t1 = trail(1), let t2 = trail(2), let t3 = trail(3) {
            let c = (b0 & 0x07) << 18 | t1 << 12 | t2 << 6 | t3
            if c >= 0x10000 && valid(c) { return 4 }
        }
        return 0
    }
}
