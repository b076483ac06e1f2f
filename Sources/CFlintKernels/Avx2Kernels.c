// The AVX2 + FMA path (x86-64-v3 CPUs: most laptops and cloud VMs without AVX-512), with AVX-VNNI `vpdpbusd` on
// ymm registers for the int8 dot products where the CPU has it. See include/CFlintKernels.h for the contract.
//
// 16 ymm registers (half of AVX-512's 32, each half as wide), so the register tiles are smaller than the AVX-512
// ones: a matrix-vector step keeps 8 weight rows' accumulators, a matrix-matrix step 2 x rows × 4 weight rows.
// The W8A8 epilogue runs with the 8 (or 4) weight rows of a tile in the lanes of one vector, so the per-row float
// arithmetic is the portable kernel's, in its order, with no fused multiply-add (bit-identical results).
#include "CFlintKernels.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define VNNI_TARGET __attribute__((target("avx2,fma,avxvnni")))
#define AVX2_INLINE static inline __attribute__((always_inline))

static int avx2_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/// AVX-VNNI, unless `FLINT_AVX_VNNI=0` says to run the AVX2 path as on a CPU without it (most of the AVX2 CPUs
/// in use: Zen 2-4, Intel before Alder Lake), to measure that path on one that has it. Read once.
static int avxvnni_supported(void) {
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    __builtin_cpu_init();
    const char *force = getenv("FLINT_AVX_VNNI");
    v = avx2_supported() && __builtin_cpu_supports("avxvnni") && !(force && force[0] == '0' && force[1] == 0);
    __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    return v;
}

int flint_avx2_path_supported(void) { return avx2_supported(); }
int flint_avx2_path_has_vnni(void) { return avxvnni_supported(); }

// ---------------------------------------------------------------------------------------------------------------
// Helpers.

/// Lane masks for `_mm256_maskload_ps`: the first `n` (0…8) lanes set.
AVX2_TARGET AVX2_INLINE __m256i lane_mask(int64_t n) {
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), index);
}

AVX2_TARGET AVX2_INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_TARGET AVX2_INLINE float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Eight int32 vectors → one vector of their eight lane sums (exact: integer adds).
AVX2_TARGET AVX2_INLINE __m256i hsum8_epi32(const __m256i a[8]) {
    const __m256i h01 = _mm256_hadd_epi32(a[0], a[1]), h23 = _mm256_hadd_epi32(a[2], a[3]);
    const __m256i h45 = _mm256_hadd_epi32(a[4], a[5]), h67 = _mm256_hadd_epi32(a[6], a[7]);
    const __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

/// Four int32 vectors → one vector of their four lane sums.
AVX2_TARGET AVX2_INLINE __m128i hsum4_epi32(const __m256i a[4]) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

AVX2_TARGET AVX2_INLINE int32_t hsum1_epi32(__m256i a) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// ---------------------------------------------------------------------------------------------------------------
// Activation quantizer (bit-identical to Int8ActivationQuantizer).

AVX2_TARGET AVX2_INLINE float quantize_block(const float *x, int64_t count, uint8_t *out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps(), check = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
        check = _mm256_add_ps(check, _mm256_mul_ps(v, _mm256_setzero_ps()));  // NaN exactly when v is NaN or ±∞
    }
    float m = hmax_ps(amax), finite = hsum_ps(check);
    for (; i < count; i++) {
        const float a = fabsf(x[i]);
        m = a > m ? a : m;
        finite += x[i] * 0.0f;
    }
    if (finite != 0.0f || !(m <= 3.4028235e38f) || m == 0.0f) {
        memset(out, 128, (size_t)count);
        return m == 0.0f && finite == 0.0f ? 0.0f : __builtin_nanf("");
    }
    const float inverse_s = 127.0f / m;
    const __m256 inverse = _mm256_set1_ps(inverse_s);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i offset = _mm256_set1_epi32(128);
    const __m256i pack_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    i = 0;
    for (; i + 32 <= count; i += 32) {
        __m256i q[4];
        for (int b = 0; b < 4; b++) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * b), inverse);
            v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            q[b] = _mm256_add_epi32(_mm256_cvtps_epi32(v), offset);  // MXCSR default: nearest, ties to even
        }
        // 32 int32 in [1, 255] → 32 bytes: packs work within 128-bit lanes, the permute restores the order.
        const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
        const __m256i bytes = _mm256_packus_epi16(w01, w23);
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_permutevar8x32_epi32(bytes, pack_order));
    }
    for (; i < count; i++) {
        float v = x[i] * inverse_s;
        v = v < -127.0f ? -127.0f : v;
        v = v > 127.0f ? 127.0f : v;
        out[i] = (uint8_t)((int)nearbyintf(v) + 128);
    }
    return m / 127.0f;
}

