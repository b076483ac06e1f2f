// The ARM64 NEON path (every ARMv8-A CPU), with `sdot` (ARMv8.2 dot product) for the int8 dot products where the
// CPU has it. See include/CFlintKernels.h for the contract; Tests/CKernels/kernel_test.c runs every function here
// under qemu-aarch64 against the portable reference (`make kernel-test-arm`).
//
// `sdot` multiplies signed bytes by signed bytes, unlike x86's `vpdpbusd` (unsigned × signed), so the activations,
// stored as `q + 128` for x86, are flipped back to `q` (xor 0x80) and the kernels add `128 · Σ q_w` afterwards:
// the same exact Int32 sums as the unsigned form, hence the same float results as the portable kernel.
//
// Built by SwiftPM's clang on ARM64 hosts and by gcc-aarch64-linux-gnu for the qemu test, which must be given
// -ffp-contract=off (gcc fuses multiply-adds across statements by default; the W8A8 epilogue must not be fused).
#include "CFlintKernels.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#if defined(__aarch64__) && (defined(__clang__) || defined(__GNUC__))
#include <arm_neon.h>
#include <math.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#define DOT_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#define NEON_INLINE static inline __attribute__((always_inline))

int flint_neon_path_supported(void) { return 1; }

int flint_neon_path_has_dot(void) {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    int value = 0;
    size_t size = sizeof(value);
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &value, &size, NULL, 0) != 0) return 0;
    return value != 0;
#else
    return 0;
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Activation quantizer (bit-identical to Int8ActivationQuantizer: vcvtnq rounds to nearest, ties to even).

NEON_INLINE float quantize_block(const float *x, int64_t count, uint8_t *out) {
    float32x4_t amax = vdupq_n_f32(0), check = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        amax = vmaxq_f32(amax, vabsq_f32(v));
        check = vaddq_f32(check, vmulq_f32(v, vdupq_n_f32(0)));  // NaN exactly when v is NaN or ±∞
    }
    float m = vmaxvq_f32(amax), finite = vaddvq_f32(check);
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
    const float32x4_t inverse = vdupq_n_f32(inverse_s);
    const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    const int32x4_t offset = vdupq_n_s32(128);
    i = 0;
    for (; i + 16 <= count; i += 16) {
        int16x4_t h[4];
        for (int b = 0; b < 4; b++) {
            float32x4_t v = vmulq_f32(vld1q_f32(x + i + 4 * b), inverse);
            v = vminq_f32(vmaxq_f32(v, lo), hi);
            h[b] = vmovn_s32(vaddq_s32(vcvtnq_s32_f32(v), offset));  // 1…255
        }
        const uint8x8_t b0 = vqmovun_s16(vcombine_s16(h[0], h[1]));
        const uint8x8_t b1 = vqmovun_s16(vcombine_s16(h[2], h[3]));
        vst1q_u8(out + i, vcombine_u8(b0, b1));
    }
    for (; i < count; i++) {
        float v = x[i] * inverse_s;
        v = v < -127.0f ? -127.0f : v;
        v = v > 127.0f ? 127.0f : v;
        out[i] = (uint8_t)((int)nearbyintf(v) + 128);
    }
    return m / 127.0f;
}

void flint_neon_int8_quantize_activations(const float *x, int64_t rows, int64_t k, int64_t group_size,
                                          int64_t groups, uint8_t *xq, int64_t ldxq, float *scales) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t start = g * group_size;
            const int64_t end = start + group_size < k ? start + group_size : k;
            scales[r * groups + g] = quantize_block(x + r * k + start, end - start, xq + r * ldxq + start);
        }
}

// ---------------------------------------------------------------------------------------------------------------
// W8A8: tiles of C weight rows (8, 4 or 1) × R x rows (1 or 2), exact Int32 dot products per group, the portable
// epilogue with 4 weight rows per float32x4.

/// Four int32x4 → their four lane sums.
NEON_INLINE int32x4_t hsum4_s32(int32x4_t a0, int32x4_t a1, int32x4_t a2, int32x4_t a3) {
    return vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
}

