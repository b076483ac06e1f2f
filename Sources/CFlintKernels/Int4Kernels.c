// Int4 kernels on the packed int4 layout (include/CFlintKernels.h, "The packed int4 layout"): AVX-512 VNNI,
// AVX2 (`vpmaddubsw`) and NEON (`sdot`, or `smull`/`smlal` without it). Output rows live in vector lanes (16 per block), activation bytes come as broadcasts, and
// every 64-byte chunk of codes is split into its low and high nibbles: two quads of four inputs × sixteen rows,
// the unsigned operand of the u8 × s8 dot product. The `+8` code offset is removed per group with the activation
// sum, and the float epilogue runs lane-wise in the portable kernel's order, so every path is bit-identical to it.
//
// Tiles: R activation rows (4, 2, 1) × one block of 16 weight rows: the block's codes (8 × k_padded bytes, 16 KB
// for d_ff 2048) are loaded once per R rows and stay in L1/L2 while the next rows of x pass, which serves decode
// (R = 1, one sequential stream of codes and one of scales) and small batches; AVX-512 prefill (≥ 8 rows) runs
// 4 rows × 3 blocks, each chunk's codes unpacked to bytes in registers once for the 4 rows.
#include "CFlintKernels.h"

#include <string.h>

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

static inline int32_t int4_load_quad(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int int4_valid_rows(const flint_packed_int4 *m, int64_t b) {
    const int64_t left = m->n - 16 * b;
    return left >= 16 ? 16 : (int)left;
}

/// One group of the activation quantizer, in plain C (the Swift quantizer's operations: the 1.5 · 2²³ trick rounds
/// to nearest, ties to even; the clamp bounds are integers, so clamping before or after rounding agrees).
static void int4_quantize_group(const float *x, int64_t count, int8_t *out, int32_t *sum, float *scale) {
    float amax = 0;
    int finite = 1;
    for (int64_t i = 0; i < count; i++) {
        const float a = x[i] < 0 ? -x[i] : x[i];
        finite &= a <= 3.4028235e38f;  // false for NaN and ±∞
        amax = a > amax ? a : amax;
    }
    if (!finite || amax == 0) {
        memset(out, 0, (size_t)count);
        *sum = 0;
        *scale = finite ? 0.0f : __builtin_nanf("");
        return;
    }
    const float inverse = 127 / amax, magic = 12582912.0f;
    int32_t total = 0;
    for (int64_t i = 0; i < count; i++) {
        float q = (x[i] * inverse + magic) - magic;
        q = q < 127 ? q : 127;
        q = q > -127 ? q : -127;
        out[i] = (int8_t)q;
        total += (int32_t)q;
    }
    *sum = total;
    *scale = amax / 127;
}

void flint_int4_quantize_activations(const float *x, int64_t rows, int64_t cols, int64_t group_size, int64_t groups,
                                     int8_t *xq, int64_t ldxq, int32_t *xsum, float *xs) {
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t g = 0; g < groups; g++) {
            const int64_t start = g * group_size, end = start + group_size < cols ? start + group_size : cols;
            int4_quantize_group(x + r * cols + start, end > start ? end - start : 0, xq + r * ldxq + start,
                                xsum + r * groups + g, xs + r * groups + g);
        }
        if (ldxq > cols) memset(xq + r * ldxq + cols, 0, (size_t)(ldxq - cols));
    }
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define I512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define I256_TARGET __attribute__((target("avx2,fma,f16c")))
#define I_INLINE static inline __attribute__((always_inline))

