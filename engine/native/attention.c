/* One attention head in one pass: softmax(q k^T * scale + mask) v, written token-major.

   ONNX Runtime runs this as a MatMul for the scores, an Add for the padding mask, a Softmax, a MatMul with V and
   a Transpose of the heads back to tokens, each a pass over memory with its own thread hand-off. Here each head's
   scores stay in a small buffer: four query rows at a time are scored against all keys, normalised and multiplied
   with V before the next four. fp32 throughout, as ORT's. */
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
    size_t padded = (size_t)(seq + 15) / 16 * 16;
    return padded * (size_t)(head_size + ROWS);
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
                          size_t out_stride, int seq, int d, float scale, float *work)
{
    size_t padded = (size_t)(seq + 15) / 16 * 16;
    float *kt = work, *p = work + padded * d;
    transpose_keys(k, kt, seq, d, padded);
    for (int i = 0; i < seq; i++) {
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

/* R query rows against all keys, then softmax and the context; R and the head size D are constants at every call
   site, so the context's accumulators stay in registers (with a run-time D they went to the stack: 3x slower). */
AVX512 static inline __attribute__((always_inline)) void rows_avx512(
    const int R, const int D, const float *q, const float *kt, const float *v, const float *mask, float *out,
    size_t out_stride, int seq, size_t padded, float scale, float *p)
{
    const int d = D;
    const __m512 scale_v = _mm512_set1_ps(scale);
    for (size_t j = 0; j < padded; j += 16) {
        __mmask16 valid = (size_t)seq - j >= 16 ? 0xFFFF : (__mmask16)((1u << (seq - j)) - 1);
        __m512 acc[ROWS];
        for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
        for (int t = 0; t < d; t++) {
            __m512 keys = _mm512_loadu_ps(kt + (size_t)t * padded + j);
            for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)r * d + t]), keys, acc[r]);
        }
        __m512 m = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), valid, mask + j);
        for (int r = 0; r < R; r++) _mm512_storeu_ps(p + (size_t)r * padded + j, _mm512_fmadd_ps(acc[r], scale_v, m));
    }
    float inverse[ROWS];
    for (int r = 0; r < R; r++) {
        float *pr = p + (size_t)r * padded;
        __m512 top = _mm512_set1_ps(-INFINITY);
        for (size_t j = 0; j < padded; j += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(pr + j));
        __m512 top_all = _mm512_set1_ps(_mm512_reduce_max_ps(top)), sum = _mm512_setzero_ps();
        for (size_t j = 0; j < padded; j += 16) {
            __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(pr + j), top_all));
            __mmask16 valid = (size_t)seq - j >= 16 ? 0xFFFF : (__mmask16)((1u << (seq - j)) - 1);
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
    for (int r = 0; r < R; r++)
        for (int c = 0; c < blocks; c++)
            _mm512_storeu_ps(out + (size_t)r * out_stride + 16 * c, _mm512_mul_ps(ctx[r][c], _mm512_set1_ps(inverse[r])));
}

AVX512 static void head_avx512(const float *q, const float *k, const float *v, const float *mask, float *out,
                               size_t out_stride, int seq, int d, float scale, float *work)
{
    size_t padded = (size_t)(seq + 15) / 16 * 16;
    float *kt = work, *p = work + padded * d;
    transpose_keys(k, kt, seq, d, padded);
    const int step = d <= 32 ? 8 : 4;
    for (int i = 0; i < seq;) {
        int rows = seq - i >= step ? step : 1;
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

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float sum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

AVX2 static inline float max8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

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
                           size_t out_stride, int seq, int d, float scale, float *work)
{
    size_t padded = (size_t)(seq + 15) / 16 * 16;
    float *kt = work, *p = work + padded * d;
    transpose_keys(k, kt, seq, d, padded);
    const int step = d <= 32 ? 2 : 1; /* the context's accumulators: rows x d/8 of 16 registers */
    for (int i = 0; i < seq;) {
        int rows = seq - i >= step ? step : 1;
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
                        size_t out_stride, int seq, int head_size, float scale, float *work)
{
#ifdef SQB_X86
    if (path == SQB_PATH_AVX512_VNNI && head_size % 16 == 0 && head_size <= 64) {
        head_avx512(q, k, v, mask, out, out_stride, seq, head_size, scale, work);
        return;
    }
    if (path == SQB_PATH_AVX2 && head_size % 16 == 0 && head_size <= 64) {
        head_avx2(q, k, v, mask, out, out_stride, seq, head_size, scale, work);
        return;
    }
#endif
    head_portable(q, k, v, mask, out, out_stride, seq, head_size, scale, work);
}