/// sum += float(dot) · (scale_w · scale_x), corr += comp · scale_x, for weight rows n…n+3 of group g.
NEON_INLINE void epilogue4(float32x4_t *sum, float32x4_t *corr, int32x4_t dot, const flint_int8_matrix *m,
                           int64_t n, int64_t g, float sx) {
    const int64_t groups = m->groups;
    float sw[4], comp[4];
    for (int c = 0; c < 4; c++) {
        sw[c] = m->scales[(n + c) * groups + g];
        comp[c] = m->compensation[(n + c) * groups + g];
    }
    const float32x4_t vsx = vdupq_n_f32(sx);
    *sum = vaddq_f32(*sum, vmulq_f32(vcvtq_f32_s32(dot), vmulq_f32(vld1q_f32(sw), vsx)));
    *corr = vaddq_f32(*corr, vmulq_f32(vld1q_f32(comp), vsx));
}

NEON_INLINE int32x4_t dot_plain(int32x4_t acc, int8x16_t x, int8x16_t w) {
    int16x8_t p = vmull_s8(vget_low_s8(x), vget_low_s8(w));
    p = vmlal_high_s8(p, x, w);  // two products of magnitude ≤ 127² per int16 lane: no overflow
    return vpadalq_s16(acc, p);
}

#define NEON_W8A8_TILE_BODY                                                                                        \
    const int64_t k = m->k, gsize = m->group_size, groups = m->groups;                                             \
    const int8_t *w = m->weights + n * k;                                                                          \
    float32x4_t sum[2][2], corr[2][2];                                                                             \
    float s1[2] = {0, 0}, c1[2] = {0, 0};                                                                          \
    for (int r = 0; r < R; r++)                                                                                    \
        for (int h = 0; h < 2; h++) sum[r][h] = corr[r][h] = vdupq_n_f32(0);                                       \
    const uint8x16_t flip = vdupq_n_u8(0x80);                                                                      \
    for (int64_t g = 0; g < groups; g++) {                                                                         \
        const int64_t start = g * gsize;                                                                           \
        const int64_t end = start + gsize < k ? start + gsize : k;                                                 \
        int32x4_t acc[2][8];                                                                                       \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) acc[r][c] = vdupq_n_s32(0);                                                \
        int64_t i = start;                                                                                         \
        for (; i + 16 <= end; i += 16) {                                                                           \
            int8x16_t xv[2];                                                                                       \
            for (int r = 0; r < R; r++) xv[r] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(xq + r * ldxq + i), flip)); \
            if (R == 1 && ((i - start) & 63) == 0)                                                                 \
                for (int c = 0; c < C; c++) __builtin_prefetch(w + (C + c) * k + i);                               \
            for (int c = 0; c < C; c++) {                                                                          \
                const int8x16_t wv = vld1q_s8(w + c * k + i);                                                      \
                for (int r = 0; r < R; r++) acc[r][c] = DOT_STEP(acc[r][c], xv[r], wv);                            \
            }                                                                                                      \
        }                                                                                                          \
        for (int r = 0; r < R; r++) {                                                                              \
            int32_t dots[8] = {0};                                                                                 \
            for (int c = 0; c < C; c++) {                                                                          \
                int32_t tail_u = 0, tail_w = 0;                                                                    \
                for (int64_t j = i; j < end; j++) {                                                                \
                    tail_u += (int32_t)xq[r * ldxq + j] * (int32_t)w[c * k + j];                                   \
                    tail_w += w[c * k + j];                                                                        \
                }                                                                                                  \
                dots[c] = tail_u + 128 * (m->weight_sums[(n + c) * groups + g] - tail_w);                          \
            }                                                                                                      \
            const float sx = xs[r * groups + g];                                                                   \
            if (C == 1) {                                                                                          \
                const int32_t d = vaddvq_s32(acc[r][0]) + dots[0];                                                 \
                s1[r] = s1[r] + (float)d * (m->scales[n * groups + g] * sx);                                       \
                c1[r] = c1[r] + m->compensation[n * groups + g] * sx;                                              \
            } else {                                                                                               \
                for (int h = 0; h < C / 4; h++) {                                                                  \
                    const int32x4_t d = vaddq_s32(hsum4_s32(acc[r][4 * h], acc[r][4 * h + 1], acc[r][4 * h + 2],   \
                                                            acc[r][4 * h + 3]), vld1q_s32(dots + 4 * h));          \
                    epilogue4(&sum[r][h], &corr[r][h], d, m, n + 4 * h, g, sx);                                    \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    for (int r = 0; r < R; r++) {                                                                                  \
        float *out = y + r * ldy + n;                                                                              \
        if (C == 1) out[0] = s1[r] - c1[r];                                                                        \
        else                                                                                                       \
            for (int h = 0; h < C / 4; h++) vst1q_f32(out + 4 * h, vsubq_f32(sum[r][h], corr[r][h]));              \
    }

#define DOT_STEP(acc, x, w) dot_plain(acc, x, w)
NEON_INLINE void w8a8_tile_plain(const flint_int8_matrix *m, int64_t n, const int C, const uint8_t *xq,
                                 int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    NEON_W8A8_TILE_BODY
}
#undef DOT_STEP

#define DOT_STEP(acc, x, w) vdotq_s32(acc, x, w)
DOT_TARGET NEON_INLINE void w8a8_tile_dot(const flint_int8_matrix *m, int64_t n, const int C, const uint8_t *xq,
                                          int64_t ldxq, const float *xs, const int R, float *y, int64_t ldy) {
    NEON_W8A8_TILE_BODY
}
#undef DOT_STEP

enum { NEON_BLOCK_ROWS = 32 };

static inline int64_t neon_x_block_rows(int64_t row_bytes) {
    int64_t rows = (256 * 1024) / (row_bytes > 0 ? row_bytes : 1);
    rows &= ~(int64_t)3;
    return rows < 4 ? 4 : rows;
}

#define NEON_W8A8_DRIVER(TILE)                                                                                     \
    const int64_t groups = m->groups;                                                                              \
    const int64_t x_block = neon_x_block_rows(ldxq);                                                               \
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {                                                \
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;                                 \
        for (int64_t block = n_begin; block < n_end; block += NEON_BLOCK_ROWS) {                                   \
            const int64_t block_end = block + NEON_BLOCK_ROWS < n_end ? block + NEON_BLOCK_ROWS : n_end;           \
            int64_t r = r_begin;                                                                                   \
            for (; r + 2 <= r_end; r += 2) {                                                                       \
                const uint8_t *x = xq + r * ldxq;                                                                  \
                const float *s = xscales + r * groups;                                                             \
                float *yr = y + r * ldy;                                                                           \
                int64_t n = block;                                                                                 \
                for (; n + 8 <= block_end; n += 8) TILE(m, n, 8, x, ldxq, s, 2, yr, ldy);                          \
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

void flint_neon_int8_w8a8_plain(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                                int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    NEON_W8A8_DRIVER(w8a8_tile_plain)
}

DOT_TARGET static void w8a8_dot(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                                int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    NEON_W8A8_DRIVER(w8a8_tile_dot)
}

void flint_neon_int8_w8a8(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                          int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    static int dot = -1;
    if (dot < 0) dot = flint_neon_path_has_dot();
    if (dot) w8a8_dot(m, n_begin, n_end, xq, ldxq, xscales, rows, y, ldy);
    else flint_neon_int8_w8a8_plain(m, n_begin, n_end, xq, ldxq, xscales, rows, y, ldy);
}

// ---------------------------------------------------------------------------------------------------------------
// Weight-only: 8 int8 weights widened to two float32x4 per step, float accumulation, scalar tails.

NEON_INLINE void weight_only_tile(const flint_int8_matrix *m, int64_t n, const int C, const float *x, int64_t ldx,
                                  const int R, float *y, int64_t ldy) {
    const int64_t k = m->k, groups = m->groups;
    const int64_t gsize = groups == 1 ? k : m->group_size;
    const int8_t *w = m->weights + n * k;
    float32x4_t acc[4][8];
    float tail[4][8];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) { acc[r][c] = vdupq_n_f32(0); tail[r][c] = 0; }
    for (int64_t g = 0; g < groups; g++) {
        const int64_t start = g * gsize;
        const int64_t end = start + gsize < k ? start + gsize : k;
        float scale[8];
        for (int c = 0; c < C; c++) scale[c] = groups == 1 ? 1.0f : m->scales[(n + c) * groups + g];
        int64_t i = start;
        for (; i + 8 <= end; i += 8) {
            float32x4_t wlo[8], whi[8];
            for (int c = 0; c < C; c++) {
                const int16x8_t q = vmovl_s8(vld1_s8(w + c * k + i));
                wlo[c] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(q)));
                whi[c] = vcvtq_f32_s32(vmovl_high_s16(q));
                if (groups != 1) {
                    wlo[c] = vmulq_n_f32(wlo[c], scale[c]);
                    whi[c] = vmulq_n_f32(whi[c], scale[c]);
                }
            }
            if (R == 1 && ((i - start) & 63) == 0)
                for (int c = 0; c < C; c++) __builtin_prefetch(w + (C + c) * k + i);
            for (int r = 0; r < R; r++) {
                const float32x4_t xlo = vld1q_f32(x + r * ldx + i), xhi = vld1q_f32(x + r * ldx + i + 4);
                for (int c = 0; c < C; c++) acc[r][c] = vfmaq_f32(vfmaq_f32(acc[r][c], wlo[c], xlo), whi[c], xhi);
            }
        }
        for (; i < end; i++)
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) tail[r][c] += (float)w[c * k + i] * scale[c] * x[r * ldx + i];
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            const float sum = vaddvq_f32(acc[r][c]) + tail[r][c];
            y[r * ldy + n + c] = groups == 1 ? sum * m->scales[n + c] : sum;
        }
}

void flint_neon_int8_weight_only(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const float *x,
                                 int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    const int64_t x_block = neon_x_block_rows(ldx * (int64_t)sizeof(float));
    for (int64_t r_begin = 0; r_begin < rows; r_begin += x_block) {
        const int64_t r_end = r_begin + x_block < rows ? r_begin + x_block : rows;
        for (int64_t block = n_begin; block < n_end; block += NEON_BLOCK_ROWS) {
            const int64_t block_end = block + NEON_BLOCK_ROWS < n_end ? block + NEON_BLOCK_ROWS : n_end;
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

// The weights of `xwt`: float32, or f16 / bf16 bit patterns widened in registers as they are loaded (fcvtl for
// f16, a shift into the high half for bf16: both exact), so the three give the same sums in the same order and a
// half matrix gives bit for bit what flint_neon_f32_xwt gives over its widened copy.
enum { XWT_F32 = 0, XWT_F16 = 1, XWT_BF16 = 2 };

/// Weight `index` of `w` as float32 (the scalar tail).
NEON_INLINE float xwt_weight(const void *w, int64_t index, const int kind) {
    if (kind == XWT_F32) return ((const float *)w)[index];
    const uint16_t h = ((const uint16_t *)w)[index];
    if (kind == XWT_F16) return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/// 4 weights from element `index` of `w` as float32.
NEON_INLINE float32x4_t xwt_load4(const void *w, int64_t index, const int kind) {
    if (kind == XWT_F32) return vld1q_f32((const float *)w + index);
    const uint16x4_t h = vld1_u16((const uint16_t *)w + index);
    if (kind == XWT_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

NEON_INLINE void xwt_tile(const float *x, int64_t ldx, const void *w, int64_t k, const int R, const int C,
                          float *y, int64_t ldy, const int kind) {
    float32x4_t acc[4][4];
    for (int a = 0; a < R; a++)
        for (int b = 0; b < C; b++) acc[a][b] = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        float32x4_t wv[4];
        for (int b = 0; b < C; b++) wv[b] = xwt_load4(w, b * k + i, kind);
        for (int a = 0; a < R; a++) {
            const float32x4_t xv = vld1q_f32(x + a * ldx + i);
            for (int b = 0; b < C; b++) acc[a][b] = vfmaq_f32(acc[a][b], xv, wv[b]);
        }
    }
    for (int a = 0; a < R; a++)
        for (int b = 0; b < C; b++) {
            float s = vaddvq_f32(acc[a][b]);
            for (int64_t j = i; j < k; j++) s += x[a * ldx + j] * xwt_weight(w, b * k + j, kind);
            y[a * ldy + b] = s;
        }
}

NEON_INLINE void xwt(const float *x, int64_t rows, int64_t ldx, const void *weights, int64_t k, int64_t n_begin,
                     int64_t n_end, float *y, int64_t ldy, const int kind) {
    const size_t element = kind == XWT_F32 ? sizeof(float) : sizeof(uint16_t);
#define XWT_ROW(j) ((const char *)weights + (size_t)(j) * (size_t)k * element)
    for (int64_t nb = n_begin; nb < n_end; nb += 64) {
        const int64_t ne = nb + 64 < n_end ? nb + 64 : n_end;
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4) {
            int64_t j = nb;
            for (; j + 4 <= ne; j += 4) xwt_tile(x + r * ldx, ldx, XWT_ROW(j), k, 4, 4, y + r * ldy + j, ldy, kind);
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

void flint_neon_f32_xwt(const float *x, int64_t rows, int64_t ldx, const float *w, int64_t k, int64_t n_begin,
                        int64_t n_end, float *y, int64_t ldy) {
    xwt(x, rows, ldx, w, k, n_begin, n_end, y, ldy, XWT_F32);
}

void flint_neon_f16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k, int64_t n_begin,
                        int64_t n_end, float *y, int64_t ldy) {
    xwt(x, rows, ldx, w, k, n_begin, n_end, y, ldy, XWT_F16);
}

void flint_neon_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k, int64_t n_begin,
                         int64_t n_end, float *y, int64_t ldy) {
    xwt(x, rows, ldx, w, k, n_begin, n_end, y, ldy, XWT_BF16);
}

/// e^x for 4 lanes, the x86 kernels' reduction and polynomial.
NEON_INLINE float32x4_t exp4(float32x4_t x) {
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.0f)), vdupq_n_f32(-88.0f));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606765330187045e-06f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(bits));
}

NEON_INLINE float32x4_t gelu4(float32x4_t v) {
    const float32x4_t u = vmulq_n_f32(vfmaq_f32(v, vmulq_n_f32(v, 0.044715f), vmulq_f32(v, v)), 0.7978845608028654f);
    // tanh(u) = sign(u) · (1 − e) / (1 + e) with e = exp(−2|u|), which cannot overflow.
    const float32x4_t e = exp4(vmulq_n_f32(vabsq_f32(u), -2.0f));
    const float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t t = vdivq_f32(vsubq_f32(one, e), vaddq_f32(one, e));
    const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(u), vdupq_n_u32(0x80000000u));
    t = vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(t), sign));
    return vmulq_f32(vmulq_n_f32(v, 0.5f), vaddq_f32(one, t));
}

