/* GroupedQGemm's kernels: SqueezeBERT's grouped 1x1 convolutions (and dense projections, one group) in int8.

   ONNX Runtime runs a grouped projection as Transpose -> batched MatMulInteger -> bias Add -> Transpose, and its
   int8 GEMM repacks batched weights on every call. This op reads the token-major activations in place, multiplies
   each group's block with weights packed at export time, and writes dequantised, biased fp32 straight into the
   layout the next op wants: token-major [..., G*N], or head-major [batch, heads, seq, d] for attention. What the
   op computes in full: ort_ops.c. Three paths, chosen at run time, compute the same integers: AVX-512 VNNI, AVX2
   (16-bit pairs) and portable C.
*/
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SQB_X86 1
#endif

#define ROWS_PER_TILE 32 /* four 8-row micro-kernel calls; 16 and 64 timed the same */
#define COLS_PER_TILE 48 /* three 16-column blocks of accumulators */

/* Where row s of batch item `batch` writes packed column c (group c / n), the stride between rows, and the
   residual it adds (or NULL). */
static float *out_at(const sqb_gemm_job_t *job, int batch, int s, int c, size_t *row_stride, const float **residual)
{
    int per_split = job->n / job->splits, within = c % job->n;
    int split = within / per_split;
    size_t width = (size_t)job->groups * per_split;
    size_t column = (size_t)(c / job->n) * per_split + within % per_split;
    size_t row = (size_t)batch * job->seq + s;
    *residual = job->residual ? job->residual + row * width + column : NULL;
    if (job->heads == 0) {
        *row_stride = width;
        return job->out[split] + row * width + column;
    }
    size_t d = width / job->heads;
    *row_stride = d;
    return job->out[split] + (((size_t)batch * job->heads + column / d) * job->seq + s) * d + column % d;
}

