// C-level test of every instruction-set path of CFlintKernels against a portable C reference, for the paths this
// CPU can run: natively on x86-64 (AVX2, AVX2 without VNNI, AVX-VNNI, AVX-512) and under qemu-aarch64 for ARM64
// (NEON with sdot, NEON without). `make kernel-test` / `make kernel-test-arm` build and run it; `make test` runs both.
//
// The reference is the portable Swift kernels' arithmetic written in C (Int8ActivationQuantizer, Int8PortableKernels
// .w8a8) plus double-precision sums for the float kernels. What is checked (the contract in CFlintKernels.h):
//   quantize_activations   bit-identical codes and scales (NaN / ±∞ / all-zero blocks included)
//   w8a8 (AVX2, NEON)      bit-identical outputs
//   w8a8 (AVX-512)         |y − ref| ≤ 1e-5 · Σ|w·x| + 1e-30 (its float epilogue runs per lane)
//   weight_only, xwt       |y − ref| ≤ 1e-5 · Σ|w·x| + 1e-30 (ref in double)
//   attend                 |context − ref| ≤ 1e-5 · max|v| (ref in double)
//   attend_sequence        the same, per query over its own sequence (bias by relative position, causal or not)
//   gelu_new               |y − ref| ≤ 2e-6 · |ref| + 4e-7 · |x| (for x ≪ 0, 1 + tanh(u) cancels: absolute error ≈ |x|·ulp(1))
//   exp_shifted            |y − ref| ≤ 2e-6 · ref, and the sum within 2e-6 relative
//   packed w8a8 (all)      bit-identical to the row-major reference (weights packed here as FLINT.md layout 1)
//   packed weight_only     |y − ref| ≤ 1e-5 · Σ|w·x| + 1e-30
//   f32_to_f16             bit-identical to flint_f16_from_f32 (which is checked against F16C's `vcvtps2ph` on
//                          x86, and round-trips all 63488 non-NaN halves through flint_f32_from_f16)
//   f16kv_attend           bit-identical to the path's attend over the widened keys and values
// Exit status 0 when everything passes; every failure prints what, where and by how much.
#include "CFlintKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
/// F16C's own conversion (nearest, ties to even), the independent reference for flint_f16_from_f32.
__attribute__((target("f16c"))) static uint16_t flint_test_f16c(float x) {
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), 0);
}
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, checks = 0;

#define FAIL(...) do { if (failures < 40) { fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); } failures++; } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() >> 8) / 16777216.0f; }

// ---------------------------------------------------------------------------------------------------------------
// Reference.

static float ref_quantize_block(const float *x, int64_t count, uint8_t *out) {
    float amax = 0, check = 0;
    for (int64_t i = 0; i < count; i++) {
        const float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
        check += x[i] * 0.0f;
    }
    if (check != 0.0f || !isfinite(amax)) {
        memset(out, 128, (size_t)count);
        return NAN;
    }
    if (amax == 0.0f) {
        memset(out, 128, (size_t)count);
        return 0;
    }
    const float inverse = 127.0f / amax;
    for (int64_t i = 0; i < count; i++) {
        float v = x[i] * inverse;
        v = v < -127.0f ? -127.0f : v;
        v = v > 127.0f ? 127.0f : v;
        out[i] = (uint8_t)((int)nearbyintf(v) + 128);
    }
    return amax / 127.0f;
}

static void ref_quantize(const float *x, int64_t rows, int64_t k, int64_t gsize, int64_t groups, uint8_t *xq,
                         int64_t ldq, float *scales) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t start = g * gsize, end = start + gsize < k ? start + gsize : k;
            scales[r * groups + g] = ref_quantize_block(x + r * k + start, end - start, xq + r * ldq + start);
        }
}

/// Int8PortableKernels.w8a8: per group `sum += Float(dot) · (scale_w · scale_x)`, `corr += comp · scale_x`.
static void ref_w8a8(const flint_int8_matrix *m, int64_t n_out, const uint8_t *xq, int64_t ldq, const float *xs,
                     int64_t rows, float *y) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t n = 0; n < n_out; n++) {
            float sum = 0, corr = 0;
            for (int64_t g = 0; g < m->groups; g++) {
                const int64_t start = g * m->group_size;
                const int64_t end = start + m->group_size < m->k ? start + m->group_size : m->k;
                int32_t dot = 0;
                for (int64_t i = start; i < end; i++) dot += (int32_t)xq[r * ldq + i] * (int32_t)m->weights[n * m->k + i];
                const float scale = m->scales[n * m->groups + g] * xs[r * m->groups + g];
                sum = sum + (float)dot * scale;
                corr = corr + m->compensation[n * m->groups + g] * xs[r * m->groups + g];
            }
            y[r * n_out + n] = sum - corr;
        }
}

