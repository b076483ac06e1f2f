// Int8 kernels on the packed layout (include/CFlintKernels.h, "The packed int8 layout"): AVX-512 VNNI, AVX2 with
// and without AVX-VNNI, NEON with and without sdot. Output rows live in vector lanes (16 per block), so a tile's
// accumulators are whole outputs: no horizontal adds, and the W8A8 float epilogue runs lane-wise in the portable
// kernel's order, which makes every path bit-identical to it.
//
// Tiles: R activation rows × C blocks of 16 weight rows, R and C literals at every call site so the loops unroll
// and the accumulators stay in registers. Matrix-matrix products (prefill) use R = 8 (per-row scales) against
// 2 blocks: per 4 inputs, 2 weight loads feed 16 dot-product instructions, and the 4 activation bytes come as
// broadcasts; with per-row scales AVX-512 runs 8 × 3 tiles of whole-row int32 sums (p512_w8a8_row_tile), AVX-VNNI
// 6 × 1 (pa2_vnni_row_tile).
// Matrix-vector products and decode batches (≤ 8 rows) use R ≤ 4 against 4 blocks: four sequential,
// prefetched weight streams. AVX2 without VNNI runs prefill on int16 copies of the codes (pa2_w8a8_wide).
// The activation rows are blocked (≤ 256 KB per pass) so they stay in L2 while this thread's weight blocks pass.
#include "CFlintKernels.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

/// Activation rows per pass over the weight blocks (multiple of 8, ≥ 8): about 256 KB of activations.
static inline int64_t packed_x_block(int64_t row_bytes) {
    int64_t rows = (256 * 1024) / (row_bytes > 0 ? row_bytes : 1);
    rows &= ~(int64_t)7;
    return rows < 8 ? 8 : rows;
}

static inline int32_t load_quad(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/// Rows of block `b` that exist (16, or fewer in the last block).
static inline int valid_rows(const flint_packed_int8 *m, int64_t b) {
    const int64_t left = m->n - 16 * b;
    return left >= 16 ? 16 : (int)left;
}

/// The lane scales and compensations of block `b`, group `g`, as the portable kernel computes them
/// (`comp = (128 · scale) · float(Σ q)`); zero for padding rows.
static inline void lane_scales(const flint_packed_int8 *m, int64_t b, int64_t g, float sw[16], float comp[16]) {
    const int rows = valid_rows(m, b);
    const int32_t *s = m->sums + (b * m->groups + g) * 16;
    for (int l = 0; l < 16; l++) {
        const float scale = l < rows ? m->scales[(16 * b + l) * m->groups + g] : 0.0f;
        sw[l] = scale;
        comp[l] = 128 * scale * (float)s[l];
    }
}

/// Writes the valid lanes of a block's 16 outputs. A whole block is an inline copy of constant size (vector
/// moves): the variable-size memcpy was a libc call per tile row (about 4 % of flan-t5-small prefill on the AVX2
/// path), and clang merges two plain memcpy calls back into one of variable size.
static inline void store_rows(const flint_packed_int8 *m, int64_t b, const float out[16], float *y) {
    const int rows = valid_rows(m, b);
#if defined(__clang__)
    if (rows == 16) {
        __builtin_memcpy_inline(y + 16 * b, out, sizeof(float) * 16);
        return;
    }
#endif
    memcpy(y + 16 * b, out, sizeof(float) * (size_t)rows);
}

// =================================================================================================================
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define P512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define PX_INLINE static inline __attribute__((always_inline))

P512_TARGET PX_INLINE __mmask16 p512_row_mask(const flint_packed_int8 *m, int64_t b) {
    const int rows = valid_rows(m, b);
    return rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rows) - 1);
}

/// Scales of block b's 16 rows for group g: one load (per-row scales) or a gather (groups).
P512_TARGET PX_INLINE __m512 p512_scales(const flint_packed_int8 *m, int64_t b, int64_t g) {
    const __mmask16 mask = p512_row_mask(m, b);
    if (m->groups == 1) return _mm512_maskz_loadu_ps(mask, m->scales + 16 * b);
    const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)m->groups));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, index, m->scales + 16 * b * m->groups + g, 4);
}

P512_TARGET PX_INLINE void p512_w8a8_tile(const flint_packed_int8 *m, int64_t b, const int C, const uint8_t *xq,
                                          int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    const int64_t kp = m->k_padded, groups = m->groups;
    const int64_t quads_per_group = groups == 1 ? kp / 4 : m->group_size / 4;
    const int64_t total_quads = kp / 4;
    const int64_t bstride = 16 * kp;
    const int8_t *w = m->blocks + b * bstride;
    __m512 sum[8][2], corr[8][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) sum[r][c] = corr[r][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        const int64_t q0 = g * quads_per_group;
        const int64_t q1 = q0 + quads_per_group < total_quads ? q0 + quads_per_group : total_quads;
        __m512i acc[8][2];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_si512();
        for (int64_t q = q0; q < q1; q++) {
            __m512i wv[2];
            for (int c = 0; c < C; c++) {
                wv[c] = _mm512_loadu_si512((const void *)(w + c * bstride + 64 * q));
                // Into L2, 24 quads ahead: streams from memory (batch-1 and batch-8 decode) ran 15-25 % faster in
                // CPU time than with the same prefetch into L1 16 quads ahead (Zen 4, flan-t5-small and -base
                // decoder + lm_head shapes, gemv microbenchmark).
                _mm_prefetch((const char *)(w + c * bstride + 64 * q + 1536), _MM_HINT_T1);
            }
            for (int r = 0; r < R; r++) {
                const __m512i xb = _mm512_set1_epi32(load_quad(xq + r * ldxq + 4 * q));
                for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], xb, wv[c]);
            }
        }
        for (int c = 0; c < C; c++) {
            const __m512 sw = p512_scales(m, b + c, g);
            const __m512 s128 = _mm512_mul_ps(_mm512_set1_ps(128.0f), sw);
            const __m512 comp = _mm512_mul_ps(
                s128, _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)(m->sums + ((b + c) * groups + g) * 16))));
            for (int r = 0; r < R; r++) {
                const __m512 sx = _mm512_set1_ps(xs[r * groups + g]);
                sum[r][c] = _mm512_add_ps(sum[r][c], _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][c]), _mm512_mul_ps(sw, sx)));
                corr[r][c] = _mm512_add_ps(corr[r][c], _mm512_mul_ps(comp, sx));
            }
        }
    }
    for (int c = 0; c < C; c++) {
        const __mmask16 mask = p512_row_mask(m, b + c);
        for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(y + r * ldy + 16 * (b + c), mask, _mm512_sub_ps(sum[r][c], corr[r][c]));
    }
}

/// The prefill tile for per-row scales (one group): R activation rows × C blocks of int32 sums over the whole row,
/// then one epilogue straight from the accumulators. Without the group loop's float partial sums (2 · R · C more
/// vectors, kept on the stack) the epilogue is a few stores per tile, and at 8 × 3 the loop holds 24 accumulators,
/// 3 weight vectors and a broadcast: 24 dot products per 3 weight loads and 8 broadcasts (flan-t5-small and -base
/// encoder shapes at 512 rows, one thread, CPU time on Zen 4: 8-19 % faster than the 8 × 2 group tile).
/// One input quad of a row tile: acc[r][c] += x[r] quad q · block c quad q (`first`: acc = that product).
P512_TARGET PX_INLINE void p512_row_quad(__m512i acc[8][3], const int first, const int8_t *w, int64_t bstride,
                                         const int C, const uint8_t *xq, int64_t ldxq, const int R, int64_t q) {
    __m512i wv[3];
    for (int c = 0; c < C; c++) wv[c] = _mm512_loadu_si512((const void *)(w + c * bstride + 64 * q));
    for (int r = 0; r < R; r++) {
        const __m512i xb = _mm512_set1_epi32(load_quad(xq + r * ldxq + 4 * q));
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_dpbusd_epi32(first ? _mm512_setzero_si512() : acc[r][c], xb, wv[c]);
    }
}