/// One tile: R activation rows × one block of 16 weight rows (R a literal at every call site, so the loops unroll
/// and the accumulators stay in registers). The high nibbles are masked in place (`v & 0xF0` = 16·u, no shift):
/// their products accumulate separately, 16 × the true sum, and `>> 4` restores it exactly once per group
/// (|16 · 15 · 128 · 128| fits int32). The low accumulator starts at −8·xsum, so the group's int32 `dot` is
/// `lo + (hi >> 4)`, the same integer as the contract's; two accumulators per row also halve the dependent
/// `vpdpbusd` chain of a one-row tile (decode).
I512_TARGET I_INLINE void i512_tile(const flint_packed_int4 *m, int64_t b, const int8_t *xq, int64_t ldxq,
                                    const int32_t *xsum, const float *xs, const int R, float *y, int64_t ldy) {
    const int64_t kp = m->k_padded, groups = m->groups, chunks_per_group = m->group_size / 8;
    const uint8_t *codes = m->codes + b * 8 * kp;
    const uint16_t *scales = m->scales + b * groups * 16;
    const __m512i low = _mm512_set1_epi8(0x0F), high = _mm512_set1_epi8((char)0xF0);
    __m512 sum[4];
    for (int r = 0; r < R; r++) sum[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        __m512i lo[4], hi[4];
        for (int r = 0; r < R; r++) {
            lo[r] = _mm512_set1_epi32(-8 * xsum[r * groups + g]);
            hi[r] = _mm512_setzero_si512();
        }
        for (int64_t c = g * chunks_per_group; c < (g + 1) * chunks_per_group; c++) {
            const __m512i v = _mm512_loadu_si512((const void *)(codes + 64 * c));
            // Decode (one row, codes from memory): into L2, 32 chunks ahead. A gemv microbenchmark over 64
            // flan-t5-base wi-shaped matrices (2048 x 768, 56 MB, so every call reads DRAM) on Zen 4 ran 15-25 %
            // faster than with the prefetch into L1 16 chunks ahead, as the packed int8 decode tiles found.
            if (R == 1) _mm_prefetch((const char *)(codes + 64 * c + 2048), _MM_HINT_T1);
            const __m512i vl = _mm512_and_si512(v, low), vh = _mm512_and_si512(v, high);
            for (int r = 0; r < R; r++) {
                const int8_t *x = xq + r * ldxq + 8 * c;
                lo[r] = _mm512_dpbusd_epi32(lo[r], vl, _mm512_set1_epi32(int4_load_quad(x)));
                hi[r] = _mm512_dpbusd_epi32(hi[r], vh, _mm512_set1_epi32(int4_load_quad(x + 4)));
            }
        }
        const __m512 sw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + 16 * g)));
        for (int r = 0; r < R; r++) {
            const __m512i dot = _mm512_add_epi32(lo[r], _mm512_srai_epi32(hi[r], 4));
            const __m512 s = _mm512_mul_ps(sw, _mm512_set1_ps(xs[r * groups + g]));
            sum[r] = _mm512_add_ps(sum[r], _mm512_mul_ps(_mm512_cvtepi32_ps(dot), s));
        }
    }
    const int rows = int4_valid_rows(m, b);
    const __mmask16 mask = rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rows) - 1);
    for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(y + r * ldy + 16 * b, mask, sum[r]);
}

/// The row tiles of block b: 4 rows at a time, then 2, then 1.
#define I4_ROWS(TILE)                                                                                              \
    do {                                                                                                           \
        int64_t r = 0;                                                                                             \
        for (; r + 4 <= rows; r += 4) TILE(m, b, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, 4, y + r * ldy, ldy); \
        for (; r + 2 <= rows; r += 2) TILE(m, b, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, 2, y + r * ldy, ldy); \
        for (; r < rows; r++) TILE(m, b, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, 1, y + r * ldy, ldy); \
    } while (0)

