// AVX-512 VNNI int8 kernels (see include/CFlintKernels.h). The tile functions are always inlined and every call
// site passes the tile shape (R x rows, C weight rows) as a literal, so the loops over r and c unroll and the
// accumulator arrays become registers: up to 8 int32 and 8 float zmm accumulators plus the loaded operands fit
// in the 32 zmm registers (checked in the object code: no spills inside the inner loops).
// `__builtin_cpu_supports` also checks that the OS saves the zmm state (XCR0).
#include "CFlintKernels.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define FLINT_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define FLINT_INLINE static inline __attribute__((always_inline))

int flint_int8_native_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vnni");
}

FLINT_TARGET FLINT_INLINE __mmask64 mask64(int64_t length) {
    return length >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << length) - 1);
}

FLINT_TARGET FLINT_INLINE __mmask16 mask16(int64_t length) {
    return length >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << length) - 1);
}

/// Matrix-vector products stream each weight row once, C rows side by side: C short interleaved streams that
/// the hardware prefetcher follows poorly (measured: cold weights ran at half the streaming-read bandwidth).
/// So each step also prefetches the same column of the next tile's rows, one tile (C·k bytes) ahead.
/// Prefetches never fault, so running past the end of the matrix is harmless.
FLINT_TARGET FLINT_INLINE void prefetch_next_tile(const int8_t *w, const int C, int64_t k, int64_t i) {
    for (int c = 0; c < C; c++) _mm_prefetch((const char *)(w + (C + c) * k + i), _MM_HINT_T0);
}

/// `Σ_g compensation[g] · xscales[g]`: the `+ 128` correction of one (weight row, x row) pair.
FLINT_TARGET FLINT_INLINE float compensation_dot(const float *c, const float *s, int64_t groups) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g += 16) {
        __mmask16 m = mask16(groups - g);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c + g), _mm512_maskz_loadu_ps(m, s + g), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/// W8A8 tile whose groups start on multiples of 64 bytes: int32 accumulation over each group, one
/// convert-and-scale per group.
FLINT_TARGET FLINT_INLINE void w8a8_tile_aligned(const flint_int8_matrix *m, int64_t n, const int C,
                                                 const uint8_t *xq, int64_t ldxq, const float *xs, const int R,
                                                 float *y, int64_t ldy) {
    const int64_t k = m->k, gsize = m->group_size, groups = m->groups;
    const int8_t *w = m->weights + n * k;
    __m512 facc[4][8];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) facc[r][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        const int64_t start = g * gsize;
        const int64_t end = start + gsize < k ? start + gsize : k;
        __m512i iacc[4][8];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) iacc[r][c] = _mm512_setzero_si512();
        for (int64_t i = start; i < end; i += 64) {
            const __mmask64 msk = mask64(end - i);
            __m512i wv[8], xv[4];
            for (int c = 0; c < C; c++) wv[c] = _mm512_maskz_loadu_epi8(msk, w + c * k + i);
            if (R == 1) prefetch_next_tile(w, C, k, i);
            for (int r = 0; r < R; r++) xv[r] = _mm512_maskz_loadu_epi8(msk, xq + r * ldxq + i);
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) iacc[r][c] = _mm512_dpbusd_epi32(iacc[r][c], xv[r], wv[c]);
        }
        for (int r = 0; r < R; r++) {
            const float sx = xs[r * groups + g];
            for (int c = 0; c < C; c++) {
                const __m512 s = _mm512_set1_ps(m->scales[(n + c) * groups + g] * sx);
                facc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r][c]), s, facc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[r * ldy + n + c] = _mm512_reduce_add_ps(facc[r][c])
                - compensation_dot(m->compensation + (n + c) * groups, xs + r * groups, groups);
}

/// Two scales for the two 32-byte halves of a 64-byte chunk (lanes 0–7 and 8–15).
FLINT_TARGET FLINT_INLINE __m512 pair_scales(const float *s, int64_t g, int64_t groups) {
    const float lo = s[g];
    const float hi = g + 1 < groups ? s[g + 1] : 0.0f;
    return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1);
}