void flint_neon_f32_gelu_new(float *x, int64_t count) {
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) vst1q_f32(x + i, gelu4(vld1q_f32(x + i)));
    if (i < count) {
        float tmp[4] = {0, 0, 0, 0};
        for (int64_t j = i; j < count; j++) tmp[j - i] = x[j];
        vst1q_f32(tmp, gelu4(vld1q_f32(tmp)));
        for (int64_t j = i; j < count; j++) x[j] = tmp[j - i];
    }
}

void flint_neon_f32_exp_shifted(float *x, int64_t count, float shift, float *sum) {
    float32x4_t acc = vdupq_n_f32(0);
    const float32x4_t s = vdupq_n_f32(shift);
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), s));
        vst1q_f32(x + i, e);
        acc = vaddq_f32(acc, e);
    }
    float total = vaddvq_f32(acc);
    if (i < count) {
        float tmp[4] = {shift, shift, shift, shift};
        for (int64_t j = i; j < count; j++) tmp[j - i] = x[j];
        vst1q_f32(tmp, exp4(vsubq_f32(vld1q_f32(tmp), s)));
        for (int64_t j = i; j < count; j++) { x[j] = tmp[j - i]; total += tmp[j - i]; }
    }
    *sum = total;
}

/// Four keys or values at `rows + index`: float32, or binary16 widened (`fcvtl`).
NEON_INLINE float32x4_t kv_load4(const void *rows, int64_t index, const int half) {
    return half ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)rows + index)))
                : vld1q_f32((const float *)rows + index);
}

