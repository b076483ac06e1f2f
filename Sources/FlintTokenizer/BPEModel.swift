import FlintFormat
import Foundation

/// The `BPE` model of a `tokenizer.json` (byte-level BPE as CodeT5 / RoBERTa files use it, sentencepiece-style BPE
/// with byte fallback as LLaMA-derived files such as Pile-T5's), segmenting as the `tokenizers` library does
/// (models/bpe/model.rs `merge_word`, word.rs `merge_all`):
/// - a pre-token is split into characters (Unicode scalars), `continuing_subword_prefix` added to every one but the
///   first and `end_of_word_suffix` to the last; a character missing from the vocabulary becomes its `<0xNN>` byte
///   pieces with `byte_fallback` (when all of them exist), else `unk_token` (consecutive ones fused with `fuse_unk`),
///   else nothing;
/// - then merges are applied by a priority queue: lowest rank first, leftmost on ties, an entry skipped when the pair
///   at its position no longer yields the same token (the library's exact queue, including its stale-entry rule);
/// - with `ignore_merges`, a pre-token that is itself a vocabulary entry is one token.
/// `dropout` makes the library's segmentation random; such files are refused.
struct BPEModel: Sendable {
    /// Vocabulary strings by id (ids 0 ..< count, as every published file has them).
    let pieces: [String]
    private let idsByPiece: [String: Int]
    /// (left id, right id) → (rank, merged id).
    private let merges: [Pair: Merge]
    private let unknownId: Int?
    private let continuingSubwordPrefix: String?
    private let endOfWordSuffix: String?
    private let fuseUnknown: Bool
    private let byteFallback: Bool
    private let ignoreMerges: Bool
    /// `<0x00>` … `<0xFF>` ids where the vocabulary has them.
    private let byteIds: [Int?]

    struct Pair: Hashable, Sendable {
        var left: Int32
        var right: Int32
    }

    struct Merge: Sendable {
        var rank: Int32
        var id: Int32
    }