/// W8A8 tile with 32-element groups: every 64-byte chunk spans two groups, so each chunk's int32 lanes are
/// converted and scaled per lane (lanes 0–7 by one group's scale, 8–15 by the next's).
FLINT_TARGET FLINT_INLINE void w8a8_tile_g32(const flint_int8_matrix *m, int64_t n, const int C,
                                             const uint8_t *xq, int64_t ldxq, const float *xs, const int R,
                                             float *y, int64_t ldy) {
    const int64_t k = m->k, groups = m->groups;
    const int8_t *w = m->weights + n * k;
    __m512 facc[4][8];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) facc[r][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 64) {
        const __mmask64 msk = mask64(k - i);
        const int64_t g = i >> 5;
        __m512i wv[8], xv[4];
        __m512 ws[8], xsv[4];
        for (int c = 0; c < C; c++) {
            wv[c] = _mm512_maskz_loadu_epi8(msk, w + c * k + i);
            ws[c] = pair_scales(m->scales + (n + c) * groups, g, groups);
        }
        if (R == 1) prefetch_next_tile(w, C, k, i);
        for (int r = 0; r < R; r++) {
            xv[r] = _mm512_maskz_loadu_epi8(msk, xq + r * ldxq + i);
            xsv[r] = pair_scales(xs + r * groups, g, groups);
        }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), xv[r], wv[c]);
                facc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(ws[c], xsv[r]), facc[r][c]);
            }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            y[r * ldy + n + c] = _mm512_reduce_add_ps(facc[r][c])
                - compensation_dot(m->compensation + (n + c) * groups, xs + r * groups, groups);
}

FLINT_TARGET FLINT_INLINE void w8a8_tile(const flint_int8_matrix *m, int64_t n, const int C, const uint8_t *xq,
                                         int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    if (m->group_size == 32 && m->groups > 1)
        w8a8_tile_g32(m, n, C, xq, ldxq, xs, R, y, ldy);
    else
        w8a8_tile_aligned(m, n, C, xq, ldxq, xs, R, y, ldy);
}

/// Cache blocking for matrix-matrix products: a block of BLOCK_ROWS weight rows (≤ 64 KB at k = 2048) stays in
/// L1/L2 while a block of x rows passes over it, and that x block (≤ 256 KB) stays in L2 while every weight
/// block of this thread's range passes over it. Without the x blocking, 512 tokens × 2048 bytes of activations
/// were re-read from L3 for every weight block.
enum { BLOCK_ROWS = 32 };

static inline int64_t x_block_rows(int64_t row_bytes) {
    int64_t rows = (256 * 1024) / (row_bytes > 0 ? row_bytes : 1);
    rows &= ~(int64_t)3;
    return rows < 4 ? 4 : rows;
}

FLINT_TARGET void flint_int8_w8a8(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end,
                                  const uint8_t *xq, int64_t ldxq, const float *xscales, int64_t rows,
                                  float *y, int64_t ldy) {
    const int64_t groups = m->groups;
    const int64_t x_block = x_block_rows(ldxq);
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
        for (int64_t block = n_begin; block < n_end; block += BLOCK_ROWS) {
            const int64_t block_end = block + BLOCK_ROWS < n_end ? block + BLOCK_ROWS : n_end;
            int64_t r = r_begin;
            // Four x rows against four weight rows (16 accumulators: 8 loads feed 16 vpdpbusd), then the
            // leftover x rows one at a time against eight.
            for (; r + 4 <= r_end; r += 4) {
                const uint8_t *x = xq + r * ldxq;
                const float *s = xscales + r * groups;
                float *yr = y + r * ldy;
                int64_t n = block;
                for (; n + 4 <= block_end; n += 4) w8a8_tile(m, n, 4, x, ldxq, s, 4, yr, ldy);
                for (; n + 2 <= block_end; n += 2) w8a8_tile(m, n, 2, x, ldxq, s, 4, yr, ldy);
                for (; n < block_end; n++) w8a8_tile(m, n, 1, x, ldxq, s, 4, yr, ldy);
            }
            for (; r < r_end; r++) {
                const uint8_t *x = xq + r * ldxq;
                const float *s = xscales + r * groups;
                float *yr = y + r * ldy;
                int64_t n = block;
                for (; n + 8 <= block_end; n += 8) w8a8_tile(m, n, 8, x, ldxq, s, 1, yr, ldy);
                for (; n + 4 <= block_end; n += 4) w8a8_tile(m, n, 4, x, ldxq, s, 1, yr, ldy);
                for (; n < block_end; n++) w8a8_tile(m, n, 1, x, ldxq, s, 1, yr, ldy);
            }
        }
    }
}

/// One block of the activation quantizer (see the header): two passes, the maximum magnitude, then the codes.
FLINT_TARGET FLINT_INLINE float quantize_block(const float *x, int64_t count, uint8_t *out) {
    __m512 amax = _mm512_setzero_ps();
    __m512 finite_check = _mm512_setzero_ps();  // x·0 is NaN exactly when x is NaN or ±∞
    for (int64_t i = 0; i < count; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(mask16(count - i), x + i);
        amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
        finite_check = _mm512_add_ps(finite_check, _mm512_mul_ps(v, _mm512_setzero_ps()));
    }
    const float m = _mm512_reduce_max_ps(amax);
    const float check = _mm512_reduce_add_ps(finite_check);
    if (check != 0.0f || !(m <= 3.4028235e38f) || m == 0.0f) {
        for (int64_t i = 0; i < count; i++) out[i] = 128;
        return m == 0.0f && check == 0.0f ? 0.0f : __builtin_nanf("");
    }
    const __m512 inverse = _mm512_set1_ps(127.0f / m);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512i offset = _mm512_set1_epi32(128);
    for (int64_t i = 0; i < count; i += 16) {
        const __mmask16 msk = mask16(count - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(msk, x + i), inverse);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        // Default MXCSR rounding: to nearest, ties to even, as the Swift quantizer's 1.5·2²³ trick.
        const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), offset);
        _mm512_mask_cvtepi32_storeu_epi8(out + i, msk, q);
    }
    return m / 127.0f;
}