/// The prefill tile: R activation rows × C blocks. The codes are unpacked in registers once per tile and chunk
/// (`v & 0x0F`, `(v >> 4) & 0x0F`: the chunk's two input quads as bytes u ≤ 15) and feed R·C accumulators, one
/// per (row, block) and group, started at −8·xsum so each holds the contract's exact `dot`; the group epilogue
/// is the portable kernel's, `total + float(dot) · (scale_w · xs)`, lane-wise.
I512_TARGET I_INLINE void i512_prefill_tile(const flint_packed_int4 *m, int64_t b, const int C, const int8_t *xq,
                                            int64_t ldxq, const int32_t *xsum, const float *xs, const int R,
                                            float *y, int64_t ldy) {
    const int64_t kp = m->k_padded, groups = m->groups, chunks_per_group = m->group_size / 8;
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512 total[4][3];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) total[r][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        __m512i acc[4][3];
        for (int r = 0; r < R; r++) {
            const __m512i start = _mm512_set1_epi32(-8 * xsum[r * groups + g]);
            for (int c = 0; c < C; c++) acc[r][c] = start;
        }
        for (int64_t k = g * chunks_per_group; k < (g + 1) * chunks_per_group; k++) {
            __m512i lo[3], hi[3];
            for (int c = 0; c < C; c++) {
                const __m512i v = _mm512_loadu_si512((const void *)(m->codes + (b + c) * 8 * kp + 64 * k));
                lo[c] = _mm512_and_si512(v, low);
                hi[c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            }
            for (int r = 0; r < R; r++) {
                const int8_t *x = xq + r * ldxq + 8 * k;
                const __m512i xa = _mm512_set1_epi32(int4_load_quad(x)), xb = _mm512_set1_epi32(int4_load_quad(x + 4));
                for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[r][c], lo[c], xa), hi[c], xb);
            }
        }
        for (int c = 0; c < C; c++) {
            const __m512 sw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(m->scales + ((b + c) * groups + g) * 16)));
            for (int r = 0; r < R; r++) {
                const __m512 s = _mm512_mul_ps(sw, _mm512_set1_ps(xs[r * groups + g]));
                total[r][c] = _mm512_add_ps(total[r][c], _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][c]), s));
            }
        }
    }
    for (int c = 0; c < C; c++) {
        const int rows = int4_valid_rows(m, b + c);
        const __mmask16 mask = rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rows) - 1);
        for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(y + r * ldy + 16 * (b + c), mask, total[r][c]);
    }
}

// Prefill tiles: 4 rows × 3 blocks. 12 accumulators, 12 float sums and the 6 unpacked code vectors (nearly) fill
// the 32 registers; per 8 inputs, 3 code loads and 9 unpack operations feed 24 `vpdpbusd`. Against the packed int8
// kernel at 512 rows (flan-t5-base encoder-layer shapes, one thread, Zen 4, load 4-6, 5 × 12 alternating rounds)
// the GEMM time ratio int4 / int8 went 1.37 → 1.35 (median; 6 × 2, 8 × 2 and 3 × 4 tiles measured 1.40-1.43).
// It cannot reach int8's: per 32 inputs of a (row, block) the group epilogue's two multiplies run on the same
// pipes as the eight `vpdpbusd` (measured on Zen 4: 8 vpdpbusd 2.33 ns, + 4 vmulps 3.64 ns; + 4 vaddps and
// 4 vcvtdq2ps 2.69 ns), so g32 costs ≥ 10 dot-product slots where int8's per-row epilogue costs 8.
enum { I4P_R = 4, I4P_C = 3 };

/// Activation rows per pass over the weight blocks: about 256 KB of them, so they stay in L2.
static inline int64_t int4_x_block(int64_t ldxq) {
    const int64_t rows = (256 * 1024) / (ldxq > 0 ? ldxq : 1);
    return rows < 8 ? 8 : rows;
}