NEON_INLINE float kv_element(const void *rows, int64_t index, const int half) {
    return half ? flint_f32_from_f16(((const uint16_t *)rows)[index]) : ((const float *)rows)[index];
}

/// One head's attention over float32 or (`half`) binary16 keys and values: one body for both, see the header.
NEON_INLINE void attend_body(const float *queries, int64_t query_count, const void *keys, const void *values,
                             int64_t key_count, int64_t stride, int64_t dkv, const float *bias,
                             int64_t bias_row_stride, float *scores, float *context, const int half) {
    for (int64_t i = 0; i < query_count; i++) {
        const float *q = queries + i * stride;
        float max_score = -__builtin_inff();
        for (int64_t j = 0; j < key_count; j++) {
            const int64_t row = j * stride;
            float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
            int64_t c = 0;
            for (; c + 8 <= dkv; c += 8) {
                acc0 = vfmaq_f32(acc0, vld1q_f32(q + c), kv_load4(keys, row + c, half));
                acc1 = vfmaq_f32(acc1, vld1q_f32(q + c + 4), kv_load4(keys, row + c + 4, half));
            }
            for (; c + 4 <= dkv; c += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(q + c), kv_load4(keys, row + c, half));
            float s = vaddvq_f32(vaddq_f32(acc0, acc1));
            for (; c < dkv; c++) s += q[c] * kv_element(keys, row + c, half);
            if (bias) s += bias[i * bias_row_stride + j];
            scores[j] = s;
            if (s > max_score) max_score = s;
        }
        float total = 0;
        flint_neon_f32_exp_shifted(scores, key_count, max_score, &total);
        const float inverse = 1.0f / total;
        float *out = context + i * stride;
        // dkv is 64 for T5: 16 registers of weighted values at a time, a scalar loop for a ragged end.
        for (int64_t c = 0; c < dkv; c += 64) {
            const int64_t width = dkv - c < 64 ? dkv - c : 64;
            const int chunks = (int)(width / 4);
            float32x4_t acc[16];
            float rest[4] = {0, 0, 0, 0};
            for (int b = 0; b < 16; b++) acc[b] = vdupq_n_f32(0);
            for (int64_t j = 0; j < key_count; j++) {
                const float p = scores[j] * inverse;
                const int64_t v = j * stride + c;
                for (int b = 0; b < chunks; b++) acc[b] = vfmaq_n_f32(acc[b], kv_load4(values, v + 4 * b, half), p);
                for (int64_t e = 4 * chunks; e < width; e++) rest[e - 4 * chunks] += p * kv_element(values, v + e, half);
            }
            for (int b = 0; b < chunks; b++) vst1q_f32(out + c + 4 * b, acc[b]);
            for (int64_t e = 4 * chunks; e < width; e++) out[c + e] = rest[e - 4 * chunks];
        }
    }
}