/// Packs row-major int8 weights as FLINT.md layout 1 (blocks of 16 rows × 4 inputs, then the weight sums per
/// [block][group][lane]); written independently of the Swift packer (PackedInt8Geometry.pack), which the Swift
/// tests check against the same kernels.
static flint_packed_int8 ref_pack(const int8_t *w, const float *scales, int64_t n, int64_t k, int64_t gsize,
                                  int64_t groups, void **storage) {
    const int64_t blocks = (n + 15) / 16, kp = (k + 3) / 4 * 4;
    const size_t weight_bytes = (size_t)(blocks * 16 * kp), sum_bytes = (size_t)(blocks * groups * 16) * 4;
    uint8_t *mem = aligned_alloc(64, (weight_bytes + sum_bytes + 63) / 64 * 64);
    memset(mem, 0, weight_bytes + sum_bytes);
    int8_t *b = (int8_t *)mem;
    int32_t *sums = (int32_t *)(mem + weight_bytes);
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < k; i++) {
            b[(r / 16) * 16 * kp + (i / 4) * 64 + (r % 16) * 4 + (i % 4)] = w[r * k + i];
            sums[((r / 16) * groups + i / gsize) * 16 + r % 16] += w[r * k + i];
        }
    *storage = mem;
    const flint_packed_int8 m = {b, sums, scales, n, k, kp, gsize, groups};
    return m;
}

// ---------------------------------------------------------------------------------------------------------------
// The paths under test.

typedef void (*quantize_fn)(const float *, int64_t, int64_t, int64_t, int64_t, uint8_t *, int64_t, float *);
typedef void (*w8a8_fn)(const flint_int8_matrix *, int64_t, int64_t, const uint8_t *, int64_t, const float *,
                        int64_t, float *, int64_t);
typedef void (*weight_only_fn)(const flint_int8_matrix *, int64_t, int64_t, const float *, int64_t, int64_t,
                               float *, int64_t);
typedef void (*xwt_fn)(const float *, int64_t, int64_t, const float *, int64_t, int64_t, int64_t, float *, int64_t);
typedef void (*gelu_fn)(float *, int64_t);
typedef void (*exp_fn)(float *, int64_t, float, float *);
typedef void (*attend_fn)(const float *, int64_t, const float *, const float *, int64_t, int64_t, int64_t,
                          const float *, int64_t, float *, float *);

typedef void (*attend_sequence_fn)(const float *, const float *, const float *, int64_t, int64_t, int64_t,
                                   const float *, int32_t, float *, float *, float *);

typedef void (*f16kv_attend_fn)(const float *, int64_t, const uint16_t *, const uint16_t *, int64_t, int64_t,
                                int64_t, const float *, int64_t, float *, float *);
typedef void (*to_f16_fn)(const float *, int64_t, uint16_t *);
typedef void (*half_xwt_fn)(const float *, int64_t, int64_t, const uint16_t *, int64_t, int64_t, int64_t, float *,
                            int64_t);

typedef void (*packed_w8a8_fn)(const flint_packed_int8 *, int64_t, int64_t, const uint8_t *, int64_t,
                               const float *, int64_t, float *, int64_t);
typedef void (*packed_wo_fn)(const flint_packed_int8 *, int64_t, int64_t, const float *, int64_t, int64_t, float *,
                             int64_t);

typedef struct {
    const char *name;
    int available;
    int w8a8_exact;       // bit-identical W8A8 promised
    int restricted;       // AVX-512: group sizes 32 or multiples of 64 (W8A8), multiples of 16 (weight-only)
    quantize_fn quantize;
    w8a8_fn w8a8;
    weight_only_fn weight_only;
    xwt_fn xwt;
    gelu_fn gelu;
    exp_fn exp_shifted;
    attend_fn attend;
    packed_w8a8_fn packed_w8a8;
    packed_wo_fn packed_weight_only;
    attend_sequence_fn attend_sequence;
    f16kv_attend_fn f16kv_attend;
    to_f16_fn to_f16;
    half_xwt_fn f16_xwt, bf16_xwt;
} path;

