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
    /// `Σ q` per (row, group) in Int32: the AVX2 (without VNNI) and NEON W8A8 kernels multiply signed activations
    /// (`xq − 128`) and add `128 · Σ q` back, which gives the very same Int32 sums as the unsigned form. May be
    /// NULL for the AVX-512 and AVX-VNNI kernels and for weight-only.
    const int32_t *weight_sums;
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

/// 1 when the CPU supports AVX-512 F/BW/VL/DQ (so `flint_bf16_xwt` and `flint_f16_xwt` may be called), else 0.
int flint_bf16_native_available(void);

/// `flint_f32_xwt` with W stored as bf16 bit patterns (`[n, k]` row-major), widened in registers: the same
/// float32 results, bit for bit, as `flint_f32_xwt` over the widened matrix.
void flint_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k,
                    int64_t n_begin, int64_t n_end, float *y, int64_t ldy);

/// The same with W stored as IEEE binary16 (f16) bit patterns, widened in registers (exact): bit for bit
/// `flint_f32_xwt` over the widened matrix. Callable when `flint_bf16_native_available()`.
void flint_f16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k,
                   int64_t n_begin, int64_t n_end, float *y, int64_t ldy);

/// In place, `x ← 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))` (HF's gelu_new), tanh through a vectorised
/// exp (relative error about 1e-7). Needs `flint_f32_native_available()`.
void flint_f32_gelu_new(float *x, int64_t count);

/// In place, `x[i] ← exp(x[i] − shift)`, and `*sum = Σ x[i]` afterwards (a softmax row). Needs
/// `flint_f32_native_available()`.
void flint_f32_exp_shifted(float *x, int64_t count, float shift, float *sum);

/// One attention head: for each query i, `scores[j] = q_i · k_j + bias[i · bias_row_stride + j]` (bias may be
/// NULL), softmax over j, `context_i = Σ_j p_j · v_j`. Queries, keys, values and context rows are `dkv` floats
/// with row stride `stride`; `scores` holds `key_count` floats. Needs the AVX-512 path (`flint_isa_supported`).
void flint_f32_attend(const float *queries, int64_t query_count, const float *keys, const float *values,
                      int64_t key_count, int64_t stride, int64_t dkv, const float *bias, int64_t bias_row_stride,
                      float *scores, float *context);

// ---------------------------------------------------------------------------------------------------------------
// Instruction-set paths. Each path below has the same operations under a prefix (`flint_avx2_…`, `flint_neon_…`);
// a path's functions may be called only when `flint_isa_supported` says so (on other CPUs, or when compiled for
// another architecture, they do nothing). The AVX-512 path is the unprefixed functions above.
//
// Arithmetic contract, checked by Tests/CKernels/kernel_test.c (native and under qemu-aarch64) and the Swift tests:
//  - quantize_activations: bit-identical to the Swift quantizer on every path.
//  - w8a8 on AVX2/AVX-VNNI/NEON/NEON-sdot: bit-identical to the portable Swift kernel. The Int32 dot product of each
//    (row, group) is exact, and the float epilogue is the portable one, in the same order and without fused
//    multiply-add: `sum += float(dot_g) · (scale_w · scale_x)`, `corr += compensation_g · scale_x`, `y = sum − corr`.
//  - f16_xwt, bf16_xwt (W as IEEE binary16 / bf16 bit patterns, widened in registers, exactly): bit-identical to
//    the same path's f32_xwt over the widened matrix.
//  - weight_only, f32_xwt, gelu_new, exp_shifted, attend: float summation order differs from the portable kernels
//    (and exp/tanh are polynomial): within 1e-5 of Σ|w·x| (matrix products), 2e-6 relative (exp), 2e-6 relative
//    + 4e-7·|x| (gelu, whose 1 + tanh cancels for x ≪ 0).

