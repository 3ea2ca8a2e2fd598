/* QuantizeRows' kernel: an optional LayerNorm, then each row quantised to uint8 with its own scale and zero point.

   ONNX Runtime's LayerNormalization and DynamicQuantizeLinear each took 15-30 us a call on a 128 x 384 tensor
   here, about a fifth of a layer; this is one pass per row, on the pool's threads (pool.c). A row's own range
   (rather than the tensor's, DynamicQuantizeLinear's) makes it one pass, and loses less to outlying tokens. Three
   paths: AVX-512, AVX2 and portable C. */
#include "kernels.h"

#include <math.h>
#include <stddef.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SQB_X86 1
#endif

/* The row's scale and zero point from its range [min(y, 0), max(y, 0)], DynamicQuantizeLinear's rule; returns the
   zero point. */
static float row_range(const sqb_rows_job_t *job, size_t row, float lowest, float highest)
{
    lowest = lowest < 0.0f ? lowest : 0.0f;
    highest = highest > 0.0f ? highest : 0.0f;
    float scale = (highest - lowest) / 255.0f;
    if (!(scale > 0.0f)) scale = 1.0f; /* an all-zero row: any scale gives zeros */
    float zero_point = nearbyintf(-lowest / scale);
    zero_point = zero_point > 255.0f ? 255.0f : zero_point;
    job->scale[row] = scale;
    job->zero_point[row] = (uint8_t)zero_point;
    return zero_point;
}

static void row_portable(const sqb_rows_job_t *job, size_t row)
{
    const int width = job->width;
    const float *x = job->x + row * width, *y = x;
    float lowest = 0.0f, highest = 0.0f;
    if (job->gamma) {
        float sum = 0.0f, squares = 0.0f;
        for (int i = 0; i < width; i++) {
            sum += x[i];
            squares += x[i] * x[i];
        }
        float mean = sum / (float)width, variance = squares / (float)width - mean * mean;
        float inverse_std = 1.0f / sqrtf((variance > 0.0f ? variance : 0.0f) + job->epsilon);
        float *normalised = job->y + row * width;
        for (int i = 0; i < width; i++) {
            float v = normalised[i] = (x[i] - mean) * inverse_std * job->gamma[i] + job->beta[i];
            lowest = v < lowest ? v : lowest;
            highest = v > highest ? v : highest;
        }
        y = normalised;
    } else {
        for (int i = 0; i < width; i++) {
            lowest = y[i] < lowest ? y[i] : lowest;
            highest = y[i] > highest ? y[i] : highest;
        }
    }
    float zero_point = row_range(job, row, lowest, highest), inverse = 1.0f / job->scale[row];
    uint8_t *q = job->q + row * width;
    for (int i = 0; i < width; i++) { /* nearest, ties up: nearbyintf is a library call without SSE4.1 */
        float v = y[i] * inverse + zero_point + 0.5f;
        q[i] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
    }
}

#ifdef SQB_X86
#define AVX512 __attribute__((target("avx512f,avx512bw")))
#include "vector_math.h"

/* R rows side by side (R a constant at each call site). A row alone is one chain, its sums, then the LayerNorm's
   scale, then its range, then the quantisation, that the core mostly waits on; four independent chains: LayerNorm
   and quantisation of 128 x 384 in 7.1 us instead of 11.0, one thread. */
