// C-level test of the int4 W4A8 kernels (Sources/CFlintKernels/Int4Kernels.c) on every path this CPU runs —
// natively on x86-64 (AVX-512 VNNI, AVX2) and under qemu-aarch64 for ARM64 (NEON with sdot, NEON without) —
// against a scalar reference of the contract in CFlintKernels.h ("The packed int4 layout"): per (row, group) the
// exact int32 `Σ u·xq − 8·xsum`, then per lane, unfused and in group order, `y += float(dot) · (scale_w · xs)`.
// Every path must be bit-identical to it. The weights are packed here from row-major values by the layout's
// own description (not by the kernels' code), with ragged row counts (padding lanes), ragged input counts
// (padding codes 8 = q 0), every group size, calls of 2…8 blocks (the multi-block decode tiles and their
// rest), extreme codes (-8 and 7 against ±127) and 1…7 activation rows; and the activation quantizers (plain C,
// AVX-512) against the header's contract, NaN / ∞ / zero groups and rounding ties included.
// `make kernel-test` / `make kernel-test-arm` build and run it next to kernel_test.c. Exit status 0 when all pass.
#include "CFlintKernels.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, checks = 0;

#define FAIL(...) do { if (failures < 40) { fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); } failures++; } while (0)

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t next_u32(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/// IEEE half → float for normal numbers and zero (the scales written here are normal).
static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
    uint32_t bits = sign;
    if (exponent != 0) bits |= ((exponent + 112) << 23) | (mantissa << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

typedef struct {
    int64_t n, k, group_size, groups, k_padded;
    int8_t *q;          // n × k, values -8…7
    uint16_t *scales;   // n × groups f16 bits
    uint8_t *packed;    // codes then scales, FLINT.md layout 2
    flint_packed_int4 m;
} int4_matrix;

static int4_matrix make_matrix(int64_t n, int64_t k, int64_t group_size, int extremes) {
    int4_matrix a;
    a.n = n; a.k = k; a.group_size = group_size;
    a.groups = (k + group_size - 1) / group_size;
    a.k_padded = a.groups * group_size;
    a.q = malloc((size_t)(n * k));
    a.scales = malloc(sizeof(uint16_t) * (size_t)(n * a.groups));
    for (int64_t i = 0; i < n * k; i++) a.q[i] = extremes ? (next_u32() & 1 ? 7 : -8) : (int8_t)((int)(next_u32() % 16) - 8);
    // Positive normal f16 scales between 2^-12 and 2^-2 with random mantissas.
    for (int64_t i = 0; i < n * a.groups; i++) a.scales[i] = (uint16_t)(((3 + next_u32() % 10) << 10) | (next_u32() & 0x3FF));
    const int64_t blocks = (n + 15) / 16, code_bytes = blocks * 8 * a.k_padded;
    a.packed = malloc((size_t)(code_bytes + 2 * blocks * a.groups * 16));
    memset(a.packed, 0x88, (size_t)code_bytes);
    memset(a.packed + code_bytes, 0, (size_t)(2 * blocks * a.groups * 16));
    for (int64_t r = 0; r < n; r++) {
        for (int64_t c = 0; c < k; c++) {
            // block r/16, chunk c/8, lane r%16 at bytes 4·lane…; inputs 0-3 of the chunk low nibbles, 4-7 high.
            const int64_t byte = (r / 16) * 8 * a.k_padded + (c / 8) * 64 + (r % 16) * 4 + (c % 4);
            const uint8_t code = (uint8_t)(a.q[r * k + c] + 8);
            if (c % 8 >= 4) a.packed[byte] = (uint8_t)((a.packed[byte] & 0x0F) | (code << 4));
            else a.packed[byte] = (uint8_t)((a.packed[byte] & 0xF0) | code);
        }
        for (int64_t g = 0; g < a.groups; g++) {
            uint16_t *s = (uint16_t *)(a.packed + code_bytes) + ((r / 16) * a.groups + g) * 16 + r % 16;
            memcpy(s, &a.scales[r * a.groups + g], 2);
        }
    }
    a.m.codes = a.packed;
    a.m.scales = (const uint16_t *)(a.packed + code_bytes);
    a.m.n = n; a.m.k = k; a.m.k_padded = a.k_padded; a.m.group_size = group_size; a.m.groups = a.groups;
    return a;
}

static void free_matrix(int4_matrix *a) { free(a->q); free(a->scales); free(a->packed); }

typedef struct {
    const char *name;
    int available;
    flint_int4_w4a8_fn w4a8;
} path;

static void check(const path *p, int64_t n, int64_t k, int64_t group_size, int64_t rows, int extremes) {
    int4_matrix a = make_matrix(n, k, group_size, extremes);
    const int64_t groups = a.groups, ldxq = a.k_padded, ldy = n + 3;
    int8_t *xq = calloc((size_t)(rows * ldxq), 1);
    int32_t *xsum = calloc((size_t)(rows * groups), sizeof(int32_t));
    float *xs = calloc((size_t)(rows * groups), sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < k; c++) {
            xq[r * ldxq + c] = extremes ? (next_u32() & 1 ? 127 : -127) : (int8_t)((int)(next_u32() % 255) - 127);
            xsum[r * groups + c / group_size] += xq[r * ldxq + c];
        }
        for (int64_t g = 0; g < groups; g++) xs[r * groups + g] = (float)(next_u32() % 1000 + 1) / 65536.0f;
    }
    float *y = malloc(sizeof(float) * (size_t)(rows * ldy)), *ref = malloc(sizeof(float) * (size_t)(rows * ldy));
    for (int64_t i = 0; i < rows * ldy; i++) y[i] = ref[i] = -12345.0f;  // untouched past n
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t o = 0; o < n; o++) {
            float total = 0;
            for (int64_t g = 0; g < groups; g++) {
                int32_t dot = 0;
                for (int64_t c = g * group_size; c < (g + 1) * group_size && c < k; c++)
                    dot += (int32_t)a.q[o * k + c] * (int32_t)xq[r * ldxq + c];
                const float s = half_to_float(a.scales[o * groups + g]) * xs[r * groups + g];
                total = total + (float)dot * s;
            }
            ref[r * ldy + o] = total;
        }
    }
    // Split the blocks in two calls, the way the thread pool does.
    const int64_t blocks = (n + 15) / 16, middle = blocks / 2;
    p->w4a8(&a.m, 0, middle, xq, ldxq, xsum, xs, rows, y, ldy);
    p->w4a8(&a.m, middle, blocks, xq, ldxq, xsum, xs, rows, y, ldy);
    for (int64_t i = 0; i < rows * ldy; i++) {
        checks++;
        if (memcmp(&y[i], &ref[i], 4) != 0) {
            FAIL("%s w4a8 n=%lld k=%lld g=%lld rows=%lld%s: y[%lld][%lld] = %.9g, reference %.9g", p->name,
                 (long long)n, (long long)k, (long long)group_size, (long long)rows, extremes ? " (extremes)" : "",
                 (long long)(i / ldy), (long long)(i % ldy), y[i], ref[i]);
            break;
        }
    }
    free(xq); free(xsum); free(xs); free(y); free(ref);
    free_matrix(&a);
}