enum {
    FLINT_ISA_PORTABLE = 0,
    FLINT_ISA_AVX2 = 1,     ///< AVX2 + FMA (x86-64-v3); int8 dot products with AVX-VNNI when the CPU has it
    FLINT_ISA_AVX512 = 2,   ///< AVX-512 F/BW/VL/DQ + VNNI
    FLINT_ISA_NEON = 3,     ///< ARM64 Advanced SIMD; int8 dot products with `sdot` when the CPU has it
};

/// 1 when this CPU (and OS) can run the path's kernels, else 0. FLINT_ISA_PORTABLE is always 1.
int flint_isa_supported(int isa);

/// 1 when the path's W8A8 kernel uses a dot-product instruction on this CPU (AVX2: AVX-VNNI `vpdpbusd` on ymm;
/// NEON: `sdot`), 0 when it uses the plain widening multiplies, or when the path is unsupported.
int flint_isa_has_dot_product(int isa);

/// The CPU's name as the OS reports it (x86 brand string / "unknown"), for `flint --version`. Static storage.
const char *flint_cpu_name(void);

#define FLINT_DECLARE_PATH(prefix) \
    void prefix##_int8_quantize_activations(const float *x, int64_t rows, int64_t k, int64_t group_size, \
                                            int64_t groups, uint8_t *xq, int64_t ldxq, float *scales); \
    void prefix##_int8_w8a8(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq, \
                            int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy); \
    void prefix##_int8_weight_only(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const float *x, \
                                   int64_t ldx, int64_t rows, float *y, int64_t ldy); \
    void prefix##_f32_xwt(const float *x, int64_t rows, int64_t ldx, const float *w, int64_t k, int64_t n_begin, \
                          int64_t n_end, float *y, int64_t ldy); \
    void prefix##_f16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k, int64_t n_begin, \
                          int64_t n_end, float *y, int64_t ldy); \
    void prefix##_bf16_xwt(const float *x, int64_t rows, int64_t ldx, const uint16_t *w, int64_t k, \
                           int64_t n_begin, int64_t n_end, float *y, int64_t ldy); \
    void prefix##_f32_gelu_new(float *x, int64_t count); \
    void prefix##_f32_exp_shifted(float *x, int64_t count, float shift, float *sum); \
    void prefix##_f32_attend(const float *queries, int64_t query_count, const float *keys, const float *values, \
                             int64_t key_count, int64_t stride, int64_t dkv, const float *bias, \
                             int64_t bias_row_stride, float *scores, float *context);

/// AVX2 + FMA. `flint_avx2_int8_w8a8` uses AVX-VNNI when present (needs `weight_sums` when it is not).
FLINT_DECLARE_PATH(flint_avx2)
/// NEON. `flint_neon_int8_w8a8` uses `sdot` when present; both W8A8 kernels need `weight_sums`.
FLINT_DECLARE_PATH(flint_neon)

/// The W8A8 kernels without the dot-product instruction (AVX2 `vpmaddubsw`, NEON `smull`), callable on every CPU of
/// their path: the tests compare them with the dot-product ones on CPUs that have both.
void flint_avx2_int8_w8a8_plain(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                                int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy);
void flint_neon_int8_w8a8_plain(const flint_int8_matrix *m, int64_t n_begin, int64_t n_end, const uint8_t *xq,
                                int64_t ldxq, const float *xscales, int64_t rows, float *y, int64_t ldy);

// ---------------------------------------------------------------------------------------------------------------
// Decoder caches in binary16 (HalfCache.c; the paths' kernels beside their float ones). A quantized model keeps its
// self- and cross-attention keys and values as IEEE binary16 bit patterns: half the bytes a decoding step reads.
// Conversions are bit-identical on every path: nearest, ties to even; finite values beyond ±65504 and ±∞ saturate
// to ±65504 (a cache entry never becomes infinite); NaN stays NaN.

