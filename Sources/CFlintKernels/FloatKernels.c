// Float32 matrix products for x86-64 CPUs with AVX-512 F (and FMA), chosen at run time like the int8 kernels.
// Swift compiles for baseline x86-64 (SSE2, no FMA), where the same loops run 4 lanes wide without fused
// multiply-add; these run 16 lanes wide with FMA.

#include "CFlintKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define FLINT_F32_TARGET __attribute__((target("avx512f,avx512dq,fma")))

int flint_f32_native_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

#define XWT_NAME flint_f32_xwt
#define XWT_TARGET FLINT_F32_TARGET
#define XWT_W float
#define XWT_LOAD(p) _mm512_loadu_ps(p)
#define XWT_LOAD_MASKED(m, p) _mm512_maskz_loadu_ps((m), (p))
#include "XwtLoops.h"

// e^x for 16 lanes: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to degree 7 (relative error about
// 1e-7 on that interval), then scaled by 2^n. Inputs are clamped to ±88 (float's range).
FLINT_F32_TARGET static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

FLINT_F32_TARGET void flint_f32_gelu_new(float *x, int64_t count) {
    const __m512 c = _mm512_set1_ps(0.7978845608028654f), k = _mm512_set1_ps(0.044715f);
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
    const __m512 signMask = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u));
    for (int64_t i = 0; i < count; i += 16) {
        __mmask16 m = count - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512 u = _mm512_mul_ps(c, _mm512_fmadd_ps(_mm512_mul_ps(k, v), _mm512_mul_ps(v, v), v));
        // tanh(u) = sign(u) · (1 − e) / (1 + e) with e = exp(−2|u|), which cannot overflow.
        __m512 au = _mm512_andnot_ps(signMask, u);
        __m512 e = exp16(_mm512_mul_ps(_mm512_set1_ps(-1.0f), _mm512_mul_ps(two, au)));
        __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
        t = _mm512_or_ps(t, _mm512_and_ps(u, signMask));
        __m512 y = _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, t));
        _mm512_mask_storeu_ps(x + i, m, y);
    }
}

FLINT_F32_TARGET void flint_f32_exp_shifted(float *x, int64_t count, float shift, float *sum) {
    __m512 acc = _mm512_setzero_ps();
    const __m512 s = _mm512_set1_ps(shift);
    for (int64_t i = 0; i < count; i += 16) {
        __mmask16 m = count - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - i)) - 1);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(x + i, m, e);
        acc = _mm512_add_ps(acc, e);
    }
    *sum = _mm512_reduce_add_ps(acc);
}

// Attention of `query_count` queries over `key_count` keys for one head (see the header), over float32 keys and
// values or (`half`, the decoder caches of a quantized model) binary16 ones widened as they are loaded: one body,
// so both read the caches in the same order with the same prefetches. The half loads need AVX-512 BW/VL (masked
// 16-bit loads), which the AVX-512 path has.
#define FLINT_ATTEND_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

FLINT_ATTEND_TARGET static inline __m512 kv_load(__mmask16 m, const void *rows, int64_t index, const int half) {
    return half ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)rows + index))
                : _mm512_maskz_loadu_ps(m, (const float *)rows + index);
}