static void run_path(const path *p) {
    if (!p->available) {
        printf("  %-22s not on this CPU\n", p->name);
        return;
    }
    const int before = failures, checks_before = checks;
    const int64_t shapes[][2] = {{16, 32}, {1, 32}, {17, 64}, {48, 128}, {33, 100}, {64, 512}, {5, 200}, {96, 768},
                                  // ≥ 4 blocks per call (the decode tiles of 4 and 2 blocks, then the rest)
                                  {149, 96}, {250, 320}, {133, 64}};
    const int64_t group_sizes[] = {32, 64, 128};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t g = 0; g < sizeof group_sizes / sizeof group_sizes[0]; g++)
            // 1-7 rows: the decode tiles; 8 and more: the prefill tiles (4 rows × 3 blocks, then 1 row, and the
            // leftover blocks one at a time).
            for (int64_t rows = 1; rows <= 13; rows++) check(p, shapes[s][0], shapes[s][1], group_sizes[g], rows, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) check(p, shapes[s][0], shapes[s][1], 32, 31, 0);
    for (size_t g = 0; g < sizeof group_sizes / sizeof group_sizes[0]; g++) {
        check(p, 32, 512, group_sizes[g], 3, 1);
        check(p, 48, 512, group_sizes[g], 17, 1);
    }
    printf("  %-22s %s (%d checks)\n", p->name, failures == before ? "ok" : "FAILED", checks - checks_before);
}