/// One value to binary16 and back (exact).
uint16_t flint_f16_from_f32(float value);
float flint_f32_from_f16(uint16_t value);
/// `count` values each way, in plain C (the portable path).
void flint_f32_to_f16(const float *x, int64_t count, uint16_t *out);
void flint_f16_to_f32(const uint16_t *x, int64_t count, float *out);
/// The same conversion to binary16 with F16C (AVX2 and AVX-512 paths) or `fcvtn` (NEON).
void flint_avx2_f32_to_f16(const float *x, int64_t count, uint16_t *out);
void flint_neon_f32_to_f16(const float *x, int64_t count, uint16_t *out);

/// `attend` with binary16 keys and values (rows `stride` elements apart, widened in registers); queries, scores
/// and context are float32. Within attend's tolerance of `attend` over the widened values (the same summation).
#define FLINT_DECLARE_F16KV_ATTEND(prefix) \
    void prefix##_f16kv_attend(const float *queries, int64_t query_count, const uint16_t *keys, \
                               const uint16_t *values, int64_t key_count, int64_t stride, int64_t dkv, \
                               const float *bias, int64_t bias_row_stride, float *scores, float *context);
FLINT_DECLARE_F16KV_ATTEND(flint_avx512)
FLINT_DECLARE_F16KV_ATTEND(flint_avx2)
FLINT_DECLARE_F16KV_ATTEND(flint_neon)

// ---------------------------------------------------------------------------------------------------------------
// Prefill self-attention (AttentionKernels.c): one head over a whole sequence, in tiles of ≤ 8 query rows that stay in
// cache (no length × length score matrix). For each query i < length: scores `q_i · k_j + bias[j − i]` over the
// keys j < length (j ≤ i when `causal`; masked keys get exactly 0 weight), softmax, `context_i = Σ_j p_j · v_j`.
// `bias` points at relative position 0 and must cover −(length − 1) … length − 1. Q, K, V and context rows are
// `dkv` floats with row stride `stride`. Scratch: `kt` holds dkv × (2·Lp + 16) floats (K transposed, V made
// contiguous) and `scores` 8 × Lp, Lp = length rounded up to a multiple of 32. Float summation order differs from the portable kernels (within
// 1e-5 of Σ|p·v|, like attend). Callable when `flint_isa_supported` says so for the path (else it does nothing).
#define FLINT_DECLARE_ATTEND_SEQUENCE(prefix) \
    void prefix##_f32_attend_sequence(const float *q, const float *k, const float *v, int64_t length, int64_t stride, \
                                      int64_t dkv, const float *bias, int32_t causal, float *kt, float *scores, \
                                      float *context);
FLINT_DECLARE_ATTEND_SEQUENCE(flint_avx512)
FLINT_DECLARE_ATTEND_SEQUENCE(flint_avx2)
FLINT_DECLARE_ATTEND_SEQUENCE(flint_neon)

// ---------------------------------------------------------------------------------------------------------------
// The packed int8 layout (Formats/FLINT.md, tensor layout 1, "int8-packed16x4"): the weight rows in blocks of 16,
// each block `16 × k_padded` bytes (k_padded = k rounded up to 4, zero weights past k), ordered by input quad:
//     block b, quad q, lane l, byte j  =  w[16·b + l][4·q + j]        (at b·16·k_padded + 64·q + 4·l + j)
// so one 64-byte load is four inputs of 16 output rows: the operand of one AVX-512 `vpdpbusd` with the four
// activation bytes broadcast, whose 16 int32 lanes are 16 outputs (no horizontal adds). AVX2 reads it as two ymm
// halves of 8 rows, NEON `sdot` as four q registers of 4 rows: every path runs the same file. The exact int32
// sums `Σ q` per (row, group) that the W8A8 `+128` compensation needs are stored beside the blocks, ordered
// `[block][group][lane]` (16 per block and group, zero for padding rows), so nothing is computed at load.
// Row n's scales are the tensor's ordinary `[n, groups]` scales. Groups must start on multiples of 4 inputs.
//
// The W8A8 kernels (every path, with and without the dot-product instruction) are bit-identical to the portable
// kernel on the row-major layout: exact int32 dot products per (row, group), then per lane, in this order and
// unfused: `sum += float(dot) · (scale_w · scale_x)`, `corr += ((128 · scale_w) · float(Σ q)) · scale_x`,
// `y = sum − corr` (sum and corr start at 0). Weight-only: float summation, within 1e-5 of Σ|w·x|.
typedef struct {
    const int8_t *blocks;   ///< ceil(n / 16) blocks of 16 × k_padded bytes
    const int32_t *sums;    ///< ceil(n / 16) × groups × 16 int32
    const float *scales;    ///< n × groups
    int64_t n, k, k_padded, group_size, groups;
} flint_packed_int8;

