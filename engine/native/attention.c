/* One attention head in one pass: softmax(q k^T * scale + mask) v, written token-major.

   ONNX Runtime runs this as a MatMul for the scores, an Add for the padding mask, a Softmax, a MatMul with V and
   a Transpose of the heads back to tokens, each a pass over memory with its own thread hand-off. Here each head's
   scores stay in a small buffer: a few query rows at a time (8 for heads of 32) are scored against all keys,
   normalised and multiplied with V before the next few. fp32 as ORT's, or with both products in bf16 where the CPU
   has AVX-512 BF16 (below). */
#include "kernels.h"

#include <math.h>
#include <string.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SQB_X86 1
#endif

#define ROWS 8 /* query rows per step at most: R x d/16 accumulators for the context, 16 at most */

size_t sqb_attention_work_floats(int seq, int head_size)
{
    size_t padded = (size_t)(seq + 31) / 32 * 32; /* the bf16 path's; the others pad to 16 */
    return padded * (size_t)(head_size + 2 * ROWS);
}

/* K [seq, d] -> K^T [d, padded seq], so that a row of it is one coordinate of 16 consecutive keys */
static void transpose_keys(const float *k, float *kt, int seq, int d, size_t padded)
{
    for (int j = 0; j < seq; j++)
        for (int t = 0; t < d; t++) kt[(size_t)t * padded + j] = k[(size_t)j * d + t];
    for (int t = 0; t < d; t++)
        for (size_t j = (size_t)seq; j < padded; j++) kt[(size_t)t * padded + j] = 0.0f;
}

static void head_portable(const float *q, const float *k, const float *v, const float *mask, float *out,
                          size_t out_stride, int queries, int seq, int d, float scale, float *work)
{
    size_t padded = (size_t)(seq + 15) / 16 * 16;
    float *kt = work, *p = work + padded * d;
    transpose_keys(k, kt, seq, d, padded);
    for (int i = 0; i < queries; i++) {
        for (int j = 0; j < seq; j++) p[j] = 0.0f;
        for (int t = 0; t < d; t++) {
            float qt = q[(size_t)i * d + t] * scale;
            const float *row = kt + (size_t)t * padded;
            for (int j = 0; j < seq; j++) p[j] += qt * row[j];
        }
        float top = -INFINITY, sum = 0.0f;
        for (int j = 0; j < seq; j++) {
            p[j] += mask[j];
            top = p[j] > top ? p[j] : top;
        }
        for (int j = 0; j < seq; j++) sum += (p[j] = expf(p[j] - top));
        float *o = out + (size_t)i * out_stride;
        for (int c = 0; c < d; c++) o[c] = 0.0f;
        for (int j = 0; j < seq; j++)
            for (int c = 0; c < d; c++) o[c] += p[j] * v[(size_t)j * d + c];
        for (int c = 0; c < d; c++) o[c] /= sum;
    }
}

#ifdef SQB_X86
#define AVX512 __attribute__((target("avx512f")))
#include "vector_math.h"

/* which of the 16 keys from j on exist (the bf16 path pads to 32 keys, so j may be past the last) */
static inline __mmask16 keys_from(size_t j, int seq)
{
    return j >= (size_t)seq ? 0 : (size_t)seq - j >= 16 ? 0xFFFF : (__mmask16)((1u << (seq - j)) - 1);
}

/* Steps rows_avx512 and rows_bf16 share; R is a constant at every call site, as there. */

/* Scores are kept in log2 units, (q.k * scale + mask) * log2(e), so that the softmax's exponential is a power of
   two (one scalef) and its argument needs no multiply. */
#define LOG2_E 1.44269504f

/* 16 keys' scores for R query rows: acc * scale_log2 + the mask in log2 units, -inf for keys past the end; each
   row's running maximum in top[r] (a second pass over the row to find it cost as much as a third of the softmax) */