P512_TARGET PX_INLINE void p512_w8a8_row_tile(const flint_packed_int8 *m, int64_t b, const int C, const uint8_t *xq,
                                              int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    const int64_t quads = m->k_padded / 4;
    const int64_t bstride = 16 * m->k_padded;
    const int8_t *w = m->blocks + b * bstride;
    // Quad 0 starts the sums (k ≥ 1, so there is one): zeroing the accumulators in a loop of their own was turned
    // into a memset of the array, which then lived on the stack (about 5 % of flan-t5-small prefill).
    __m512i acc[8][3];
    p512_row_quad(acc, 1, w, bstride, C, xq, ldxq, R, 0);
    for (int64_t q = 1; q < quads; q++) p512_row_quad(acc, 0, w, bstride, C, xq, ldxq, R, q);
    // The group tile's epilogue for one group, in its order: sum = 0 + dot·(sw·sx), corr = 0 + comp·sx.
    const __m512 zero = _mm512_setzero_ps();
    for (int c = 0; c < C; c++) {
        const __mmask16 mask = p512_row_mask(m, b + c);
        const __m512 sw = _mm512_maskz_loadu_ps(mask, m->scales + 16 * (b + c));
        const __m512 comp = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(128.0f), sw),
                                          _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)(m->sums + (b + c) * 16))));
        for (int r = 0; r < R; r++) {
            const __m512 sx = _mm512_set1_ps(xs[r]);
            const __m512 sum = _mm512_add_ps(zero, _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][c]), _mm512_mul_ps(sw, sx)));
            const __m512 corr = _mm512_add_ps(zero, _mm512_mul_ps(comp, sx));
            _mm512_mask_storeu_ps(y + r * ldy + 16 * (b + c), mask, _mm512_sub_ps(sum, corr));
        }
    }
}

/// The row loop of one group of blocks: the widest row tiles first.
#define P512_ROWS(TILE, C, WIDE)                                                                                    \
    do {                                                                                                           \
        int64_t r = r_begin;                                                                                       \
        if (WIDE)                                                                                                  \
            for (; r + 8 <= r_end; r += 8) TILE(m, b, C, xq + r * ldxq, ldxq, xs + r * groups, 8, y + r * ldy, ldy); \
        for (; r + 4 <= r_end; r += 4) TILE(m, b, C, xq + r * ldxq, ldxq, xs + r * groups, 4, y + r * ldy, ldy);    \
        for (; r + 2 <= r_end; r += 2) TILE(m, b, C, xq + r * ldxq, ldxq, xs + r * groups, 2, y + r * ldy, ldy);    \
        for (; r < r_end; r++) TILE(m, b, C, xq + r * ldxq, ldxq, xs + r * groups, 1, y + r * ldy, ldy);           \
    } while (0)

/// The row loop of C blocks with per-row scales: 8-row tiles, then 4, 2, 1.
#define P512_ROW_TILES(C)                                                                                          \
    do {                                                                                                           \
        int64_t r = r_begin;                                                                                       \
        for (; r + 8 <= r_end; r += 8) p512_w8a8_row_tile(m, b, C, xq + r * ldxq, ldxq, xs + r, 8, y + r * ldy, ldy); \
        for (; r + 4 <= r_end; r += 4) p512_w8a8_row_tile(m, b, C, xq + r * ldxq, ldxq, xs + r, 4, y + r * ldy, ldy); \
        for (; r + 2 <= r_end; r += 2) p512_w8a8_row_tile(m, b, C, xq + r * ldxq, ldxq, xs + r, 2, y + r * ldy, ldy); \
        for (; r < r_end; r++) p512_w8a8_row_tile(m, b, C, xq + r * ldxq, ldxq, xs + r, 1, y + r * ldy, ldy);     \
    } while (0)

P512_TARGET void flint_avx512_packed_w8a8(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                          const uint8_t *xq, int64_t ldxq, const float *xs, int64_t rows, float *y,
                                          int64_t ldy) {
    if (!flint_isa_supported(FLINT_ISA_AVX512)) return;
    const int64_t groups = m->groups;
    const int64_t x_block = packed_x_block(ldxq);
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
        int64_t b = block_begin;
        if (r_end - r_begin <= 8) {
            // Matrix-vector and decode batches (the weights come from L3 or memory once per step): one block at a
            // time, all rows in one tile, so the weights are read as one sequential stream (the blocks are
            // contiguous) that the hardware prefetcher follows, plus the tile's L2 prefetch. Against four blocks
            // per tile (four streams, ≤ 4 rows; one block only for one row at k_padded ≤ 512), Zen 4 VM, load
            // 0.3-1.4, flint bench, alternating rounds of 3 runs: flan-t5-small decode batch 8 1696-1757 ->
            // 2085-2227 tok/s at 1 thread, 3132-3336 -> 3287-3730 at 2; flan-t5-base batch 1 and 8 unchanged within
            // the noise (1 thread b1 170-184 vs 169-189, b8 607-637 vs 609-627). An earlier Zen 4 VM had measured
            // four streams faster for base at batch 1 (159 vs 154 tok/s). Any tiling gives the same results
            // (bit-identical to the portable kernel).
            for (; b < block_end; b++) P512_ROWS(p512_w8a8_tile, 1, 1);
        }
        if (groups == 1 && r_end - r_begin > 8) {
            for (; b + 3 <= block_end; b += 3) P512_ROW_TILES(3);
            for (; b + 2 <= block_end; b += 2) P512_ROW_TILES(2);
            for (; b < block_end; b++) P512_ROW_TILES(1);
        } else {
            // Group epilogues keep float sums per tile: at most 4 rows so they stay in registers.
            for (; b + 2 <= block_end; b += 2) P512_ROWS(p512_w8a8_tile, 2, 0);
            for (; b < block_end; b++) P512_ROWS(p512_w8a8_tile, 1, 0);
        }
    }
}

/// Byte j of every int32 lane, sign-extended, as floats: input 4q + j of the tile's 16 rows.
#define P512_BYTE(v, j) _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * (j)), 24))

P512_TARGET PX_INLINE void p512_weight_only_tile(const flint_packed_int8 *m, int64_t b, const int C,
                                                 const float *x, int64_t ldx, const int R, float *y, int64_t ldy) {
    const int64_t k = m->k, kp = m->k_padded, groups = m->groups;
    const int64_t quads_per_group = groups == 1 ? kp / 4 : m->group_size / 4;
    const int64_t total_quads = kp / 4, full_quads = k / 4;
    const int64_t bstride = 16 * kp;
    const int8_t *w = m->blocks + b * bstride;
    __m512 total[4][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) total[r][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        const int64_t q0 = g * quads_per_group;
        const int64_t q1 = q0 + quads_per_group < total_quads ? q0 + quads_per_group : total_quads;
        __m512 acc[4][2];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
        for (int64_t q = q0; q < q1; q++) {
            __m512i wv[2];
            for (int c = 0; c < C; c++) {
                wv[c] = _mm512_loadu_si512((const void *)(w + c * bstride + 64 * q));
                if (R == 1) _mm_prefetch((const char *)(w + c * bstride + 64 * q + 1024), _MM_HINT_T0);
            }
            const int inputs = q < full_quads ? 4 : (int)(k - 4 * q);
            for (int j = 0; j < 4; j++) {
                if (j >= inputs) break;
                __m512 wf[2];
                switch (j) {
                case 0: for (int c = 0; c < C; c++) wf[c] = P512_BYTE(wv[c], 0); break;
                case 1: for (int c = 0; c < C; c++) wf[c] = P512_BYTE(wv[c], 1); break;
                case 2: for (int c = 0; c < C; c++) wf[c] = P512_BYTE(wv[c], 2); break;
                default: for (int c = 0; c < C; c++) wf[c] = P512_BYTE(wv[c], 3); break;
                }
                for (int r = 0; r < R; r++) {
                    const __m512 xb = _mm512_set1_ps(x[r * ldx + 4 * q + j]);
                    for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(wf[c], xb, acc[r][c]);
                }
            }
        }
        for (int c = 0; c < C; c++) {
            const __m512 sw = p512_scales(m, b + c, g);
            for (int r = 0; r < R; r++) total[r][c] = _mm512_fmadd_ps(acc[r][c], sw, total[r][c]);
        }
    }
    for (int c = 0; c < C; c++) {
        const __mmask16 mask = p512_row_mask(m, b + c);
        for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(y + r * ldy + 16 * (b + c), mask, total[r][c]);
    }
}