AVX2_TARGET void flint_avx2_int8_quantize_activations(const float *x, int64_t rows, int64_t k, int64_t group_size,
                                                      int64_t groups, uint8_t *xq, int64_t ldxq, float *scales) {
    if (!avx2_supported()) return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t start = g * group_size;
            const int64_t end = start + group_size < k ? start + group_size : k;
            scales[r * groups + g] = quantize_block(x + r * k + start, end - start, xq + r * ldxq + start);
        }
}

// ---------------------------------------------------------------------------------------------------------------
// W8A8. One tile = C weight rows (8, 4 or 1) × R x rows (1 or 2). Per group: exact Int32 dot products
// `Σ (q_x + 128) · q_w` (VNNI: vpdpbusd on the unsigned bytes directly; plain AVX2: vpmaddubsw of |q_x| and
// sign(q_w, q_x), which cannot saturate since both are ≤ 127, then `+ 128 · Σ q_w`), a scalar tail for groups
// whose length is not a multiple of 32, then the portable epilogue with the tile's rows in vector lanes.

/// The portable epilogue for up to 8 weight rows n…n+C−1 of one x row r and one group g:
/// sum[c] += float(dot[c]) · (scale_w[c] · scale_x), corr[c] += comp[c] · scale_x.
typedef struct {
    __m256 sum, corr;
} epilogue8;

AVX2_TARGET AVX2_INLINE void epilogue_step8(epilogue8 *e, __m256i dot, const flint_int8_matrix *m, int64_t n,
                                            int64_t g, float sx) {
    const int64_t groups = m->groups;
    const __m256i stride = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                              _mm256_set1_epi32((int)groups));
    const __m256 sw = _mm256_i32gather_ps(m->scales + n * groups + g, stride, 4);
    const __m256 comp = _mm256_i32gather_ps(m->compensation + n * groups + g, stride, 4);
    const __m256 vsx = _mm256_set1_ps(sx);
    e->sum = _mm256_add_ps(e->sum, _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sw, vsx)));
    e->corr = _mm256_add_ps(e->corr, _mm256_mul_ps(comp, vsx));
}

AVX2_TARGET AVX2_INLINE void epilogue_step4(__m128 *sum, __m128 *corr, __m128i dot, const flint_int8_matrix *m,
                                            int64_t n, int64_t g, float sx) {
    const int64_t groups = m->groups;
    const __m128i stride = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32((int)groups));
    const __m128 sw = _mm_i32gather_ps(m->scales + n * groups + g, stride, 4);
    const __m128 comp = _mm_i32gather_ps(m->compensation + n * groups + g, stride, 4);
    const __m128 vsx = _mm_set1_ps(sx);
    *sum = _mm_add_ps(*sum, _mm_mul_ps(_mm_cvtepi32_ps(dot), _mm_mul_ps(sw, vsx)));
    *corr = _mm_add_ps(*corr, _mm_mul_ps(comp, vsx));
}