    init(_ object: [String: Any]) throws {
        guard let vocab = object["vocab"] as? [String: Any], !vocab.isEmpty else {
            throw FlintError(.corrupt, "tokenizer.json: BPE model without a \"vocab\" object")
        }
        guard vocab.count <= Int(Int32.max) else {
            throw FlintError(.corrupt, "tokenizer.json: \(vocab.count) BPE vocabulary entries do not fit in 32-bit ids")
        }
        if let dropout = (object["dropout"] as? NSNumber)?.doubleValue, dropout > 0 {
            throw FlintError(.unsupported, "tokenizer.json: BPE dropout \(dropout) makes tokenization random; only dropout null or 0 is supported")
        }
        var pieces = [String?](repeating: nil, count: vocab.count)
        var idsByPiece: [String: Int] = [:]
        idsByPiece.reserveCapacity(vocab.count)
        for (piece, value) in vocab {
            guard let id = (value as? NSNumber)?.intValue else {
                throw FlintError(.corrupt, "tokenizer.json: BPE vocab entry \"\(piece)\" has no integer id")
            }
            guard id >= 0, id < vocab.count else {
                throw FlintError(.unsupported, "tokenizer.json: BPE vocab id \(id) of \"\(piece)\" is outside 0..<\(vocab.count) (ids must be consecutive)")
            }
            guard pieces[id] == nil else {
                throw FlintError(.corrupt, "tokenizer.json: BPE vocab id \(id) is given to both \"\(pieces[id]!)\" and \"\(piece)\"")
            }
            pieces[id] = piece
            idsByPiece[piece] = id
        }
        self.pieces = pieces.map { $0! }  // vocab.count distinct ids in 0..<count: every slot is filled
        self.idsByPiece = idsByPiece

        func string(_ key: String) throws -> String? {
            switch object[key] {
            case nil, is NSNull: return nil
            case let value as String: return value
            default: throw FlintError(.corrupt, "tokenizer.json: BPE \"\(key)\" is not a string")
            }
        }
        continuingSubwordPrefix = try string("continuing_subword_prefix")
        endOfWordSuffix = try string("end_of_word_suffix")
        if let unk = try string("unk_token") {
            guard let id = idsByPiece[unk] else {
                throw FlintError(.corrupt, "tokenizer.json: BPE unk_token \"\(unk)\" is not in the vocabulary")
            }
            unknownId = id
        } else {
            unknownId = nil
        }
        fuseUnknown = object["fuse_unk"] as? Bool ?? false
        byteFallback = object["byte_fallback"] as? Bool ?? false
        ignoreMerges = object["ignore_merges"] as? Bool ?? false
        byteIds = (0..<256).map { idsByPiece[String(format: "<0x%02X>", $0)] }

        // `merges`: "a b" strings (files written before tokenizers 0.20) or [a, b] pairs. The merged token is
        // `a + b` without b's continuing-subword prefix; a pair listed twice keeps its later rank, as the
        // library's map does.
        let list = object["merges"] as? [Any] ?? []
        if object["merges"] != nil && !(object["merges"] is [Any]) && !(object["merges"] is NSNull) {
            throw FlintError(.corrupt, "tokenizer.json: BPE \"merges\" is not a list")
        }
        guard list.count <= Int(Int32.max) else {
            throw FlintError(.corrupt, "tokenizer.json: \(list.count) BPE merges do not fit in 32-bit ranks")
        }
        let prefixLength = continuingSubwordPrefix?.utf8.count ?? 0
        var merges: [Pair: Merge] = [:]
        merges.reserveCapacity(list.count)
        for (rank, item) in list.enumerated() {
            let a: String, b: String
            if let line = item as? String {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw FlintError(.corrupt, "tokenizer.json: BPE merges[\(rank)] \"\(line)\" is not two tokens separated by one space")
                }
                (a, b) = (String(parts[0]), String(parts[1]))
            } else if let pair = item as? [Any], pair.count == 2, let first = pair[0] as? String, let second = pair[1] as? String {
                (a, b) = (first, second)
            } else {
                throw FlintError(.corrupt, "tokenizer.json: BPE merges[\(rank)] is neither \"a b\" nor [a, b]")
            }
            guard let left = idsByPiece[a], let right = idsByPiece[b] else {
                throw FlintError(.corrupt, "tokenizer.json: BPE merges[\(rank)] names \"\(idsByPiece[a] == nil ? a : b)\", which is not in the vocabulary")
            }
            let rest = b.utf8.count >= prefixLength ? String(decoding: b.utf8.dropFirst(prefixLength), as: UTF8.self) : ""
            guard let merged = idsByPiece[a + rest] else {
                throw FlintError(.corrupt, "tokenizer.json: BPE merges[\(rank)] makes \"\(a + rest)\", which is not in the vocabulary")
            }
            merges[Pair(left: Int32(left), right: Int32(right))] = Merge(rank: Int32(rank), id: Int32(merged))
        }
        self.merges = merges
    }

    func piece(_ id: Int) -> String? { id >= 0 && id < pieces.count ? pieces[id] : nil }
    func id(of piece: String) -> Int? { idsByPiece[piece] }

    /// `BPE::tokenize` of one pre-token.
    func tokenize(_ text: String) -> [FastTokenizer.Token] {
        if text.isEmpty { return [] }
        if ignoreMerges, let id = idsByPiece[text] { return [FastTokenizer.Token(id: id, value: text)] }
        var symbols: [Int32] = []
        var pendingUnknown = false
        let scalars = Array(text.unicodeScalars)
        for (index, scalar) in scalars.enumerated() {
            var s = String(scalar)
            if index > 0, let prefix = continuingSubwordPrefix { s = prefix + s }
            if index == scalars.count - 1, let suffix = endOfWordSuffix { s += suffix }
            if let id = idsByPiece[s] {
                if pendingUnknown, let unknownId { symbols.append(Int32(unknownId)) }
                pendingUnknown = false
                symbols.append(Int32(id))
                continue
            }
            if byteFallback {
                let ids = s.utf8.map { byteIds[Int($0)] }
                if ids.allSatisfy({ $0 != nil }) {
                    // The library adds the byte pieces without flushing a pending unknown first: it stays pending.
                    symbols.append(contentsOf: ids.map { Int32($0!) })
                    continue
                }
            }
            guard let unknownId else { continue }  // no unk_token: the character is dropped, as the library does
            if pendingUnknown && !fuseUnknown { symbols.append(Int32(unknownId)) }
            pendingUnknown = true
        }
        if pendingUnknown, let unknownId { symbols.append(Int32(unknownId)) }
        return mergeAll(symbols).map { FastTokenizer.Token(id: Int($0), value: pieces[Int($0)]) }
    }

    /// `Word::merge_all` without dropout: a min-queue of (rank, position) over adjacent pairs; positions are the
    /// left symbol's index in the initial list, which a merge keeps.
    private func mergeAll(_ initial: [Int32]) -> [Int32] {
        let n = initial.count
        if n < 2 || merges.isEmpty { return initial }
        var id = initial
        var alive = [Bool](repeating: true, count: n)
        var previous = (0..<n).map { $0 - 1 }
        var next = (0..<n).map { $0 + 1 < n ? $0 + 1 : -1 }
        var queue = MergeQueue()
        for i in 0..<(n - 1) {
            if let merge = merges[Pair(left: id[i], right: id[i + 1])] {
                queue.push(.init(rank: merge.rank, position: Int32(i), id: merge.id))
            }
        }
        while let top = queue.pop() {
            let position = Int(top.position)
            guard alive[position], next[position] >= 0 else { continue }
            let right = next[position]
            guard let current = merges[Pair(left: id[position], right: id[right])], current.id == top.id else { continue }
            id[position] = top.id
            alive[right] = false
            next[position] = next[right]
            if next[right] >= 0 { previous[next[right]] = position }
            if previous[position] >= 0, let merge = merges[Pair(left: id[previous[position]], right: id[position])] {
                queue.push(.init(rank: merge.rank, position: Int32(previous[position]), id: merge.id))
            }
            if next[position] >= 0, let merge = merges[Pair(left: id[position], right: id[next[position]])] {
                queue.push(.init(rank: merge.rank, position: Int32(position), id: merge.id))
            }
        }
        return (0..<n).filter { alive[$0] }.map { id[$0] }
    }
}

/// A binary min-heap of merge candidates ordered by (rank, position), as the library's `BinaryHeap<Merge>`.
private struct MergeQueue {
    struct Entry {
        var rank: Int32
        var position: Int32
        var id: Int32

        func precedes(_ other: Entry) -> Bool {
            rank != other.rank ? rank < other.rank : position < other.position
        }
    }

    private var heap: [Entry] = []

    mutating func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if heap.isEmpty { return first }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var best = parent
            if left < heap.count && heap[left].precedes(heap[best]) { best = left }
            if right < heap.count && heap[right].precedes(heap[best]) { best = right }
            if best == parent { break }
            heap.swapAt(parent, best)
            parent = best
        }
        return first
    }
}
