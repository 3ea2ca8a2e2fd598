/* The kernels' entry points (grouped_qgemm.c, attention.c, quantize_rows.c, embeddings.c) and their threads
   (pool.c), for the ONNX Runtime side (ort_ops.c). */
#ifndef SQB_KERNELS_H
#define SQB_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Slowest to fastest; AVX512_BF16 is the AVX512_VNNI path with attention's products in bf16. */
enum { SQB_PATH_PORTABLE, SQB_PATH_AVX2, SQB_PATH_AVX512_VNNI, SQB_PATH_AVX512_BF16 };

/* One GroupedQGemm call (grouped_qgemm.c): what ort_ops.c reads from the op's inputs and attributes. */
typedef struct {
    const uint8_t *a;
    size_t lda;               /* G*K */
    const uint8_t *a_zero_point; /* one per row of A (QuantizeRows) */
    const float *a_scale;
    const int8_t *b;
    const float *b_scale;
    const int32_t *colsum;
    const float *bias;
    float *out[3];
    const float *residual;    /* or NULL */
    int splits;               /* outputs; each takes n / splits of every group's columns */
    int groups, k, n;
    int batch, seq, heads;    /* heads 0: token-major output */
    int gelu;                 /* apply GELU (erf form) to the output */
    int path;                 /* SQB_PATH_*: the code path its tiles take */
    int row_tiles, col_tiles; /* per batch row; per group */
} sqb_gemm_job_t;

/* Split the call into tasks (sets row_tiles and col_tiles); each task is one sqb_gemm_tile(job, index). */
size_t sqb_gemm_tiles(sqb_gemm_job_t *job);
void sqb_gemm_tile(void *job, size_t index);

/* The fastest path this CPU has, or a slower one named by the environment variable SQB_NATIVE_PATH. */
int sqb_best_path(void);
extern const char *const SQB_PATH_NAMES[4];

/* One QuantizeRows call (quantize_rows.c): rows x width values, optionally layer-normalised into y first. */
typedef struct {
    const float *x, *gamma, *beta; /* gamma and beta NULL: no LayerNorm */
    float epsilon;
    float *y;                      /* the LayerNorm's output, with gamma */
    uint8_t *q, *zero_point;
    float *scale;
    size_t rows;
    int width;                     /* a multiple of 16 */
    int path;
} sqb_rows_job_t;

#define SQB_ROWS_PER_TASK 8
void sqb_rows_task(void *job, size_t index); /* rows [index * SQB_ROWS_PER_TASK, +SQB_ROWS_PER_TASK) */

/* One head: softmax(q k^T * scale + mask) v for q [queries, head_size], k, v [seq, head_size] and an additive mask
   [seq], into out[i * out_stride + c]. `work` holds sqb_attention_work_floats(seq, head_size) floats. */
void sqb_attention_head(int path, const float *q, const float *k, const float *v, const float *mask, float *out,
                        size_t out_stride, int queries, int seq, int head_size, float scale, float *work);
size_t sqb_attention_work_floats(int seq, int head_size);

/* One Embeddings call (embeddings.c): ids, token types and mask [tokens] (batch x seq, row-major); the uint8 tables
   [rows, width] with their zero points and scales. Every id and type must be in its table (ort_ops.c checks). */
typedef struct {
    const int64_t *ids, *types, *mask;
    const uint8_t *word, *position, *token_type;
    int word_zero_point, position_zero_point, type_zero_point;
    float word_scale, position_scale, type_scale;
    size_t tokens;
    int seq, width;
    int path;
    float *out, *additive_mask; /* [tokens, width], [tokens] */
} sqb_embeddings_job_t;

#define SQB_TOKENS_PER_TASK 16
void sqb_embeddings_task(void *job, size_t index); /* tokens [index * SQB_TOKENS_PER_TASK, +SQB_TOKENS_PER_TASK) */

/* ------------------------------------------------------------------------------------------ threads (pool.c) */
#define SQB_MAX_THREADS 64

/* An op split into tasks by index; a task writes only its own part of the outputs. */
typedef struct {
    void (*run)(const void *job, size_t index, void *scratch);
    size_t (*scratch_bytes)(const void *job); /* the scratch each thread needs (64-byte aligned), or NULL: none */
} sqb_task_kind_t;

/* Run `tasks` tasks of `job` on `threads` threads, the caller's one of them, and return when all are done: 0, or -1
   (nothing run) when there is no memory for the scratch. */
int sqb_pool_run(const sqb_task_kind_t *kind, const void *job, size_t tasks, int threads);
size_t sqb_pool_helper_tasks(void); /* tasks helper threads have run, since the library loaded */

#endif
