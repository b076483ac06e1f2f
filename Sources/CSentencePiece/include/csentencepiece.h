#ifndef CSENTENCEPIECE_H
#define CSENTENCEPIECE_H
// A plain C interface over libsentencepiece's SentencePieceProcessor (C++), for Swift.
//
// Conventions:
// - Strings go in and out as (pointer, byte length) pairs of UTF-8, because pieces and text may hold NUL bytes.
// - Functions that can fail return a status (0 = success) and, on failure, set *error_out to a message that the
//   caller frees with csp_free. No C++ exception ever leaves this interface and nothing in it aborts: ids are
//   range-checked here because libsentencepiece does not check them in every call.
// - Every buffer handed out (strings, id arrays, piece lists) is malloc'd and released with csp_free /
//   csp_piece_list_free.

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An opaque, loaded sentencepiece model. Immutable after loading; safe to use from several threads at once.
typedef struct csp_processor csp_processor;

/// Pieces as one byte buffer plus each piece's length: piece i starts at the sum of lengths[0..<i].
typedef struct csp_piece_list {
    char *bytes;
    size_t *lengths;
    size_t count;
} csp_piece_list;

/// Loads a model from the bytes of a serialized ModelProto (the contents of `spiece.model`). The bytes are copied;
/// the caller may release them afterwards. Returns NULL and sets *error_out on failure.
csp_processor *csp_load_from_bytes(const void *bytes, size_t length, char **error_out);

/// Releases a processor (NULL is allowed).
void csp_processor_free(csp_processor *processor);

/// Number of pieces in the model.
int32_t csp_piece_count(const csp_processor *processor);

/// The id of a piece, or the model's unknown id when the piece is not in the vocabulary.
int32_t csp_piece_to_id(const csp_processor *processor, const char *piece, size_t length);

/// The piece of an id, copied into a new buffer (*length_out bytes, plus a terminating NUL).
/// Returns NULL when the id is outside 0..<csp_piece_count.
char *csp_id_to_piece(const csp_processor *processor, int32_t id, size_t *length_out);

/// 1 when the id is a control piece (such as </s> or <pad>), 0 otherwise or when out of range.
int csp_is_control(const csp_processor *processor, int32_t id);

/// 1 when the id is the unknown piece, 0 otherwise or when out of range.
int csp_is_unknown(const csp_processor *processor, int32_t id);

/// The model's unknown id (-1 if it has none).
int32_t csp_unk_id(const csp_processor *processor);

/// Encodes text (normalization and segmentation, no BOS/EOS) into ids. On success *ids_out holds *count_out ids.
int csp_encode_ids(const csp_processor *processor, const char *text, size_t length,
                   int32_t **ids_out, size_t *count_out, char **error_out);

/// Encodes text into pieces. Unknown spans come back as their surface text (as sentencepiece's EncodeAsPieces).
int csp_encode_pieces(const csp_processor *processor, const char *text, size_t length,
                      csp_piece_list *pieces_out, char **error_out);

/// The normalized form of text that the segmentation works on (NFKC-style rules of the model, spaces as U+2581,
/// the dummy prefix, extra whitespace removed), read back from sentencepiece's own encoding: the pieces of an
/// encoding concatenate to the normalized text (byte-fallback pieces stand for their byte).
int csp_normalize(const csp_processor *processor, const char *text, size_t length,
                  char **normalized_out, size_t *normalized_length_out, char **error_out);

/// Decodes ids into text. Ids outside 0..<csp_piece_count are an error.
int csp_decode_ids(const csp_processor *processor, const int32_t *ids, size_t count,
                   char **text_out, size_t *length_out, char **error_out);

/// Decodes pieces into text (sentencepiece's DecodePieces: pieces not in the vocabulary are emitted as they are).
/// Piece i is pieces[i] with lengths[i] bytes.
int csp_decode_pieces(const csp_processor *processor, const char *const *pieces, const size_t *lengths,
                      size_t count, char **text_out, size_t *length_out, char **error_out);

/// Releases a string or id array handed out by this interface (NULL is allowed).
void csp_free(void *pointer);

/// Releases the buffers of a piece list (the struct itself belongs to the caller).
void csp_piece_list_free(csp_piece_list *pieces);

#ifdef __cplusplus
}
#endif

#endif  // CSENTENCEPIECE_H