AVX512 static inline __attribute__((always_inline)) void store_scores(
    const int R, const __m512 *acc, float *p, size_t padded, size_t j, const float *mask, int seq,
    __m512 scale_log2, __m512 *top)
{
    __m512 m = _mm512_mul_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), keys_from(j, seq), mask + j),
                             _mm512_set1_ps(LOG2_E));
    for (int r = 0; r < R; r++) {
        __m512 s = _mm512_fmadd_ps(acc[r], scale_log2, m);
        top[r] = _mm512_max_ps(top[r], s);
        _mm512_storeu_ps(p + (size_t)r * padded + j, s);
    }
}

/* R rows of the context, each divided by its weights' sum */
AVX512 static inline __attribute__((always_inline)) void store_context(
    const int R, const int blocks, __m512 (*ctx)[4], const float *inverse, float *out, size_t out_stride)
{
    for (int r = 0; r < R; r++)
        for (int c = 0; c < blocks; c++)
            _mm512_storeu_ps(out + (size_t)r * out_stride + 16 * c, _mm512_mul_ps(ctx[r][c], _mm512_set1_ps(inverse[r])));
}

/* R query rows against all keys, then softmax and the context; R and the head size D are constants at every call
   site, so the context's accumulators stay in registers (with a run-time D they went to the stack: 3x slower). */
AVX512 static inline __attribute__((always_inline)) void rows_avx512(
    const int R, const int D, const float *q, const float *kt, const float *v, const float *mask, float *out,
    size_t out_stride, int seq, size_t padded, float scale, float *p)
{
    const int d = D;
    const __m512 scale_log2 = _mm512_set1_ps(scale * LOG2_E);
    __m512 top[ROWS];
    for (int r = 0; r < R; r++) top[r] = _mm512_set1_ps(-INFINITY);
    for (size_t j = 0; j < padded; j += 16) {
        __m512 acc[ROWS];
        for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
        for (int t = 0; t < d; t++) {
            __m512 keys = _mm512_loadu_ps(kt + (size_t)t * padded + j);
            for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)r * d + t]), keys, acc[r]);
        }
        store_scores(R, acc, p, padded, j, mask, seq, scale_log2, top);
    }
    float inverse[ROWS];
    for (int r = 0; r < R; r++) {
        float *pr = p + (size_t)r * padded;
        __m512 top_all = _mm512_set1_ps(_mm512_reduce_max_ps(top[r])), sum = _mm512_setzero_ps();
        for (size_t j = 0; j < padded; j += 16) { /* fp32 weights: the full-precision exp, in natural units */
            __m512 e = exp_nonpositive(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(pr + j), top_all),
                                                     _mm512_set1_ps(1.0f / LOG2_E)));
            __mmask16 valid = keys_from(j, seq);
            e = _mm512_maskz_mov_ps(valid, e);
            _mm512_storeu_ps(pr + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        inverse[r] = 1.0f / _mm512_reduce_add_ps(sum);
    }
    const int blocks = D / 16;
    __m512 ctx[ROWS][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < blocks; c++) ctx[r][c] = _mm512_setzero_ps();
    for (int j = 0; j < seq; j++) {
        __m512 values[4];
        for (int c = 0; c < blocks; c++) values[c] = _mm512_loadu_ps(v + (size_t)j * d + 16 * c);
        for (int r = 0; r < R; r++) {
            __m512 weight = _mm512_set1_ps(p[(size_t)r * padded + j]);
            for (int c = 0; c < blocks; c++) ctx[r][c] = _mm512_fmadd_ps(weight, values[c], ctx[r][c]);
        }
    }
    store_context(R, blocks, ctx, inverse, out, out_stride);
}

