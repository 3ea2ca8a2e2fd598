/* The encoder's input, as the graph ONNX Runtime ran before this op computed it: each token's word, position and
   token-type embeddings, dequantised from uint8 as DequantizeLinear does ((q - zero point) * scale, in float) and
   summed (word + position) + type, and the attention mask's additive form, (1 - mask) * -10000. The same float
   operations in the same order, so the outputs match that graph bit for bit: no product is fused into a sum
   (fp-contract off where the target has FMA). Two paths: AVX-512 (16 columns at a time, 4 us for 128 x 384 on one
   thread with the tables in cache, against 14 us) and portable C. */
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

__attribute__((target("avx512f"), optimize("fp-contract=off"))) static void token_avx512(
    const sqb_embeddings_job_t *job, const uint8_t *word, const uint8_t *position, const uint8_t *type, float *out)
{
    const __m512i word_zp = _mm512_set1_epi32(job->word_zero_point),
                  position_zp = _mm512_set1_epi32(job->position_zero_point),
                  type_zp = _mm512_set1_epi32(job->type_zero_point);
    const __m512 word_scale = _mm512_set1_ps(job->word_scale), position_scale = _mm512_set1_ps(job->position_scale),
                 type_scale = _mm512_set1_ps(job->type_scale);
#define DEQUANTIZE(q, zp, scale)                                                                    \
    _mm512_mul_ps(                                                                                  \
        _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q))), zp)), scale)
    for (int c = 0; c < job->width; c += 16) {
        __m512 w = DEQUANTIZE(word + c, word_zp, word_scale);
        __m512 p = DEQUANTIZE(position + c, position_zp, position_scale);
        __m512 y = DEQUANTIZE(type + c, type_zp, type_scale);
        _mm512_storeu_ps(out + c, _mm512_add_ps(_mm512_add_ps(w, p), y));
    }
#undef DEQUANTIZE
}
#endif

static void token_portable(const sqb_embeddings_job_t *job, const uint8_t *word, const uint8_t *position,
                           const uint8_t *type, float *out)
{
    const int word_zp = job->word_zero_point, position_zp = job->position_zero_point, type_zp = job->type_zero_point;
    const float word_scale = job->word_scale, position_scale = job->position_scale, type_scale = job->type_scale;
    for (int c = 0; c < job->width; c++) {
        float w = (float)((int)word[c] - word_zp) * word_scale;
        float p = (float)((int)position[c] - position_zp) * position_scale;
        float y = (float)((int)type[c] - type_zp) * type_scale;
        out[c] = (w + p) + y;
    }
}

void sqb_embeddings_task(void *data, size_t index)
{
    const sqb_embeddings_job_t *job = (const sqb_embeddings_job_t *)data;
    const size_t width = (size_t)job->width;
    size_t first = index * SQB_TOKENS_PER_TASK, last = first + SQB_TOKENS_PER_TASK;
    if (last > job->tokens) last = job->tokens;
    /* the task's word rows are scattered over a table of megabytes, in no cache after a model run: asking for all of
       them first keeps many misses in flight instead of one row's at a time */
    for (size_t t = first; t < last; t++)
        for (size_t c = 0; c < width; c += 64) __builtin_prefetch(job->word + (size_t)job->ids[t] * width + c);
    for (size_t t = first; t < last; t++) {
        const uint8_t *word = job->word + (size_t)job->ids[t] * width;
        const uint8_t *position = job->position + (t % (size_t)job->seq) * width;
        const uint8_t *type = job->token_type + (size_t)job->types[t] * width;
#if defined(__x86_64__) || defined(_M_X64)
        if (job->path >= SQB_PATH_AVX512_VNNI && width % 16 == 0)
            token_avx512(job, word, position, type, job->out + t * width);
        else
#endif
            token_portable(job, word, position, type, job->out + t * width);
        job->additive_mask[t] = (1.0f - (float)job->mask[t]) * -10000.0f;
    }
}