FLINT_TARGET void flint_int8_quantize_activations(const float *x, int64_t rows, int64_t k, int64_t group_size,
                                                  int64_t groups, uint8_t *xq, int64_t ldxq, float *scales) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t start = g * group_size;
            const int64_t end = start + group_size < k ? start + group_size : k;
            scales[r * groups + g] = quantize_block(x + r * k + start, end - start, xq + r * ldxq + start);
        }
}

/// Weight-only tile: 16 int8 weights → int32 → float per step, scaled by the group's scale (per-row schemes
/// scale once at the end) and multiplied into every x row of the tile.
FLINT_TARGET FLINT_INLINE void weight_only_tile(const flint_int8_matrix *m, int64_t n, const int C,
                                                const float *x, int64_t ldx, const int R, float *y, int64_t ldy) {
    const int64_t k = m->k, groups = m->groups;
    const int64_t gsize = groups == 1 ? k : m->group_size;
    const int8_t *w = m->weights + n * k;
    __m512 facc[4][8];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) facc[r][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        const int64_t start = g * gsize;
        const int64_t end = start + gsize < k ? start + gsize : k;
        __m512 scale[8];
        for (int c = 0; c < C; c++) scale[c] = _mm512_set1_ps(groups == 1 ? 1.0f : m->scales[(n + c) * groups + g]);
        for (int64_t i = start; i < end; i += 16) {
            const __mmask16 msk = mask16(end - i);
            __m512 wv[8], xv[4];
            for (int c = 0; c < C; c++) {
                const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(msk, w + c * k + i)));
                wv[c] = groups == 1 ? q : _mm512_mul_ps(q, scale[c]);
            }
            if (R == 1 && (i & 63) == 0) prefetch_next_tile(w, C, k, i);
            for (int r = 0; r < R; r++) xv[r] = _mm512_maskz_loadu_ps(msk, x + r * ldx + i);
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) facc[r][c] = _mm512_fmadd_ps(wv[c], xv[r], facc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            const float sum = _mm512_reduce_add_ps(facc[r][c]);
            y[r * ldy + n + c] = groups == 1 ? sum * m->scales[n + c] : sum;
        }
}

FLINT_TARGET void flint_int8_weight_only(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end,
                                         const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    const int64_t x_block = x_block_rows(ldx * (int64_t)sizeof(float));
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
        for (int64_t block = n_begin; block < n_end; block += BLOCK_ROWS) {
            const int64_t block_end = block + BLOCK_ROWS < n_end ? block + BLOCK_ROWS : n_end;
            int64_t r = r_begin;
            for (; r + 4 <= r_end; r += 4) {
                int64_t n = block;
                for (; n + 4 <= block_end; n += 4) weight_only_tile(m, n, 4, x + r * ldx, ldx, 4, y + r * ldy, ldy);
                for (; n < block_end; n++) weight_only_tile(m, n, 1, x + r * ldx, ldx, 4, y + r * ldy, ldy);
            }
            for (; r < r_end; r++) {
                int64_t n = block;
                for (; n + 8 <= block_end; n += 8) weight_only_tile(m, n, 8, x + r * ldx, ldx, 1, y + r * ldy, ldy);
                for (; n + 4 <= block_end; n += 4) weight_only_tile(m, n, 4, x + r * ldx, ldx, 1, y + r * ldy, ldy);
                for (; n < block_end; n++) weight_only_tile(m, n, 1, x + r * ldx, ldx, 1, y + r * ldy, ldy);
            }
        }
    }
}

#else
// Not x86-64: the Swift kernels are always used.
int flint_int8_native_available(void) { return 0; }
void flint_int8_w8a8(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq, int64_t ldxq,
                     const float *xscales, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)n_begin; (void)n_end; (void)xq; (void)ldxq; (void)xscales; (void)rows; (void)y; (void)ldy;
}
void flint_int8_quantize_activations(const float *x, int64_t rows, int64_t k, int64_t group_size, int64_t groups,
                                     uint8_t *xq, int64_t ldxq, float *scales) {
    (void)x; (void)rows; (void)k; (void)group_size; (void)groups; (void)xq; (void)ldxq; (void)scales;
}
void flint_int8_weight_only(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const float *x, int64_t ldx,
                            int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)n_begin; (void)n_end; (void)x; (void)ldx; (void)rows; (void)y; (void)ldy;
}
#endif