static int fits(const path *p, int64_t k, int64_t gsize, int64_t groups, int w8a8) {
    if (!p->restricted) return 1;
    (void)k;
    if (w8a8) return groups == 1 || gsize == 32 || gsize % 64 == 0;
    return groups == 1 || gsize % 16 == 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Checks.

typedef struct {
    int64_t n, k, gsize;  // gsize 0: per-row scales
} int8_case;

static void check_int8(const path *p, int8_case c, int64_t rows) {
    const int64_t n = c.n, k = c.k;
    const int64_t gsize = c.gsize > 0 && c.gsize < k ? c.gsize : k;
    const int64_t groups = c.gsize > 0 ? (k + c.gsize - 1) / c.gsize : 1;
    const int64_t ldq = (k + 63) / 64 * 64;
    int8_t *w = malloc((size_t)(n * k));
    float *scales = malloc(sizeof(float) * (size_t)(n * groups));
    float *comp = malloc(sizeof(float) * (size_t)(n * groups));
    int32_t *wsum = malloc(sizeof(int32_t) * (size_t)(n * groups));
    float *x = malloc(sizeof(float) * (size_t)(rows * k));
    uint8_t *xq = calloc((size_t)(rows * ldq), 1), *xq_ref = calloc((size_t)(rows * ldq), 1);
    float *xs = malloc(sizeof(float) * (size_t)(rows * groups)), *xs_ref = malloc(sizeof(float) * (size_t)(rows * groups));
    float *y = malloc(sizeof(float) * (size_t)(rows * n)), *y_ref = malloc(sizeof(float) * (size_t)(rows * n));
    for (int64_t i = 0; i < n * k; i++) w[i] = (int8_t)((int)(next_u32() % 255) - 127);
    for (int64_t i = 0; i < n * groups; i++) scales[i] = uniform(0.001f, 0.02f);
    for (int64_t row = 0; row < n; row++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t start = g * gsize, end = start + gsize < k ? start + gsize : k;
            int32_t s = 0;
            for (int64_t i = start; i < end; i++) s += w[row * k + i];
            wsum[row * groups + g] = s;
            comp[row * groups + g] = 128 * scales[row * groups + g] * (float)s;
        }
    // Activations with T5-like outliers: mostly small, a few large columns.
    for (int64_t i = 0; i < rows * k; i++) x[i] = uniform(-1, 1) * ((i % 97) == 5 ? 40.0f : 1.0f);
    if (rows > 2 && k > 40) {
        x[1 * k + 3] = NAN;          // a NaN block
        for (int64_t i = 0; i < k; i++) x[2 * k + i] = 0;  // an all-zero row
        x[2 * k + k - 1] = INFINITY; // ... whose last block holds ∞
    }
    const flint_int8_matrix m = {w, scales, comp, wsum, k, gsize, groups};
    char where[160];
    snprintf(where, sizeof where, "%s n=%lld k=%lld group=%lld rows=%lld", p->name, (long long)n, (long long)k,
             (long long)c.gsize, (long long)rows);

    // Quantizer: bit-identical codes and scales.
    ref_quantize(x, rows, k, gsize, groups, xq_ref, ldq, xs_ref);
    p->quantize(x, rows, k, gsize, groups, xq, ldq, xs);
    checks++;
    for (int64_t r = 0; r < rows; r++) {
        if (memcmp(xq + r * ldq, xq_ref + r * ldq, (size_t)k) != 0) { FAIL("%s: quantized codes differ in row %lld", where, (long long)r); break; }
        for (int64_t g = 0; g < groups; g++) {
            const float a = xs[r * groups + g], b = xs_ref[r * groups + g];
            if (!(a == b || (isnan(a) && isnan(b)))) FAIL("%s: scale (%lld, %lld) %g vs %g", where, (long long)r, (long long)g, a, b);
        }
    }
    // The rest uses the reference codes, so a quantizer failure is not counted twice.
    if (fits(p, k, gsize, groups, 1)) {
        checks++;
        ref_w8a8(&m, n, xq_ref, ldq, xs_ref, rows, y_ref);
        // Two calls on split output ranges, as the thread pool does.
        const int64_t split = n > 8 ? (n / 2) / 8 * 8 : n;
        p->w8a8(&m, 0, split, xq_ref, ldq, xs_ref, rows, y, n);
        p->w8a8(&m, split, n, xq_ref, ldq, xs_ref, rows, y, n);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < n; j++) {
                const float a = y[r * n + j], b = y_ref[r * n + j];
                if (isnan(b) || isnan(a)) {
                    if (isnan(a) != isnan(b)) FAIL("%s: w8a8 (%lld, %lld) %g vs %g", where, (long long)r, (long long)j, a, b);
                    continue;
                }
                if (p->w8a8_exact) {
                    if (memcmp(&a, &b, 4) != 0) FAIL("%s: w8a8 (%lld, %lld) %.9g vs %.9g (must be bit-identical)", where, (long long)r, (long long)j, a, b);
                } else {
                    double mass = 0;
                    for (int64_t g = 0; g < groups; g++) {
                        const int64_t start = g * gsize, end = start + gsize < k ? start + gsize : k;
                        for (int64_t i = start; i < end; i++)
                            mass += fabs((double)w[j * k + i] * scales[j * groups + g] * ((int)xq_ref[r * ldq + i] - 128) * xs_ref[r * groups + g]);
                    }
                    if (fabs((double)a - b) > 1e-5 * mass + 1e-30) FAIL("%s: w8a8 (%lld, %lld) %.9g vs %.9g", where, (long long)r, (long long)j, a, b);
                }
            }
    }
    if (fits(p, k, gsize, groups, 0)) {
        checks++;
        // Finite activations only: the float kernels have no NaN contract beyond IEEE propagation.
        for (int64_t i = 0; i < rows * k; i++) if (!isfinite(x[i])) x[i] = 0.5f;
        const int64_t split = n > 8 ? (n / 2) / 8 * 8 : n;
        p->weight_only(&m, 0, split, x, k, rows, y, n);
        p->weight_only(&m, split, n, x, k, rows, y, n);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < n; j++) {
                double ref = 0, mass = 0;
                for (int64_t i = 0; i < k; i++) {
                    const double t = (double)w[j * k + i] * scales[j * groups + i / gsize] * x[r * k + i];
                    ref += t; mass += fabs(t);
                }
                if (fabs(y[r * n + j] - ref) > 1e-5 * mass + 1e-30)
                    FAIL("%s: weight-only (%lld, %lld) %.9g vs %.9g (Σ|w·x| %g)", where, (long long)r, (long long)j, y[r * n + j], ref, mass);
            }
    }
    // The packed layout: every path, W8A8 bit-identical to the row-major reference (with the activation bytes
    // past k, which the packed kernels may read, holding garbage), weight-only within the float tolerance.
    if (p->packed_w8a8 && (groups == 1 || gsize % 4 == 0)) {
        void *storage = NULL;
        const flint_packed_int8 pm = ref_pack(w, scales, n, k, gsize, groups, &storage);
        const int64_t blocks = (n + 15) / 16, split = blocks / 2;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = k; i < ldq; i++) xq_ref[r * ldq + i] = (uint8_t)(0x5A + i);
        ref_w8a8(&m, n, xq_ref, ldq, xs_ref, rows, y_ref);
        for (int64_t i = 0; i < rows * n; i++) y[i] = -12345.0f;
        p->packed_w8a8(&pm, 0, split, xq_ref, ldq, xs_ref, rows, y, n);
        p->packed_w8a8(&pm, split, blocks, xq_ref, ldq, xs_ref, rows, y, n);
        checks++;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < n; j++) {
                const float a = y[r * n + j], b = y_ref[r * n + j];
                if (isnan(a) && isnan(b)) continue;
                if (memcmp(&a, &b, 4) != 0)
                    FAIL("%s: packed w8a8 (%lld, %lld) %.9g vs %.9g (must be bit-identical)", where, (long long)r, (long long)j, a, b);
            }
        for (int64_t i = 0; i < rows * k; i++) if (!isfinite(x[i])) x[i] = 0.5f;
        for (int64_t i = 0; i < rows * n; i++) y[i] = -12345.0f;
        p->packed_weight_only(&pm, 0, split, x, k, rows, y, n);
        p->packed_weight_only(&pm, split, blocks, x, k, rows, y, n);
        checks++;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < n; j++) {
                double ref = 0, mass = 0;
                for (int64_t i = 0; i < k; i++) {
                    const double t = (double)w[j * k + i] * scales[j * groups + i / gsize] * x[r * k + i];
                    ref += t; mass += fabs(t);
                }
                if (fabs(y[r * n + j] - ref) > 1e-5 * mass + 1e-30)
                    FAIL("%s: packed weight-only (%lld, %lld) %.9g vs %.9g (Σ|w·x| %g)", where, (long long)r, (long long)j, y[r * n + j], ref, mass);
            }
        free(storage);
    }
    free(w); free(scales); free(comp); free(wsum); free(x); free(xq); free(xq_ref); free(xs); free(xs_ref); free(y); free(y_ref);
}