P512_TARGET void flint_avx512_packed_weight_only(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                                 const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    if (!flint_isa_supported(FLINT_ISA_AVX512)) return;
    const int64_t x_block = packed_x_block(ldx * (int64_t)sizeof(float));
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
        int64_t b = block_begin;
        for (; b + 2 <= block_end; b += 2) {
            int64_t r = r_begin;
            for (; r + 4 <= r_end; r += 4) p512_weight_only_tile(m, b, 2, x + r * ldx, ldx, 4, y + r * ldy, ldy);
            for (; r < r_end; r++) p512_weight_only_tile(m, b, 2, x + r * ldx, ldx, 1, y + r * ldy, ldy);
        }
        for (; b < block_end; b++) {
            int64_t r = r_begin;
            for (; r + 4 <= r_end; r += 4) p512_weight_only_tile(m, b, 1, x + r * ldx, ldx, 4, y + r * ldy, ldy);
            for (; r < r_end; r++) p512_weight_only_tile(m, b, 1, x + r * ldx, ldx, 1, y + r * ldy, ldy);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2: a block is two ymm halves (rows 0–7 in bytes 0–31 of each quad, rows 8–15 in bytes 32–63).

#define PA2_TARGET __attribute__((target("avx2,fma")))
#define PVNNI_TARGET __attribute__((target("avx2,fma,avxvnni")))

/// The tile body; VNNI is a literal. Without VNNI: signed activations `x = xq ^ 0x80` and `vpmaddubsw(|w|, sign(x, w))`
/// (pairs ≤ 2·128·127 fit int16; |w| is taken once per quad for all R rows, where |x| would be once per row: 6-7 %
/// faster at 512 rows on Zen 4), or `vpmaddubsw(|x|, sign(w, x))` for a single row; then `+ 128 · Σ q` makes the
/// unsigned sum exact again.
#define PA2_W8A8_TILE(VNNI)                                                                                        \
    const int64_t kp = m->k_padded, groups = m->groups;                                                            \
    const int64_t quads_per_group = groups == 1 ? kp / 4 : m->group_size / 4;                                      \
    const int64_t total_quads = kp / 4;                                                                            \
    const int8_t *w = m->blocks + b * 16 * kp;                                                                     \
    __m256 sum[4][2], corr[4][2];                                                                                  \
    for (int r = 0; r < R; r++) sum[r][0] = sum[r][1] = corr[r][0] = corr[r][1] = _mm256_setzero_ps();            \
    for (int64_t g = 0; g < groups; g++) {                                                                         \
        const int64_t q0 = g * quads_per_group;                                                                    \
        const int64_t q1 = q0 + quads_per_group < total_quads ? q0 + quads_per_group : total_quads;                \
        __m256i acc[4][2];                                                                                         \
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();                               \
        for (int64_t q = q0; q < q1; q++) {                                                                        \
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + 64 * q));                                   \
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + 64 * q + 32));                              \
            _mm_prefetch((const char *)(w + 64 * q + 1024), _MM_HINT_T1); /* into L2: see p512_w8a8_tile */        \
            const __m256i aw0 = VNNI || R == 1 ? w0 : _mm256_abs_epi8(w0);                                        \
            const __m256i aw1 = VNNI || R == 1 ? w1 : _mm256_abs_epi8(w1);                                        \
            for (int r = 0; r < R; r++) {                                                                          \
                const __m256i xb = _mm256_set1_epi32(load_quad(xq + r * ldxq + 4 * q));                            \
                if (VNNI) {                                                                                        \
                    acc[r][0] = PA2_DPBUSD(acc[r][0], xb, w0);                                                     \
                    acc[r][1] = PA2_DPBUSD(acc[r][1], xb, w1);                                                     \
                } else if (R == 1) {                                                                               \
                    /* One row: |x| once instead of |w| twice. */                                                  \
                    const __m256i sx = _mm256_xor_si256(xb, _mm256_set1_epi8((char)0x80));                         \
                    const __m256i ax = _mm256_abs_epi8(sx), ones = _mm256_set1_epi16(1);                           \
                    acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(                                      \
                        _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, sx)), ones));                                \
                    acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(                                      \
                        _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, sx)), ones));                                \
                } else {                                                                                           \
                    const __m256i sx = _mm256_xor_si256(xb, _mm256_set1_epi8((char)0x80));                         \
                    const __m256i ones = _mm256_set1_epi16(1);                                                     \
                    acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(                                      \
                        _mm256_maddubs_epi16(aw0, _mm256_sign_epi8(sx, w0)), ones));                               \
                    acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(                                      \
                        _mm256_maddubs_epi16(aw1, _mm256_sign_epi8(sx, w1)), ones));                               \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        float swl[16], compl_[16];                                                                                 \
        lane_scales(m, b, g, swl, compl_);                                                                         \
        const int32_t *sums = m->sums + (b * groups + g) * 16;                                                     \
        for (int h = 0; h < 2; h++) {                                                                              \
            const __m256 sw = _mm256_loadu_ps(swl + 8 * h), comp = _mm256_loadu_ps(compl_ + 8 * h);                \
            const __m256i s128 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(sums + 8 * h)), 7);        \
            for (int r = 0; r < R; r++) {                                                                          \
                const __m256i dot = VNNI ? acc[r][h] : _mm256_add_epi32(acc[r][h], s128);                          \
                const __m256 sx = _mm256_set1_ps(xs[r * groups + g]);                                              \
                sum[r][h] = _mm256_add_ps(sum[r][h], _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sw, sx))); \
                corr[r][h] = _mm256_add_ps(corr[r][h], _mm256_mul_ps(comp, sx));                                   \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    for (int r = 0; r < R; r++) {                                                                                  \
        float out[16];                                                                                             \
        _mm256_storeu_ps(out, _mm256_sub_ps(sum[r][0], corr[r][0]));                                               \
        _mm256_storeu_ps(out + 8, _mm256_sub_ps(sum[r][1], corr[r][1]));                                           \
        store_rows(m, b, out, y + r * ldy);                                                                        \
    }

#define PA2_DPBUSD(acc, x, w) _mm256_dpbusd_avx_epi32(acc, x, w)
PVNNI_TARGET PX_INLINE void pa2_w8a8_tile_vnni(const flint_packed_int8 *m, int64_t b, const uint8_t *xq,
                                               int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    PA2_W8A8_TILE(1)
}
#undef PA2_DPBUSD
#define PA2_DPBUSD(acc, x, w) (acc)
PA2_TARGET PX_INLINE void pa2_w8a8_tile_plain(const flint_packed_int8 *m, int64_t b, const uint8_t *xq,
                                              int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    PA2_W8A8_TILE(0)
}
#undef PA2_DPBUSD