FLINT_ATTEND_TARGET static inline __attribute__((always_inline)) void
attend_body(const float *queries, int64_t query_count, const void *keys, const void *values, int64_t key_count,
            int64_t stride, int64_t dkv, const float *bias, int64_t bias_row_stride, float *scores, float *context,
            const int half) {
    const int64_t element = half ? 2 : 4;
    const char *key_bytes = (const char *)keys, *value_bytes = (const char *)values;
    for (int64_t i = 0; i < query_count; i++) {
        const float *q = queries + i * stride;
        float max_score = -__builtin_inff();
        for (int64_t j = 0; j < key_count; j++) {
            // At decode the caches come from memory (the step's weights passed through L2 and L3 since this head
            // last read them): key rows 8 ahead into L1, this key's value row into L2 for the weighted sum after
            // the softmax. One decoding step's attention of flan-t5-base (12 layers, 64 cross + 1-64 self keys,
            // caches evicted between layers), Zen 4, load 4-5: 20 % less time (1.24-1.41 -> 1.00-1.10 ms).
            for (int64_t b = 0; b < dkv * element; b += 64) {
                _mm_prefetch(key_bytes + ((j + 8) * stride) * element + b, _MM_HINT_T0);
                _mm_prefetch(value_bytes + (j * stride) * element + b, _MM_HINT_T1);
            }
            // The order of XwtLoops.h's dot1: two accumulators over 32 inputs, then 16, then a masked tail.
            const int64_t row = j * stride;
            __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
            int64_t c = 0;
            for (; c + 32 <= dkv; c += 32) {
                acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), kv_load(0xFFFF, keys, row + c, half), acc0);
                acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 16), kv_load(0xFFFF, keys, row + c + 16, half), acc1);
            }
            for (; c + 16 <= dkv; c += 16)
                acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), kv_load(0xFFFF, keys, row + c, half), acc0);
            if (c < dkv) {
                const __mmask16 m = (__mmask16)((1u << (dkv - c)) - 1);
                acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + c), kv_load(m, keys, row + c, half), acc0);
            }
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
            if (bias) s += bias[i * bias_row_stride + j];
            scores[j] = s;
            if (s > max_score) max_score = s;
        }
        float total = 0;
        flint_f32_exp_shifted(scores, key_count, max_score, &total);
        const float inverse = 1.0f / total;
        float *out = context + i * stride;
        // dkv is small (64 for T5): accumulate the weighted values in up to four registers.
        for (int64_t c = 0; c < dkv; c += 64) {
            const int64_t width = dkv - c < 64 ? dkv - c : 64;
            __mmask16 m[4];
            for (int b = 0; b < 4; b++) {
                int64_t left = width - 16 * b;
                m[b] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
            }
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int64_t j = 0; j < key_count; j++) {
                const __m512 p = _mm512_set1_ps(scores[j] * inverse);
                for (int b = 0; b < 4; b++)
                    if (m[b]) acc[b] = _mm512_fmadd_ps(p, kv_load(m[b], values, j * stride + c + 16 * b, half), acc[b]);
            }
            for (int b = 0; b < 4; b++) if (m[b]) _mm512_mask_storeu_ps(out + c + 16 * b, m[b], acc[b]);
        }
    }
}

FLINT_ATTEND_TARGET void flint_f32_attend(const float *queries, int64_t query_count, const float *keys,
                                          const float *values, int64_t key_count, int64_t stride, int64_t dkv,
                                          const float *bias, int64_t bias_row_stride, float *scores, float *context) {
    attend_body(queries, query_count, keys, values, key_count, stride, dkv, bias, bias_row_stride, scores, context, 0);
}

FLINT_ATTEND_TARGET void flint_avx512_f16kv_attend(const float *queries, int64_t query_count, const uint16_t *keys,
                                                   const uint16_t *values, int64_t key_count, int64_t stride,
                                                   int64_t dkv, const float *bias, int64_t bias_row_stride,
                                                   float *scores, float *context) {
    attend_body(queries, query_count, keys, values, key_count, stride, dkv, bias, bias_row_stride, scores, context, 1);
}

#else

int flint_f32_native_available(void) { return 0; }

void flint_f32_xwt(const float *x, int64_t rows, int64_t ldx, const float *w, int64_t k,
                   int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    (void)x; (void)rows; (void)ldx; (void)w; (void)k; (void)n_begin; (void)n_end; (void)y; (void)ldy;
}
void flint_f32_gelu_new(float *x, int64_t count) { (void)x; (void)count; }
void flint_f32_attend(const float *queries, int64_t query_count, const float *keys, const float *values,
                      int64_t key_count, int64_t stride, int64_t dkv, const float *bias, int64_t bias_row_stride,
                      float *scores, float *context) {
    (void)queries; (void)query_count; (void)keys; (void)values; (void)key_count; (void)stride; (void)dkv;
    (void)bias; (void)bias_row_stride; (void)scores; (void)context;
}
void flint_f32_exp_shifted(float *x, int64_t count, float shift, float *sum) { (void)x; (void)count; (void)shift; *sum = 0; }
void flint_avx512_f16kv_attend(const float *queries, int64_t query_count, const uint16_t *keys,
                               const uint16_t *values, int64_t key_count, int64_t stride, int64_t dkv,
                               const float *bias, int64_t bias_row_stride, float *scores, float *context) {
    (void)queries; (void)query_count; (void)keys; (void)values; (void)key_count; (void)stride; (void)dkv;
    (void)bias; (void)bias_row_stride; (void)scores; (void)context;
}

#endif