// Fewer than 8 rows: one block at a time, one sequential stream of codes: from memory (decode: the weights are not
// in cache), four interleaved block streams measured slower than one (flan-t5-base 2048 × 768, 1 row: 37 → 67 µs),
// and a block is in L1 while the row tiles pass.
// 8 rows and more (prefill): 4 × 3 tiles over activation rows blocked to about 256 KB, which stay in L2 while
// this call's weight blocks pass.
I512_TARGET void flint_avx512_int4_w4a8(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end,
                                        const int8_t *xq, int64_t ldxq, const int32_t *xsum, const float *xs,
                                        int64_t rows, float *y, int64_t ldy) {
    if (!flint_isa_supported(FLINT_ISA_AVX512)) return;
    const int64_t groups = m->groups;
    if (rows < 8) {
        // Decode and small batches: one block at a time, its codes streamed once (see above).
        for (int64_t b = block_begin; b < block_end; b++) I4_ROWS(i512_tile);
        return;
    }
    const int64_t x_block = int4_x_block(ldxq);
    for (int64_t r0 = 0; r0 < rows; r0 += x_block) {
        const int64_t r1 = r0 + x_block < rows ? r0 + x_block : rows;
        int64_t b = block_begin;
        for (; b + I4P_C <= block_end; b += I4P_C) {
            int64_t r = r0;
            for (; r + I4P_R <= r1; r += I4P_R)
                i512_prefill_tile(m, b, I4P_C, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, I4P_R, y + r * ldy, ldy);
            for (; r < r1; r++)
                i512_prefill_tile(m, b, I4P_C, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, 1, y + r * ldy, ldy);
        }
        for (; b < block_end; b++) {
            int64_t r = r0;
            for (; r + I4P_R <= r1; r += I4P_R)
                i512_prefill_tile(m, b, 1, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, I4P_R, y + r * ldy, ldy);
            for (; r < r1; r++)
                i512_prefill_tile(m, b, 1, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, 1, y + r * ldy, ldy);
        }
    }
}

/// The activation quantizer, 16 inputs per step: the same operations as `int4_quantize_group` (`vcvtps2dq` rounds
/// to nearest, ties to even, under the default MXCSR), `x · 0` summed to detect NaN and ±∞ as the int8 one does.
I512_TARGET void flint_avx512_int4_quantize_activations(const float *x, int64_t rows, int64_t cols,
                                                        int64_t group_size, int64_t groups, int8_t *xq,
                                                        int64_t ldxq, int32_t *xsum, float *xs) {
    if (!flint_isa_supported(FLINT_ISA_AVX512)) return;
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t g = 0; g < groups; g++) {
            const int64_t start = g * group_size, end = start + group_size < cols ? start + group_size : cols;
            const float *in = x + r * cols + start;
            int8_t *out = xq + r * ldxq + start;
            const int64_t count = end > start ? end - start : 0;
            __m512 amax = _mm512_setzero_ps(), check = _mm512_setzero_ps();
            for (int64_t i = 0; i < count; i += 16) {
                const __mmask16 mask = count - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - i)) - 1);
                const __m512 v = _mm512_maskz_loadu_ps(mask, in + i);
                amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
                check = _mm512_add_ps(check, _mm512_mul_ps(v, _mm512_setzero_ps()));
            }
            const float m = _mm512_reduce_max_ps(amax);
            const int finite = _mm512_reduce_add_ps(check) == 0.0f && m <= 3.4028235e38f;
            if (!finite || m == 0) {
                memset(out, 0, (size_t)count);
                xsum[r * groups + g] = 0;
                xs[r * groups + g] = finite ? 0.0f : __builtin_nanf("");
                continue;
            }
            const __m512 inverse = _mm512_set1_ps(127 / m);
            __m512i total = _mm512_setzero_si512();
            for (int64_t i = 0; i < count; i += 16) {
                const __mmask16 mask = count - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - i)) - 1);
                const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, in + i), inverse);
                const __m512i q = _mm512_cvtps_epi32(_mm512_max_ps(_mm512_min_ps(v, hi), lo));
                total = _mm512_add_epi32(total, q);
                _mm512_mask_cvtepi32_storeu_epi8(out + i, mask, q);
            }
            xsum[r * groups + g] = _mm512_reduce_add_epi32(total);
            xs[r * groups + g] = m / 127;
        }
        if (ldxq > cols) memset(xq + r * ldxq + cols, 0, (size_t)(ldxq - cols));
    }
}