static void check_xwt(const path *p, int64_t rows, int64_t n, int64_t k) {
    float *x = malloc(sizeof(float) * (size_t)(rows * (k + 3))), *w = malloc(sizeof(float) * (size_t)(n * k));
    float *y = malloc(sizeof(float) * (size_t)(rows * (n + 5)));
    const int64_t ldx = k + 3, ldy = n + 5;  // strided rows, as the attention projections use
    for (int64_t i = 0; i < rows * ldx; i++) x[i] = uniform(-1, 1);
    for (int64_t i = 0; i < n * k; i++) w[i] = uniform(-0.1f, 0.1f);
    const int64_t split = n / 2;
    p->xwt(x, rows, ldx, w, k, 0, split, y, ldy);
    p->xwt(x, rows, ldx, w, k, split, n, y, ldy);
    checks++;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) {
            double ref = 0, mass = 0;
            for (int64_t i = 0; i < k; i++) { const double t = (double)x[r * ldx + i] * w[j * k + i]; ref += t; mass += fabs(t); }
            if (fabs(y[r * ldy + j] - ref) > 1e-5 * mass + 1e-30)
                FAIL("%s: xwt rows=%lld n=%lld k=%lld (%lld, %lld) %.9g vs %.9g", p->name, (long long)rows, (long long)n, (long long)k, (long long)r, (long long)j, y[r * ldy + j], ref);
        }
    free(x); free(w); free(y);
}

/// f16_xwt and bf16_xwt against the path's own f32_xwt over the same weights widened: the same sums in the same
/// order, so the same bits (halves of every magnitude, subnormal f16 included; column ranges split as the pool does).
static void check_half_xwt(const path *p, int64_t rows, int64_t n, int64_t k) {
    const int64_t ldx = k + 3, ldy = n + 5;
    float *x = malloc(sizeof(float) * (size_t)(rows * ldx)), *wide = malloc(sizeof(float) * (size_t)(n * k));
    float *y = malloc(sizeof(float) * (size_t)(rows * ldy)), *y_ref = malloc(sizeof(float) * (size_t)(rows * ldy));
    uint16_t *half = malloc(sizeof(uint16_t) * (size_t)(n * k));
    for (int64_t i = 0; i < rows * ldx; i++) x[i] = uniform(-1, 1);
    for (int kind = 0; kind < 2; kind++) {
        for (int64_t i = 0; i < n * k; i++) {
            const float v = uniform(-0.1f, 0.1f) * (i % 7 == 0 ? 1e-4f : 1.0f);
            if (kind == 0) {
                half[i] = flint_f16_from_f32(v);
                wide[i] = flint_f32_from_f16(half[i]);
            } else {
                uint32_t bits;
                memcpy(&bits, &v, 4);
                half[i] = (uint16_t)(bits >> 16);
                bits = (uint32_t)half[i] << 16;
                memcpy(&wide[i], &bits, 4);
            }
        }
        for (int64_t i = 0; i < rows * ldy; i++) y[i] = y_ref[i] = 0;
        const half_xwt_fn f = kind == 0 ? p->f16_xwt : p->bf16_xwt;
        const int64_t split = n / 2 / 4 * 4;
        p->xwt(x, rows, ldx, wide, k, 0, n, y_ref, ldy);
        f(x, rows, ldx, half, k, 0, split, y, ldy);
        f(x, rows, ldx, half, k, split, n, y, ldy);
        checks++;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < n; j++)
                if (memcmp(&y[r * ldy + j], &y_ref[r * ldy + j], sizeof(float)) != 0) {
                    FAIL("%s: %s_xwt rows=%lld n=%lld k=%lld (%lld, %lld) %.9g, f32_xwt over the widened matrix %.9g",
                         p->name, kind == 0 ? "f16" : "bf16", (long long)rows, (long long)n, (long long)k, (long long)r,
                         (long long)j, y[r * ldy + j], y_ref[r * ldy + j]);
                    r = rows;
                    break;
                }
    }
    free(x); free(wide); free(y); free(y_ref); free(half);
}