#define PA2_DRIVER(TILE)                                                                                           \
    const int64_t groups = m->groups;                                                                              \
    const int64_t x_block = packed_x_block(ldxq);                                                                  \
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {                                               \
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;                                 \
        for (int64_t b = block_begin; b < block_end; b++) {                                                        \
            int64_t r = r_begin;                                                                                   \
            if (groups == 1)                                                                                       \
                for (; r + 4 <= r_end; r += 4) TILE(m, b, xq + r * ldxq, ldxq, xs + r * groups, 4, y + r * ldy, ldy); \
            for (; r + 2 <= r_end; r += 2) TILE(m, b, xq + r * ldxq, ldxq, xs + r * groups, 2, y + r * ldy, ldy);  \
            for (; r < r_end; r++) TILE(m, b, xq + r * ldxq, ldxq, xs + r * groups, 1, y + r * ldy, ldy);         \
        }                                                                                                          \
    }

// Prefill without VNNI (per-row scales, more than 8 rows): int16 operands and `vpmaddwd` alone. On Zen 4 the
// byte tile's `vpsignb`, `vpmaddubsw` and `vpmaddwd` all issue to the same two vector pipes, three of them per 32
// products (plus `vpabsb`); `vpmaddwd` on int16 needs two per 32 products, and its int32 pair sums of int8 codes
// are exact, so the dot products are the same exact int32 as every other path's (the byte tile's `+ 128 · Σ q`
// then makes them the unsigned sums). The weights of a block are widened once per pass of activation rows,
// re-ordered so that one int32 lane is one output row (lane l sums inputs 4q, 4q+1 in one vector and 4q+2, 4q+3 in
// the next), and the activation rows once per call, into per-thread scratch. flan-t5-small and -base encoder
// shapes at 512 rows, one thread, Zen 4: 62 -> 74 GMAC/s (medians, the two kernels alternating in one process).
typedef struct {
    int16_t *memory;
    size_t capacity;  ///< int16 values
} pa2_wide_scratch;

static _Thread_local pa2_wide_scratch pa2_scratch;

/// `count` int16 of this thread's scratch (kept for the thread's lifetime), or NULL when it cannot be had.
static int16_t *pa2_wide_memory(size_t count) {
    if (pa2_scratch.capacity >= count) return pa2_scratch.memory;
    free(pa2_scratch.memory);
    pa2_scratch.memory = aligned_alloc(64, (count * sizeof(int16_t) + 63) / 64 * 64);
    pa2_scratch.capacity = pa2_scratch.memory ? count : 0;
    return pa2_scratch.memory;
}

/// Activation rows per pass of the wide path (multiple of 4, at least 32): about 512 KB of int16 codes (half the
/// 1 MB L2 of Zen 4; each pass widens every weight block of the call again, and at 256 KB flan-t5-base's k = 2048
/// layers took 8 passes of 64 rows).
static inline int64_t pa2_wide_x_block(int64_t k_padded) {
    int64_t rows = (512 * 1024) / (2 * k_padded);
    rows &= ~(int64_t)3;
    return rows < 32 ? 32 : rows;
}

/// Rows `xq` (bytes q + 128, k_padded read per row) → int16, row stride k_padded: signed q, or with UNSIGNED the
/// bytes q + 128 themselves and `sums[r]` = Σ over the row's k bytes (the unsigned tile subtracts 128 · that).
PA2_TARGET PX_INLINE void pa2_widen_x(const uint8_t *xq, int64_t ldxq, int64_t rows, int64_t k, int64_t kp,
                                      int16_t *x16, const int UNSIGNED, int32_t *sums) {
    const __m256i offset = _mm256_set1_epi16(UNSIGNED ? 0 : 128);
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = xq + r * ldxq;
        int16_t *dst = x16 + r * kp;
        int64_t i = 0;
        for (; i + 16 <= kp; i += 16) {
            const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(src + i)));
            _mm256_storeu_si256((__m256i *)(dst + i), _mm256_sub_epi16(v, offset));
        }
        for (; i < kp; i++) dst[i] = (int16_t)((int)src[i] - (UNSIGNED ? 0 : 128));
        if (UNSIGNED) {
            // Σ of the k bytes (the padding bytes meet zero weights in the unsigned copy of the block).
            const __m256i zero = _mm256_setzero_si256();
            __m256i acc = zero;
            int64_t j = 0;
            for (; j + 32 <= k; j += 32)
                acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(src + j)), zero));
            int64_t lanes[4];
            _mm256_storeu_si256((__m256i *)lanes, acc);
            int64_t total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
            for (; j < k; j++) total += src[j];
            sums[r] = (int32_t)total;
        }
    }
}

/// Block b's weights → int16, per quad q four vectors of 16: rows 0–7 inputs (4q, 4q+1) as pairs, rows 0–7 inputs
/// (4q+2, 4q+3), then the same for rows 8–15.
PA2_TARGET PX_INLINE void pa2_widen_block(const flint_packed_int8 *m, int64_t b, int16_t *w16, const int UNSIGNED) {
    const int64_t quads = m->k_padded / 4;
    const int8_t *w = m->blocks + b * 16 * m->k_padded;
    // Per 128-bit half (4 rows × 4 bytes): the (j0, j1) bytes of the 4 rows, then their (j2, j3) bytes.
    const __m256i pairs = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                           0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    for (int64_t q = 0; q < quads; q++)
        for (int h = 0; h < 2; h++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(w + 64 * q + 32 * h));
            // [rows 0–3 j01 | rows 0–3 j23 | rows 4–7 j01 | rows 4–7 j23] → [rows 0–7 j01 | rows 0–7 j23]
            const __m256i t = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, pairs), 0xD8);
            const __m256i offset = _mm256_set1_epi16(UNSIGNED ? 128 : 0);
            _mm256_storeu_si256((__m256i *)(w16 + 64 * q + 32 * h),
                                _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(t)), offset));
            _mm256_storeu_si256((__m256i *)(w16 + 64 * q + 32 * h + 16),
                                _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(t, 1)), offset));
        }
    // Unsigned copy: the padding inputs k…k_padded−1 get weight 0 (not 0 + 128), so the activation bytes there,
    // which may hold anything, add nothing.
    if (UNSIGNED)
        for (int64_t i = m->k; i < m->k_padded; i++)
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 8; l++) w16[64 * (i / 4) + 32 * h + 16 * ((i % 4) / 2) + 2 * l + (i % 2)] = 0;
}

/// The per-block constants of the W8A8 epilogue (group 0 of block b): lane scales, compensations and `128 · Σ q`,
/// made once per block and pass instead of once per tile (the scalar loop of lane_scales was ~3 % of a tile).
typedef struct {
    __m256 sw[2], comp[2];
    __m256i s128[2];
} pa2_block_epilogue;

PA2_TARGET PX_INLINE pa2_block_epilogue pa2_block_constants(const flint_packed_int8 *m, int64_t b) {
    float swl[16], compl_[16];
    lane_scales(m, b, 0, swl, compl_);
    const int32_t *sums = m->sums + b * 16;
    pa2_block_epilogue e;
    for (int h = 0; h < 2; h++) {
        e.sw[h] = _mm256_loadu_ps(swl + 8 * h);
        e.comp[h] = _mm256_loadu_ps(compl_ + 8 * h);
        e.s128[h] = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(sums + 8 * h)), 7);
    }
    return e;
}

/// The wide tiles' epilogue: the unsigned sums Σ xq · w of R rows × 16 outputs (as the byte tile has them) → y,
/// the portable kernel's float operations in its order.
PA2_TARGET PX_INLINE void pa2_wide_store(const flint_packed_int8 *m, int64_t b, const pa2_block_epilogue *e,
                                         __m256i dot[][2], const float *xs, const int R, float *y, int64_t ldy) {
    const __m256 zero = _mm256_setzero_ps();
    for (int r = 0; r < R; r++) {
        const __m256 sx = _mm256_set1_ps(xs[r]);
        float out[16];
        for (int h = 0; h < 2; h++) {
            const __m256 sum = _mm256_add_ps(zero, _mm256_mul_ps(_mm256_cvtepi32_ps(dot[r][h]), _mm256_mul_ps(e->sw[h], sx)));
            const __m256 corr = _mm256_add_ps(zero, _mm256_mul_ps(e->comp[h], sx));
            _mm256_storeu_ps(out + 8 * h, _mm256_sub_ps(sum, corr));
        }
        store_rows(m, b, out, y + r * ldy);
    }
}