/// Σ over one 32-byte chunk, plain AVX2: signed activations `sx = xq ^ 0x80`, `|sx|` as the unsigned operand.
AVX2_TARGET AVX2_INLINE __m256i dot_plain(__m256i acc, __m256i abs_x, __m256i signed_x, __m256i w) {
    const __m256i pairs = _mm256_maddubs_epi16(abs_x, _mm256_sign_epi8(w, signed_x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

/// The shared tile body; VNNI is a literal at every call site, so each variant compiles to its own loop.
#define W8A8_TILE_BODY(VNNI_DOT)                                                                                    \
    const int64_t k = m->k, gsize = m->group_size, groups = m->groups;                                             \
    const int8_t *w = m->weights + n * k;                                                                          \
    epilogue8 e8[2];                                                                                               \
    __m128 s4[2], c4[2];                                                                                           \
    float s1[2] = {0, 0}, c1[2] = {0, 0};                                                                          \
    for (int r = 0; r < R; r++) {                                                                                  \
        e8[r].sum = e8[r].corr = _mm256_setzero_ps();                                                              \
        s4[r] = c4[r] = _mm_setzero_ps();                                                                          \
    }                                                                                                              \
    for (int64_t g = 0; g < groups; g++) {                                                                         \
        const int64_t start = g * gsize;                                                                           \
        const int64_t end = start + gsize < k ? start + gsize : k;                                                 \
        __m256i acc[2][8];                                                                                         \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_si256();                                        \
        int64_t i = start;                                                                                         \
        for (; i + 32 <= end; i += 32) {                                                                           \
            __m256i xv[2], ax[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};                              \
            for (int r = 0; r < R; r++) {                                                                          \
                xv[r] = _mm256_loadu_si256((const __m256i *)(xq + r * ldxq + i));                                  \
                if (!VNNI_DOT) {                                                                                   \
                    xv[r] = _mm256_xor_si256(xv[r], _mm256_set1_epi8((char)0x80));                                 \
                    ax[r] = _mm256_abs_epi8(xv[r]);                                                                \
                }                                                                                                  \
            }                                                                                                      \
            (void)ax;                                                                                              \
            if (R == 1)                                                                                            \
                for (int c = 0; c < C; c++) _mm_prefetch((const char *)(w + (C + c) * k + i), _MM_HINT_T0);        \
            for (int c = 0; c < C; c++) {                                                                          \
                const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + c * k + i));                           \
                for (int r = 0; r < R; r++) acc[r][c] = DOT_STEP(VNNI_DOT, acc[r][c], xv[r], ax[r], wv);           \
            }                                                                                                      \
        }                                                                                                          \
        int32_t extra[2][8] = {{0}};                                                                               \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) {                                                                          \
                int32_t t = 0;                                                                                     \
                for (int64_t j = i; j < end; j++) t += (int32_t)xq[r * ldxq + j] * (int32_t)w[c * k + j];         \
                if (!VNNI_DOT) t += 128 * m->weight_sums[(n + c) * groups + g]                                     \
                                    - (i < end ? 128 * tail_weight_sum(w + c * k, i, end) : 0);                    \
                extra[r][c] = t;                                                                                   \
            }                                                                                                      \
        for (int r = 0; r < R; r++) {                                                                              \
            const float sx = xs[r * groups + g];                                                                   \
            const __m256i ev = _mm256_loadu_si256((const __m256i *)extra[r]);                                      \
            if (C == 8) {                                                                                          \
                epilogue_step8(&e8[r], _mm256_add_epi32(hsum8_epi32(acc[r]), ev), m, n, g, sx);                    \
            } else if (C == 4) {                                                                                   \
                epilogue_step4(&s4[r], &c4[r], _mm_add_epi32(hsum4_epi32(acc[r]), _mm256_castsi256_si128(ev)),     \
                               m, n, g, sx);                                                                       \
            } else {                                                                                               \
                const int32_t d = hsum1_epi32(acc[r][0]) + extra[r][0];                                            \
                s1[r] = s1[r] + (float)d * (m->scales[n * groups + g] * sx);                                       \
                c1[r] = c1[r] + m->compensation[n * groups + g] * sx;                                              \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    for (int r = 0; r < R; r++) {                                                                                  \
        float *out = y + r * ldy + n;                                                                              \
        if (C == 8) _mm256_storeu_ps(out, _mm256_sub_ps(e8[r].sum, e8[r].corr));                                   \
        else if (C == 4) _mm_storeu_ps(out, _mm_sub_ps(s4[r], c4[r]));                                             \
        else out[0] = s1[r] - c1[r];                                                                               \
    }

/// `Σ q_w` over [i, end) of one weight row: the part of a row's weight sum the vector loop did not see (the plain
/// kernel's vector sums are signed, so its `+ 128 · Σ q_w` must cover only the vector part).
AVX2_INLINE int32_t tail_weight_sum(const int8_t *w, int64_t i, int64_t end) {
    int32_t s = 0;
    for (int64_t j = i; j < end; j++) s += w[j];
    return s;
}

#define DOT_STEP(VNNI_DOT, acc, x, ax, w) dot_plain(acc, ax, x, w)
AVX2_TARGET AVX2_INLINE void w8a8_tile_plain(const flint_int8_matrix *m, int64_t n, const int C, const uint8_t *xq,
                                             int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    W8A8_TILE_BODY(0)
}
#undef DOT_STEP

#define DOT_STEP(VNNI_DOT, acc, x, ax, w) _mm256_dpbusd_avx_epi32(acc, x, w)
VNNI_TARGET AVX2_INLINE void w8a8_tile_vnni(const flint_int8_matrix *m, int64_t n, const int C, const uint8_t *xq,
                                            int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    W8A8_TILE_BODY(1)
}
#undef DOT_STEP

/// Cache blocking as in the AVX-512 kernel: 32 weight rows stay in L1/L2 while a 256 KB block of x rows passes.
enum { AVX2_BLOCK_ROWS = 32 };

static inline int64_t avx2_x_block_rows(int64_t row_bytes) {
    int64_t rows = (256 * 1024) / (row_bytes > 0 ? row_bytes : 1);
    rows &= ~(int64_t)1;
    return rows < 2 ? 2 : rows;
}

#define W8A8_DRIVER(TILE)                                                                                          \
    const int64_t groups = m->groups;                                                                              \
    const int64_t x_block = avx2_x_block_rows(ldxq);                                                               \
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {                                                \
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;                                 \
        for (int64_t block = n_begin; block < n_end; block += AVX2_BLOCK_ROWS) {                                   \
            const int64_t block_end = block + AVX2_BLOCK_ROWS < n_end ? block + AVX2_BLOCK_ROWS : n_end;           \
            int64_t r = r_begin;                                                                                   \
            for (; r + 2 <= r_end; r += 2) {                                                                       \
                const uint8_t *x = xq + r * ldxq;                                                                  \
                const float *s = xscales + r * groups;                                                             \
                float *yr = y + r * ldy;                                                                           \
                int64_t n = block;                                                                                 \
                for (; n + 4 <= block_end; n += 4) TILE(m, n, 4, x, ldxq, s, 2, yr, ldy);                          \
                for (; n < block_end; n++) TILE(m, n, 1, x, ldxq, s, 2, yr, ldy);                                  \
            }                                                                                                      \
            for (; r < r_end; r++) {                                                                               \
                const uint8_t *x = xq + r * ldxq;                                                                  \
                const float *s = xscales + r * groups;                                                             \
                float *yr = y + r * ldy;                                                                           \
                int64_t n = block;                                                                                 \
                for (; n + 8 <= block_end; n += 8) TILE(m, n, 8, x, ldxq, s, 1, yr, ldy);                          \
                for (; n + 4 <= block_end; n += 4) TILE(m, n, 4, x, ldxq, s, 1, yr, ldy);                          \
                for (; n < block_end; n++) TILE(m, n, 1, x, ldxq, s, 1, yr, ldy);                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

AVX2_TARGET void flint_avx2_int8_w8a8_plain(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end,
                                            const uint8_t *xq, int64_t ldxq, const float *xscales, int64_t rows,
                                            float *y, int64_t ldy) {
    if (!avx2_supported()) return;
    W8A8_DRIVER(w8a8_tile_plain)
}

VNNI_TARGET static void w8a8_vnni(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                                  int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    W8A8_DRIVER(w8a8_tile_vnni)
}

void flint_avx2_int8_w8a8(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                          int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    static int vnni = -1;
    if (vnni < 0) vnni = avxvnni_supported();
    if (vnni) w8a8_vnni(m, n_begin, n_end, xq, ldxq, xscales, rows, y, ldy);
    else flint_avx2_int8_w8a8_plain(m, n_begin, n_end, xq, ldxq, xscales, rows, y, ldy);
}

// ---------------------------------------------------------------------------------------------------------------
// Weight-only: 8 int8 weights → int32 → float per step, float accumulation (per-row scales applied once at the
// end, group scales folded into the weights per group), scalar tails.

AVX2_TARGET AVX2_INLINE __m256 load_weights8(const int8_t *w) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)w)));
}

AVX2_TARGET AVX2_INLINE void weight_only_tile(const flint_int8_matrix *m, int64_t n, const int C, const float *x,
                                              int64_t ldx, const int R, float *y, int64_t ldy) {
    const int64_t k = m->k, groups = m->groups;
    const int64_t gsize = groups == 1 ? k : m->group_size;
    const int8_t *w = m->weights + n * k;
    __m256 acc[4][8];
    float tail[4][8];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) { acc[r][c] = _mm256_setzero_ps(); tail[r][c] = 0; }
    for (int64_t g = 0; g < groups; g++) {
        const int64_t start = g * gsize;
        const int64_t end = start + gsize < k ? start + gsize : k;
        float scale[8];
        for (int c = 0; c < C; c++) scale[c] = groups == 1 ? 1.0f : m->scales[(n + c) * groups + g];
        int64_t i = start;
        for (; i + 8 <= end; i += 8) {
            __m256 wv[8], xv[4];
            for (int c = 0; c < C; c++) {
                const __m256 q = load_weights8(w + c * k + i);
                wv[c] = groups == 1 ? q : _mm256_mul_ps(q, _mm256_set1_ps(scale[c]));
            }
            if (R == 1 && ((i - start) & 63) == 0)
                for (int c = 0; c < C; c++) _mm_prefetch((const char *)(w + (C + c) * k + i), _MM_HINT_T0);
            for (int r = 0; r < R; r++) xv[r] = _mm256_loadu_ps(x + r * ldx + i);
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(wv[c], xv[r], acc[r][c]);
        }
        for (; i < end; i++)
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) tail[r][c] += (float)w[c * k + i] * scale[c] * x[r * ldx + i];
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            const float sum = hsum_ps(acc[r][c]) + tail[r][c];
            y[r * ldy + n + c] = groups == 1 ? sum * m->scales[n + c] : sum;
        }
}