/// W8A8 on the packed layout for the output blocks `[block_begin, block_end)` (rows 16·block_begin … , clipped to
/// n), `rows` activation rows: `xq` as for `flint_int8_w8a8` (bytes `q + 128`, row stride `ldxq`, readable up to
/// `k_padded` bytes per row; bytes past k may hold anything), `xscales` `rows × groups`.
typedef void (*flint_packed_w8a8_fn)(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                     const uint8_t *xq, int64_t ldxq, const float *xscales, int64_t rows,
                                     float *y, int64_t ldy);
/// Weight-only on the packed layout: float activations `x` (row stride `ldx`, k floats read per row).
typedef void (*flint_packed_weight_only_fn)(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                            const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy);

#define FLINT_DECLARE_PACKED(prefix) \
    void prefix##_packed_w8a8(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end, \
                              const uint8_t *xq, int64_t ldxq, const float *xscales, int64_t rows, float *y, \
                              int64_t ldy); \
    void prefix##_packed_weight_only(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end, \
                                     const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy);

/// AVX-512 VNNI (callable when `flint_isa_supported(FLINT_ISA_AVX512)`).
FLINT_DECLARE_PACKED(flint_avx512)
/// AVX2: W8A8 with AVX-VNNI when the CPU has it, else `vpmaddubsw` (≤ 8 rows) or `vpmaddwd` on int16 copies
/// (prefill with per-row scales; per-thread scratch of 32 · k_padded bytes + about 512 KB, kept by the thread; their
/// pair sums accumulated exactly either with `vaddps` as denormal bit patterns or with `vpaddd`, whichever a one-time
/// timing of both finds faster on this CPU; `FLINT_AVX2_UNSIGNED_TILE=0|1` forces the choice).
FLINT_DECLARE_PACKED(flint_avx2)
/// NEON: W8A8 with `sdot` when the CPU has it, else `smull`.
FLINT_DECLARE_PACKED(flint_neon)
/// The W8A8 kernels without the dot-product instruction, for the tests on CPUs that have it.
void flint_avx2_packed_w8a8_plain(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                  const uint8_t *xq, int64_t ldxq, const float *xscales, int64_t rows, float *y,
                                  int64_t ldy);
void flint_neon_packed_w8a8_plain(const flint_packed_int8 *m, int64_t block_begin, int64_t block_end,
                                  const uint8_t *xq, int64_t ldxq, const float *xscales, int64_t rows, float *y,
                                  int64_t ldy);

// ---------------------------------------------------------------------------------------------------------------
// The packed int4 layout (Formats/FLINT.md, tensor layout 2, "int4-packed16x8"): offset-binary codes u = q + 8
// (q in -8…7) of the weight rows in blocks of 16, each block `8 × k_padded` bytes (k_padded = groups · group_size,
// code 8 past k) of 64-byte chunks, chunk c covering inputs 8c … 8c+7:
//     block b, chunk c, lane l, byte j:  low nibble u[16·b + l][8·c + j], high nibble u[16·b + l][8·c + 4 + j]
// then the f16 scales ordered [block][group][lane] (zero for padding rows). The low nibbles of a chunk are one
// u8 operand of `vpdpbusd` (four inputs of 16 rows), the high nibbles the next one.
//
// W4A8 (every path): the activations arrive quantized per group — `xq` signed int8 (row stride `ldxq`,
// k_padded bytes per row readable, zero past k), `xsum` the int32 sum of each row's group of `xq`, `xs` its float
// scale, both `rows × groups`. Per (row, group), exact int32 `dot = Σ u·xq − 8·xsum`; then per lane, in this
// order and unfused, starting from 0: `y += float(dot) · (scale_w · xs)`. Every path is bit-identical to the
// portable Swift kernel.
typedef struct {
    const uint8_t *codes;     ///< ceil(n / 16) blocks of 8 × k_padded bytes
    const uint16_t *scales;   ///< ceil(n / 16) × groups × 16 f16
    int64_t n, k, k_padded, group_size, groups;
} flint_packed_int4;