AVX512 static inline __attribute__((always_inline)) void rows_avx512(const int R, const sqb_rows_job_t *job, size_t row)
{
    const int width = job->width;
    const float *x = job->x + row * width, *y = x;
    __m512 low[4], high[4];
    for (int r = 0; r < R; r++) low[r] = high[r] = _mm512_setzero_ps();
    if (job->gamma) {
        __m512 sum[4], squares[4], inverse_std[4], shift[4];
        for (int r = 0; r < R; r++) sum[r] = squares[r] = _mm512_setzero_ps();
        for (int i = 0; i < width; i += 16)
            for (int r = 0; r < R; r++) {
                __m512 v = _mm512_loadu_ps(x + (size_t)r * width + i);
                sum[r] = _mm512_add_ps(sum[r], v);
                squares[r] = _mm512_fmadd_ps(v, v, squares[r]);
            }
        for (int r = 0; r < R; r++) {
            float mean = _mm512_reduce_add_ps(sum[r]) / (float)width;
            float variance = _mm512_reduce_add_ps(squares[r]) / (float)width - mean * mean;
            inverse_std[r] = _mm512_set1_ps(1.0f / sqrtf((variance > 0.0f ? variance : 0.0f) + job->epsilon));
            shift[r] = _mm512_mul_ps(_mm512_set1_ps(-mean), inverse_std[r]);
        }
        float *normalised = job->y + row * width;
        for (int i = 0; i < width; i += 16) {
            __m512 gamma = _mm512_loadu_ps(job->gamma + i), beta = _mm512_loadu_ps(job->beta + i);
            for (int r = 0; r < R; r++) {
                __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)r * width + i), inverse_std[r], shift[r]);
                v = _mm512_fmadd_ps(v, gamma, beta);
                _mm512_storeu_ps(normalised + (size_t)r * width + i, v);
                low[r] = _mm512_min_ps(low[r], v);
                high[r] = _mm512_max_ps(high[r], v);
            }
        }
        y = normalised;
    } else {
        for (int i = 0; i < width; i += 16)
            for (int r = 0; r < R; r++) {
                __m512 v = _mm512_loadu_ps(y + (size_t)r * width + i);
                low[r] = _mm512_min_ps(low[r], v);
                high[r] = _mm512_max_ps(high[r], v);
            }
    }
    __m512 zero_point[4], inverse[4];
    for (int r = 0; r < R; r++) {
        float range_zero = row_range(job, row + r, _mm512_reduce_min_ps(low[r]), _mm512_reduce_max_ps(high[r]));
        zero_point[r] = _mm512_set1_ps(range_zero);
        inverse[r] = _mm512_set1_ps(1.0f / job->scale[row + r]);
    }
    uint8_t *q = job->q + row * width;
    for (int i = 0; i < width; i += 16)
        for (int r = 0; r < R; r++) {
            /* round(y / scale) + zero point, to nearest even as DynamicQuantizeLinear; clamped to [0, 255] */
            __m512 scaled = _mm512_fmadd_ps(_mm512_loadu_ps(y + (size_t)r * width + i), inverse[r], zero_point[r]);
            __m512i v = _mm512_max_epi32(_mm512_cvtps_epi32(scaled), _mm512_setzero_si512());
            _mm_storeu_si128((__m128i *)(q + (size_t)r * width + i), _mm512_cvtusepi32_epi8(v));
        }
}

AVX512 static void four_rows_avx512(const sqb_rows_job_t *job, size_t row) { rows_avx512(4, job, row); }
AVX512 static void row_avx512(const sqb_rows_job_t *job, size_t row) { rows_avx512(1, job, row); }

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static void row_avx2(const sqb_rows_job_t *job, size_t row)
{
    const int width = job->width;
    const float *x = job->x + row * width, *y = x;
    __m256 low = _mm256_setzero_ps(), high = _mm256_setzero_ps();
    if (job->gamma) {
        __m256 sum = _mm256_setzero_ps(), squares = _mm256_setzero_ps();
        for (int i = 0; i < width; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            sum = _mm256_add_ps(sum, v);
            squares = _mm256_fmadd_ps(v, v, squares);
        }
        float mean = sum8(sum) / (float)width, variance = sum8(squares) / (float)width - mean * mean;
        __m256 inverse_std = _mm256_set1_ps(1.0f / sqrtf((variance > 0.0f ? variance : 0.0f) + job->epsilon));
        __m256 shift = _mm256_mul_ps(_mm256_set1_ps(-mean), inverse_std);
        float *normalised = job->y + row * width;
        for (int i = 0; i < width; i += 8) {
            __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), inverse_std, shift);
            v = _mm256_fmadd_ps(v, _mm256_loadu_ps(job->gamma + i), _mm256_loadu_ps(job->beta + i));
            _mm256_storeu_ps(normalised + i, v);
            low = _mm256_min_ps(low, v);
            high = _mm256_max_ps(high, v);
        }
        y = normalised;
    } else {
        for (int i = 0; i < width; i += 8) {
            __m256 v = _mm256_loadu_ps(y + i);
            low = _mm256_min_ps(low, v);
            high = _mm256_max_ps(high, v);
        }
    }
    __m256 zero_point = _mm256_set1_ps(row_range(job, row, min8(low), max8(high))); /* both start at 0 */
    __m256 inverse = _mm256_set1_ps(1.0f / job->scale[row]);
    uint8_t *q = job->q + row * width;
    for (int i = 0; i < width; i += 8) {
        __m256i v = _mm256_cvtps_epi32(_mm256_fmadd_ps(_mm256_loadu_ps(y + i), inverse, zero_point));
        __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)); /* saturating */
        _mm_storel_epi64((__m128i *)(q + i), _mm_packus_epi16(words, words));
    }
}
#endif

void sqb_rows_task(void *data, size_t index)
{
    const sqb_rows_job_t *job = (const sqb_rows_job_t *)data;
    size_t first = index * SQB_ROWS_PER_TASK;
    size_t end = first + SQB_ROWS_PER_TASK < job->rows ? first + SQB_ROWS_PER_TASK : job->rows;
    for (size_t row = first; row < end; row++) {
#ifdef SQB_X86
        if (job->path >= SQB_PATH_AVX512_VNNI && row + 4 <= end) {
            four_rows_avx512(job, row);
            row += 3;
            continue;
        }
        if (job->path >= SQB_PATH_AVX512_VNNI) {
            row_avx512(job, row);
            continue;
        }
        if (job->path == SQB_PATH_AVX2) {
            row_avx2(job, row);
            continue;
        }
#endif
        row_portable(job, row);
    }
}