AVX2_TARGET void flint_avx2_int8_weight_only(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end,
                                             const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    if (!avx2_supported()) return;
    const int64_t x_block = avx2_x_block_rows(ldx * (int64_t)sizeof(float));
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
        for (int64_t block = n_begin; block < n_end; block += AVX2_BLOCK_ROWS) {
            const int64_t block_end = block + AVX2_BLOCK_ROWS < n_end ? block + AVX2_BLOCK_ROWS : n_end;
            int64_t r = r_begin;
            for (; r + 4 <= r_end; r += 4) {
                int64_t n = block;
                for (; n + 2 <= block_end; n += 2) weight_only_tile(m, n, 2, x + r * ldx, ldx, 4, y + r * ldy, ldy);
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

// ---------------------------------------------------------------------------------------------------------------
// Float32 kernels.

// The weights of `xwt`: float32, or f16 / bf16 bit patterns widened in registers as they are loaded (f16 with
// vcvtph2ps, bf16 by a zero-extend and a shift: both exact), so the three run the same multiply-adds in the same
// order and a half matrix gives bit for bit the sums flint_avx2_f32_xwt gives over its widened copy. A half model
// used in place reads half the bytes per decode step that its widened float32 copy would.
enum { XWT_F32 = 0, XWT_F16 = 1, XWT_BF16 = 2 };
#define XWT_TARGET __attribute__((target("avx2,fma,f16c")))

/// 8 weights from element `index` of `w` as float32.
XWT_TARGET AVX2_INLINE __m256 xwt_load8(const void *w, int64_t index, const int kind) {
    if (kind == XWT_F32) return _mm256_loadu_ps((const float *)w + index);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + index));
    if (kind == XWT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/// The `count` < 8 weights from element `index`, 0.0f in the other lanes (what _mm256_maskload_ps gives).
XWT_TARGET AVX2_INLINE __m256 xwt_load_partial(const void *w, int64_t index, int64_t count, __m256i msk,
                                               const int kind) {
    if (kind == XWT_F32) return _mm256_maskload_ps((const float *)w + index, msk);
    uint16_t tail[8] = {0};  // f16 and bf16 +0 widen to 0.0f
    memcpy(tail, (const uint16_t *)w + index, (size_t)count * sizeof(uint16_t));
    return xwt_load8(tail, 0, kind);
}

/// R x rows × C W rows of `y = x · Wᵀ`, masked loads for the last partial chunk. `w` points at W row 0 of the
/// tile, elements of `kind`.
XWT_TARGET AVX2_INLINE void xwt_tile(const float *x, int64_t ldx, const void *w, int64_t k, const int R,
                                     const int C, float *y, int64_t ldy, const int kind) {
    __m256 acc[4][4];
    for (int a = 0; a < R; a++)
        for (int b = 0; b < C; b++) acc[a][b] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 wv[4];
        for (int b = 0; b < C; b++) wv[b] = xwt_load8(w, b * k + i, kind);
        for (int a = 0; a < R; a++) {
            const __m256 xv = _mm256_loadu_ps(x + a * ldx + i);
            for (int b = 0; b < C; b++) acc[a][b] = _mm256_fmadd_ps(xv, wv[b], acc[a][b]);
        }
    }
    if (i < k) {
        const __m256i msk = lane_mask(k - i);
        __m256 wv[4];
        for (int b = 0; b < C; b++) wv[b] = xwt_load_partial(w, b * k + i, k - i, msk, kind);
        for (int a = 0; a < R; a++) {
            const __m256 xv = _mm256_maskload_ps(x + a * ldx + i, msk);
            for (int b = 0; b < C; b++) acc[a][b] = _mm256_fmadd_ps(xv, wv[b], acc[a][b]);
        }
    }
    for (int a = 0; a < R; a++)
        for (int b = 0; b < C; b++) y[a * ldy + b] = hsum_ps(acc[a][b]);
}

/// W rows [n_begin, n_end) in blocks of 64 that stay in cache while every x row passes over them.
XWT_TARGET AVX2_INLINE void xwt(const float *x, int64_t rows, int64_t ldx, const void *weights, int64_t k,
                                int64_t n_begin, int64_t n_end, float *y, int64_t ldy, const int kind) {
    const size_t element = kind == XWT_F32 ? sizeof(float) : sizeof(uint16_t);
#define XWT_ROW(j) ((const char *)weights + (size_t)(j) * (size_t)k * element)
    for (int64_t nb = n_begin; nb < n_end; nb += 64) {
        const int64_t ne = nb + 64 < n_end ? nb + 64 : n_end;
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4) {
            int64_t j = nb;
            for (; j + 3 <= ne; j += 3) xwt_tile(x + r * ldx, ldx, XWT_ROW(j), k, 4, 3, y + r * ldy + j, ldy, kind);
            for (; j < ne; j++) xwt_tile(x + r * ldx, ldx, XWT_ROW(j), k, 4, 1, y + r * ldy + j, ldy, kind);
        }
        for (; r < rows; r++) {
            int64_t j = nb;
            for (; j + 4 <= ne; j += 4) xwt_tile(x + r * ldx, ldx, XWT_ROW(j), k, 1, 4, y + r * ldy + j, ldy, kind);
            for (; j < ne; j++) xwt_tile(x + r * ldx, ldx, XWT_ROW(j), k, 1, 1, y + r * ldy + j, ldy, kind);
        }
    }
#undef XWT_ROW
}

XWT_TARGET void flint_avx2_f32_xwt(const float *x, int64_t rows, int64_t ldx, const float *w, int64_t k,
                                   int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    if (avx2_supported()) xwt(x, rows, ldx, w, k, n_begin, n_end, y, ldy, XWT_F32);
}

XWT_TARGET void flint_avx2_f16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k,
                                   int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    if (avx2_supported()) xwt(x, rows, ldx, w, k, n_begin, n_end, y, ldy, XWT_F16);
}