/* ------------------------------------------------------------------------------------------ portable C path */
static void tile_portable(const sqb_gemm_job_t *job, int batch, int s0, int s1, int g, int c0, int c1)
{
    int kq = job->k / 4;
    for (int s = s0; s < s1; s++) {
        const uint8_t *a = job->a + ((size_t)batch * job->seq + s) * job->lda + (size_t)g * job->k;
        for (int c = c0; c < c1; c += 16) {
            const int8_t *b = job->b + ((size_t)g * (job->n / 16) + c / 16) * kq * 64;
            int32_t acc[16] = {0};
            for (int q = 0; q < kq; q++)
                for (int j = 0; j < 16; j++)
                    for (int t = 0; t < 4; t++)
                        acc[j] += (int32_t)a[4 * q + t] * b[(size_t)q * 64 + 4 * j + t];
            size_t stride;
            const float *residual;
            float *o = out_at(job, batch, s, g * job->n + c, &stride, &residual);
            size_t col = (size_t)g * job->n + c;
            size_t row = (size_t)batch * job->seq + s;
            for (int j = 0; j < 16; j++) {
                float y = job->a_scale[row] * job->b_scale[col + j]
                          * (float)(acc[j] - job->a_zero_point[row] * job->colsum[col + j]) + job->bias[col + j];
                y = job->gelu ? 0.5f * y * (1.0f + erff(y * 0.70710678f)) : y;
                o[j] = residual ? y + residual[j] : y;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ AVX-512 VNNI path */
#ifdef SQB_X86
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#include "vector_math.h"

/* GCC 12 copies and spills every accumulator of _mm512_dpbusd_epi32 on each iteration (half speed); the asm
   updates it in place. */
VNNI static inline __m512i dpbusd(__m512i acc, __m512i a_u8, __m512i b_s8)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a_u8), "v"(b_s8));
    return acc;
}

/* GELU, y * Phi(y) (Phi the normal distribution, the erf form), with Phi a quadratic on each of 16 segments of
   [-5, 5), picked by a one-register permute: ten instructions, where erf through exp and a divide took 30 and made
   GELU cost as much as SqueezeBERT's FFN-in GEMM. Absolute error below 4.2e-4 (the tails are 3e-6 from 0 and 1),
   under a fortieth of the int8 step of the quantisation that follows it (a row's outputs span 3 or more). 32
   segments (error 5.3e-5) need the two-register permute, and made SqueezeBERT's FFN-in GEMM 14% slower; a cubic on
   16 (3.0e-5), 10%. */
#define GELU_LOW (-5.0)
#define GELU_SEGMENTS 16
#define GELU_DEGREE 2
static float gelu_coefficients[GELU_DEGREE + 1][GELU_SEGMENTS]; /* per segment, the highest power first */

/* Each segment's polynomial interpolates Phi at its Chebyshev nodes (near the best one), written in x. */
__attribute__((constructor)) static void fit_gelu(void)
{
    const int n = GELU_DEGREE + 1;
    const double width = -2.0 * GELU_LOW / GELU_SEGMENTS, pi = 3.14159265358979323846;
    for (int s = 0; s < GELU_SEGMENTS; s++) {
        double middle = GELU_LOW + (s + 0.5) * width, m[GELU_DEGREE + 1][GELU_DEGREE + 2];
        for (int i = 0; i < n; i++) { /* Vandermonde rows in u = x - middle, and Phi(x) */
            double u = width / 2 * cos((2 * i + 1) * pi / (2 * n));
            for (int j = 0; j < n; j++) m[i][j] = pow(u, j);
            m[i][n] = 0.5 * erfc(-(middle + u) / sqrt(2.0));
        }
        for (int c = 0; c < n; c++) /* Gauss-Jordan: distinct nodes, no pivoting needed at this size */
            for (int r = 0; r < n; r++)
                if (r != c) {
                    double f = m[r][c] / m[c][c];
                    for (int j = c; j <= n; j++) m[r][j] -= f * m[c][j];
                }
        for (int k = 0; k < n; k++) { /* sum_i d_i (x - middle)^i, expanded in powers of x */
            double coefficient = 0.0;
            for (int i = k; i < n; i++) {
                double binomial = 1.0; /* i choose k */
                for (int t = 0; t < k; t++) binomial = binomial * (i - t) / (t + 1);
                coefficient += m[i][n] / m[i][i] * binomial * pow(-middle, i - k);
            }
            gelu_coefficients[GELU_DEGREE - k][s] = (float)coefficient;
        }
    }
}

VNNI static inline __m512 gelu(__m512 y)
{
    const float scale = (float)(GELU_SEGMENTS / (-2.0 * GELU_LOW));
    __m512 x = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps((float)GELU_LOW)), _mm512_set1_ps((float)-GELU_LOW - 1e-4f));
    __m512i segment = _mm512_cvttps_epi32(_mm512_fmadd_ps(x, _mm512_set1_ps(scale), _mm512_set1_ps((float)-GELU_LOW * scale)));
    __m512 c[GELU_DEGREE + 1];
    for (int i = 0; i <= GELU_DEGREE; i++) c[i] = _mm512_permutexvar_ps(segment, _mm512_loadu_ps(gelu_coefficients[i]));
    __m512 phi = c[0];
    for (int i = 1; i <= GELU_DEGREE; i++) phi = _mm512_fmadd_ps(phi, x, c[i]);
    return _mm512_mul_ps(y, phi);
}

