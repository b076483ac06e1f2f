// Prefill self-attention of one head over a whole sequence (`flint_<path>_f32_attend_sequence`, see
// include/CFlintKernels.h) for the AVX-512, AVX2 and NEON paths: one body (AttentionSequence.h) in generic vectors,
// compiled per path with its own vector width, its exp and its bias-add-and-max.
#include "CFlintKernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define A512_TARGET __attribute__((target("avx512f,avx512dq,fma")))
#define AA2_TARGET __attribute__((target("avx2,fma")))

A512_TARGET static inline float a512_add_max(float *row, const float *bias, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 s = _mm512_add_ps(_mm512_loadu_ps(row + j), _mm512_loadu_ps(bias + j));
        _mm512_storeu_ps(row + j, s);
        m = _mm512_max_ps(m, s);
    }
    if (j < n) {
        const __mmask16 mask = (__mmask16)((1u << (n - j)) - 1);
        const __m512 s = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, row + j), _mm512_maskz_loadu_ps(mask, bias + j));
        _mm512_mask_storeu_ps(row + j, mask, s);
        m = _mm512_mask_max_ps(m, mask, m, s);
    }
    return _mm512_reduce_max_ps(m);
}

typedef float a512_vec __attribute__((vector_size(64)));
#define AS_NAME flint_avx512_f32_attend_sequence_body
#define AS_TARGET A512_TARGET static
#define AS_VEC a512_vec
#define AS_W 16
#define AS_R 8
#define AS_CV 2
#define AS_ADD_MAX a512_add_max
#define AS_EXP flint_f32_exp_shifted
#include "AttentionSequence.h"
#undef AS_NAME
#undef AS_TARGET
#undef AS_VEC
#undef AS_W
#undef AS_R
#undef AS_CV
#undef AS_ADD_MAX
#undef AS_EXP

void flint_avx512_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride,
                                      int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores,
                                      float *context) {
    if (!flint_isa_supported(FLINT_ISA_AVX512)) return;
    flint_avx512_f32_attend_sequence_body(q, k, v, length, stride, dkv, bias, causal, kt, scores, context);
}

AA2_TARGET static inline float aa2_add_max(float *row, const float *bias, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 s = _mm256_add_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(bias + j));
        _mm256_storeu_ps(row + j, s);
        m = _mm256_max_ps(m, s);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float best = lanes[0];
    for (int l = 1; l < 8; l++) best = lanes[l] > best ? lanes[l] : best;
    for (; j < n; j++) {
        row[j] += bias[j];
        best = row[j] > best ? row[j] : best;
    }
    return best;
}

typedef float aa2_vec __attribute__((vector_size(32)));
#define AS_NAME flint_avx2_f32_attend_sequence_body
#define AS_TARGET AA2_TARGET static
#define AS_VEC aa2_vec
#define AS_W 8
// 6 query rows: 12 score accumulators + 2 key vectors + the broadcast fill the 16 ymm registers (4 rows: the
// loops read the transposed keys and the values from L2 once per 4 rows; 6 rows were 7-10 % faster, flan-t5-small
// shape, length 512, 6 heads, one thread, Zen 4).
#define AS_R 6
#define AS_CV 2
#define AS_ADD_MAX aa2_add_max
#define AS_EXP flint_avx2_f32_exp_shifted
#include "AttentionSequence.h"
#undef AS_NAME
#undef AS_TARGET
#undef AS_VEC
#undef AS_W
#undef AS_R
#undef AS_CV
#undef AS_ADD_MAX
#undef AS_EXP

void flint_avx2_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride,
                                    int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores,
                                    float *context) {
    if (!flint_isa_supported(FLINT_ISA_AVX2)) return;
    flint_avx2_f32_attend_sequence_body(q, k, v, length, stride, dkv, bias, causal, kt, scores, context);
}

void flint_neon_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride,
                                    int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores,
                                    float *context) {
    (void)q; (void)k; (void)v; (void)length; (void)stride; (void)dkv; (void)bias; (void)causal; (void)kt;
    (void)scores; (void)context;
}

#elif defined(__aarch64__) && (defined(__clang__) || defined(__GNUC__))
#include <arm_neon.h>

static inline float an_add_max(float *row, const float *bias, int64_t n) {
    float32x4_t m = vdupq_n_f32(-INFINITY);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float32x4_t s = vaddq_f32(vld1q_f32(row + j), vld1q_f32(bias + j));
        vst1q_f32(row + j, s);
        m = vmaxq_f32(m, s);
    }
    float best = vmaxvq_f32(m);
    for (; j < n; j++) {
        row[j] += bias[j];
        best = row[j] > best ? row[j] : best;
    }
    return best;
}

typedef float an_vec __attribute__((vector_size(16)));
#define AS_NAME flint_neon_f32_attend_sequence
#define AS_TARGET
#define AS_VEC an_vec
#define AS_W 4
#define AS_R 4
#define AS_CV 4
#define AS_ADD_MAX an_add_max
#define AS_EXP flint_neon_f32_exp_shifted
#include "AttentionSequence.h"

void flint_avx512_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride,
                                      int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores,
                                      float *context) {
    (void)q; (void)k; (void)v; (void)length; (void)stride; (void)dkv; (void)bias; (void)causal; (void)kt;
    (void)scores; (void)context;
}
void flint_avx2_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride,
                                    int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores,
                                    float *context) {
    (void)q; (void)k; (void)v; (void)length; (void)stride; (void)dkv; (void)bias; (void)causal; (void)kt;
    (void)scores; (void)context;
}

#else
void flint_avx512_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride,
                                      int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores,
                                      float *context) {
    (void)q; (void)k; (void)v; (void)length; (void)stride; (void)dkv; (void)bias; (void)causal; (void)kt;
    (void)scores; (void)context;
}
void flint_avx2_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride,
                                    int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores,
                                    float *context) {
    (void)q; (void)k; (void)v; (void)length; (void)stride; (void)dkv; (void)bias; (void)causal; (void)kt;
    (void)scores; (void)context;
}
void flint_neon_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride,
                                    int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores,
                                    float *context) {
    (void)q; (void)k; (void)v; (void)length; (void)stride; (void)dkv; (void)bias; (void)causal; (void)kt;
    (void)scores; (void)context;
}
#endif