XWT_TARGET void flint_avx2_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k,
                                    int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    if (avx2_supported()) xwt(x, rows, ldx, w, k, n_begin, n_end, y, ldy, XWT_BF16);
}

/// e^x for 8 lanes: the AVX-512 kernel's reduction (x = n·ln2 + r, degree-7 Taylor polynomial), with 2^n built in
/// the exponent bits (inputs clamped to ±88, so n + 127 stays in 0…254).
AVX2_TARGET AVX2_INLINE __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

AVX2_TARGET void flint_avx2_f32_gelu_new(float *x, int64_t count) {
    if (!avx2_supported()) return;
    const __m256 c = _mm256_set1_ps(0.7978845608028654f), k = _mm256_set1_ps(0.044715f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), minus_two = _mm256_set1_ps(-2.0f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    // Whole vectors with plain loads and stores, the tail masked: a masked store is microcoded on Zen 2 / 3 (many
    // cycles each), which made the masked-every-step form of this loop and exp_shifted's 6-7 % of a flan-t5-base
    // prefill there.
    for (int64_t i = 0; i < count; i += 8) {
        const int whole = count - i >= 8;
        const __m256i msk = lane_mask(count - i);
        const __m256 v = whole ? _mm256_loadu_ps(x + i) : _mm256_maskload_ps(x + i, msk);
        const __m256 u = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(k, v), _mm256_mul_ps(v, v), v));
        // tanh(u) = sign(u) · (1 − e) / (1 + e) with e = exp(−2|u|), which cannot overflow.
        const __m256 e = exp8(_mm256_mul_ps(minus_two, _mm256_andnot_ps(sign, u)));
        __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
        t = _mm256_or_ps(t, _mm256_and_ps(u, sign));
        const __m256 out = _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, t));
        if (whole) _mm256_storeu_ps(x + i, out);
        else _mm256_maskstore_ps(x + i, msk, out);
    }
}