static void check_elementwise(const path *p, int64_t count) {
    float *x = malloc(sizeof(float) * (size_t)(count + 1)), *v = malloc(sizeof(float) * (size_t)(count + 1));
    for (int64_t i = 0; i < count; i++) v[i] = uniform(-12, 12) * (i % 5 == 0 ? 3.0f : 1.0f);
    v[count] = 12345.0f;  // a guard element that must stay untouched
    memcpy(x, v, sizeof(float) * (size_t)(count + 1));
    p->gelu(x, count);
    checks++;
    for (int64_t i = 0; i < count; i++) {
        const double t = v[i], ref = 0.5 * t * (1 + tanh(0.7978845608028654 * (t + 0.044715 * t * t * t)));
        if (fabs(x[i] - ref) > 2e-6 * fabs(ref) + 4e-7 * fabs(t)) FAIL("%s: gelu_new(%.9g) = %.9g, expected %.9g", p->name, v[i], x[i], ref);
    }
    if (x[count] != 12345.0f) FAIL("%s: gelu_new wrote past count %lld", p->name, (long long)count);
    memcpy(x, v, sizeof(float) * (size_t)(count + 1));
    float max = v[0];
    for (int64_t i = 1; i < count; i++) max = v[i] > max ? v[i] : max;
    float sum = -1;
    p->exp_shifted(x, count, max, &sum);
    checks++;
    double total = 0;
    for (int64_t i = 0; i < count; i++) {
        const double ref = exp((double)v[i] - max);
        total += ref;
        if (fabs(x[i] - ref) > 2e-6 * ref + 1e-30) FAIL("%s: exp(%.9g − %.9g) = %.9g, expected %.9g", p->name, v[i], max, x[i], ref);
    }
    if (fabs(sum - total) > 2e-6 * total) FAIL("%s: exp_shifted sum %.9g, expected %.9g (count %lld)", p->name, sum, total, (long long)count);
    if (x[count] != 12345.0f) FAIL("%s: exp_shifted wrote past count %lld", p->name, (long long)count);
    free(x); free(v);
}

static void check_attend(const path *p, int64_t queries, int64_t keys, int64_t dkv, int with_bias) {
    const int64_t stride = dkv * 3 + 1;
    float *q = malloc(sizeof(float) * (size_t)(queries * stride)), *kk = malloc(sizeof(float) * (size_t)(keys * stride));
    float *v = malloc(sizeof(float) * (size_t)(keys * stride)), *bias = malloc(sizeof(float) * (size_t)(queries * (keys + 2)));
    float *scores = malloc(sizeof(float) * (size_t)keys), *ctx = malloc(sizeof(float) * (size_t)(queries * stride));
    double *sc = malloc(sizeof(double) * (size_t)keys);
    for (int64_t i = 0; i < queries * stride; i++) q[i] = uniform(-1, 1);
    for (int64_t i = 0; i < keys * stride; i++) { kk[i] = uniform(-1, 1); v[i] = uniform(-2, 2); }
    for (int64_t i = 0; i < queries * (keys + 2); i++) bias[i] = uniform(-3, 3);
    p->attend(q, queries, kk, v, keys, stride, dkv, with_bias ? bias : NULL, keys + 2, scores, ctx);
    checks++;
    for (int64_t i = 0; i < queries; i++) {
        double max = -INFINITY, total = 0;
        for (int64_t j = 0; j < keys; j++) {
            double s = 0;
            for (int64_t c = 0; c < dkv; c++) s += (double)q[i * stride + c] * kk[j * stride + c];
            if (with_bias) s += bias[i * (keys + 2) + j];
            sc[j] = s;
            max = s > max ? s : max;
        }
        for (int64_t j = 0; j < keys; j++) { sc[j] = exp(sc[j] - max); total += sc[j]; }
        for (int64_t c = 0; c < dkv; c++) {
            double ref = 0;
            for (int64_t j = 0; j < keys; j++) ref += sc[j] / total * v[j * stride + c];
            if (fabs(ctx[i * stride + c] - ref) > 1e-5 * 2.0)
                FAIL("%s: attend q=%lld k=%lld dkv=%lld bias=%d (%lld, %lld) %.9g vs %.9g", p->name, (long long)queries, (long long)keys, (long long)dkv, with_bias, (long long)i, (long long)c, ctx[i * stride + c], ref);
        }
    }
    free(q); free(kk); free(v); free(bias); free(scores); free(ctx); free(sc);
}

