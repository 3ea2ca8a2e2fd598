/* QuantizeRows' kernel: an optional LayerNorm, then each row quantised to uint8 with its own scale and zero point.

   ONNX Runtime's LayerNormalization and DynamicQuantizeLinear each took 15-30 us a call on a 128 x 384 tensor
   here, about a fifth of a layer; this is one pass per row, on ORT's threads. A row's own range (rather than the
   tensor's, DynamicQuantizeLinear's) makes it one pass, and loses less to outlying tokens. Three paths: AVX-512,
   AVX2 and portable C. */
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

AVX512 static void row_avx512(const sqb_rows_job_t *job, size_t row)
{
    const int width = job->width;
    const float *x = job->x + row * width, *y = x;
    __m512 low = _mm512_setzero_ps(), high = _mm512_setzero_ps();
    if (job->gamma) {
        __m512 sum = _mm512_setzero_ps(), squares = _mm512_setzero_ps();
        for (int i = 0; i < width; i += 16) {
            __m512 v = _mm512_loadu_ps(x + i);
            sum = _mm512_add_ps(sum, v);
            squares = _mm512_fmadd_ps(v, v, squares);
        }
        float mean = _mm512_reduce_add_ps(sum) / (float)width;
        float variance = _mm512_reduce_add_ps(squares) / (float)width - mean * mean;
        __m512 inverse_std = _mm512_set1_ps(1.0f / sqrtf((variance > 0.0f ? variance : 0.0f) + job->epsilon));
        __m512 shift = _mm512_mul_ps(_mm512_set1_ps(-mean), inverse_std);
        float *normalised = job->y + row * width;
        for (int i = 0; i < width; i += 16) {
            __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), inverse_std, shift);
            v = _mm512_fmadd_ps(v, _mm512_loadu_ps(job->gamma + i), _mm512_loadu_ps(job->beta + i));
            _mm512_storeu_ps(normalised + i, v);
            low = _mm512_min_ps(low, v);
            high = _mm512_max_ps(high, v);
        }
        y = normalised;
    } else {
        for (int i = 0; i < width; i += 16) {
            __m512 v = _mm512_loadu_ps(y + i);
            low = _mm512_min_ps(low, v);
            high = _mm512_max_ps(high, v);
        }
    }
    __m512 zero_point = _mm512_set1_ps(row_range(job, row, _mm512_reduce_min_ps(low), _mm512_reduce_max_ps(high)));
    __m512 inverse = _mm512_set1_ps(1.0f / job->scale[row]);
    uint8_t *q = job->q + row * width;
    for (int i = 0; i < width; i += 16) {
        /* round(y / scale) + zero point, to nearest even as DynamicQuantizeLinear; clamped to [0, 255] */
        __m512i v = _mm512_cvtps_epi32(_mm512_fmadd_ps(_mm512_loadu_ps(y + i), inverse, zero_point));
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtusepi32_epi8(_mm512_max_epi32(v, _mm512_setzero_si512())));
    }
}

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