/// R int16 activation rows × block b (widened): the exact int32 sums, then the portable epilogue for one group.
PA2_TARGET PX_INLINE void pa2_wide_tile(const flint_packed_int8 *m, int64_t b, const pa2_block_epilogue *e,
                                        const int16_t *w16, const int16_t *x16, const float *xs, const int R,
                                        float *y, int64_t ldy) {
    const int64_t kp = m->k_padded, quads = kp / 4;
    __m256i acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t q = 0; q < quads; q++) {
        __m256i wv[4];
        for (int v = 0; v < 4; v++) wv[v] = _mm256_loadu_si256((const __m256i *)(w16 + 64 * q + 16 * v));
        for (int r = 0; r < R; r++) {
            int32_t lo, hi;
            memcpy(&lo, x16 + r * kp + 4 * q, 4);
            memcpy(&hi, x16 + r * kp + 4 * q + 2, 4);
            const __m256i x01 = _mm256_set1_epi32(lo), x23 = _mm256_set1_epi32(hi);
            for (int h = 0; h < 2; h++)
                acc[r][h] = _mm256_add_epi32(acc[r][h], _mm256_add_epi32(_mm256_madd_epi16(wv[2 * h], x01),
                                                                         _mm256_madd_epi16(wv[2 * h + 1], x23)));
        }
    }
    // The signed sums plus 128 · Σ q: the unsigned sums, as in the byte tile.
    for (int r = 0; r < R; r++)
        for (int h = 0; h < 2; h++) acc[r][h] = _mm256_add_epi32(acc[r][h], e->s128[h]);
    pa2_wide_store(m, b, e, acc, xs, R, y, ldy);
}

/// The wide tile on unsigned copies (x: bytes q + 128, w: q + 128, both 0…255 as int16), for the default MXCSR:
/// `vpmaddwd` pair sums are then 0…130050, and they are accumulated with `vaddps` as the bit patterns of
/// denormal / smallest-exponent floats, whose spacing is one unit up to 2^24 units, so float addition of them is
/// exact integer addition. On Zen 4 a `vpaddd` fed by `vpmaddwd` competes with it for the two multiply pipes
/// (81 % of the vpmaddwd rate in a microbenchmark), `vaddps` runs on the two FP-add pipes beside it (99 %).
/// 64 quads add at most 64 · 2 · 130050 < 2^24 units per lane; then the float sums are flushed (as int32 bits)
/// into int32 totals: Σ xq · (w + 128) = Σ xq · w + 128 · Σ xq ≤ 255 · 255 · k_padded (k_padded ≤ 32768 here).
/// The result is the byte tile's unsigned sum Σ xq · w exactly, and the epilogue is the same.
PA2_TARGET PX_INLINE void pa2_wide_tile_unsigned(const flint_packed_int8 *m, int64_t b, const pa2_block_epilogue *e,
                                                 const int16_t *w16, const int16_t *x16, const int32_t *xsum,
                                                 const float *xs, const int R, float *y, int64_t ldy) {
    const int64_t kp = m->k_padded, quads = kp / 4;
    __m256i total[4][2];
    for (int r = 0; r < R; r++) total[r][0] = total[r][1] = _mm256_setzero_si256();
    for (int64_t q0 = 0; q0 < quads; q0 += 64) {
        const int64_t q1 = q0 + 64 < quads ? q0 + 64 : quads;
        __m256 acc[4][2];
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int64_t q = q0; q < q1; q++) {
            __m256i wv[4];
            for (int v = 0; v < 4; v++) wv[v] = _mm256_loadu_si256((const __m256i *)(w16 + 64 * q + 16 * v));
            for (int r = 0; r < R; r++) {
                int32_t lo, hi;
                memcpy(&lo, x16 + r * kp + 4 * q, 4);
                memcpy(&hi, x16 + r * kp + 4 * q + 2, 4);
                const __m256i x01 = _mm256_set1_epi32(lo), x23 = _mm256_set1_epi32(hi);
                for (int h = 0; h < 2; h++)
                    acc[r][h] = _mm256_add_ps(acc[r][h],
                                              _mm256_add_ps(_mm256_castsi256_ps(_mm256_madd_epi16(wv[2 * h], x01)),
                                                            _mm256_castsi256_ps(_mm256_madd_epi16(wv[2 * h + 1], x23))));
            }
        }
        for (int r = 0; r < R; r++)
            for (int h = 0; h < 2; h++) total[r][h] = _mm256_add_epi32(total[r][h], _mm256_castps_si256(acc[r][h]));
    }
    for (int r = 0; r < R; r++)
        for (int h = 0; h < 2; h++) total[r][h] = _mm256_sub_epi32(total[r][h], _mm256_set1_epi32(xsum[r] * 128));
    pa2_wide_store(m, b, e, total, xs, R, y, ldy);
}

/// The AVX-VNNI prefill tile for per-row scales (one group), as p512_w8a8_row_tile is for AVX-512: R activation
/// rows × one block of int32 sums over the whole row, then the wide tiles' one-group epilogue (pa2_wide_store) straight from the accumulators.
/// Without the group tile's float partial sums, 6 rows fit the 16 ymm registers (12 accumulators, the block's two
/// halves, a broadcast): 12 dot products per 2 weight loads and 6 broadcasts, enough independent sums to cover the
/// dot product's latency at two per cycle. flan-t5-small and -base encoder shapes at 512 rows, one thread, Intel
/// Xeon (Emerald Rapids): 108 -> 121 GMAC/s (medians of 6 alternating rounds); 4 rows: 108, 7 rows spill.
PVNNI_TARGET PX_INLINE void pa2_vnni_row_tile(const flint_packed_int8 *m, int64_t b, const uint8_t *xq, int64_t ldxq,
                                              const float *xs, const int R, float *y, int64_t ldy) {
    const int64_t quads = m->k_padded / 4;
    const int8_t *w = m->blocks + b * 16 * m->k_padded;
    __m256i acc[6][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t q = 0; q < quads; q++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + 64 * q));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + 64 * q + 32));
        for (int r = 0; r < R; r++) {
            const __m256i xb = _mm256_set1_epi32(load_quad(xq + r * ldxq + 4 * q));
            acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], xb, w0);
            acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], xb, w1);
        }
    }
    const pa2_block_epilogue e = pa2_block_constants(m, b);
    pa2_wide_store(m, b, &e, acc, xs, R, y, ldy);
}

PVNNI_TARGET static void pa2_w8a8_vnni(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                       const uint8_t *xq, int64_t ldxq, const float *xs, int64_t rows, float *y,
                                       int64_t ldy) {
    if (m->groups == 1 && rows > 8) {
        const int64_t x_block = packed_x_block(ldxq);
        for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
            const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
            for (int64_t b = block_begin; b < block_end; b++) {
                int64_t r = r_begin;
#define PA2_VNNI_ROWS(R)                                                                                           \
                for (; r + (R) <= r_end; r += (R)) pa2_vnni_row_tile(m, b, xq + r * ldxq, ldxq, xs + r, R, y + r * ldy, ldy)
                PA2_VNNI_ROWS(6);
                PA2_VNNI_ROWS(4);
                PA2_VNNI_ROWS(2);
                PA2_VNNI_ROWS(1);
#undef PA2_VNNI_ROWS
            }
        }
        return;
    }
    PA2_DRIVER(pa2_w8a8_tile_vnni)
}