void flint_neon_f32_attend(const float *queries, int64_t query_count, const float *keys, const float *values,
                           int64_t key_count, int64_t stride, int64_t dkv, const float *bias, int64_t bias_row_stride,
                           float *scores, float *context) {
    attend_body(queries, query_count, keys, values, key_count, stride, dkv, bias, bias_row_stride, scores, context, 0);
}

void flint_neon_f16kv_attend(const float *queries, int64_t query_count, const uint16_t *keys, const uint16_t *values,
                             int64_t key_count, int64_t stride, int64_t dkv, const float *bias,
                             int64_t bias_row_stride, float *scores, float *context) {
    attend_body(queries, query_count, keys, values, key_count, stride, dkv, bias, bias_row_stride, scores, context, 1);
}

/// Binary16 (`fcvtn`, nearest, ties to even under the default FPCR) after clamping to ±65504; `fmin`/`fmax`
/// return NaN for a NaN operand, so NaN stays NaN. The same bits as `flint_f16_from_f32`.
void flint_neon_f32_to_f16(const float *x, int64_t count, uint16_t *out) {
    const float32x4_t top = vdupq_n_f32(65504.0f), bottom = vdupq_n_f32(-65504.0f);
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) {
        const float32x4_t v = vmaxq_f32(bottom, vminq_f32(top, vld1q_f32(x + i)));
        vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(v)));
    }
    for (; i < count; i++) out[i] = flint_f16_from_f32(x[i]);
}