AVX2_TARGET void flint_avx2_f32_exp_shifted(float *x, int64_t count, float shift, float *sum) {
    if (!avx2_supported()) { *sum = 0; return; }
    __m256 acc = _mm256_setzero_ps();
    const __m256 s = _mm256_set1_ps(shift);
    int64_t i = 0;
    // Plain loads and stores for whole vectors (see gelu_new); the same lanes and order of sums as a masked loop.
    for (; i + 8 <= count; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < count) {
        const __m256i msk = lane_mask(count - i);
        const __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, msk), s)),
                                       _mm256_castsi256_ps(msk));
        _mm256_maskstore_ps(x + i, msk, e);
        acc = _mm256_add_ps(acc, e);
    }
    *sum = hsum_ps(acc);
}

/// `n` (≤ 8; lanes past it 0) keys or values at `rows + index`: float32, or binary16 widened (F16C, which every
/// AVX2 CPU has; the path's support check asks for it). AVX2 has no masked 16-bit load: a short row is copied.
#define AVX2_KV_TARGET __attribute__((target("avx2,fma,f16c")))
AVX2_KV_TARGET AVX2_INLINE __m256 kv_load8(const void *rows, int64_t index, int64_t n, const int half) {
    if (!half) return n >= 8 ? _mm256_loadu_ps((const float *)rows + index)
                             : _mm256_maskload_ps((const float *)rows + index, lane_mask(n));
    if (n >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)rows + index)));
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(tmp, (const uint16_t *)rows + index, (size_t)(n > 0 ? n : 0) * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp));
}