/// W4A8 for the output blocks `[block_begin, block_end)` (rows clipped to n), `rows` activation rows.
typedef void (*flint_int4_w4a8_fn)(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end,
                                   const int8_t *xq, int64_t ldxq, const int32_t *xsum, const float *xs,
                                   int64_t rows, float *y, int64_t ldy);
/// AVX-512 VNNI (callable when `flint_isa_supported(FLINT_ISA_AVX512)`).
void flint_avx512_int4_w4a8(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end, const int8_t *xq,
                            int64_t ldxq, const int32_t *xsum, const float *xs, int64_t rows, float *y, int64_t ldy);
/// AVX2 + F16C with `vpmaddubsw` (callable when `flint_isa_supported(FLINT_ISA_AVX2)`).
void flint_avx2_int4_w4a8(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end, const int8_t *xq,
                          int64_t ldxq, const int32_t *xsum, const float *xs, int64_t rows, float *y, int64_t ldy);
/// NEON, with `sdot` when the CPU has it (callable when `flint_isa_supported(FLINT_ISA_NEON)`).
void flint_neon_int4_w4a8(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end, const int8_t *xq,
                          int64_t ldxq, const int32_t *xsum, const float *xs, int64_t rows, float *y, int64_t ldy);
/// NEON without `sdot` (every ARMv8-A CPU); what `flint_neon_int4_w4a8` runs on CPUs without the extension.
void flint_neon_int4_w4a8_plain(const flint_packed_int4 *m, int64_t block_begin, int64_t block_end,
                                const int8_t *xq, int64_t ldxq, const int32_t *xsum, const float *xs, int64_t rows,
                                float *y, int64_t ldy);

/// The W4A8 activation side: per row of `x` (`rows × cols`, contiguous) and group of `group_size` inputs,
/// `xs = max|x| / 127`, `xq = round(x · (127 / max|x|))` clamped to ±127, ties to even, `xsum = Σ xq`; a group of
/// zeros gives xq 0, xs 0; a group holding a NaN or ±∞ gives xq 0, xsum 0, xs NaN (so its outputs are NaN).
/// `xq` is zero from `cols` to `ldxq`. Bit-identical to `Int4Linear.quantizeActivations` (Swift). The AVX-512
/// version is callable when `flint_isa_supported(FLINT_ISA_AVX512)`; the plain C one everywhere.
void flint_int4_quantize_activations(const float *x, int64_t rows, int64_t cols, int64_t group_size, int64_t groups,
                                     int8_t *xq, int64_t ldxq, int32_t *xsum, float *xs);
void flint_avx512_int4_quantize_activations(const float *x, int64_t rows, int64_t cols, int64_t group_size,
                                            int64_t groups, int8_t *xq, int64_t ldxq, int32_t *xsum, float *xs);

/// The CPU's spin-wait hint (x86 `pause`, ARM `yield`), for the thread pool's bounded spins: when the spinning thread
/// and the one doing the work are two hardware threads of one core (SMT; most cloud vCPUs are), the hint leaves the
/// core's issue slots to the working one, and it keeps a spin from flooding the memory system with loads.
static inline void flint_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

#ifdef __cplusplus
}
#endif

#endif