#else
// Not ARM64: the path is unsupported and its functions do nothing.
int flint_neon_path_supported(void) { return 0; }
int flint_neon_path_has_dot(void) { return 0; }
void flint_neon_int8_quantize_activations(const float *x, int64_t rows, int64_t k, int64_t group_size,
                                          int64_t groups, uint8_t *xq, int64_t ldxq, float *scales) {
    (void)x; (void)rows; (void)k; (void)group_size; (void)groups; (void)xq; (void)ldxq; (void)scales;
}
void flint_neon_int8_w8a8(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                          int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)n_begin; (void)n_end; (void)xq; (void)ldxq; (void)xscales; (void)rows; (void)y; (void)ldy;
}
void flint_neon_int8_w8a8_plain(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                                int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)n_begin; (void)n_end; (void)xq; (void)ldxq; (void)xscales; (void)rows; (void)y; (void)ldy;
}
void flint_neon_int8_weight_only(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const float *x,
                                 int64_t ldx, int64_t rows, float *y, int64_t ldy) {
    (void)m; (void)n_begin; (void)n_end; (void)x; (void)ldx; (void)rows; (void)y; (void)ldy;
}
void flint_neon_f32_xwt(const float *x, int64_t rows, int64_t ldx, const float *w, int64_t k, int64_t n_begin,
                        int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}