/// One tile: R activation rows × one block, its 16 lanes in two halves of 8 (the first and second 32 bytes of a
/// chunk). `vpmaddubsw` of a nibble quad and an activation quad gives int16 pair sums ≤ 2 · 15 · 128 = 3840 in
/// magnitude; the low- and high-nibble products of four chunks (32 inputs) add up in int16 — at most 8 · 3840 =
/// 30720, exact — before one `vpmaddwd` widens them to int32 lane sums. So per chunk and half: two multiplies and
/// two int16 adds, and the widening once per 32 inputs (was: a widening and an int32 add per multiply).
I256_TARGET I_INLINE void i256_tile(const flint_packed_int4 *m, int64_t b, const int8_t *xq, int64_t ldxq,
                                    const int32_t *xsum, const float *xs, const int R, float *y, int64_t ldy) {
    const int64_t kp = m->k_padded, groups = m->groups, chunks_per_group = m->group_size / 8;
    const uint8_t *codes = m->codes + b * 8 * kp;
    const uint16_t *scales = m->scales + b * groups * 16;
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 sum[4][2];
    for (int r = 0; r < R; r++) sum[r][0] = sum[r][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        __m256i acc[4][2];
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_set1_epi32(-8 * xsum[r * groups + g]);
        // Group sizes are multiples of 32 inputs: whole runs of four chunks.
        for (int64_t c0 = g * chunks_per_group; c0 < (g + 1) * chunks_per_group; c0 += 4) {
            __m256i part[4][2];
            for (int r = 0; r < R; r++) part[r][0] = part[r][1] = _mm256_setzero_si256();
            for (int64_t c = c0; c < c0 + 4; c++) {
                // Lanes 0-7 are the first 32 bytes of the chunk, lanes 8-15 the second.
                __m256i lo[2], hi[2];
                for (int h = 0; h < 2; h++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(codes + 64 * c + 32 * h));
                    lo[h] = _mm256_and_si256(v, low);
                    hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                }
                if (R == 1) _mm_prefetch((const char *)(codes + 64 * c + 2048), _MM_HINT_T1);  // as in i512_tile
                for (int r = 0; r < R; r++) {
                    const int8_t *x = xq + r * ldxq + 8 * c;
                    const __m256i xa = _mm256_set1_epi32(int4_load_quad(x)), xb = _mm256_set1_epi32(int4_load_quad(x + 4));
                    for (int h = 0; h < 2; h++)
                        part[r][h] = _mm256_add_epi16(part[r][h], _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], xa),
                                                                                   _mm256_maddubs_epi16(hi[h], xb)));
                }
            }
            for (int r = 0; r < R; r++)
                for (int h = 0; h < 2; h++) acc[r][h] = _mm256_add_epi32(acc[r][h], _mm256_madd_epi16(part[r][h], ones));
        }
        for (int h = 0; h < 2; h++) {
            const __m256 sw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + 16 * g + 8 * h)));
            for (int r = 0; r < R; r++) {
                const __m256 s = _mm256_mul_ps(sw, _mm256_set1_ps(xs[r * groups + g]));
                sum[r][h] = _mm256_add_ps(sum[r][h], _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][h]), s));
            }
        }
    }
    const int rows = int4_valid_rows(m, b);
    for (int r = 0; r < R; r++) {
        if (rows == 16) {
            _mm256_storeu_ps(y + r * ldy + 16 * b, sum[r][0]);
            _mm256_storeu_ps(y + r * ldy + 16 * b + 8, sum[r][1]);
        } else {
            float out[16];
            _mm256_storeu_ps(out, sum[r][0]);
            _mm256_storeu_ps(out + 8, sum[r][1]);
            memcpy(y + r * ldy + 16 * b, out, sizeof(float) * (size_t)rows);
        }
    }
}

I256_TARGET void flint_avx2_int4_w4a8(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end,
                                      const int8_t *xq, int64_t ldxq, const int32_t *xsum, const float *xs,
                                      int64_t rows, float *y, int64_t ldy) {
    if (!flint_isa_supported(FLINT_ISA_AVX2) || !__builtin_cpu_supports("f16c")) return;
    const int64_t groups = m->groups;
    for (int64_t b = block_begin; b < block_end; b++) I4_ROWS(i256_tile);
}