/// The activation quantizers against the header's contract, computed here with rintf: random rows with ragged
/// column counts, an all-zero group, a group with a NaN and one with +∞, and values scaled to land on ties.
static void check_quantizer(const char *name, void (*quantize)(const float *, int64_t, int64_t, int64_t, int64_t,
                                                               int8_t *, int64_t, int32_t *, float *)) {
    const int before = failures;
    const int64_t shapes[][2] = {{1, 32}, {3, 100}, {2, 768}, {5, 130}, {1, 2048}};
    const int64_t group_sizes[] = {32, 64, 128};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t gi = 0; gi < 3; gi++) {
            const int64_t rows = shapes[s][0], cols = shapes[s][1], gs = group_sizes[gi];
            const int64_t groups = (cols + gs - 1) / gs, ldxq = groups * gs;
            float *x = malloc(sizeof(float) * (size_t)(rows * cols));
            for (int64_t i = 0; i < rows * cols; i++) {
                // Each group's first value 127 (so 127 / max|x| = 1), then halfway values k + 0.5 (rounding ties)
                // and random ones.
                x[i] = (i % cols) % gs == 0 ? 127.0f : i % 2 ? (float)((int)(next_u32() % 253) - 126) + 0.5f
                                                            : ((float)next_u32() / 4294967296.0f - 0.5f) * 7;
            }
            if (rows * cols >= 3 * gs) {
                for (int64_t c = 0; c < gs; c++) x[c] = 0;   // group 0 of row 0: zeros
                x[gs + 3] = __builtin_nanf("");                // group 1: a NaN
                x[2 * gs + 1] = __builtin_inff();              // group 2: +∞
            }
            int8_t *xq = malloc((size_t)(rows * ldxq)), *ref_q = malloc((size_t)(rows * ldxq));
            int32_t *xsum = malloc(4 * (size_t)(rows * groups)), *ref_sum = malloc(4 * (size_t)(rows * groups));
            float *xs = malloc(4 * (size_t)(rows * groups)), *ref_s = malloc(4 * (size_t)(rows * groups));
            memset(xq, 0x55, (size_t)(rows * ldxq));
            memset(ref_q, 0, (size_t)(rows * ldxq));
            for (int64_t r = 0; r < rows; r++)
                for (int64_t g = 0; g < groups; g++) {
                    const int64_t start = g * gs, end = start + gs < cols ? start + gs : cols;
                    float amax = 0;
                    int finite = 1;
                    for (int64_t c = start; c < end; c++) {
                        finite &= isfinite(x[r * cols + c]) != 0;
                        if (fabsf(x[r * cols + c]) > amax) amax = fabsf(x[r * cols + c]);
                    }
                    int32_t sum = 0;
                    if (finite && amax > 0) {
                        const float inverse = 127 / amax;
                        for (int64_t c = start; c < end; c++) {
                            const float q = rintf(fminf(fmaxf(x[r * cols + c] * inverse, -127), 127));
                            ref_q[r * ldxq + c] = (int8_t)q;
                            sum += (int32_t)q;
                        }
                    }
                    ref_sum[r * groups + g] = sum;
                    ref_s[r * groups + g] = !finite ? __builtin_nanf("") : amax > 0 ? amax / 127 : 0;
                }
            quantize(x, rows, cols, gs, groups, xq, ldxq, xsum, xs);
            checks++;
            if (memcmp(xq, ref_q, (size_t)(rows * ldxq)) != 0) FAIL("%s quantize %lldx%lld g%lld: codes differ", name, (long long)rows, (long long)cols, (long long)gs);
            if (memcmp(xsum, ref_sum, 4 * (size_t)(rows * groups)) != 0) FAIL("%s quantize %lldx%lld g%lld: sums differ", name, (long long)rows, (long long)cols, (long long)gs);
            for (int64_t i = 0; i < rows * groups; i++)
                if (!(isnan(xs[i]) && isnan(ref_s[i])) && memcmp(&xs[i], &ref_s[i], 4) != 0) {
                    FAIL("%s quantize %lldx%lld g%lld: scale %lld = %.9g, reference %.9g", name, (long long)rows,
                         (long long)cols, (long long)gs, (long long)i, xs[i], ref_s[i]);
                    break;
                }
            free(x); free(xq); free(ref_q); free(xsum); free(ref_sum); free(xs); free(ref_s);
        }
    printf("  %-22s %s\n", name, failures == before ? "ok" : "FAILED");
}

int main(void) {
    const path paths[] = {
        {"avx512 int4", flint_isa_supported(FLINT_ISA_AVX512), flint_avx512_int4_w4a8},
        {"avx2 int4", flint_isa_supported(FLINT_ISA_AVX2), flint_avx2_int4_w4a8},
        {"neon int4 (+sdot)", flint_isa_supported(FLINT_ISA_NEON) && flint_isa_has_dot_product(FLINT_ISA_NEON),
         flint_neon_int4_w4a8},
        {"neon int4 without sdot", flint_isa_supported(FLINT_ISA_NEON), flint_neon_int4_w4a8_plain},
    };
    printf("CFlintKernels int4 paths on %s:\n", flint_cpu_name());
    check_quantizer("int4 quantize (C)", flint_int4_quantize_activations);
    if (flint_isa_supported(FLINT_ISA_AVX512)) check_quantizer("int4 quantize avx512", flint_avx512_int4_quantize_activations);
    int ran = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        run_path(&paths[i]);
        ran += paths[i].available;
    }
    if (ran == 0) {
        fprintf(stderr, "FAIL: no int4 kernel path runs on this CPU\n");
        return 1;
    }
    if (failures) {
        fprintf(stderr, "%d of %d int4 checks failed\n", failures, checks);
        return 1;
    }
    printf("all %d int4 checks passed\n", checks);
    return 0;
}
