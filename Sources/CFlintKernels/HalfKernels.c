// Float32 matrix products whose weights are stored as bf16 or f16, widened in registers as they are loaded (bf16
// is the high half of a float32, so widening is a zero-extend and a shift; f16 widens with vcvtph2ps; both exact).
// The block-streamed float reference (calibration, verify) multiplies bf16 flan-t5-xxl this way during decode
// steps: each step reads the decoder's 12.5 GB of bf16 weights once, and widening them to float32 memory first
// wrote and re-read twice that.
// The loops are FloatKernels.c's (one body, XwtLoops.h), so every output is the same float32 sum in the same
// order as flint_f32_xwt over the widened matrix computes.

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

#define XWT_NAME flint_bf16_xwt
#define XWT_TARGET FLINT_BF16_TARGET
#define XWT_W uint16_t
#define XWT_LOAD(p) widen16(p)
#define XWT_LOAD_MASKED(m, p) widen16_masked((m), (p))
#include "XwtLoops.h"

FLINT_BF16_TARGET static inline __m512 widen16_f16(const uint16_t *w) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w));
}

// Lanes outside `m` load as f16 +0, which widens to 0.0f, as _mm512_maskz_loadu_ps gives.
FLINT_BF16_TARGET static inline __m512 widen16_f16_masked(__mmask16 m, const uint16_t *w) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w));
}

#undef XWT_NAME
#undef XWT_LOAD
#undef XWT_LOAD_MASKED
#define XWT_NAME flint_f16_xwt
#define XWT_LOAD(p) widen16_f16(p)
#define XWT_LOAD_MASKED(m, p) widen16_f16_masked((m), (p))
#include "XwtLoops.h"

#else

int flint_bf16_native_available(void) { return 0; }
void flint_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k,
                    int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}
void flint_f16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k,
                   int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}

#endif
