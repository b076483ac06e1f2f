#include "csentencepiece.h"

#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

struct csp_processor {
    sentencepiece::SentencePieceProcessor sp;
};

namespace {

// Copies bytes into a new malloc'd, NUL-terminated buffer; NULL when out of memory.
char *copy_bytes(const char *data, size_t length) {
    char *out = static_cast<char *>(std::malloc(length + 1));
    if (out == nullptr) return nullptr;
    if (length > 0) std::memcpy(out, data, length);
    out[length] = '\0';
    return out;
}

void set_error(char **error_out, const std::string &message) {
    if (error_out != nullptr) *error_out = copy_bytes(message.data(), message.size());
}

int fail(char **error_out, const std::string &message) {
    set_error(error_out, message);
    return 1;
}

bool id_in_range(const csp_processor *processor, int32_t id) {
    return processor != nullptr && id >= 0 && id < processor->sp.GetPieceSize();
}

// Hands a std::string out as a malloc'd buffer.
int hand_out_string(const std::string &text, char **text_out, size_t *length_out, char **error_out) {
    char *copy = copy_bytes(text.data(), text.size());
    if (copy == nullptr) return fail(error_out, "out of memory");
    *text_out = copy;
    *length_out = text.size();
    return 0;
}

}  // namespace

extern "C" {

csp_processor *csp_load_from_bytes(const void *bytes, size_t length, char **error_out) {
    if (error_out != nullptr) *error_out = nullptr;
    if (bytes == nullptr && length > 0) {
        set_error(error_out, "no model bytes");
        return nullptr;
    }
    if (length == 0) {
        // An empty buffer parses as an empty ModelProto; say so plainly instead of a trainer-spec message.
        set_error(error_out, "the model is empty (0 bytes)");
        return nullptr;
    }
    try {
        std::unique_ptr<csp_processor> processor(new csp_processor());
        const auto status = processor->sp.LoadFromSerializedProto(
            std::string_view(static_cast<const char *>(bytes), length));
        if (!status.ok()) {
            set_error(error_out, status.ToString());
            return nullptr;
        }
        if (processor->sp.GetPieceSize() <= 0) {
            set_error(error_out, "the model has no pieces");
            return nullptr;
        }
        return processor.release();
    } catch (const std::exception &e) {
        set_error(error_out, std::string("sentencepiece failed to load the model: ") + e.what());
    } catch (...) {
        set_error(error_out, "sentencepiece failed to load the model (unknown C++ exception)");
    }
    return nullptr;
}

void csp_processor_free(csp_processor *processor) { delete processor; }

int32_t csp_piece_count(const csp_processor *processor) {
    return processor == nullptr ? 0 : processor->sp.GetPieceSize();
}

int32_t csp_piece_to_id(const csp_processor *processor, const char *piece, size_t length) {
    if (processor == nullptr) return -1;
    try {
        return processor->sp.PieceToId(std::string_view(piece == nullptr ? "" : piece, piece == nullptr ? 0 : length));
    } catch (...) {
        return processor->sp.unk_id();
    }
}

char *csp_id_to_piece(const csp_processor *processor, int32_t id, size_t *length_out) {
    if (!id_in_range(processor, id)) return nullptr;
    try {
        const std::string &piece = processor->sp.IdToPiece(id);
        char *copy = copy_bytes(piece.data(), piece.size());
        if (copy != nullptr && length_out != nullptr) *length_out = piece.size();
        return copy;
    } catch (...) {
        return nullptr;
    }
}

int csp_is_control(const csp_processor *processor, int32_t id) {
    return id_in_range(processor, id) && processor->sp.IsControl(id) ? 1 : 0;
}

int csp_is_unknown(const csp_processor *processor, int32_t id) {
    return id_in_range(processor, id) && processor->sp.IsUnknown(id) ? 1 : 0;
}

int32_t csp_unk_id(const csp_processor *processor) {
    return processor == nullptr ? -1 : processor->sp.unk_id();
}

int csp_encode_ids(const csp_processor *processor, const char *text, size_t length,
                   int32_t **ids_out, size_t *count_out, char **error_out) {
    if (error_out != nullptr) *error_out = nullptr;
    if (processor == nullptr) return fail(error_out, "no model loaded");
    try {
        std::vector<int> ids;
        const auto status = processor->sp.Encode(std::string_view(text == nullptr ? "" : text, text == nullptr ? 0 : length), &ids);
        if (!status.ok()) return fail(error_out, status.ToString());
        int32_t *out = static_cast<int32_t *>(std::malloc(sizeof(int32_t) * (ids.empty() ? 1 : ids.size())));
        if (out == nullptr) return fail(error_out, "out of memory");
        for (size_t i = 0; i < ids.size(); i++) out[i] = static_cast<int32_t>(ids[i]);
        *ids_out = out;
        *count_out = ids.size();
        return 0;
    } catch (const std::exception &e) {
        return fail(error_out, std::string("sentencepiece failed to encode: ") + e.what());
    } catch (...) {
        return fail(error_out, "sentencepiece failed to encode (unknown C++ exception)");
    }
}

int csp_encode_pieces(const csp_processor *processor, const char *text, size_t length,
                      csp_piece_list *pieces_out, char **error_out) {
    if (error_out != nullptr) *error_out = nullptr;
    if (processor == nullptr) return fail(error_out, "no model loaded");
    try {
        std::vector<std::string> pieces;
        const auto status = processor->sp.Encode(std::string_view(text == nullptr ? "" : text, text == nullptr ? 0 : length), &pieces);
        if (!status.ok()) return fail(error_out, status.ToString());
        size_t total = 0;
        for (const auto &piece : pieces) total += piece.size();
        char *bytes = static_cast<char *>(std::malloc(total == 0 ? 1 : total));
        size_t *lengths = static_cast<size_t *>(std::malloc(sizeof(size_t) * (pieces.empty() ? 1 : pieces.size())));
        if (bytes == nullptr || lengths == nullptr) {
            std::free(bytes);
            std::free(lengths);
            return fail(error_out, "out of memory");
        }
        size_t offset = 0;
        for (size_t i = 0; i < pieces.size(); i++) {
            if (!pieces[i].empty()) std::memcpy(bytes + offset, pieces[i].data(), pieces[i].size());
            offset += pieces[i].size();
            lengths[i] = pieces[i].size();
        }
        pieces_out->bytes = bytes;
        pieces_out->lengths = lengths;
        pieces_out->count = pieces.size();
        return 0;
    } catch (const std::exception &e) {
        return fail(error_out, std::string("sentencepiece failed to encode: ") + e.what());
    } catch (...) {
        return fail(error_out, "sentencepiece failed to encode (unknown C++ exception)");
    }
}

int csp_normalize(const csp_processor *processor, const char *text, size_t length,
                  char **normalized_out, size_t *normalized_length_out, char **error_out) {
    if (error_out != nullptr) *error_out = nullptr;
    if (processor == nullptr) return fail(error_out, "no model loaded");
    try {
        std::vector<std::string> pieces;
        const auto status = processor->sp.Encode(std::string_view(text == nullptr ? "" : text, text == nullptr ? 0 : length), &pieces);
        if (!status.ok()) return fail(error_out, status.ToString());
        std::string normalized;
        for (const auto &piece : pieces) {
            const int id = processor->sp.PieceToId(piece);
            unsigned int byte = 0;
            // A byte-fallback piece "<0xAB>" stands for one byte of the normalized text.
            if (id_in_range(processor, id) && processor->sp.IsByte(id) && piece.size() == 6 &&
                std::sscanf(piece.c_str(), "<0x%2X>", &byte) == 1) {
                normalized.push_back(static_cast<char>(byte));
            } else {
                normalized += piece;
            }
        }
        return hand_out_string(normalized, normalized_out, normalized_length_out, error_out);
    } catch (const std::exception &e) {
        return fail(error_out, std::string("sentencepiece failed to normalize: ") + e.what());
    } catch (...) {
        return fail(error_out, "sentencepiece failed to normalize (unknown C++ exception)");
    }
}

int csp_decode_ids(const csp_processor *processor, const int32_t *ids, size_t count,
                   char **text_out, size_t *length_out, char **error_out) {
    if (error_out != nullptr) *error_out = nullptr;
    if (processor == nullptr) return fail(error_out, "no model loaded");
    try {
        std::vector<int> id_vector;
        id_vector.reserve(count);
        for (size_t i = 0; i < count; i++) {
            if (!id_in_range(processor, ids[i])) {
                return fail(error_out, "id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                           " is outside the vocabulary (0..<" +
                                           std::to_string(processor->sp.GetPieceSize()) + ")");
            }
            id_vector.push_back(ids[i]);
        }
        std::string text;
        const auto status = processor->sp.Decode(id_vector, &text);
        if (!status.ok()) return fail(error_out, status.ToString());
        return hand_out_string(text, text_out, length_out, error_out);
    } catch (const std::exception &e) {
        return fail(error_out, std::string("sentencepiece failed to decode: ") + e.what());
    } catch (...) {
        return fail(error_out, "sentencepiece failed to decode (unknown C++ exception)");
    }
}

int csp_decode_pieces(const csp_processor *processor, const char *const *pieces, const size_t *lengths,
                      size_t count, char **text_out, size_t *length_out, char **error_out) {
    if (error_out != nullptr) *error_out = nullptr;
    if (processor == nullptr) return fail(error_out, "no model loaded");
    try {
        std::vector<std::string> piece_vector;
        piece_vector.reserve(count);
        for (size_t i = 0; i < count; i++) {
            piece_vector.emplace_back(pieces[i] == nullptr ? "" : pieces[i], pieces[i] == nullptr ? 0 : lengths[i]);
        }
        std::string text;
        const auto status = processor->sp.Decode(piece_vector, &text);
        if (!status.ok()) return fail(error_out, status.ToString());
        return hand_out_string(text, text_out, length_out, error_out);
    } catch (const std::exception &e) {
        return fail(error_out, std::string("sentencepiece failed to decode: ") + e.what());
    } catch (...) {
        return fail(error_out, "sentencepiece failed to decode (unknown C++ exception)");
    }
}

void csp_free(void *pointer) { std::free(pointer); }

void csp_piece_list_free(csp_piece_list *pieces) {
    if (pieces == nullptr) return;
    std::free(pieces->bytes);
    std::free(pieces->lengths);
    pieces->bytes = nullptr;
    pieces->lengths = nullptr;
    pieces->count = 0;
}

}  // extern "C"