#elif defined(__aarch64__) && (defined(__clang__) || defined(__GNUC__))
#include <arm_neon.h>

int flint_neon_path_has_dot(void);

#define I4N_DOT_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#define I4N_INLINE static inline __attribute__((always_inline))

// NEON: the 16 lanes of a block are four int32x4 accumulators, one per 16 bytes of a chunk (four lanes × four
// inputs). The codes u ≤ 15 are also valid signed bytes, so the signed × signed `sdot` gives Σ u·xq directly.
// Without `sdot`, `smull` + `smlal` add the low- and high-nibble products as int16 (|15·127·2| fits) and two
// pairwise adds fold each lane's four int16 pairs into its int32.

I4N_DOT_TARGET I4N_INLINE int32x4_t i4n_dot(int32x4_t acc, int8x16_t lo, int8x16_t hi, int8x16_t xa, int8x16_t xb) {
    return vdotq_s32(vdotq_s32(acc, lo, xa), hi, xb);
}

I4N_INLINE int32x4_t i4n_dot_plain(int32x4_t acc, int8x16_t lo, int8x16_t hi, int8x16_t xa, int8x16_t xb) {
    // Bytes 0-7 are lanes 0-1 (four inputs each), bytes 8-15 lanes 2-3.
    const int16x8_t p0 = vmlal_s8(vmull_s8(vget_low_s8(lo), vget_low_s8(xa)), vget_low_s8(hi), vget_low_s8(xb));
    const int16x8_t p1 = vmlal_s8(vmull_s8(vget_high_s8(lo), vget_high_s8(xa)), vget_high_s8(hi), vget_high_s8(xb));
    return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
}

#define I4N_TILE(NAME, TARGET, DOT)                                                                                 \
TARGET I4N_INLINE void NAME(const flint_packed_int4 *m, int64_t b, const int8_t *xq, int64_t ldxq,                \
                            const int32_t *xsum, const float *xs, const int R, float *y, int64_t ldy) {           \
    const int64_t kp = m->k_padded, groups = m->groups, chunks_per_group = m->group_size / 8;                     \
    const uint8_t *codes = m->codes + b * 8 * kp;                                                                  \
    const uint16_t *scales = m->scales + b * groups * 16;                                                          \
    const uint8x16_t low = vdupq_n_u8(0x0F);                                                                      \
    float32x4_t sum[2][4];                                                                                        \
    for (int r = 0; r < R; r++) for (int q = 0; q < 4; q++) sum[r][q] = vdupq_n_f32(0);                            \
    for (int64_t g = 0; g < groups; g++) {                                                                        \
        int32x4_t acc[2][4];                                                                                      \
        for (int r = 0; r < R; r++) for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_s32(0);                        \
        for (int64_t c = g * chunks_per_group; c < (g + 1) * chunks_per_group; c++) {                             \
            int8x16_t lo[4], hi[4];                                                                               \
            for (int q = 0; q < 4; q++) {                                                                         \
                const uint8x16_t v = vld1q_u8(codes + 64 * c + 16 * q);                                            \
                lo[q] = vreinterpretq_s8_u8(vandq_u8(v, low));                                                    \
                hi[q] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));                                                    \
            }                                                                                                     \
            for (int r = 0; r < R; r++) {                                                                         \
                const int8_t *x = xq + r * ldxq + 8 * c;                                                          \
                const int8x16_t xa = vreinterpretq_s8_s32(vdupq_n_s32(int4_load_quad(x)));                        \
                const int8x16_t xb = vreinterpretq_s8_s32(vdupq_n_s32(int4_load_quad(x + 4)));                    \
                for (int q = 0; q < 4; q++) acc[r][q] = DOT(acc[r][q], lo[q], hi[q], xa, xb);                      \
            }                                                                                                     \
        }                                                                                                         \
        for (int q = 0; q < 4; q++) {                                                                             \
            const float32x4_t sw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(scales + 16 * g + 4 * q)));          \
            for (int r = 0; r < R; r++) {                                                                         \
                const int32x4_t dot = vsubq_s32(acc[r][q], vdupq_n_s32(8 * xsum[r * groups + g]));                \
                const float32x4_t s = vmulq_f32(sw, vdupq_n_f32(xs[r * groups + g]));                             \
                sum[r][q] = vaddq_f32(sum[r][q], vmulq_f32(vcvtq_f32_s32(dot), s));                               \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    const int rows = int4_valid_rows(m, b);                                                                       \
    for (int r = 0; r < R; r++) {                                                                                 \
        float out[16];                                                                                            \
        for (int q = 0; q < 4; q++) vst1q_f32(out + 4 * q, sum[r][q]);                                            \
        memcpy(y + r * ldy + 16 * b, out, sizeof(float) * (size_t)rows);                                         \
    }                                                                                                             \
}