/// One head's attention over float32 or (`half`) binary16 keys and values: one body for both, see the header.
AVX2_KV_TARGET AVX2_INLINE void attend_body(const float *queries, int64_t query_count, const void *keys,
                                             const void *values, int64_t key_count, int64_t stride, int64_t dkv,
                                             const float *bias, int64_t bias_row_stride, float *scores,
                                             float *context, const int half) {
    for (int64_t i = 0; i < query_count; i++) {
        const float *q = queries + i * stride;
        float max_score = -__builtin_inff();
        for (int64_t j = 0; j < key_count; j++) {
            const int64_t row = j * stride;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            int64_t c = 0;
            for (; c + 16 <= dkv; c += 16) {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), kv_load8(keys, row + c, 8, half), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8), kv_load8(keys, row + c + 8, 8, half), acc1);
            }
            for (; c < dkv; c += 8)
                acc0 = _mm256_fmadd_ps(_mm256_maskload_ps(q + c, lane_mask(dkv - c)), kv_load8(keys, row + c, dkv - c, half), acc0);
            float s = hsum_ps(_mm256_add_ps(acc0, acc1));
            if (bias) s += bias[i * bias_row_stride + j];
            scores[j] = s;
            if (s > max_score) max_score = s;
        }
        float total = 0;
        flint_avx2_f32_exp_shifted(scores, key_count, max_score, &total);
        const float inverse = 1.0f / total;
        float *out = context + i * stride;
        // dkv is 64 for T5: 8 registers of weighted values at a time.
        for (int64_t c = 0; c < dkv; c += 64) {
            const int64_t width = dkv - c < 64 ? dkv - c : 64;
            const int chunks = (int)((width + 7) / 8);
            __m256i msk[8];
            __m256 acc[8];
            for (int b = 0; b < 8; b++) {
                msk[b] = lane_mask(width - 8 * b > 0 ? width - 8 * b : 0);
                acc[b] = _mm256_setzero_ps();
            }
            for (int64_t j = 0; j < key_count; j++) {
                const __m256 p = _mm256_set1_ps(scores[j] * inverse);
                for (int b = 0; b < chunks; b++)
                    acc[b] = _mm256_fmadd_ps(p, kv_load8(values, j * stride + c + 8 * b, width - 8 * b, half), acc[b]);
            }
            for (int b = 0; b < chunks; b++) {
                if (width - 8 * b >= 8) _mm256_storeu_ps(out + c + 8 * b, acc[b]);  // see gelu_new
                else _mm256_maskstore_ps(out + c + 8 * b, msk[b], acc[b]);
            }
        }
    }
}