AVX512 static void head_avx512(const float *q, const float *k, const float *v, const float *mask, float *out,
                               size_t out_stride, int queries, int seq, int d, float scale, float *work)
{
    size_t padded = (size_t)(seq + 15) / 16 * 16;
    float *kt = work, *p = work + padded * d;
    transpose_keys(k, kt, seq, d, padded);
    const int step = d <= 32 ? 8 : 4;
    for (int i = 0; i < queries;) {
        int rows = queries - i >= step ? step : 1;
        const float *qi = q + (size_t)i * d;
        float *oi = out + (size_t)i * out_stride;
#define HEAD_SIZES(R)                                                                              \
        switch (d) {                                                                               \
        case 16: rows_avx512(R, 16, qi, kt, v, mask, oi, out_stride, seq, padded, scale, p); break; \
        case 32: rows_avx512(R, 32, qi, kt, v, mask, oi, out_stride, seq, padded, scale, p); break; \
        case 48: rows_avx512(R, 48, qi, kt, v, mask, oi, out_stride, seq, padded, scale, p); break; \
        default: rows_avx512(R, 64, qi, kt, v, mask, oi, out_stride, seq, padded, scale, p); break; \
        }
        if (rows == 8) { HEAD_SIZES(8) } else if (rows == 4) { HEAD_SIZES(4) } else { HEAD_SIZES(1) }
#undef HEAD_SIZES
        i += rows;
    }
}

/* ------------------------------------------------------------------------------------------ AVX-512 BF16 */
/* rows_avx512 with both products in bf16 pairs (vdpbf16ps: 32 multiply-adds an instruction, fp32 sums, twice
   vfmadd's): keys as pairs of coordinates, kp[t/2][j] = (k[j][t], k[j][t+1]); values as pairs of keys,
   vp[j/2][c] = (v[j][c], v[j+1][c]); each query row and each row of weights as pairs likewise. The scores, the
   softmax and the sums stay fp32; inputs round to 8 significant bits. */
#define BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* GCC 12 spilled the key vectors and reloaded one for every _mm512_dpbf16_ps, as it did grouped_qgemm.c's dpbusd;
   the asm keeps operands and sums in registers (attention 12% faster) */
BF16 static inline __m512 dpbf16(__m512 acc, __m512bh a, __m512bh b)
{
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

BF16 static inline __m512bh pairs_of(__m512 low, __m512 high) /* 32 floats -> 16 pairs, in order */
{
    return _mm512_cvtne2ps_pbh(high, low);
}

/* 2^y for y <= 0: 2^n p(f), n = round(y), f = y - n in [-1/2, 1/2], p a cubic near the minimax one (relative
   error 8e-5, far under the 2^-9 of the bf16 rounding the weights take next; the fp32 path's degree-6 exp cost a
   fifth of the op). Below -126 (keys past the end are -inf) it gives 2^-126: nothing beside the row's maximum,
   and those keys' values are zeros. */
BF16 static inline __m512 exp2_nonpositive(__m512 y)
{
    y = _mm512_max_ps(y, _mm512_set1_ps(-126.0f));
    __m512 n = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(y, n);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0.0550886838f), f, _mm512_set1_ps(0.242604051f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.693276242f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.99992894f));
    return _mm512_scalef_ps(p, n);
}

