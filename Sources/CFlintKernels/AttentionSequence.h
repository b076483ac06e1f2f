// The body of `flint_<path>_f32_attend_sequence` (include/CFlintKernels.h), written once with the compilers' generic
// vectors and included by AttentionKernels.c once per path with:
//   AS_NAME     the function's name              AS_TARGET  its target attribute (may be empty)
//   AS_VEC      a float vector type of AS_W lanes  AS_W       lanes per vector
//   AS_R        query rows per tile (≤ 8; register budget: 2 × AS_R score and AS_R × AS_CV context accumulators)
//   AS_CV       context vectors per row in a tile
//   AS_ADD_MAX  `float f(float *row, const float *bias, int64_t n)`: row[j] += bias[j] for j < n, returns the max
//   AS_EXP      the path's `exp_shifted`
// Not a public header: only AttentionKernels.c includes it.
//
// One head over a whole sequence, a tile of AS_R query rows at a time, everything for the tile in cache:
//   scores[r][j] = Σ_c q[i+r][c] · kᵀ[c][j]   (K transposed once per call, so 2·AS_W keys accumulate per pair of
//                                               vectors with the query element broadcast: no horizontal sums)
//   + bias[j − i], causal mask, softmax (max, exp, sum; 1/sum applied to the context instead of the scores)
//   context[i+r] = Σ_j p[r][j] · v[j]        (value rows loaded as vectors, probabilities broadcast)
// A causal tile computes only the keys its last row sees. The transposed keys (dkv × Lp floats, 128 KB at
// length 512) and the value rows come from L2 once per tile, so the tile's row count sets the L2 traffic per
// multiply-add: at 4 rows both loops were L2-bound on AVX-512 (8 rows: flan-t5-base, length 512, one head
// 1.9 → 1.3 ms of CPU time).

AS_TARGET void AS_NAME(const float *q, const float *k, const float *v, int64_t length, int64_t stride, int64_t dkv,
                       const float *bias, int32_t causal, float *kt, float *scores, float *context) {
    enum { W = AS_W, R = AS_R, KW = 2 * AS_W, CV = AS_CV };
    if (length <= 0 || dkv <= 0) return;
    const int64_t lp = (length + KW - 1) / KW * KW;
    // Row stride of the transposed keys: one cache line more than lp. At a power-of-two stride (lp = 512: 2 KB)
    // the dkv rows a key tile reads fall into 2–4 L1 sets and evict each other; padded, they spread over all sets.
    const int64_t kts = lp + 16;
    for (int64_t j = 0; j < length; j++)
        for (int64_t c = 0; c < dkv; c++) kt[c * kts + j] = k[j * stride + c];
    for (int64_t c = 0; c < dkv; c++)
        for (int64_t j = length; j < lp; j++) kt[c * kts + j] = 0;
    // The head's value rows made contiguous (dkv floats each): the context loop streams them in order.
    float *vc = kt + dkv * kts;
    for (int64_t j = 0; j < length; j++) memcpy(vc + j * dkv, v + j * stride, sizeof(float) * (size_t)dkv);
    const int64_t full_columns = dkv / (CV * W) * (CV * W);
    for (int64_t i0 = 0; i0 < length; i0 += R) {
        const int rows = length - i0 < R ? (int)(length - i0) : R;
        const int64_t seen = causal ? i0 + rows : length;  // keys 0..<seen matter to some row of the tile
        const int64_t jend = (seen + KW - 1) / KW * KW;
        const float *qr[R];
        for (int r = 0; r < R; r++) qr[r] = q + (i0 + (r < rows ? r : rows - 1)) * stride;
        for (int64_t j = 0; j < jend; j += KW) {
            AS_VEC acc[R][2];
            for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (AS_VEC){0};
            for (int64_t c = 0; c < dkv; c++) {
                AS_VEC k0, k1;
                memcpy(&k0, kt + c * kts + j, sizeof k0);
                memcpy(&k1, kt + c * kts + j + W, sizeof k1);
                for (int r = 0; r < R; r++) {
                    const float x = qr[r][c];
                    acc[r][0] += k0 * x;
                    acc[r][1] += k1 * x;
                }
            }
            for (int r = 0; r < R; r++) {
                memcpy(scores + r * lp + j, &acc[r][0], sizeof acc[r][0]);
                memcpy(scores + r * lp + j + W, &acc[r][1], sizeof acc[r][1]);
            }
        }
        float inverse[R];
        for (int r = 0; r < R; r++) {
            float *row = scores + r * lp;
            if (r >= rows) {
                // A row past the sequence: zero weights, so the context tile can run all R rows.
                for (int64_t j = 0; j < seen; j++) row[j] = 0;
                inverse[r] = 0;
                continue;
            }
            const int64_t i = i0 + r, visible = causal ? i + 1 : length;
            const float max_score = AS_ADD_MAX(row, bias - i, visible);
            float total = 0;
            AS_EXP(row, visible, max_score, &total);
            inverse[r] = 1.0f / total;
            for (int64_t j = visible; j < seen; j++) row[j] = 0;  // masked: exactly 0 after the softmax
        }
        for (int64_t c0 = 0; c0 < full_columns; c0 += CV * W) {
            AS_VEC acc[R][CV];
            for (int r = 0; r < R; r++)
                for (int u = 0; u < CV; u++) acc[r][u] = (AS_VEC){0};
            for (int64_t j = 0; j < seen; j++) {
                AS_VEC vv[CV];
                for (int u = 0; u < CV; u++) memcpy(&vv[u], vc + j * dkv + c0 + u * W, sizeof vv[u]);
                for (int r = 0; r < R; r++) {
                    const float p = scores[r * lp + j];
                    for (int u = 0; u < CV; u++) acc[r][u] += vv[u] * p;
                }
            }
            for (int r = 0; r < rows; r++)
                for (int u = 0; u < CV; u++) {
                    const AS_VEC out = acc[r][u] * inverse[r];
                    memcpy(context + (i0 + r) * stride + c0 + u * W, &out, sizeof out);
                }
        }
        // Columns past the last full tile (d_kv not a multiple of CV × W, e.g. test models): one at a time.
        for (int64_t c = full_columns; c < dkv; c++)
            for (int r = 0; r < rows; r++) {
                float sum = 0;
                for (int64_t j = 0; j < seen; j++) sum += scores[r * lp + j] * v[j * stride + c];
                context[(i0 + r) * stride + c] = sum * inverse[r];
            }
    }
}