AVX2_KV_TARGET void flint_avx2_f32_attend(const float *queries, int64_t query_count, const float *keys,
                                          const float *values, int64_t key_count, int64_t stride, int64_t dkv,
                                          const float *bias, int64_t bias_row_stride, float *scores, float *context) {
    if (!avx2_supported()) return;
    attend_body(queries, query_count, keys, values, key_count, stride, dkv, bias, bias_row_stride, scores, context, 0);
}

AVX2_KV_TARGET void flint_avx2_f16kv_attend(const float *queries, int64_t query_count, const uint16_t *keys,
                                            const uint16_t *values, int64_t key_count, int64_t stride, int64_t dkv,
                                            const float *bias, int64_t bias_row_stride, float *scores,
                                            float *context) {
    if (!avx2_supported()) return;
    attend_body(queries, query_count, keys, values, key_count, stride, dkv, bias, bias_row_stride, scores, context, 1);
}

/// Binary16 by F16C (nearest, ties to even) after clamping to ±65504; `min(c, x)` / `max(−c, x)` return x when it
/// is NaN (the second operand), so NaN stays NaN. The same bits as `flint_f16_from_f32`.
AVX2_KV_TARGET void flint_avx2_f32_to_f16(const float *x, int64_t count, uint16_t *out) {
    if (!avx2_supported()) return;
    const __m256 top = _mm256_set1_ps(65504.0f), bottom = _mm256_set1_ps(-65504.0f);
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256 v = _mm256_max_ps(bottom, _mm256_min_ps(top, _mm256_loadu_ps(x + i)));
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < count; i++) out[i] = flint_f16_from_f32(x[i]);
}

#else
// Not x86-64: the path is unsupported and its functions do nothing.
int flint_avx2_path_supported(void) { return 0; }
int flint_avx2_path_has_vnni(void) { return 0; }
void flint_avx2_int8_quantize_activations(const float *x, int64_t rows, int64_t k, int64_t group_size,
                                          int64_t groups, uint8_t *xq, int64_t ldxq, float *scales) {
    (void)x; (void)rows; (void)k; (void)group_size; (void)groups; (void)xq; (void)ldxq; (void)scales;
}
void flint_avx2_int8_w8a8(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                          int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)n_begin; (void)n_end; (void)xq; (void)ldxq; (void)xscales; (void)rows; (void)y; (void)ldy;
}
void flint_avx2_int8_w8a8_plain(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                                int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)n_begin; (void)n_end; (void)xq; (void)ldxq; (void)xscales; (void)rows; (void)y; (void)ldy;
}
void flint_avx2_int8_weight_only(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const float *x,
                                 int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)n_begin; (void)n_end; (void)x; (void)ldx; (void)rows; (void)y; (void)ldy;
}
void flint_avx2_f16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k, int64_t n_begin,
                        int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}
void flint_avx2_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k, int64_t n_begin,
                         int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}
void flint_avx2_f32_xwt(const float *x, int64_t rows, int64_t ldx, const float *w, int64_t k, int64_t n_begin,
                        int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}
void flint_avx2_f32_gelu_new(float *x, int64_t count) { (void)x; (void)count; }
void flint_avx2_f32_exp_shifted(float *x, int64_t count, float shift, float *sum) {
    (void)x; (void)count; (void)shift; *sum = 0;
}
void flint_avx2_f32_attend(const float *queries, int64_t query_count, const float *keys, const float *values,
                           int64_t key_count, int64_t stride, int64_t dkv, const float *bias, int64_t bias_row_stride,
                           float *scores, float *context) {
    (void)queries; (void)query_count; (void)keys; (void)values; (void)key_count; (void)stride; (void)dkv;
    (void)bias; (void)bias_row_stride; (void)scores; (void)context;
}
void flint_avx2_f16kv_attend(const float *queries, int64_t query_count, const uint16_t *keys,
                             const uint16_t *values, int64_t key_count, int64_t stride, int64_t dkv, const float *bias,
                             int64_t bias_row_stride, float *scores, float *context) {
    (void)queries; (void)query_count; (void)keys; (void)values; (void)key_count; (void)stride; (void)dkv;
    (void)bias; (void)bias_row_stride; (void)scores; (void)context;
}
void flint_avx2_f32_to_f16(const float *x, int64_t count, uint16_t *out) { (void)x; (void)count; (void)out; }
#endif