BF16 static inline __attribute__((always_inline)) void rows_bf16(
    const int R, const int D, const float *q, const uint32_t *kp, const uint32_t *vp, const float *mask, float *out,
    size_t out_stride, int seq, size_t padded, float scale, float *p, uint32_t *pp)
{
    const __m512 scale_log2 = _mm512_set1_ps(scale * LOG2_E);
    uint32_t qp[ROWS][32];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < D; t += 32) {
            __m512bh pairs = pairs_of(_mm512_loadu_ps(q + (size_t)r * D + t), _mm512_loadu_ps(q + (size_t)r * D + t + 16));
            _mm512_storeu_si512(qp[r] + t / 2, (__m512i)pairs);
        }
    __m512 top[ROWS];
    for (int r = 0; r < R; r++) top[r] = _mm512_set1_ps(-INFINITY);
    for (size_t j = 0; j < padded; j += 32) { /* padded is a multiple of 32 here */
        /* two blocks of 16 keys: 2R sums in flight, enough to hide vdpbf16ps's latency (one block: 7% slower) */
        __m512 acc[2][ROWS];
        for (int r = 0; r < R; r++) acc[0][r] = acc[1][r] = _mm512_setzero_ps();
#pragma GCC unroll 16 /* 4% faster */
        for (int t = 0; t < D / 2; t++) {
            __m512bh keys[2] = {(__m512bh)_mm512_loadu_si512(kp + (size_t)t * padded + j),
                                (__m512bh)_mm512_loadu_si512(kp + (size_t)t * padded + j + 16)};
            for (int r = 0; r < R; r++) {
                __m512bh query = (__m512bh)_mm512_set1_epi32((int)qp[r][t]);
                for (int h = 0; h < 2; h++) acc[h][r] = dpbf16(acc[h][r], query, keys[h]);
            }
        }
        for (int h = 0; h < 2; h++) store_scores(R, acc[h], p, padded, j + 16 * h, mask, seq, scale_log2, top);
    }
    /* the rows side by side: one row at a time, its running sum was the only chain in flight (6% slower) */
    __m512 top_all[ROWS], sum[ROWS];
    for (int r = 0; r < R; r++) {
        top_all[r] = _mm512_set1_ps(_mm512_reduce_max_ps(top[r]));
        sum[r] = _mm512_setzero_ps();
    }
    for (size_t j = 0; j < padded; j += 32)
        for (int r = 0; r < R; r++) {
            const float *pr = p + (size_t)r * padded + j;
            __m512 e0 = exp2_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(pr), top_all[r]));
            __m512 e1 = exp2_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(pr + 16), top_all[r]));
            sum[r] = _mm512_add_ps(sum[r], _mm512_add_ps(e0, e1));
            _mm512_storeu_si512(pp + (size_t)r * (padded / 2) + j / 2, (__m512i)pairs_of(e0, e1));
        }
    float inverse[ROWS];
    for (int r = 0; r < R; r++) inverse[r] = 1.0f / _mm512_reduce_add_ps(sum[r]);
    const int blocks = D / 16;
    __m512 ctx[ROWS][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < blocks; c++) ctx[r][c] = _mm512_setzero_ps();
    for (int u = 0; u < (seq + 1) / 2; u++) {
        __m512bh values[4];
        for (int c = 0; c < blocks; c++) values[c] = (__m512bh)_mm512_loadu_si512(vp + (size_t)u * D + 16 * c);
        for (int r = 0; r < R; r++) {
            __m512bh weights = (__m512bh)_mm512_set1_epi32((int)pp[(size_t)r * (padded / 2) + u]);
            for (int c = 0; c < blocks; c++) ctx[r][c] = dpbf16(ctx[r][c], weights, values[c]);
        }
    }
    store_context(R, blocks, ctx, inverse, out, out_stride);
}

/* a 16 x 16 block of 32-bit values transposed in registers: unpacks within 128-bit lanes, then the lanes */
BF16 static inline void transpose16(__m512i *r)
{
    __m512i a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* b[4i + c], lane L: column 4L + c of rows 4i..4i+3 */
        b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    for (int c = 0; c < 4; c++) {
        __m512i x0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x44), x1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xEE);
        __m512i x2 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x44), x3 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xEE);
        r[c] = _mm512_shuffle_i32x4(x0, x2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(x0, x2, 0xDD);
        r[8 + c] = _mm512_shuffle_i32x4(x1, x3, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(x1, x3, 0xDD);
    }
}

