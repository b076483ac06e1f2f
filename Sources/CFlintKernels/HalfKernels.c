// Float32 matrix products whose weights are stored as bf16, widened in registers as they are loaded (bf16 is
// the high half of a float32, so widening is a zero-extend and a shift, exact). The block-streamed float
// reference (calibration, verify) multiplies bf16 flan-t5-xxl this way during decode steps: each step reads the
// decoder's 12.5 GB of bf16 weights once, and widening them to float32 memory first wrote and re-read twice that.
// The loops are FloatKernels.c's, load for load, so every output is the same float32 sum in the same order as
// flint_f32_xwt over the widened matrix computes.

#include "CFlintKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define FLINT_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

int flint_bf16_native_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

FLINT_BF16_TARGET static inline __m512 widen16(const uint16_t *w) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w)), 16));
}

// Lanes outside `m` are 0.0f, as _mm512_maskz_loadu_ps gives.
FLINT_BF16_TARGET static inline __m512 widen16_masked(__mmask16 m, const uint16_t *w) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, w)), 16));
}

FLINT_BF16_TARGET static inline void tile4x4(const float *x, int64_t ldx, const uint16_t *w, int64_t k,
                                             float *y, int64_t ldy) {
    __m512 acc[4][4];
    for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m512 wv[4], xv[4];
        for (int b = 0; b < 4; b++) wv[b] = widen16(w + b * k + i);
        for (int a = 0; a < 4; a++) xv[a] = _mm512_loadu_ps(x + a * ldx + i);
        for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_fmadd_ps(xv[a], wv[b], acc[a][b]);
    }
    if (i < k) {
        __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        __m512 wv[4], xv[4];
        for (int b = 0; b < 4; b++) wv[b] = widen16_masked(m, w + b * k + i);
        for (int a = 0; a < 4; a++) xv[a] = _mm512_maskz_loadu_ps(m, x + a * ldx + i);
        for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_fmadd_ps(xv[a], wv[b], acc[a][b]);
    }
    for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) y[a * ldy + b] = _mm512_reduce_add_ps(acc[a][b]);
}

FLINT_BF16_TARGET static inline void tile1x4(const float *x, const uint16_t *w, int64_t k, float *y) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m512 xv = _mm512_loadu_ps(x + i);
        for (int b = 0; b < 4; b++) acc[b] = _mm512_fmadd_ps(xv, widen16(w + b * k + i), acc[b]);
    }
    if (i < k) {
        __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        for (int b = 0; b < 4; b++) acc[b] = _mm512_fmadd_ps(xv, widen16_masked(m, w + b * k + i), acc[b]);
    }
    for (int b = 0; b < 4; b++) y[b] = _mm512_reduce_add_ps(acc[b]);
}

FLINT_BF16_TARGET static inline float dot1(const float *x, const uint16_t *w, int64_t k) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), widen16(w + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), widen16(w + i + 16), acc1);
    }
    for (; i + 16 <= k; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), widen16(w + i), acc0);
    if (i < k) {
        __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), widen16_masked(m, w + i), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

FLINT_BF16_TARGET void flint_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k,
                                      int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    for (int64_t nb = n_begin; nb < n_end; nb += 64) {
        int64_t ne = nb + 64 < n_end ? nb + 64 : n_end;
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4) {
            int64_t j = nb;
            for (; j + 4 <= ne; j += 4) tile4x4(x + r * ldx, ldx, w + j * k, k, y + r * ldy + j, ldy);
            for (; j < ne; j++)
                for (int a = 0; a < 4; a++) y[(r + a) * ldy + j] = dot1(x + (r + a) * ldx, w + j * k, k);
        }
        for (; r < rows; r++) {
            int64_t j = nb;
            for (; j + 4 <= ne; j += 4) tile1x4(x + r * ldx, w + j * k, k, y + r * ldy + j);
            for (; j < ne; j++) y[r * ldy + j] = dot1(x + r * ldx, w + j * k, k);
        }
    }
}

#else

int flint_bf16_native_available(void) { return 0; }
void flint_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k,
                    int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}

#endif