/* R rows x NB 16-column blocks; R and NB are constants at every call site, so the accumulators live in registers. */
VNNI static inline __attribute__((always_inline)) void micro(
    const int R, const int NB, const sqb_gemm_job_t *job, const uint8_t *a, size_t row, const int8_t *b, int kq,
    size_t col, float *const *out, const float *const *residual, size_t row_stride)
{
    __m512i acc[8][3];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NB; j++) acc[r][j] = _mm512_setzero_si512();
    for (int q = 0; q < kq; q++) {
        __m512i w[3];
        for (int j = 0; j < NB; j++) w[j] = _mm512_loadu_si512((const void *)(b + ((size_t)j * kq + q) * 64));
        for (int r = 0; r < R; r++) {
            int32_t four;
            memcpy(&four, a + (size_t)r * job->lda + 4 * q, 4);
            __m512i x = _mm512_set1_epi32(four);
            for (int j = 0; j < NB; j++) acc[r][j] = dpbusd(acc[r][j], x, w[j]);
        }
    }
    /* Read once: the stores below could alias the job as far as the compiler knows, and it reloaded every field
       after each; that and the rolled loops took 40% of the epilogue's time. */
    const int apply_gelu = job->gelu;
    __m512 zero_points[8], row_scales[8];
    for (int r = 0; r < R; r++) {
        zero_points[r] = _mm512_set1_ps((float)job->a_zero_point[row + r]);
        row_scales[r] = _mm512_set1_ps(job->a_scale[row + r]);
    }
#pragma GCC unroll 3
    for (int j = 0; j < NB; j++) {
        __m512 colsum = _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)(job->colsum + col + 16 * j)));
        __m512 b_scale = _mm512_loadu_ps(job->b_scale + col + 16 * j);
        __m512 bias = _mm512_loadu_ps(job->bias + col + 16 * j);
        float *o = out[j];
        const float *skip = residual[j];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            /* the zero point's correction in float (one fused op for vpmulld and a subtract: 5% off SqueezeBERT's
               FFN-in GEMM); exact while the sum stays under 2^24, as the integers did */
            __m512 v = _mm512_fnmadd_ps(zero_points[r], colsum, _mm512_cvtepi32_ps(acc[r][j]));
            v = _mm512_fmadd_ps(v, _mm512_mul_ps(row_scales[r], b_scale), bias);
            if (apply_gelu) v = gelu(v);
            if (skip) v = _mm512_add_ps(v, _mm512_loadu_ps(skip + r * row_stride));
            _mm512_storeu_ps(o + r * row_stride, v);
        }
    }
}

#define MICRO_ROWS(NB)                                                                  \
    switch (rows) {                                                                    \
    case 8: micro(8, NB, job, a, row, b, kq, col, out, residual, stride); break;                      \
    case 7: micro(7, NB, job, a, row, b, kq, col, out, residual, stride); break;                      \
    case 6: micro(6, NB, job, a, row, b, kq, col, out, residual, stride); break;                      \
    case 5: micro(5, NB, job, a, row, b, kq, col, out, residual, stride); break;                      \
    case 4: micro(4, NB, job, a, row, b, kq, col, out, residual, stride); break;                      \
    case 3: micro(3, NB, job, a, row, b, kq, col, out, residual, stride); break;                      \
    case 2: micro(2, NB, job, a, row, b, kq, col, out, residual, stride); break;                      \
    default: micro(1, NB, job, a, row, b, kq, col, out, residual, stride); break;                     \
    }

VNNI static void tile_vnni(const sqb_gemm_job_t *job, int batch, int s0, int s1, int g, int c0, int c1)
{
    int kq = job->k / 4;
    for (int c = c0; c < c1; c += COLS_PER_TILE) {
        int blocks = (c1 - c) / 16 < 3 ? (c1 - c) / 16 : 3;
        const int8_t *b = job->b + ((size_t)g * (job->n / 16) + c / 16) * kq * 64;
        size_t col = (size_t)g * job->n + c;
        /* the tile's first row's addresses; later rows are whole strides on (out_at divides: once per tile) */
        float *first[3];
        const float *first_residual[3] = {NULL, NULL, NULL};
        size_t stride = 0;
        for (int j = 0; j < blocks; j++) first[j] = out_at(job, batch, s0, (int)col + 16 * j, &stride, &first_residual[j]);
        for (int s = s0; s < s1; s += 8) {
            int rows = s1 - s < 8 ? s1 - s : 8;
            size_t row = (size_t)batch * job->seq + s;
            const uint8_t *a = job->a + row * job->lda + (size_t)g * job->k;
            size_t offset = (size_t)(s - s0) * stride;
            float *out[3];
            const float *residual[3] = {NULL, NULL, NULL};
            for (int j = 0; j < blocks; j++) {
                out[j] = first[j] + offset;
                residual[j] = first_residual[j] ? first_residual[j] + offset : NULL;
            }
            if (blocks == 3) { MICRO_ROWS(3) }
            else if (blocks == 2) { MICRO_ROWS(2) }
            else { MICRO_ROWS(1) }
        }
    }
}