/* K and V into the pair layouts above; rows past seq are zeros */
BF16 static void pair_keys_and_values(const float *k, const float *v, uint32_t *kp, uint32_t *vp, int seq, int d,
                                      size_t padded)
{
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                                22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    /* 16 keys' pairs at a time, transposed in registers: a key's pairs written one by one to their 16 rows of kp
       took a tenth of the op's time */
    for (size_t j0 = 0; j0 < padded; j0 += 16)
        for (int t0 = 0; t0 < d; t0 += 32) {
            __m512i r[16];
            for (int i = 0; i < 16; i++) {
                size_t j = j0 + i;
                __m512 low = j < (size_t)seq ? _mm512_loadu_ps(k + j * d + t0) : _mm512_setzero_ps();
                __m512 high = j < (size_t)seq ? _mm512_loadu_ps(k + j * d + t0 + 16) : _mm512_setzero_ps();
                r[i] = (__m512i)pairs_of(low, high);
            }
            transpose16(r);
            for (int c = 0; c < 16; c++) _mm512_storeu_si512(kp + (size_t)(t0 / 2 + c) * padded + j0, r[c]);
        }
    for (size_t u = 0; u < padded / 2; u++)
        for (int c = 0; c < d; c += 16) {
            size_t j = 2 * u;
            __m512 first = j < (size_t)seq ? _mm512_loadu_ps(v + j * d + c) : _mm512_setzero_ps();
            __m512 second = j + 1 < (size_t)seq ? _mm512_loadu_ps(v + (j + 1) * d + c) : _mm512_setzero_ps();
            __m512i both = (__m512i)pairs_of(first, second); /* v[j][c..c+15], then v[j+1][c..c+15] */
            _mm512_storeu_si512(vp + u * d + c, _mm512_permutexvar_epi16(interleave, both));
        }
}

BF16 static void head_bf16(const float *q, const float *k, const float *v, const float *mask, float *out,
                           size_t out_stride, int queries, int seq, int d, float scale, float *work)
{
    size_t padded = (size_t)(seq + 31) / 32 * 32;
    uint32_t *kp = (uint32_t *)work, *vp = kp + padded * d / 2, *pp = vp + padded * d / 2;
    float *p = (float *)(pp + ROWS * padded / 2);
    pair_keys_and_values(k, v, kp, vp, seq, d, padded);
    const int step = d <= 32 ? 8 : 4;
    for (int i = 0; i < queries;) {
        int rows = queries - i >= step ? step : 1;
        const float *qi = q + (size_t)i * d;
        float *oi = out + (size_t)i * out_stride;
#define HEAD_SIZES_BF16(R)                                                                                \
        switch (d) {                                                                                      \
        case 32: rows_bf16(R, 32, qi, kp, vp, mask, oi, out_stride, seq, padded, scale, p, pp); break;   \
        default: rows_bf16(R, 64, qi, kp, vp, mask, oi, out_stride, seq, padded, scale, p, pp); break;   \
        }
        if (rows == 8) { HEAD_SIZES_BF16(8) } else if (rows == 4) { HEAD_SIZES_BF16(4) } else { HEAD_SIZES_BF16(1) }
#undef HEAD_SIZES_BF16
        i += rows;
    }
}

#define AVX2 __attribute__((target("avx2,fma")))