/// Values the binary16 conversion must get right: zeros, subnormal and normal halves and the ties between them,
/// the rounding ties of normals, the saturation bounds, infinities and NaN; then random floats of every magnitude.
static float f16_case(int64_t i) {
    static const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, -65504.0f, 65519.0f, 65520.0f, 1e6f, -1e30f,
                                  INFINITY, -INFINITY, 6.103515625e-05f, 6.0975552e-05f, 5.9604645e-08f,
                                  2.9802322e-08f, 2.9802326e-08f, 8.940697e-08f, 1.0004883f, 1.0014648f,
                                  1.00097656f, 3.0517578e-05f, 1e-40f, -1e-45f, 0.33333334f, 2047.5f, 2048.5f};
    const int64_t n = (int64_t)(sizeof edges / sizeof edges[0]);
    if (i < n) return edges[i];
    if (i == n) return NAN;
    const uint32_t bits = next_u32();
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/// The scalar reference itself: every half survives widening and narrowing; on x86 every case matches F16C.
static void check_f16_reference(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7C00u) == 0x7C00u && (h & 0x3FFu)) continue;  // NaN payloads: not a round trip
        const uint16_t expected = (h & 0x7FFFu) == 0x7C00u ? (uint16_t)((h & 0x8000u) | 0x7BFFu) : (uint16_t)h;
        checks++;
        const uint16_t back = flint_f16_from_f32(flint_f32_from_f16((uint16_t)h));
        if (back != expected) FAIL("f16 round trip 0x%04x -> %.9g -> 0x%04x", h, flint_f32_from_f16((uint16_t)h), back);
    }
#if defined(__x86_64__)
    if (flint_isa_supported(FLINT_ISA_AVX2)) {
        for (int64_t i = 0; i < 200000; i++) {
            const float x = f16_case(i);
            // F16C rounds the finite values beyond 65504 to ±∞ or 65504: it is compared on the clamped value.
            const float clamped = isnan(x) ? x : x > 65504.0f ? 65504.0f : x < -65504.0f ? -65504.0f : x;
            const uint16_t mine = flint_f16_from_f32(x), hardware = flint_test_f16c(clamped);
            checks++;
            if (mine != hardware) FAIL("f16 of %.9g: 0x%04x, F16C 0x%04x", x, mine, hardware);
        }
    }
#endif
}

static void check_f16(const path *p) {
    enum { count = 4099 };
    float *x = malloc(sizeof(float) * count);
    uint16_t *mine = malloc(2 * (count + 1)), *expected = malloc(2 * count);
    for (int64_t i = 0; i < count; i++) { x[i] = f16_case(i % 64 < 28 ? i % 64 : 100); expected[i] = flint_f16_from_f32(x[i]); }
    mine[count] = 0xBEEF;
    p->to_f16(x, count, mine);
    checks++;
    for (int64_t i = 0; i < count; i++)
        if (mine[i] != expected[i]) { FAIL("%s: f32_to_f16(%.9g) = 0x%04x, expected 0x%04x", p->name, x[i], mine[i], expected[i]); break; }
    if (mine[count] != 0xBEEF) FAIL("%s: f32_to_f16 wrote past count", p->name);
    free(x); free(mine); free(expected);
}

/// f16kv_attend against the path's own attend over the same keys and values widened: the same sums in the same
/// order, so the same bits.
static void check_f16kv_attend(const path *p, int64_t queries, int64_t keys, int64_t dkv, int with_bias) {
    const int64_t stride = dkv * 2 + 3;
    float *q = malloc(sizeof(float) * (size_t)(queries * stride)), *kw = malloc(sizeof(float) * (size_t)(keys * stride));
    float *vw = malloc(sizeof(float) * (size_t)(keys * stride)), *bias = malloc(sizeof(float) * (size_t)(queries * keys));
    uint16_t *kh = malloc(2 * (size_t)(keys * stride)), *vh = malloc(2 * (size_t)(keys * stride));
    float *scores = malloc(sizeof(float) * (size_t)keys), *got = malloc(sizeof(float) * (size_t)(queries * stride));
    float *want = malloc(sizeof(float) * (size_t)(queries * stride));
    for (int64_t i = 0; i < queries * stride; i++) { q[i] = uniform(-1, 1); got[i] = want[i] = 0; }
    for (int64_t i = 0; i < keys * stride; i++) {
        kh[i] = flint_f16_from_f32(uniform(-1, 1));
        vh[i] = flint_f16_from_f32(uniform(-2, 2));
        kw[i] = flint_f32_from_f16(kh[i]);
        vw[i] = flint_f32_from_f16(vh[i]);
    }
    for (int64_t i = 0; i < queries * keys; i++) bias[i] = uniform(-3, 3);
    p->attend(q, queries, kw, vw, keys, stride, dkv, with_bias ? bias : NULL, keys, scores, want);
    p->f16kv_attend(q, queries, kh, vh, keys, stride, dkv, with_bias ? bias : NULL, keys, scores, got);
    checks++;
    for (int64_t i = 0; i < queries; i++)
        for (int64_t c = 0; c < dkv; c++)
            if (memcmp(&got[i * stride + c], &want[i * stride + c], 4) != 0) {
                FAIL("%s: f16kv_attend q=%lld k=%lld dkv=%lld (%lld, %lld) %.9g, attend over the widened values %.9g", p->name, (long long)queries, (long long)keys, (long long)dkv, (long long)i, (long long)c, got[i * stride + c], want[i * stride + c]);
                i = queries;
                break;
            }
    free(q); free(kw); free(vw); free(bias); free(kh); free(vh); free(scores); free(got); free(want);
}