/// Nanoseconds for 16 runs of one 4-row wide tile over the probe's block, signed or unsigned (one timing).
PA2_TARGET static int64_t pa2_time_tile(const flint_packed_int8 *m, const pa2_block_epilogue *e, const int16_t *w16,
                                        const int16_t *x16, const int32_t *xsum, const float *xs, float *y,
                                        const int UNSIGNED) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int n = 0; n < 16; n++) {
        if (UNSIGNED) pa2_wide_tile_unsigned(m, 0, e, w16, x16, xsum, xs, 4, y, 16);
        else pa2_wide_tile(m, 0, e, w16, x16, xs, 4, y, 16);
        __asm__ volatile("" : : "r"(y) : "memory");  // every run stores y, which escapes: none is merged away
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
}

/// 1 when the unsigned tile (`vaddps` on denormal bit patterns) runs faster on this CPU than the signed one
/// (`vpaddd`), timed once per process on a synthetic block (16 rows × 256 inputs, 4 activation rows, both tiles
/// alternating, best of 5 each; ~50 µs). Both give the same exact sums, so only speed is at stake, and it differs by
/// core: on Zen 4 `vpaddd` fed by `vpmaddwd` competes with it for the multiply pipes and the unsigned tile wins; on
/// Zen 3 `vaddps` of `vpmaddwd` results ran at about 1 per cycle against 1.5 for `vpaddd` (microbenchmark), and
/// flan-t5-base's 512-token prefill was 12 % faster with the signed tile (medians of 5 alternating rounds); a core
/// that takes a microcode assist for denormals (older Intel cores may, ~150 cycles each) would run the unsigned one
/// tens of times slower. The timing makes each CPU pick its own. `FLINT_AVX2_UNSIGNED_TILE=0|1` forces the choice
/// (tests, measurements); an allocation failure keeps the signed tile.
PA2_TARGET static int pa2_unsigned_tile_faster(void) {
    static int known = -1;  // -1 unknown, else the answer; a racing first call just measures twice
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    const char *force = getenv("FLINT_AVX2_UNSIGNED_TILE");
    if (force && (force[0] == '0' || force[0] == '1') && force[1] == 0) {
        v = force[0] == '1';
    } else {
        enum { K = 256, ROWS = 4 };
        // Weights and activation bytes spread over their whole ranges, as real codes are (the unsigned pair sums are
        // then denormals up to 130050 units, the case a slow core would stall on).
        int8_t *codes = aligned_alloc(64, 16 * K);
        uint8_t *xq = aligned_alloc(64, ROWS * K);
        int16_t *wide = aligned_alloc(64, sizeof(int16_t) * (2 * 16 * K + 2 * ROWS * K));
        v = 0;
        if (codes && xq && wide) {
            int32_t sums[16] = {0}, xsum[2][ROWS];
            float scales[16], xs[ROWS] = {1, 1, 1, 1}, y[ROWS * 16];
            uint32_t seed = 12345;
            for (int i = 0; i < 16 * K; i++) {
                seed = seed * 1664525u + 1013904223u;
                codes[i] = (int8_t)((int)(seed >> 24) % 255 - 127);
                sums[(i % 64) / 4] += codes[i];  // byte 4l + j of each quad is row l's
            }
            for (int i = 0; i < ROWS * K; i++) {
                seed = seed * 1664525u + 1013904223u;
                xq[i] = (uint8_t)(seed >> 24);
            }
            for (int l = 0; l < 16; l++) scales[l] = 1.0f / 4096;
            const flint_packed_int8 m = {codes, sums, scales, 16, K, K, K, 1};
            const pa2_block_epilogue e = pa2_block_constants(&m, 0);
            int16_t *w16[2] = {wide, wide + 16 * K}, *x16[2] = {wide + 32 * K, wide + 32 * K + ROWS * K};
            for (int u = 0; u < 2; u++) {
                pa2_widen_block(&m, 0, w16[u], u);
                pa2_widen_x(xq, K, ROWS, K, K, x16[u], u, xsum[u]);
            }
            int64_t best[2] = {INT64_MAX, INT64_MAX};
            for (int trial = 0; trial < 5; trial++)
                for (int u = 0; u < 2; u++) {
                    const int tile = trial % 2 ? 1 - u : u;  // alternate which tile runs first
                    const int64_t ns = pa2_time_tile(&m, &e, w16[tile], x16[tile], xsum[tile], xs, y, tile);
                    if (ns < best[tile]) best[tile] = ns;
                }
            v = best[1] < best[0];
        }
        free(codes);
        free(xq);
        free(wide);
    }
    __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    return v;
}

/// The wide path for per-row scales; 0 when its scratch could not be allocated (the caller then runs the byte
/// tiles).
/// One pass of the wide path over the blocks, signed (UNSIGNED 0) or unsigned copies.
#define PA2_WIDE_PASS(UNSIGNED, TILE_CALL)                                                                          \
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {                                               \
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;                                 \
        pa2_widen_x(xq + r_begin * ldxq, ldxq, r_end - r_begin, m->k, kp, x16, UNSIGNED, xsum);                   \
        for (int64_t b = block_begin; b < block_end; b++) {                                                        \
            pa2_widen_block(m, b, w16, UNSIGNED);                                                                  \
            const pa2_block_epilogue e = pa2_block_constants(m, b);                                                \
            int64_t r = r_begin;                                                                                   \
            for (; r + 4 <= r_end; r += 4) TILE_CALL(4);                                                           \
            for (; r + 2 <= r_end; r += 2) TILE_CALL(2);                                                           \
            for (; r < r_end; r++) TILE_CALL(1);                                                                   \
        }                                                                                                          \
    }

PA2_TARGET static int pa2_w8a8_wide(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                    const uint8_t *xq, int64_t ldxq, const float *xs, int64_t rows, float *y,
                                    int64_t ldy) {
    const int64_t kp = m->k_padded;
    const int64_t x_block = pa2_wide_x_block(kp);
    const int64_t x_rows = x_block < rows ? x_block : rows;
    // int16 block + int16 activation rows + their int32 byte sums.
    int16_t *memory = pa2_wide_memory((size_t)(16 * kp + x_rows * kp + 2 * x_rows));
    if (!memory) return 0;
    int16_t *w16 = memory, *x16 = memory + 16 * kp;
    int32_t *xsum = (int32_t *)(x16 + x_rows * kp);
    // The unsigned tile needs floats that are neither flushed to zero (FTZ) nor read as zero (DAZ): under a
    // non-default MXCSR, past its int32 bound, and on a CPU where it is the slower tile, the signed tile runs (same
    // results).
    const int default_csr = (_mm_getcsr() & 0x8040) == 0;
    if (default_csr && kp <= 32768 && pa2_unsigned_tile_faster()) {
#define PA2_U_TILE(R) pa2_wide_tile_unsigned(m, b, &e, w16, x16 + (r - r_begin) * kp, xsum + (r - r_begin), xs + r, \
                                             R, y + r * ldy, ldy)
        PA2_WIDE_PASS(1, PA2_U_TILE)
#undef PA2_U_TILE
    } else {
#define PA2_S_TILE(R) pa2_wide_tile(m, b, &e, w16, x16 + (r - r_begin) * kp, xs + r, R, y + r * ldy, ldy)
        PA2_WIDE_PASS(0, PA2_S_TILE)
#undef PA2_S_TILE
    }
    return 1;
}

PA2_TARGET void flint_avx2_packed_w8a8_plain(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                             const uint8_t *xq, int64_t ldxq, const float *xs, int64_t rows,
                                             float *y, int64_t ldy) {
    if (!flint_isa_supported(FLINT_ISA_AVX2)) return;
    if (m->groups == 1 && rows > 8 && pa2_w8a8_wide(m, block_begin, block_end, xq, ldxq, xs, rows, y, ldy)) return;
    PA2_DRIVER(pa2_w8a8_tile_plain)
}

void flint_avx2_packed_w8a8(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end, const uint8_t *xq,
                            int64_t ldxq, const float *xs, int64_t rows, float *y, int64_t ldy) {
    static int vnni = -1;
    if (vnni < 0) vnni = flint_isa_has_dot_product(FLINT_ISA_AVX2);
    if (vnni) pa2_w8a8_vnni(m, block_begin, block_end, xq, ldxq, xs, rows, y, ldy);
    else flint_avx2_packed_w8a8_plain(m, block_begin, block_end, xq, ldxq, xs, rows, y, ldy);
}