/* ------------------------------------------------------------------------------------------ AVX2 path */
#define AVX2 __attribute__((target("avx2,fma")))

/* GELU, 0.5 y (1 + erf(y / sqrt 2)), with erf from Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7):
   AVX2 has no 32-entry permute for gelu()'s table. */
AVX2 static inline __m256 gelu8(__m256 y)
{
    __m256 z = _mm256_mul_ps(y, _mm256_set1_ps(0.70710678f));
    __m256 sign = _mm256_and_ps(z, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)));
    __m256 az = _mm256_xor_ps(z, sign);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(az, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
    __m256 poly = _mm256_set1_ps(1.061405429f);
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-1.453152027f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(1.421413741f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-0.284496736f));
    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(0.254829592f));
    poly = _mm256_mul_ps(poly, t);
    __m256 erf_abs = _mm256_fnmadd_ps(poly, exp_nonpositive8(_mm256_mul_ps(_mm256_xor_ps(az, _mm256_set1_ps(-0.0f)), az)),
                                      _mm256_set1_ps(1.0f));
    __m256 erf_z = _mm256_or_ps(erf_abs, sign);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), y), _mm256_add_ps(_mm256_set1_ps(1.0f), erf_z));
}

/* Eight columns' sums from two accumulators of four columns each, whose 32-bit lanes hold each column's two
   partial sums (rows 0-1 and 2-3 of every 4-row step) side by side. */
AVX2 static inline __m256i column_sums8(__m256i low, __m256i high)
{
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(low, high), 0xD8);
}

AVX2 static inline void store8(const sqb_gemm_job_t *job, __m256i sums, size_t row, size_t col, float *out,
                               const float *residual)
{
    __m256i correction = _mm256_mullo_epi32(_mm256_set1_epi32(job->a_zero_point[row]),
                                            _mm256_loadu_si256((const __m256i *)(job->colsum + col)));
    __m256 scale = _mm256_mul_ps(_mm256_set1_ps(job->a_scale[row]), _mm256_loadu_ps(job->b_scale + col));
    __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(sums, correction)), scale,
                               _mm256_loadu_ps(job->bias + col));
    if (job->gelu) v = gelu8(v);
    if (residual) v = _mm256_add_ps(v, _mm256_loadu_ps(residual));
    _mm256_storeu_ps(out, v);
}

/* Without VNNI: u8 and s8 widened to 16 bits and multiplied in pairs (vpmaddwd), exact (the byte form,
   vpmaddubsw, saturates at 16 bits); two rows by 16 columns at a time. */
AVX2 static void tile_avx2(const sqb_gemm_job_t *job, int batch, int s0, int s1, int g, int c0, int c1)
{
    int kq = job->k / 4;
    for (int c = c0; c < c1; c += 16) {
        const int8_t *b = job->b + ((size_t)g * (job->n / 16) + c / 16) * kq * 64;
        size_t col = (size_t)g * job->n + c;
        for (int s = s0; s < s1; s += 2) {
            int rows = s1 - s < 2 ? 1 : 2;
            const uint8_t *a = job->a + ((size_t)batch * job->seq + s) * job->lda + (size_t)g * job->k;
            __m256i acc[2][4];
            for (int r = 0; r < 2; r++)
                for (int j = 0; j < 4; j++) acc[r][j] = _mm256_setzero_si256();
            for (int q = 0; q < kq; q++) {
                __m256i w[4];
                for (int j = 0; j < 4; j++)
                    w[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + (size_t)q * 64 + 16 * j)));
                for (int r = 0; r < rows; r++) {
                    int32_t four;
                    memcpy(&four, a + (size_t)r * job->lda + 4 * q, 4);
                    __m256i x = _mm256_cvtepu8_epi16(_mm_set1_epi32(four));
                    for (int j = 0; j < 4; j++) acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(x, w[j]));
                }
            }
            for (int r = 0; r < rows; r++)
                for (int half = 0; half < 2; half++) {
                    size_t stride;
                    const float *residual;
                    float *out = out_at(job, batch, s + r, (int)col + 8 * half, &stride, &residual);
                    store8(job, column_sums8(acc[r][2 * half], acc[r][2 * half + 1]), (size_t)batch * job->seq + s + r,
                           col + 8 * half, out, residual);
                }
        }
    }
}
#endif