/// One head over a whole sequence of `length` (self-attention of prefill): against a double-precision reference
/// with the same relative bias (query i, key j: bias[j − i]) and causal mask.
static void check_attend_sequence(const path *p, int64_t length, int64_t dkv, int causal) {
    const int64_t stride = dkv * 2 + 3, lp = (length + 31) / 32 * 32;
    float *q = malloc(sizeof(float) * (size_t)(length * stride)), *kk = malloc(sizeof(float) * (size_t)(length * stride));
    float *v = malloc(sizeof(float) * (size_t)(length * stride)), *table = malloc(sizeof(float) * (size_t)(2 * length));
    float *kt = malloc(sizeof(float) * (size_t)(dkv * (2 * lp + 16))), *scores = malloc(sizeof(float) * (size_t)(8 * lp));
    float *ctx = malloc(sizeof(float) * (size_t)(length * stride));
    double *sc = malloc(sizeof(double) * (size_t)length);
    for (int64_t i = 0; i < length * stride; i++) { q[i] = uniform(-1, 1); kk[i] = uniform(-1, 1); v[i] = uniform(-2, 2); }
    for (int64_t i = 0; i < 2 * length; i++) table[i] = uniform(-3, 3);
    for (int64_t i = 0; i < length * stride; i++) ctx[i] = 12345;  // the padding columns must stay untouched
    const float *bias = table + length;  // relative position 0
    p->attend_sequence(q, kk, v, length, stride, dkv, bias, causal, kt, scores, ctx);
    checks++;
    for (int64_t i = 0; i < length; i++) {
        const int64_t visible = causal ? i + 1 : length;
        double max = -INFINITY, total = 0;
        for (int64_t j = 0; j < visible; j++) {
            double s = bias[j - i];
            for (int64_t c = 0; c < dkv; c++) s += (double)q[i * stride + c] * kk[j * stride + c];
            sc[j] = s;
            max = s > max ? s : max;
        }
        for (int64_t j = 0; j < visible; j++) { sc[j] = exp(sc[j] - max); total += sc[j]; }
        for (int64_t c = 0; c < stride; c++) {
            double ref = 12345;
            if (c < dkv) {
                ref = 0;
                for (int64_t j = 0; j < visible; j++) ref += sc[j] / total * v[j * stride + c];
            }
            if (fabs(ctx[i * stride + c] - ref) > 1e-5 * 2.0) {
                FAIL("%s: attend_sequence length=%lld dkv=%lld causal=%d (%lld, %lld) %.9g vs %.9g", p->name, (long long)length, (long long)dkv, causal, (long long)i, (long long)c, ctx[i * stride + c], ref);
                i = length;
                break;
            }
        }
    }
    free(q); free(kk); free(v); free(table); free(kt); free(scores); free(ctx); free(sc);
}

static void run_path(const path *p) {
    if (!p->available) {
        printf("  %-22s skipped (this CPU cannot run it)\n", p->name);
        return;
    }
    const int before = failures, checks_before = checks;
    const int8_case cases[] = {
        {40, 512, 0}, {40, 512, 32}, {40, 512, 64}, {24, 512, 128}, {21, 520, 0}, {19, 520, 64}, {13, 100, 0},
        {13, 100, 48}, {9, 33, 0}, {16, 1024, 0}, {8, 768, 32}, {3, 7, 0}, {17, 96, 96},
        // Many 16-row blocks ending in a partial one: the decode tiles (≤ 8 rows; once four blocks per tile on
        // AVX-512, now one) over long block ranges, with and without groups.
        {200, 64, 0}, {150, 96, 32},
    };
    // 9 to 31 rows: the prefill tiles (8 rows; 6 on AVX-VNNI) with their 4-, 2- and 1-row tails.
    const int64_t row_counts[] = {1, 2, 3, 4, 5, 8, 9, 12, 19, 31};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t r = 0; r < sizeof row_counts / sizeof row_counts[0]; r++) check_int8(p, cases[c], row_counts[r]);
    // More activation rows than one pass of the AVX2 int16 prefill path holds at this k (60 rows of 8 KB): three
    // passes, the last partial with the 2- and 1-row tails.
    const int8_case long_k = {21, 4098, 0};
    check_int8(p, long_k, 131);
#if defined(__x86_64__)
    // The int16 prefill path accumulates denormal floats under the default MXCSR; with flush-to-zero and
    // denormals-are-zero set (as some host programs do) it must take its signed-integer tile, same results.
    if (p->packed_w8a8 == flint_avx2_packed_w8a8_plain) {
        const unsigned csr = _mm_getcsr();
        _mm_setcsr(csr | 0x8040);
        check_int8(p, long_k, 131);
        check_int8(p, cases[0], 19);
        _mm_setcsr(csr);
    }
