// The cases of a tokenizer golden, as Tools/make_tokenizer_golden.py writes them for a vocabulary
// (tokenizer/<vocab>.json) and for a model folder (tokenizer/folder-<name>.json) alike.

/// One text encoded by transformers: its ids and pieces, and the ids decoded back with and without the special
/// tokens.
struct GoldenEncodeCase: Decodable {
    let text: String
    let ids: [Int]
    let pieces: [String]
    let decoded: String
    let decoded_skip_special: String
}

/// An id sequence decoded by transformers, with and without the special tokens.
struct GoldenDecodeCase: Decodable {
    let ids: [Int]
    let decoded: String
    let decoded_skip_special: String
}