#define PA2_BYTE(v, j) _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 24 - 8 * (j)), 24))

PA2_TARGET PX_INLINE void pa2_weight_only_tile(const flint_packed_int8 *m, int64_t b, const float *x, int64_t ldx,
                                               const int R, float *y, int64_t ldy) {
    const int64_t k = m->k, kp = m->k_padded, groups = m->groups;
    const int64_t quads_per_group = groups == 1 ? kp / 4 : m->group_size / 4;
    const int64_t total_quads = kp / 4, full_quads = k / 4;
    const int8_t *w = m->blocks + b * 16 * kp;
    __m256 total[4][2];
    for (int r = 0; r < R; r++) total[r][0] = total[r][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        const int64_t q0 = g * quads_per_group;
        const int64_t q1 = q0 + quads_per_group < total_quads ? q0 + quads_per_group : total_quads;
        __m256 acc[4][2];
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int64_t q = q0; q < q1; q++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + 64 * q));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + 64 * q + 32));
            if (R == 1) _mm_prefetch((const char *)(w + 64 * q + 1024), _MM_HINT_T0);
            const int inputs = q < full_quads ? 4 : (int)(k - 4 * q);
            for (int j = 0; j < 4; j++) {
                if (j >= inputs) break;
                __m256 f0, f1;
                switch (j) {
                case 0: f0 = PA2_BYTE(w0, 0); f1 = PA2_BYTE(w1, 0); break;
                case 1: f0 = PA2_BYTE(w0, 1); f1 = PA2_BYTE(w1, 1); break;
                case 2: f0 = PA2_BYTE(w0, 2); f1 = PA2_BYTE(w1, 2); break;
                default: f0 = PA2_BYTE(w0, 3); f1 = PA2_BYTE(w1, 3); break;
                }
                for (int r = 0; r < R; r++) {
                    const __m256 xb = _mm256_set1_ps(x[r * ldx + 4 * q + j]);
                    acc[r][0] = _mm256_fmadd_ps(f0, xb, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(f1, xb, acc[r][1]);
                }
            }
        }
        float swl[16], unused[16];
        lane_scales(m, b, g, swl, unused);
        const __m256 s0 = _mm256_loadu_ps(swl), s1 = _mm256_loadu_ps(swl + 8);
        for (int r = 0; r < R; r++) {
            total[r][0] = _mm256_fmadd_ps(acc[r][0], s0, total[r][0]);
            total[r][1] = _mm256_fmadd_ps(acc[r][1], s1, total[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        float out[16];
        _mm256_storeu_ps(out, total[r][0]);
        _mm256_storeu_ps(out + 8, total[r][1]);
        store_rows(m, b, out, y + r * ldy);
    }
}

PA2_TARGET void flint_avx2_packed_weight_only(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                              const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    if (!flint_isa_supported(FLINT_ISA_AVX2)) return;
    const int64_t x_block = packed_x_block(ldx * (int64_t)sizeof(float));
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
        for (int64_t b = block_begin; b < block_end; b++) {
            int64_t r = r_begin;
            for (; r + 4 <= r_end; r += 4) pa2_weight_only_tile(m, b, x + r * ldx, ldx, 4, y + r * ldy, ldy);
            for (; r < r_end; r++) pa2_weight_only_tile(m, b, x + r * ldx, ldx, 1, y + r * ldy, ldy);
        }
    }
}

#else
void flint_avx512_packed_w8a8(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end, const uint8_t *xq,
                              int64_t ldxq, const float *xs, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)block_begin; (void)block_end; (void)xq; (void)ldxq; (void)xs; (void)rows; (void)y; (void)ldy;
}
void flint_avx512_packed_weight_only(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                     const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)block_begin; (void)block_end; (void)x; (void)ldx; (void)rows; (void)y; (void)ldy;
}
void flint_avx2_packed_w8a8(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end, const uint8_t *xq,
                            int64_t ldxq, const float *xs, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)block_begin; (void)block_end; (void)xq; (void)ldxq; (void)xs; (void)rows; (void)y; (void)ldy;
}
void flint_avx2_packed_w8a8_plain(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                  const uint8_t *xq, int64_t ldxq, const float *xs, int64_t rows, float *y,
                                  int64_t ldy) {
    (void)m; (void)block_begin; (void)block_end; (void)xq; (void)ldxq; (void)xs; (void)rows; (void)y; (void)ldy;
}
void flint_avx2_packed_weight_only(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                   const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)block_begin; (void)block_end; (void)x; (void)ldx; (void)rows; (void)y; (void)ldy;
}
#endif

// =================================================================================================================
#if defined(__aarch64__) && (defined(__clang__) || defined(__GNUC__))
#include <arm_neon.h>

#define PN_DOT_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#define PN_INLINE static inline __attribute__((always_inline))

int flint_neon_path_has_dot(void);

/// One quad step for 4 rows without sdot: bytes 0–7 are rows 0–1, 8–15 rows 2–3; `smull` then pairwise adds into
/// two int32x4 (row 0 lo/hi pair, row 1 …), folded into one lane per row at the end of the group.
PN_INLINE void pn_plain_step(int32x4_t *lo, int32x4_t *hi, int8x16_t w, int8x16_t x) {
    *lo = vpadalq_s16(*lo, vmull_s8(vget_low_s8(w), vget_low_s8(x)));
    *hi = vpadalq_s16(*hi, vmull_high_s8(w, x));
}