void flint_neon_f16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k, int64_t n_begin,
                        int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}
void flint_neon_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k, int64_t n_begin,
                         int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}
void flint_neon_f32_gelu_new(float *x, int64_t count) { (void)x; (void)count; }
void flint_neon_f32_exp_shifted(float *x, int64_t count, float shift, float *sum) {
    (void)x; (void)count; (void)shift; *sum = 0;
}
void flint_neon_f32_attend(const float *queries, int64_t query_count, const float *keys, const float *values,
                           int64_t key_count, int64_t stride, int64_t dkv, const float *bias, int64_t bias_row_stride,
                           float *scores, float *context) {
    (void)queries; (void)query_count; (void)keys; (void)values; (void)key_count; (void)stride; (void)dkv;
    (void)bias; (void)bias_row_stride; (void)scores; (void)context;
}
void flint_neon_f16kv_attend(const float *queries, int64_t query_count, const uint16_t *keys, const uint16_t *values,
                             int64_t key_count, int64_t stride, int64_t dkv, const float *bias,
                             int64_t bias_row_stride, float *scores, float *context) {
    (void)queries; (void)query_count; (void)keys; (void)values; (void)key_count; (void)stride; (void)dkv;
    (void)bias; (void)bias_row_stride; (void)scores; (void)context;
}
void flint_neon_f32_to_f16(const float *x, int64_t count, uint16_t *out) { (void)x; (void)count; (void)out; }
#endif
