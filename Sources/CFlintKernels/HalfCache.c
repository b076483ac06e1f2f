// Binary16 for the decoder's attention caches (a quantized model keeps its keys and values in half precision):
// the scalar conversions every path's vector code agrees with bit for bit, and the portable path's store.
#include "CFlintKernels.h"

#include <string.h>

uint16_t flint_f16_from_f32(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7FFFFFFFu;
    // NaN: quiet, the payload's top bits kept (what F16C and fcvtn give).
    if (magnitude > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));
    // 65504 (0x477FE000) and beyond, infinity too: the largest finite half.
    if (magnitude >= 0x477FE000u) return (uint16_t)(sign | 0x7BFFu);
    if (magnitude < 0x38800000u) {
        // Below 2^-14: a subnormal half (units of 2^-24) or zero; 2^-25 and less round to zero (a tie goes to even).
        if (magnitude <= 0x33000000u) return sign;
        const uint32_t exponent = magnitude >> 23, mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126 - exponent, half = 1u << (shift - 1), rest = mantissa & ((1u << shift) - 1);
        uint32_t units = mantissa >> shift;
        if (rest > half || (rest == half && (units & 1))) units++;
        return (uint16_t)(sign | units);
    }
    // Normal: rebias the exponent (127 → 15), keep 10 mantissa bits, round to nearest even (a carry moves into
    // the exponent, which is the right result).
    uint32_t result = (magnitude >> 13) - (112u << 10);
    const uint32_t rest = magnitude & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (result & 1))) result++;
    return (uint16_t)(sign | result);
}

float flint_f32_from_f16(uint16_t value) {
    const uint32_t sign = (uint32_t)(value & 0x8000u) << 16;
    uint32_t exponent = (value >> 10) & 0x1Fu, mantissa = value & 0x3FFu, bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        exponent = 113;
        while (!(mantissa & 0x400u)) { mantissa <<= 1; exponent--; }
        bits = sign | (exponent << 23) | ((mantissa & 0x3FFu) << 13);
    }
    float result;
    memcpy(&result, &bits, 4);
    return result;
}

void flint_f32_to_f16(const float *x, int64_t count, uint16_t *out) {
    for (int64_t i = 0; i < count; i++) out[i] = flint_f16_from_f32(x[i]);
}

void flint_f16_to_f32(const uint16_t *x, int64_t count, float *out) {
    for (int64_t i = 0; i < count; i++) out[i] = flint_f32_from_f16(x[i]);
}