#endif
    const int64_t xwt_shapes[][3] = {{1, 40, 512}, {4, 9, 64}, {5, 67, 100}, {9, 13, 7}, {3, 130, 33}, {8, 64, 768}};
    for (size_t s = 0; s < sizeof xwt_shapes / sizeof xwt_shapes[0]; s++) {
        check_xwt(p, xwt_shapes[s][0], xwt_shapes[s][1], xwt_shapes[s][2]);
        check_half_xwt(p, xwt_shapes[s][0], xwt_shapes[s][1], xwt_shapes[s][2]);
    }
    const int64_t counts[] = {1, 7, 8, 15, 16, 17, 64, 1000, 1027};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) check_elementwise(p, counts[i]);
    check_attend(p, 1, 1, 64, 0);
    check_attend(p, 1, 37, 64, 1);
    check_attend(p, 5, 64, 64, 1);
    check_attend(p, 3, 19, 24, 0);
    check_attend(p, 2, 11, 100, 1);
    check_f16(p);
    const int64_t f16_shapes[][3] = {{1, 1, 64}, {1, 37, 64}, {1, 300, 64}, {3, 19, 24}, {2, 11, 100}, {1, 5, 7}};
    for (size_t s = 0; s < sizeof f16_shapes / sizeof f16_shapes[0]; s++)
        for (int b = 0; b < 2; b++) check_f16kv_attend(p, f16_shapes[s][0], f16_shapes[s][1], f16_shapes[s][2], b);
    if (p->attend_sequence) {
        const int64_t lengths[] = {1, 2, 3, 5, 17, 33, 64, 130};
        const int64_t dkvs[] = {64, 8, 12, 100, 4};
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++)
            for (size_t d = 0; d < sizeof dkvs / sizeof dkvs[0]; d++)
                for (int causal = 0; causal < 2; causal++) check_attend_sequence(p, lengths[l], dkvs[d], causal);
    }
    printf("  %-22s %s (%d checks)\n", p->name, failures == before ? "ok" : "FAILED", checks - checks_before);
}

int main(void) {
    const path paths[] = {
        {"avx2 (+avx-vnni)", flint_isa_supported(FLINT_ISA_AVX2), 1, 0, flint_avx2_int8_quantize_activations,
         flint_avx2_int8_w8a8, flint_avx2_int8_weight_only, flint_avx2_f32_xwt, flint_avx2_f32_gelu_new,
         flint_avx2_f32_exp_shifted, flint_avx2_f32_attend, flint_avx2_packed_w8a8, flint_avx2_packed_weight_only,
         flint_avx2_f32_attend_sequence, flint_avx2_f16kv_attend, flint_avx2_f32_to_f16, flint_avx2_f16_xwt,
         flint_avx2_bf16_xwt},
        {"avx2 w8a8 without vnni", flint_isa_supported(FLINT_ISA_AVX2), 1, 0, flint_avx2_int8_quantize_activations,
         flint_avx2_int8_w8a8_plain, flint_avx2_int8_weight_only, flint_avx2_f32_xwt, flint_avx2_f32_gelu_new,
         flint_avx2_f32_exp_shifted, flint_avx2_f32_attend, flint_avx2_packed_w8a8_plain, flint_avx2_packed_weight_only,
         flint_avx2_f32_attend_sequence, flint_avx2_f16kv_attend, flint_avx2_f32_to_f16, flint_avx2_f16_xwt,
         flint_avx2_bf16_xwt},
        {"avx512", flint_isa_supported(FLINT_ISA_AVX512), 0, 1, flint_int8_quantize_activations, flint_int8_w8a8,
         flint_int8_weight_only, flint_f32_xwt, flint_f32_gelu_new, flint_f32_exp_shifted, flint_f32_attend,
         flint_avx512_packed_w8a8, flint_avx512_packed_weight_only,
         flint_avx512_f32_attend_sequence, flint_avx512_f16kv_attend, flint_avx2_f32_to_f16, flint_f16_xwt,
         flint_bf16_xwt},
        {"neon (+sdot)", flint_isa_supported(FLINT_ISA_NEON), 1, 0, flint_neon_int8_quantize_activations,
         flint_neon_int8_w8a8, flint_neon_int8_weight_only, flint_neon_f32_xwt, flint_neon_f32_gelu_new,
         flint_neon_f32_exp_shifted, flint_neon_f32_attend, flint_neon_packed_w8a8, flint_neon_packed_weight_only,
         flint_neon_f32_attend_sequence, flint_neon_f16kv_attend, flint_neon_f32_to_f16, flint_neon_f16_xwt,
         flint_neon_bf16_xwt},
        {"neon w8a8 without sdot", flint_isa_supported(FLINT_ISA_NEON), 1, 0, flint_neon_int8_quantize_activations,
         flint_neon_int8_w8a8_plain, flint_neon_int8_weight_only, flint_neon_f32_xwt, flint_neon_f32_gelu_new,
         flint_neon_f32_exp_shifted, flint_neon_f32_attend, flint_neon_packed_w8a8_plain, flint_neon_packed_weight_only,
         flint_neon_f32_attend_sequence, flint_neon_f16kv_attend, flint_neon_f32_to_f16, flint_neon_f16_xwt,
         flint_neon_bf16_xwt},
    };
    printf("CFlintKernels paths on %s (avx2 dot product: %d, neon sdot: %d):\n", flint_cpu_name(),
           flint_isa_has_dot_product(FLINT_ISA_AVX2), flint_isa_has_dot_product(FLINT_ISA_NEON));
    check_f16_reference();
    int ran = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        run_path(&paths[i]);
        ran += paths[i].available;
    }
    if (ran == 0) {
        fprintf(stderr, "FAIL: no kernel path runs on this CPU\n");
        return 1;
    }
    if (failures) {
        fprintf(stderr, "%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("all %d checks passed\n", checks);
    return 0;
}