I4N_TILE(i4n_tile_dot, I4N_DOT_TARGET, i4n_dot)
I4N_TILE(i4n_tile_plain, , i4n_dot_plain)

#define I4N_DRIVER(TILE)                                                                                          \
    const int64_t groups = m->groups;                                                                             \
    for (int64_t b = block_begin; b < block_end; b++) {                                                           \
        int64_t r = 0;                                                                                            \
        for (; r + 2 <= rows; r += 2) TILE(m, b, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, 2, y + r * ldy, ldy); \
        for (; r < rows; r++) TILE(m, b, xq + r * ldxq, ldxq, xsum + r * groups, xs + r * groups, 1, y + r * ldy, ldy); \
    }

I4N_DOT_TARGET static void i4n_w4a8_dot(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end,
                                        const int8_t *xq, int64_t ldxq, const int32_t *xsum, const float *xs,
                                        int64_t rows, float *y, int64_t ldy) {
    I4N_DRIVER(i4n_tile_dot)
}

void flint_neon_int4_w4a8_plain(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end,
                                const int8_t *xq, int64_t ldxq, const int32_t *xsum, const float *xs, int64_t rows,
                                float *y, int64_t ldy) {
    I4N_DRIVER(i4n_tile_plain)
}

void flint_neon_int4_w4a8(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end, const int8_t *xq,
                          int64_t ldxq, const int32_t *xsum, const float *xs, int64_t rows, float *y, int64_t ldy) {
    static int dot = -1;
    if (dot < 0) dot = flint_neon_path_has_dot();
    if (dot) i4n_w4a8_dot(m, block_begin, block_end, xq, ldxq, xsum, xs, rows, y, ldy);
    else flint_neon_int4_w4a8_plain(m, block_begin, block_end, xq, ldxq, xsum, xs, rows, y, ldy);
}

#endif

// Stubs for the paths this target cannot compile: they do nothing (callers check flint_isa_supported first).
#define I4_STUB(NAME)                                                                                             \
    void NAME(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end, const int8_t *xq, int64_t ldxq, \
              const int32_t *xsum, const float *xs, int64_t rows, float *y, int64_t ldy) {                        \
        (void)m; (void)block_begin; (void)block_end; (void)xq; (void)ldxq; (void)xsum; (void)xs; (void)rows;      \
        (void)y; (void)ldy;                                                                                       \
    }
#if !(defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__)))
void flint_avx512_int4_quantize_activations(const float *x, int64_t rows, int64_t cols, int64_t group_size,
                                            int64_t groups, int8_t *xq, int64_t ldxq, int32_t *xsum, float *xs) {
    (void)x; (void)rows; (void)cols; (void)group_size; (void)groups; (void)xq; (void)ldxq; (void)xsum; (void)xs;
}
I4_STUB(flint_avx512_int4_w4a8)
I4_STUB(flint_avx2_int4_w4a8)
#endif
#if !(defined(__aarch64__) && (defined(__clang__) || defined(__GNUC__)))
I4_STUB(flint_neon_int4_w4a8)
I4_STUB(flint_neon_int4_w4a8_plain)
#endif