/* rows_avx512 in 8 lanes (the padded key count is a multiple of 16, so of 8 too) */
AVX2 static inline __attribute__((always_inline)) void rows_avx2(
    const int R, const int D, const float *q, const float *kt, const float *v, const float *mask, float *out,
    size_t out_stride, int seq, size_t padded, float scale, float *p)
{
    const __m256 scale_v = _mm256_set1_ps(scale);
    for (size_t j = 0; j < padded; j += 8) {
        __m256 acc[2];
        for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
        for (int t = 0; t < D; t++) {
            __m256 keys = _mm256_loadu_ps(kt + (size_t)t * padded + j);
            for (int r = 0; r < R; r++) acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(q[(size_t)r * D + t]), keys, acc[r]);
        }
        float m[8];
        for (int l = 0; l < 8; l++) m[l] = j + l < (size_t)seq ? mask[j + l] : -INFINITY;
        for (int r = 0; r < R; r++)
            _mm256_storeu_ps(p + (size_t)r * padded + j, _mm256_fmadd_ps(acc[r], scale_v, _mm256_loadu_ps(m)));
    }
    float inverse[2];
    for (int r = 0; r < R; r++) {
        float *pr = p + (size_t)r * padded;
        __m256 top = _mm256_set1_ps(-INFINITY);
        for (size_t j = 0; j < padded; j += 8) top = _mm256_max_ps(top, _mm256_loadu_ps(pr + j));
        __m256 top_all = _mm256_set1_ps(max8(top)), sum = _mm256_setzero_ps();
        for (size_t j = 0; j < padded; j += 8) {
            __m256 e = exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(pr + j), top_all));
            if (j + 8 > (size_t)seq) { /* keys past the end weigh nothing */
                float lanes[8];
                _mm256_storeu_ps(lanes, e);
                for (int l = 0; l < 8; l++) lanes[l] = j + l < (size_t)seq ? lanes[l] : 0.0f;
                e = _mm256_loadu_ps(lanes);
            }
            _mm256_storeu_ps(pr + j, e);
            sum = _mm256_add_ps(sum, e);
        }
        inverse[r] = 1.0f / sum8(sum);
    }
    const int blocks = D / 8;
    __m256 ctx[2][8];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < blocks; c++) ctx[r][c] = _mm256_setzero_ps();
    for (int j = 0; j < seq; j++) {
        for (int r = 0; r < R; r++) {
            __m256 weight = _mm256_set1_ps(p[(size_t)r * padded + j]);
            for (int c = 0; c < blocks; c++)
                ctx[r][c] = _mm256_fmadd_ps(weight, _mm256_loadu_ps(v + (size_t)j * D + 8 * c), ctx[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < blocks; c++)
            _mm256_storeu_ps(out + (size_t)r * out_stride + 8 * c, _mm256_mul_ps(ctx[r][c], _mm256_set1_ps(inverse[r])));
}

AVX2 static void head_avx2(const float *q, const float *k, const float *v, const float *mask, float *out,
                           size_t out_stride, int queries, int seq, int d, float scale, float *work)
{
    size_t padded = (size_t)(seq + 15) / 16 * 16;
    float *kt = work, *p = work + padded * d;
    transpose_keys(k, kt, seq, d, padded);
    const int step = d <= 32 ? 2 : 1; /* the context's accumulators: rows x d/8 of 16 registers */
    for (int i = 0; i < queries;) {
        int rows = queries - i >= step ? step : 1;
        const float *qi = q + (size_t)i * d;
        float *oi = out + (size_t)i * out_stride;
#define HEAD_SIZES_AVX2(R)                                                                       \
        switch (d) {                                                                             \
        case 16: rows_avx2(R, 16, qi, kt, v, mask, oi, out_stride, seq, padded, scale, p); break; \
        case 32: rows_avx2(R, 32, qi, kt, v, mask, oi, out_stride, seq, padded, scale, p); break; \
        case 48: rows_avx2(1, 48, qi, kt, v, mask, oi, out_stride, seq, padded, scale, p); break; \
        default: rows_avx2(1, 64, qi, kt, v, mask, oi, out_stride, seq, padded, scale, p); break; \
        }
        if (rows == 2 && d <= 32) { HEAD_SIZES_AVX2(2) } else { rows = 1; HEAD_SIZES_AVX2(1) }
#undef HEAD_SIZES_AVX2
        i += rows;
    }
}
#endif

void sqb_attention_head(int path, const float *q, const float *k, const float *v, const float *mask, float *out,
                        size_t out_stride, int queries, int seq, int head_size, float scale, float *work)
{
#ifdef SQB_X86
    if (path == SQB_PATH_AVX512_BF16 && (head_size == 32 || head_size == 64)) {
        head_bf16(q, k, v, mask, out, out_stride, queries, seq, head_size, scale, work);
        return;
    }
    if (path >= SQB_PATH_AVX512_VNNI && head_size % 16 == 0 && head_size <= 64) {
        head_avx512(q, k, v, mask, out, out_stride, queries, seq, head_size, scale, work);
        return;
    }
    if (path == SQB_PATH_AVX2 && head_size % 16 == 0 && head_size <= 64) {
        head_avx2(q, k, v, mask, out, out_stride, queries, seq, head_size, scale, work);
        return;
    }
#endif
    head_portable(q, k, v, mask, out, out_stride, queries, seq, head_size, scale, work);
}
