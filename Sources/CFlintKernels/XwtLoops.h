// The body of `flint_f32_xwt` and `flint_bf16_xwt` (include/CFlintKernels.h): y[r][j] = Σ_i x[r][i] · w[j][i]
// for W rows [n_begin, n_end), AVX-512, written once and included by FloatKernels.c (float32 weights) and
// HalfKernels.c (bf16 weights widened in registers) with:
//   XWT_NAME         the function's name           XWT_TARGET  its target attribute
//   XWT_W            the weight element type
//   XWT_LOAD(p)      16 weights at p as a __m512 of float32
//   XWT_LOAD_MASKED(m, p)  the same for the lanes in mask m, 0.0f elsewhere (as _mm512_maskz_loadu_ps)
// Both weight types run the same loads, multiply-adds and reductions in the same order, so a bf16 matrix gives
// exactly the float32 sums flint_f32_xwt gives over its widened copy.
// Not a public header: FloatKernels.c includes it once, HalfKernels.c once per half format (bf16, f16); the helpers'
// names carry XWT_NAME so that one file can hold several bodies.
#define XWT_PASTE(a, b) a##_##b
#define XWT_JOIN(a, b) XWT_PASTE(a, b)
#undef tile4x4
#undef tile1x4
#undef dot1
#define tile4x4 XWT_JOIN(XWT_NAME, tile4x4)
#define tile1x4 XWT_JOIN(XWT_NAME, tile1x4)
#define dot1 XWT_JOIN(XWT_NAME, dot1)

// Four x rows against four W rows: 16 accumulators, each x and W chunk loaded once and used four times.
XWT_TARGET static inline void tile4x4(const float *x, int64_t ldx, const XWT_W *w, int64_t k,
                                       float *y, int64_t ldy) {
    __m512 acc[4][4];
    for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m512 wv[4], xv[4];
        for (int b = 0; b < 4; b++) wv[b] = XWT_LOAD(w + b * k + i);
        for (int a = 0; a < 4; a++) xv[a] = _mm512_loadu_ps(x + a * ldx + i);
        for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_fmadd_ps(xv[a], wv[b], acc[a][b]);
    }
    if (i < k) {
        __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        __m512 wv[4], xv[4];
        for (int b = 0; b < 4; b++) wv[b] = XWT_LOAD_MASKED(m, w + b * k + i);
        for (int a = 0; a < 4; a++) xv[a] = _mm512_maskz_loadu_ps(m, x + a * ldx + i);
        for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) acc[a][b] = _mm512_fmadd_ps(xv[a], wv[b], acc[a][b]);
    }
    for (int a = 0; a < 4; a++) for (int b = 0; b < 4; b++) y[a * ldy + b] = _mm512_reduce_add_ps(acc[a][b]);
}

// One x row against four W rows (matrix-vector products and leftover rows): four independent W streams.
XWT_TARGET static inline void tile1x4(const float *x, const XWT_W *w, int64_t k, float *y) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m512 xv = _mm512_loadu_ps(x + i);
        for (int b = 0; b < 4; b++) acc[b] = _mm512_fmadd_ps(xv, XWT_LOAD(w + b * k + i), acc[b]);
    }
    if (i < k) {
        __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        for (int b = 0; b < 4; b++) acc[b] = _mm512_fmadd_ps(xv, XWT_LOAD_MASKED(m, w + b * k + i), acc[b]);
    }
    for (int b = 0; b < 4; b++) y[b] = _mm512_reduce_add_ps(acc[b]);
}

// One x row against one W row.
XWT_TARGET static inline float dot1(const float *x, const XWT_W *w, int64_t k) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), XWT_LOAD(w + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), XWT_LOAD(w + i + 16), acc1);
    }
    for (; i + 16 <= k; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), XWT_LOAD(w + i), acc0);
    if (i < k) {
        __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), XWT_LOAD_MASKED(m, w + i), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

XWT_TARGET void XWT_NAME(const float *x, int64_t rows, int64_t ldx, const XWT_W *w, int64_t k,
                          int64_t n_begin, int64_t n_end, float *y, int64_t ldy) {
    // Blocks of 64 W rows stay in cache while every x row passes over them.
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