const char *const SQB_PATH_NAMES[4] = {"portable", "avx2", "avx512-vnni", "avx512-bf16"};

int sqb_best_path(void)
{
    int best = SQB_PATH_PORTABLE;
#ifdef SQB_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = SQB_PATH_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
        best = SQB_PATH_AVX512_VNNI;
    if (best == SQB_PATH_AVX512_VNNI && __builtin_cpu_supports("avx512bf16")) best = SQB_PATH_AVX512_BF16;
#endif
    const char *forced = getenv("SQB_NATIVE_PATH");
    for (int path = 0; forced && path < best; path++)
        if (strcmp(forced, SQB_PATH_NAMES[path]) == 0) return path;
    return best;
}

size_t sqb_gemm_tiles(sqb_gemm_job_t *job)
{
    job->row_tiles = (job->seq + ROWS_PER_TILE - 1) / ROWS_PER_TILE;
    job->col_tiles = (job->n + COLS_PER_TILE - 1) / COLS_PER_TILE;
    return (size_t)job->batch * job->row_tiles * job->groups * job->col_tiles;
}

void sqb_gemm_tile(void *data, size_t index)
{
    const sqb_gemm_job_t *job = (const sqb_gemm_job_t *)data;
    size_t t = index;
    int ct, g, rt, batch;
    int per_split = job->n / job->splits, split_tiles = per_split / COLS_PER_TILE;
    if (job->heads && per_split % COLS_PER_TILE == 0) {
        /* A head-major output, which attention reads a head at a time: tasks go by output column first (the same
           columns of Q, K and V together), rows last, so the pool's shares of them (pool.c) are shares of the heads,
           the ones each thread's share of the attention then reads. */
        rt = (int)(t % job->row_tiles); t /= job->row_tiles;
        int split = (int)(t % job->splits); t /= job->splits;
        int within = (int)(t % split_tiles); t /= split_tiles;
        g = (int)(t % job->groups); t /= job->groups;
        ct = split * split_tiles + within;
    } else { /* rows first: the pool's shares are shares of the rows, as the row-wise ops before and after take them */
        ct = (int)(t % job->col_tiles); t /= job->col_tiles;
        g = (int)(t % job->groups); t /= job->groups;
        rt = (int)(t % job->row_tiles); t /= job->row_tiles;
    }
    batch = (int)t;
    int s0 = rt * ROWS_PER_TILE, s1 = s0 + ROWS_PER_TILE < job->seq ? s0 + ROWS_PER_TILE : job->seq;
    int c0 = ct * COLS_PER_TILE, c1 = c0 + COLS_PER_TILE < job->n ? c0 + COLS_PER_TILE : job->n;
#ifdef SQB_X86
    if (job->path >= SQB_PATH_AVX512_VNNI) {
        tile_vnni(job, batch, s0, s1, g, c0, c1);
        return;
    }
    if (job->path == SQB_PATH_AVX2) {
        tile_avx2(job, batch, s0, s1, g, c0, c1);
        return;
    }
#endif
    tile_portable(job, batch, s0, s1, g, c0, c1);
}
