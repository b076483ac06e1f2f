// Int8 matrix kernels for x86-64 CPUs with AVX-512 VNNI, called from FlintKernels (Int8Linear.swift).
// Swift on Linux compiles for baseline x86-64 (SSE2) and has no per-function target attributes, so these
// kernels are compiled with `__attribute__((target(...)))` and chosen at run time with
// `flint_int8_native_available()`; every other CPU uses the portable Swift kernels.
#ifndef CFLINTKERNELS_H
#define CFLINTKERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An int8 weight matrix `[n, k]` (row-major) with float scales `[n, groups]`: `w ≈ q × scale`.
/// Per-row scaling is `group_size == k`, `groups == 1`.
typedef struct {
    const int8_t *weights;
    const float *scales;
    /// `128 × scale × Σ q` per (row, group): W8A8 feeds activations as unsigned `xq + 128` to vpdpbusd
    /// (unsigned × signed bytes), and this term removes the `+ 128` again. Unused by the weight-only kernel.
    const float *compensation;
    int64_t k;
    int64_t group_size;
    int64_t groups;
} flint_int8_matrix;

/// 1 when the CPU and OS support AVX-512 F/BW/VL/DQ and VNNI (the kernels below may be called), else 0.
int flint_int8_native_available(void);

/// Quantizes `rows × k` floats (row stride `k`) for W8A8, per block of `group_size` elements (the last one of a row
/// may be shorter): `scale = max|x| / 127`, `q = roundHalfEven(x · (127 / max|x|))` clamped to ±127, stored as
/// `q + 128` (row stride `ldxq`), scales `rows × groups`. An all-zero block gets scale 0; a block with NaN or ±∞
/// gets scale NaN and q = 0. Bit-identical to `Int8ActivationQuantizer` (Swift).
void flint_int8_quantize_activations(const float *x, int64_t rows, int64_t k, int64_t group_size, int64_t groups,
                                     uint8_t *xq, int64_t ldxq, float *scales);

/// W8A8: `y[r, j] = Σ_groups scale_w[j, g] · scale_x[r, g] · Σ_{i ∈ g} q_w[j, i] · q_x[r, i]` for
/// `j ∈ [n_begin, n_end)`, `r < rows`. `xq` holds `q_x + 128` as bytes (row stride `ldxq`), `xscales` is
/// `rows × groups`. Needs `group_size == 32`, or every group boundary on a multiple of 64 (`groups == 1` or
/// `group_size % 64 == 0`).
void flint_int8_w8a8(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end,
                     const uint8_t *xq, int64_t ldxq, const float *xscales, int64_t rows,
                     float *y, int64_t ldy);

/// Weight-only: `y[r, j] = Σ_i (q_w[j, i] · scale_w[j, group(i)]) · x[r, i]`, float accumulation.
/// Needs `groups == 1` or `group_size % 16 == 0`.
void flint_int8_weight_only(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end,
                            const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy);

/// 1 when the CPU supports AVX-512 F/DQ (so `flint_f32_xwt` may be called), else 0.
int flint_f32_native_available(void);

/// Float32 `y[r, j] = Σ_i x[r, i] · w[j, i]` for `j ∈ [n_begin, n_end)`, `r < rows`: x row stride `ldx`, W
/// row-major `[n, k]`, y row stride `ldy`.
void flint_f32_xwt(const float *x, int64_t rows, int64_t ldx, const float *w, int64_t k,
                   int64_t n_begin, int64_t n_end, float *y, int64_t ldy);

/// In place, `x ← 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))` (HF's gelu_new), tanh through a vectorised
/// exp (relative error about 1e-7). Needs `flint_f32_native_available()`.
void flint_f32_gelu_new(float *x, int64_t count);

/// In place, `x[i] ← exp(x[i] − shift)`, and `*sum = Σ x[i]` afterwards (a softmax row). Needs
/// `flint_f32_native_available()`.
void flint_f32_exp_shifted(float *x, int64_t count, float shift, float *sum);

/// One attention head: for each query i, `scores[j] = q_i · k_j + bias[i · bias_row_stride + j]` (bias may be
/// NULL), softmax over j, `context_i = Σ_j p_j · v_j`. Queries, keys, values and context rows are `dkv` floats
/// with row stride `stride`; `scores` holds `key_count` floats. Needs `flint_f32_native_available()`.
void flint_f32_attend(const float *queries, int64_t query_count, const float *keys, const float *values,
                      int64_t key_count, int64_t stride, int64_t dkv, const float *bias, int64_t bias_row_stride,
                      float *scores, float *context);

#ifdef __cplusplus
}
#endif

#endif