/// The tile body. DOT: a literal; plain tiles keep two int32x4 per 4 rows.
#define PN_W8A8_TILE(DOT)                                                                                          \
    const int64_t kp = m->k_padded, groups = m->groups;                                                            \
    const int64_t quads_per_group = groups == 1 ? kp / 4 : m->group_size / 4;                                      \
    const int64_t total_quads = kp / 4;                                                                            \
    const int8_t *w = m->blocks + b * 16 * kp;                                                                     \
    float32x4_t sum[2][4], corr[2][4];                                                                             \
    for (int r = 0; r < R; r++)                                                                                    \
        for (int h = 0; h < 4; h++) sum[r][h] = corr[r][h] = vdupq_n_f32(0);                                       \
    for (int64_t g = 0; g < groups; g++) {                                                                         \
        const int64_t q0 = g * quads_per_group;                                                                    \
        const int64_t q1 = q0 + quads_per_group < total_quads ? q0 + quads_per_group : total_quads;                \
        int32x4_t acc[2][4], acc2[2][4];                                                                           \
        for (int r = 0; r < R; r++)                                                                                \
            for (int h = 0; h < 4; h++) acc[r][h] = acc2[r][h] = vdupq_n_s32(0);                                   \
        for (int64_t q = q0; q < q1; q++) {                                                                        \
            int8x16_t wv[4];                                                                                       \
            for (int h = 0; h < 4; h++) wv[h] = vld1q_s8(w + 64 * q + 16 * h);                                     \
            if (R == 1) __builtin_prefetch(w + 64 * q + 1024);                                                     \
            for (int r = 0; r < R; r++) {                                                                          \
                const int8x16_t xb = vreinterpretq_s8_s32(                                                         \
                    vdupq_n_s32(load_quad(xq + r * ldxq + 4 * q) ^ (int32_t)0x80808080u));                         \
                for (int h = 0; h < 4; h++) {                                                                      \
                    if (DOT) acc[r][h] = PN_SDOT(acc[r][h], wv[h], xb);                                            \
                    else pn_plain_step(&acc[r][h], &acc2[r][h], wv[h], xb);                                        \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        float swl[16], compl_[16];                                                                                 \
        lane_scales(m, b, g, swl, compl_);                                                                         \
        const int32_t *sums = m->sums + (b * groups + g) * 16;                                                     \
        for (int h = 0; h < 4; h++) {                                                                              \
            const float32x4_t sw = vld1q_f32(swl + 4 * h), comp = vld1q_f32(compl_ + 4 * h);                       \
            const int32x4_t s128 = vshlq_n_s32(vld1q_s32(sums + 4 * h), 7);                                        \
            for (int r = 0; r < R; r++) {                                                                          \
                const int32x4_t signed_dot = DOT ? acc[r][h] : vpaddq_s32(acc[r][h], acc2[r][h]);                  \
                const int32x4_t dot = vaddq_s32(signed_dot, s128);                                                 \
                const float32x4_t sx = vdupq_n_f32(xs[r * groups + g]);                                            \
                sum[r][h] = vaddq_f32(sum[r][h], vmulq_f32(vcvtq_f32_s32(dot), vmulq_f32(sw, sx)));                \
                corr[r][h] = vaddq_f32(corr[r][h], vmulq_f32(comp, sx));                                           \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    for (int r = 0; r < R; r++) {                                                                                  \
        float out[16];                                                                                             \
        for (int h = 0; h < 4; h++) vst1q_f32(out + 4 * h, vsubq_f32(sum[r][h], corr[r][h]));                      \
        store_rows(m, b, out, y + r * ldy);                                                                        \
    }

#define PN_SDOT(acc, w, x) vdotq_s32(acc, w, x)
PN_DOT_TARGET PN_INLINE void pn_w8a8_tile_dot(const flint_packed_int8 *m, int64_t b, const uint8_t *xq,
                                              int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    PN_W8A8_TILE(1)
}
#undef PN_SDOT
#define PN_SDOT(acc, w, x) (acc)
PN_INLINE void pn_w8a8_tile_plain(const flint_packed_int8 *m, int64_t b, const uint8_t *xq, int64_t ldxq,
                                  const float *xs, const int R, float *y, int64_t ldy) {
    PN_W8A8_TILE(0)
}
#undef PN_SDOT

#define PN_DRIVER(TILE)                                                                                            \
    const int64_t groups = m->groups;                                                                              \
    const int64_t x_block = packed_x_block(ldxq);                                                                  \
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {                                               \
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;                                 \
        for (int64_t b = block_begin; b < block_end; b++) {                                                        \
            int64_t r = r_begin;                                                                                   \
            for (; r + 2 <= r_end; r += 2) TILE(m, b, xq + r * ldxq, ldxq, xs + r * groups, 2, y + r * ldy, ldy);  \
            for (; r < r_end; r++) TILE(m, b, xq + r * ldxq, ldxq, xs + r * groups, 1, y + r * ldy, ldy);         \
        }                                                                                                          \
    }

PN_DOT_TARGET static void pn_w8a8_dot(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                      const uint8_t *xq, int64_t ldxq, const float *xs, int64_t rows, float *y,
                                      int64_t ldy) {
    PN_DRIVER(pn_w8a8_tile_dot)
}

void flint_neon_packed_w8a8_plain(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                  const uint8_t *xq, int64_t ldxq, const float *xs, int64_t rows, float *y,
                                  int64_t ldy) {
    PN_DRIVER(pn_w8a8_tile_plain)
}

void flint_neon_packed_w8a8(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end, const uint8_t *xq,
                            int64_t ldxq, const float *xs, int64_t rows, float *y, int64_t ldy) {
    static int dot = -1;
    if (dot < 0) dot = flint_neon_path_has_dot();
    if (dot) pn_w8a8_dot(m, block_begin, block_end, xq, ldxq, xs, rows, y, ldy);
    else flint_neon_packed_w8a8_plain(m, block_begin, block_end, xq, ldxq, xs, rows, y, ldy);
}

#define PN_BYTE(v, j) vcvtq_f32_s32(vshrq_n_s32(vshlq_n_s32(v, 24 - 8 * (j)), 24))

PN_INLINE void pn_weight_only_tile(const flint_packed_int8 *m, int64_t b, const float *x, int64_t ldx, const int R,
                                   float *y, int64_t ldy) {
    const int64_t k = m->k, kp = m->k_padded, groups = m->groups;
    const int64_t quads_per_group = groups == 1 ? kp / 4 : m->group_size / 4;
    const int64_t total_quads = kp / 4, full_quads = k / 4;
    const int8_t *w = m->blocks + b * 16 * kp;
    float32x4_t total[2][4];
    for (int r = 0; r < R; r++)
        for (int h = 0; h < 4; h++) total[r][h] = vdupq_n_f32(0);
    for (int64_t g = 0; g < groups; g++) {
        const int64_t q0 = g * quads_per_group;
        const int64_t q1 = q0 + quads_per_group < total_quads ? q0 + quads_per_group : total_quads;
        float32x4_t acc[2][4];
        for (int r = 0; r < R; r++)
            for (int h = 0; h < 4; h++) acc[r][h] = vdupq_n_f32(0);
        for (int64_t q = q0; q < q1; q++) {
            int32x4_t wv[4];
            for (int h = 0; h < 4; h++) wv[h] = vreinterpretq_s32_s8(vld1q_s8(w + 64 * q + 16 * h));
            if (R == 1) __builtin_prefetch(w + 64 * q + 1024);
            const int inputs = q < full_quads ? 4 : (int)(k - 4 * q);
            for (int j = 0; j < 4; j++) {
                if (j >= inputs) break;
                float32x4_t f[4];
                for (int h = 0; h < 4; h++) {
                    switch (j) {
                    case 0: f[h] = PN_BYTE(wv[h], 0); break;
                    case 1: f[h] = PN_BYTE(wv[h], 1); break;
                    case 2: f[h] = PN_BYTE(wv[h], 2); break;
                    default: f[h] = PN_BYTE(wv[h], 3); break;
                    }
                }
                for (int r = 0; r < R; r++) {
                    const float32x4_t xb = vdupq_n_f32(x[r * ldx + 4 * q + j]);
                    for (int h = 0; h < 4; h++) acc[r][h] = vfmaq_f32(acc[r][h], f[h], xb);
                }
            }
        }
        float swl[16], unused[16];
        lane_scales(m, b, g, swl, unused);
        for (int h = 0; h < 4; h++) {
            const float32x4_t sw = vld1q_f32(swl + 4 * h);
            for (int r = 0; r < R; r++) total[r][h] = vfmaq_f32(total[r][h], acc[r][h], sw);
        }
    }
    for (int r = 0; r < R; r++) {
        float out[16];
        for (int h = 0; h < 4; h++) vst1q_f32(out + 4 * h, total[r][h]);
        store_rows(m, b, out, y + r * ldy);
    }
}

void flint_neon_packed_weight_only(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                   const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    const int64_t x_block = packed_x_block(ldx * (int64_t)sizeof(float));
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
        for (int64_t b = block_begin; b < block_end; b++) {
            int64_t r = r_begin;
            for (; r + 2 <= r_end; r += 2) pn_weight_only_tile(m, b, x + r * ldx, ldx, 2, y + r * ldy, ldy);
            for (; r < r_end; r++) pn_weight_only_tile(m, b, x + r * ldx, ldx, 1, y + r * ldy, ldy);
        }
    }
}

#else
void flint_neon_packed_w8a8(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end, const uint8_t *xq,
                            int64_t ldxq, const float *xs, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)block_begin; (void)block_end; (void)xq; (void)ldxq; (void)xs; (void)rows; (void)y; (void)ldy;
}
void flint_neon_packed_w8a8_plain(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                  const uint8_t *xq, int64_t ldxq, const float *xs, int64_t rows, float *y,
                                  int64_t ldy) {
    (void)m; (void)block_begin; (void)block_end; (void)xq; (void)ldxq; (void)xs; (void)rows; (void)y; (void)ldy;
}
void flint_neon_packed_weight_only(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                   const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)block_begin; (void)block_end; (void)x; (void)ldx; (void)rows; (void)y; (void)ldy;
}
#endif
