/* The ONNX Runtime side of the four ops in the domain "squeezebert.desktop": their schemas, reading inputs, running
   the kernels on the pool's threads (pool.c), and registration (RegisterCustomOps, called by ORT when a session
   loads this library).

   GroupedQGemm, inputs:
            0 A uint8 [..., G*K]          activations, quantised by QuantizeRows (1: scale, 2: zero point, one
                                           of each per row, [..., 1])
            3 B int8 [G, N/16, K/4, 16, 4] group g's [K, N] weights, 16 columns x 4 rows per 64-byte block
            4 b_scale float [G*N]          one symmetric scale per group and output column
            5 b_colsum int32 [G*N]         column sums of B, for A's zero point
            6 bias float [G*N]
            7 residual float (optional), shaped as the output: added last (the layer's skip connection)
   Outputs: `splits` of them (1 or 3): each group's N columns are split evenly between them, so Q, K and V come
   out of one call (one pass over A, one task list for the threads).
   Attributes: heads, 0 for a token-major output, else the head count of a head-major [batch, heads, seq, d] output
   (A is then [batch, seq, G*K]); gelu, 1 to apply GELU to the output (the FFN's first layer).

   y[m, g*N + n] = a_scale[m] * b_scale[g*N + n] * (sum_k A[m, g*K + k] * B_g[k, n] - a_zp[m] * colsum[g*N + n]) + bias
   (then GELU, then + residual), for output n / (N / splits) at column g*N/splits + n % (N / splits).

   MaskedAttention, QuantizeRows and Embeddings: below.
*/
#include "kernels.h"
#include "ort_abi.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const OrtApiSlot *api;

#define ORT(slot, type) ((type)api[SLOT_##slot])
typedef OrtStatus *(*create_status_fn)(int, const char *);
typedef OrtStatus *(*get_input_fn)(const OrtKernelContext *, size_t, const OrtValue **);
typedef OrtStatus *(*get_output_fn)(OrtKernelContext *, size_t, const int64_t *, size_t, OrtValue **);
typedef OrtStatus *(*mutable_data_fn)(OrtValue *, void **);
typedef OrtStatus *(*type_and_shape_fn)(const OrtValue *, OrtTensorTypeAndShapeInfo **);
typedef OrtStatus *(*element_type_fn)(const OrtTensorTypeAndShapeInfo *, int *);
typedef OrtStatus *(*dims_count_fn)(const OrtTensorTypeAndShapeInfo *, size_t *);
typedef OrtStatus *(*dims_fn)(const OrtTensorTypeAndShapeInfo *, int64_t *, size_t);
typedef void (*release_info_fn)(OrtTensorTypeAndShapeInfo *);
typedef void (*release_status_fn)(OrtStatus *);
typedef OrtStatus *(*attribute_int_fn)(const OrtKernelInfo *, const char *, int64_t *);
typedef OrtStatus *(*config_entry_fn)(const OrtSessionOptions *, const char *, char *, size_t *);
typedef OrtStatus *(*create_domain_fn)(const char *, OrtCustomOpDomain **);
typedef OrtStatus *(*domain_add_fn)(OrtCustomOpDomain *, const OrtCustomOp *);
typedef OrtStatus *(*add_domain_fn)(OrtSessionOptions *, OrtCustomOpDomain *);
typedef const char *(*build_info_fn)(void);

#define MAX_RANK 8

/* ------------------------------------------------------------------------------------------ the ORT kernel */
/* Each op is registered once per thread count (RegisterCustomOps): a kernel learns its session's from its op. */
typedef struct {
    OrtCustomOp op;
    int threads;
} threaded_op_t;

/* How every kernel runs: its code path, and its session's thread count. */
typedef struct {
    int path, threads;
} runner_t;

static runner_t runner_of(const OrtCustomOp *op)
{
    return (runner_t){sqb_best_path(), ((const threaded_op_t *)op)->threads};
}

/* The kernels' tasks that need no scratch (attention's, which does, is with its op below) */
static void gemm_task(const void *job, size_t index, void *scratch)
{
    (void)scratch;
    sqb_gemm_tile((void *)job, index);
}
static void rows_task(const void *job, size_t index, void *scratch)
{
    (void)scratch;
    sqb_rows_task((void *)job, index);
}
static void embeddings_task(const void *job, size_t index, void *scratch)
{
    (void)scratch;
    sqb_embeddings_task((void *)job, index);
}
static const sqb_task_kind_t GEMM_TASKS = {gemm_task, NULL}, ROWS_TASKS = {rows_task, NULL},
                             EMBEDDINGS_TASKS = {embeddings_task, NULL};

/* `items` in tasks of `per_task`; `out_of_memory` the error when there is no memory for its scratch */
static OrtStatus *run_tasks(runner_t runner, const sqb_task_kind_t *kind, const void *job, size_t items,
                            size_t per_task, const char *out_of_memory)
{
    if (sqb_pool_run(kind, job, (items + per_task - 1) / per_task, runner.threads) == 0) return NULL;
    return ORT(CreateStatus, create_status_fn)(ORT_FAIL_CODE, out_of_memory);
}

typedef struct {
    int64_t heads, gelu, splits;
    runner_t runner;
} kernel_t;

static const int INPUT_TYPES[8] = {ELEM_UINT8, ELEM_FLOAT, ELEM_UINT8, ELEM_INT8, ELEM_FLOAT, ELEM_INT32, ELEM_FLOAT,
                                   ELEM_FLOAT};

typedef struct {
    const OrtValue *value;
    void *data;
    int element_type;
    size_t rank;
    int64_t dims[MAX_RANK];
    int64_t count;
} tensor_t;

static OrtStatus *error(const char *message) { return ORT(CreateStatus, create_status_fn)(ORT_INVALID_ARGUMENT_CODE, message); }

static OrtStatus *read_input(OrtKernelContext *ctx, size_t index, int element_type, tensor_t *t)
{
    OrtStatus *status;
    OrtTensorTypeAndShapeInfo *info = NULL;
    if ((status = ORT(KernelContext_GetInput, get_input_fn)(ctx, index, &t->value))) return status;
    if ((status = ORT(GetTensorTypeAndShape, type_and_shape_fn)(t->value, &info))) return status;
    status = ORT(GetTensorElementType, element_type_fn)(info, &t->element_type);
    if (!status) status = ORT(GetDimensionsCount, dims_count_fn)(info, &t->rank);
    if (!status && t->rank > MAX_RANK) status = error("an input of rank above 8");
    if (!status) status = ORT(GetDimensions, dims_fn)(info, t->dims, t->rank);
    ORT(ReleaseTensorTypeAndShapeInfo, release_info_fn)(info);
    if (status) return status;
    if (t->element_type != element_type) return error("an input has the wrong element type");
    t->count = 1;
    for (size_t i = 0; i < t->rank; i++) t->count *= t->dims[i];
    return ORT(GetTensorMutableData, mutable_data_fn)((OrtValue *)t->value, &t->data);
}

/* Output `index`, shaped `dims`, and where its data goes; `missing` is the error when the graph left it out. */
static OrtStatus *output_data(OrtKernelContext *ctx, size_t index, const int64_t *dims, size_t rank,
                              const char *missing, void **data)
{
    OrtValue *value = NULL;
    OrtStatus *status = ORT(KernelContext_GetOutput, get_output_fn)(ctx, index, dims, rank, &value);
    if (status) return status;
    if (!value) return error(missing);
    return ORT(GetTensorMutableData, mutable_data_fn)(value, data);
}

static OrtStatus *compute(void *state, OrtKernelContext *ctx)
{
    const kernel_t *kernel = (const kernel_t *)state;
    tensor_t in[8];
    OrtStatus *status;
    for (size_t i = 0; i < 7; i++)
        if ((status = read_input(ctx, i, INPUT_TYPES[i], &in[i]))) return status;
    const OrtValue *residual_value = NULL;
    if ((status = ORT(KernelContext_GetInput, get_input_fn)(ctx, 7, &residual_value))) return status;
    if (residual_value && (status = read_input(ctx, 7, ELEM_FLOAT, &in[7]))) return status;

    const tensor_t *a = &in[0], *b = &in[3];
    if (b->rank != 5 || b->dims[3] != 16 || b->dims[4] != 4 || a->rank < 1)
        return error("GroupedQGemm: B must be packed [G, N/16, K/4, 16, 4]");
    sqb_gemm_job_t job;
    job.groups = (int)b->dims[0];
    job.n = (int)b->dims[1] * 16;
    job.k = (int)b->dims[2] * 4;
    job.splits = (int)kernel->splits;
    job.heads = (int)kernel->heads;
    job.gelu = kernel->gelu != 0;
    job.path = kernel->runner.path;
    if (job.splits < 1 || job.splits > 3 || job.n % (16 * job.splits) != 0)
        return error("GroupedQGemm: splits must be 1 to 3 and divide each group's columns in blocks of 16");
    int64_t packed_width = (int64_t)job.groups * job.n, width = packed_width / job.splits;
    if (a->dims[a->rank - 1] != (int64_t)job.groups * job.k)
        return error("GroupedQGemm: A's last dimension is not G*K");
    int64_t rows = a->count / a->dims[a->rank - 1];
    if (in[1].count != rows || in[2].count != rows)
        return error("GroupedQGemm: A needs one scale and one zero point per row (QuantizeRows)");
    if (in[4].count != packed_width || in[5].count != packed_width || in[6].count != packed_width)
        return error("GroupedQGemm: b_scale, b_colsum and bias must have G*N values");

    int64_t out_dims[MAX_RANK];
    size_t out_rank;
    if (job.heads == 0) {
        job.batch = 1;
        job.seq = (int)rows;
        memcpy(out_dims, a->dims, sizeof(int64_t) * a->rank);
        out_dims[a->rank - 1] = width;
        out_rank = a->rank;
    } else {
        if (a->rank != 3) return error("GroupedQGemm: a head-major output needs A as [batch, seq, G*K]");
        if (width % job.heads != 0 || (width / job.heads) % 16 != 0)
            return error("GroupedQGemm: head size must be a multiple of 16");
        job.batch = (int)a->dims[0];
        job.seq = (int)a->dims[1];
        out_dims[0] = a->dims[0];
        out_dims[1] = job.heads;
        out_dims[2] = a->dims[1];
        out_dims[3] = width / job.heads;
        out_rank = 4;
    }
    job.residual = NULL;
    if (residual_value) {
        if (job.heads != 0 || job.splits != 1 || in[7].count != rows * width)
            return error("GroupedQGemm: a residual needs one token-major output of its shape");
        job.residual = (const float *)in[7].data;
    }
    for (int o = 0; o < job.splits; o++)
        if ((status = output_data(ctx, o, out_dims, out_rank, "GroupedQGemm: fewer outputs than splits",
                                  (void **)&job.out[o])))
            return status;
    if (rows == 0) return NULL;

    job.a = (const uint8_t *)a->data;
    job.lda = (size_t)job.groups * job.k;
    job.a_scale = (const float *)in[1].data;
    job.a_zero_point = (const uint8_t *)in[2].data;
    job.b = (const int8_t *)b->data;
    job.b_scale = (const float *)in[4].data;
    job.colsum = (const int32_t *)in[5].data;
    job.bias = (const float *)in[6].data;
    return run_tasks(kernel->runner, &GEMM_TASKS, &job, sqb_gemm_tiles(&job), 1, "GroupedQGemm: out of memory");
}

static OrtStatus *create_kernel(const OrtCustomOp *op, const OrtApiSlot *ort, const OrtKernelInfo *info, void **out)
{
    (void)ort;
    kernel_t *kernel = (kernel_t *)malloc(sizeof *kernel);
    if (!kernel) return ORT(CreateStatus, create_status_fn)(ORT_FAIL_CODE, "GroupedQGemm: out of memory");
    static const char *const names[3] = {"heads", "gelu", "splits"};
    static const int64_t defaults[3] = {0, 0, 1}; /* token-major, no activation, one output */
    int64_t *values[3] = {&kernel->heads, &kernel->gelu, &kernel->splits};
    for (int i = 0; i < 3; i++) {
        OrtStatus *status = ORT(KernelInfoGetAttribute_int64, attribute_int_fn)(info, names[i], values[i]);
        if (status) {
            ORT(ReleaseStatus, release_status_fn)(status);
            *values[i] = defaults[i];
        }
    }
    kernel->runner = runner_of(op);
    *out = kernel;
    return NULL;
}

static void destroy_kernel(void *kernel) { free(kernel); }
static const char *op_name(const OrtCustomOp *op) { (void)op; return "GroupedQGemm"; }
static const char *op_provider(const OrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int input_type(const OrtCustomOp *op, size_t i) { (void)op; return i < 8 ? INPUT_TYPES[i] : 0; }
static size_t input_count(const OrtCustomOp *op) { (void)op; return 8; }
static int output_type(const OrtCustomOp *op, size_t i) { (void)op; (void)i; return ELEM_FLOAT; }
static size_t output_count(const OrtCustomOp *op) { (void)op; return 3; }
/* the residual input and the second and third outputs may be left out */
static int input_presence(const OrtCustomOp *op, size_t i) { (void)op; return i == 7 ? OPTIONAL : REQUIRED; }
static int output_presence(const OrtCustomOp *op, size_t i) { (void)op; return i > 0 ? OPTIONAL : REQUIRED; }
static int default_memory(const OrtCustomOp *op, size_t i) { (void)op; (void)i; return 0; }
static int one(const OrtCustomOp *op) { (void)op; return 1; }
static int since_version(const OrtCustomOp *op) { (void)op; return 1; }
static int until_version(const OrtCustomOp *op) { (void)op; return 0x7fffffff; }
static size_t no_pairs(int **in, int **out) { *in = NULL; *out = NULL; return 0; }
static void release_pairs(int *in, int *out) { (void)in; (void)out; }

/* Version 17: ORT calls the V2 callbacks (CreateKernelV2, KernelComputeV2), which return errors as OrtStatus; the V1
   slots, which cannot, stay empty. */
static const OrtCustomOp grouped_qgemm = {
    SQB_ORT_API_VERSION, NULL, op_name, op_provider, input_type, input_count, output_type,
    output_count, NULL, destroy_kernel, input_presence, output_presence, default_memory, one, one, one, one,
    create_kernel, compute, NULL, since_version, until_version, no_pairs, release_pairs, no_pairs, release_pairs,
};

/* ------------------------------------------------------------------------------------------ one float attribute */
/* MaskedAttention's and QuantizeRows' kernels: the op's one float attribute and the code path. */
typedef OrtStatus *(*attribute_float_fn)(const OrtKernelInfo *, const char *, float *);

typedef struct {
    float attribute;
    runner_t runner;
} float_kernel_t;

/* `fallback` NULL: the attribute is required. */
static OrtStatus *create_float_kernel(const OrtCustomOp *op, const OrtKernelInfo *info, const char *name,
                                      const float *fallback, void **out)
{
    float_kernel_t *kernel = (float_kernel_t *)malloc(sizeof *kernel);
    if (!kernel) return ORT(CreateStatus, create_status_fn)(ORT_FAIL_CODE, "custom op: out of memory");
    OrtStatus *status = ORT(KernelInfoGetAttribute_float, attribute_float_fn)(info, name, &kernel->attribute);
    if (status && !fallback) {
        free(kernel);
        return status;
    }
    if (status) {
        ORT(ReleaseStatus, release_status_fn)(status);
        kernel->attribute = *fallback;
    }
    kernel->runner = runner_of(op);
    *out = kernel;
    return NULL;
}

/* ------------------------------------------------------------------------------------------ MaskedAttention */
/* Inputs: 0 Q, 1 K, 2 V float [batch, heads, seq, d] (GroupedQGemm's head-major outputs), 3 an additive mask with
   batch * seq values (0 for a token, a large negative number for padding). Q may have fewer rows than K and V,
   [batch, heads, queries, d]: the first `queries` tokens' context alone (a classifier's last layer, which only its
   [CLS] row reaches: engine.build.fuse). Attribute scale (1/sqrt(d)).
   Output: the context, token-major [batch, queries, heads * d]. One task per batch item and head. */

typedef struct {
    const float *q, *k, *v, *mask;
    float *out;
    int heads, queries, seq, d, path;
    float scale;
} attention_job_t;

static void run_head(const void *data, size_t index, void *work)
{
    const attention_job_t *job = (const attention_job_t *)data;
    size_t batch = index / job->heads, head = index % job->heads;
    size_t key_elements = (size_t)job->seq * job->d, query_elements = (size_t)job->queries * job->d;
    sqb_attention_head(job->path, job->q + index * query_elements, job->k + index * key_elements,
                       job->v + index * key_elements, job->mask + batch * job->seq,
                       job->out + batch * query_elements * job->heads + head * job->d, (size_t)job->heads * job->d,
                       job->queries, job->seq, job->d, job->scale, (float *)work);
}

static size_t head_work_bytes(const void *data)
{
    const attention_job_t *job = (const attention_job_t *)data;
    return sizeof(float) * sqb_attention_work_floats(job->seq, job->d);
}

static const sqb_task_kind_t ATTENTION_TASKS = {run_head, head_work_bytes};

static OrtStatus *compute_attention(void *state, OrtKernelContext *ctx)
{
    const float_kernel_t *kernel = (const float_kernel_t *)state;
    tensor_t in[4];
    OrtStatus *status;
    for (size_t i = 0; i < 4; i++)
        if ((status = read_input(ctx, i, ELEM_FLOAT, &in[i]))) return status;
    const tensor_t *q = &in[0], *k = &in[1];
    if (q->rank != 4 || k->rank != 4)
        return error("MaskedAttention: Q, K and V must be [batch, heads, seq, head size]");
    if (in[2].rank != 4 || memcmp(in[2].dims, k->dims, sizeof(int64_t) * 4) != 0)
        return error("MaskedAttention: V must have K's shape");
    if (q->dims[0] != k->dims[0] || q->dims[1] != k->dims[1] || q->dims[3] != k->dims[3] || q->dims[2] > k->dims[2])
        return error("MaskedAttention: Q must have K's shape, or fewer rows");
    if (in[3].count != k->dims[0] * k->dims[2]) return error("MaskedAttention: the mask needs batch * seq values");
    attention_job_t job = {(const float *)q->data, (const float *)k->data, (const float *)in[2].data,
                           (const float *)in[3].data, NULL, (int)q->dims[1], (int)q->dims[2], (int)k->dims[2],
                           (int)q->dims[3], kernel->runner.path, kernel->attribute};
    int64_t out_dims[3] = {q->dims[0], q->dims[2], q->dims[1] * q->dims[3]};
    if ((status = output_data(ctx, 0, out_dims, 3, "MaskedAttention: no output", (void **)&job.out))) return status;
    size_t heads = (size_t)q->dims[0] * job.heads;
    if (heads == 0 || job.queries == 0) return NULL;
    return run_tasks(kernel->runner, &ATTENTION_TASKS, &job, heads, 1, "MaskedAttention: out of memory");
}

static OrtStatus *create_attention(const OrtCustomOp *op, const OrtApiSlot *ort, const OrtKernelInfo *info, void **out)
{
    (void)ort;
    return create_float_kernel(op, info, "scale", NULL, out);
}

static const char *attention_name(const OrtCustomOp *op) { (void)op; return "MaskedAttention"; }
static int float_type(const OrtCustomOp *op, size_t i) { (void)op; (void)i; return ELEM_FLOAT; }
static size_t four(const OrtCustomOp *op) { (void)op; return 4; }
static size_t single(const OrtCustomOp *op) { (void)op; return 1; }
static int required_io(const OrtCustomOp *op, size_t i) { (void)op; (void)i; return REQUIRED; }

static const OrtCustomOp masked_attention = {
    SQB_ORT_API_VERSION, NULL, attention_name, op_provider, float_type, four, float_type,
    single, NULL, destroy_kernel, required_io, required_io, default_memory, one, one, one, one,
    create_attention, compute_attention, NULL, since_version, until_version, no_pairs, release_pairs, no_pairs,
    release_pairs,
};

/* ------------------------------------------------------------------------------------------ QuantizeRows */
/* Inputs: 0 X float [..., width] (width a multiple of 16); 1 gamma and 2 beta float [width], optional: a
   LayerNorm (attribute epsilon) before quantising. Outputs: 0 uint8 [..., width], 1 scale float and 2 zero point
   uint8 [..., 1], one per row, for GroupedQGemm; 3 the LayerNorm's output float [..., width], required with
   gamma (the skip connection after the next projection). Eight rows a task. */
static OrtStatus *compute_rows(void *state, OrtKernelContext *ctx)
{
    const float_kernel_t *kernel = (const float_kernel_t *)state;
    tensor_t x, gamma, beta;
    OrtStatus *status;
    if ((status = read_input(ctx, 0, ELEM_FLOAT, &x))) return status;
    if (x.rank < 1 || x.dims[x.rank - 1] % 16 != 0) return error("QuantizeRows: the last dimension must be a multiple of 16");
    sqb_rows_job_t job = {(const float *)x.data, NULL, NULL, kernel->attribute, NULL, NULL, NULL, NULL, 0,
                          (int)x.dims[x.rank - 1], kernel->runner.path};
    job.rows = job.width ? (size_t)(x.count / job.width) : 0;
    const OrtValue *gamma_value = NULL;
    if ((status = ORT(KernelContext_GetInput, get_input_fn)(ctx, 1, &gamma_value))) return status;
    if (gamma_value) {
        if ((status = read_input(ctx, 1, ELEM_FLOAT, &gamma)) || (status = read_input(ctx, 2, ELEM_FLOAT, &beta)))
            return status;
        if (gamma.count != job.width || beta.count != job.width)
            return error("QuantizeRows: gamma and beta need one value per column");
        job.gamma = (const float *)gamma.data;
        job.beta = (const float *)beta.data;
    }
    int64_t row_dims[MAX_RANK];
    memcpy(row_dims, x.dims, sizeof(int64_t) * x.rank);
    row_dims[x.rank - 1] = 1;
    void *data[4] = {NULL, NULL, NULL, NULL};
    for (size_t o = 0; o < (job.gamma ? 4u : 3u); o++) {
        const int64_t *dims = o == 1 || o == 2 ? row_dims : x.dims;
        if ((status = output_data(ctx, o, dims, x.rank, "QuantizeRows: a LayerNorm needs its output (the fourth)",
                                  &data[o])))
            return status;
    }
    job.q = (uint8_t *)data[0];
    job.scale = (float *)data[1];
    job.zero_point = (uint8_t *)data[2];
    job.y = (float *)data[3];
    return run_tasks(kernel->runner, &ROWS_TASKS, &job, job.rows, SQB_ROWS_PER_TASK,
                     "QuantizeRows: out of memory");
}

static OrtStatus *create_rows(const OrtCustomOp *op, const OrtApiSlot *ort, const OrtKernelInfo *info, void **out)
{
    (void)ort;
    static const float bert_epsilon = 1e-12f;
    return create_float_kernel(op, info, "epsilon", &bert_epsilon, out);
}

static const char *rows_name(const OrtCustomOp *op) { (void)op; return "QuantizeRows"; }
static size_t three(const OrtCustomOp *op) { (void)op; return 3; }
static int rows_output_type(const OrtCustomOp *op, size_t i) { (void)op; return i == 0 || i == 2 ? ELEM_UINT8 : ELEM_FLOAT; }
static int rows_input_presence(const OrtCustomOp *op, size_t i) { (void)op; return i == 0 ? REQUIRED : OPTIONAL; }
static int rows_output_presence(const OrtCustomOp *op, size_t i) { (void)op; return i == 3 ? OPTIONAL : REQUIRED; }

static const OrtCustomOp quantize_rows = {
    SQB_ORT_API_VERSION, NULL, rows_name, op_provider, float_type, three, rows_output_type,
    four, NULL, destroy_kernel, rows_input_presence, rows_output_presence, default_memory, one, one, one, one,
    create_rows, compute_rows, NULL, since_version, until_version, no_pairs, release_pairs, no_pairs, release_pairs,
};

/* ------------------------------------------------------------------------------------------ Embeddings */
/* Inputs: 0 input_ids, 1 token_type_ids, 2 attention_mask int64 [batch, seq]; then three uint8 tables [rows, width],
   word (3), position (6) and token type (9), each followed by its scale (float) and zero point (uint8), one per
   table. Outputs: 0 the embeddings' sum float [batch, seq, width] (the first QuantizeRows applies their LayerNorm),
   1 the additive mask float [batch, 1, 1, seq] for MaskedAttention. It replaces 26 ORT nodes (engine.build.fuse),
   the same in SqueezeBERT and BERT. */
static const int EMBEDDINGS_INPUT_TYPES[12] = {ELEM_INT64, ELEM_INT64, ELEM_INT64, ELEM_UINT8, ELEM_FLOAT, ELEM_UINT8,
                                               ELEM_UINT8, ELEM_FLOAT, ELEM_UINT8, ELEM_UINT8, ELEM_FLOAT, ELEM_UINT8};

/* every value of `t` in [0, rows) */
static int all_below(const tensor_t *t, int64_t rows)
{
    const int64_t *v = (const int64_t *)t->data;
    for (int64_t i = 0; i < t->count; i++)
        if (v[i] < 0 || v[i] >= rows) return 0;
    return 1;
}

static OrtStatus *compute_embeddings(void *state, OrtKernelContext *ctx)
{
    tensor_t in[12];
    OrtStatus *status;
    for (size_t i = 0; i < 12; i++)
        if ((status = read_input(ctx, i, EMBEDDINGS_INPUT_TYPES[i], &in[i]))) return status;
    const tensor_t *ids = &in[0], *word = &in[3], *position = &in[6], *type = &in[9];
    for (int i = 1; i < 3; i++)
        if (ids->rank != 2 || in[i].rank != 2 || memcmp(in[i].dims, ids->dims, sizeof(int64_t) * 2) != 0)
            return error("Embeddings: input_ids, token_type_ids and attention_mask must be [batch, seq] alike");
    for (int i = 3; i < 12; i += 3)
        if (in[i].rank != 2 || in[i].dims[1] != word->dims[1] || in[i + 1].count != 1 || in[i + 2].count != 1)
            return error("Embeddings: the tables must be [rows, width] alike, each with one scale and zero point");
    if (ids->dims[1] > position->dims[0]) return error("Embeddings: the sequence is longer than the position table");
    if (!all_below(ids, word->dims[0])) return error("Embeddings: a token id is outside the vocabulary");
    if (!all_below(&in[1], type->dims[0])) return error("Embeddings: a token type is outside the token type table");

    sqb_embeddings_job_t job;
    job.ids = (const int64_t *)ids->data;
    job.types = (const int64_t *)in[1].data;
    job.mask = (const int64_t *)in[2].data;
    job.word = (const uint8_t *)word->data;
    job.position = (const uint8_t *)position->data;
    job.token_type = (const uint8_t *)type->data;
    job.word_scale = *(const float *)in[4].data;
    job.word_zero_point = *(const uint8_t *)in[5].data;
    job.position_scale = *(const float *)in[7].data;
    job.position_zero_point = *(const uint8_t *)in[8].data;
    job.type_scale = *(const float *)in[10].data;
    job.type_zero_point = *(const uint8_t *)in[11].data;
    job.tokens = (size_t)ids->count;
    job.seq = (int)ids->dims[1];
    job.width = (int)word->dims[1];
    const runner_t runner = *(const runner_t *)state;
    job.path = runner.path;
    int64_t out_dims[3] = {ids->dims[0], ids->dims[1], word->dims[1]};
    int64_t mask_dims[4] = {ids->dims[0], 1, 1, ids->dims[1]};
    if ((status = output_data(ctx, 0, out_dims, 3, "Embeddings: no output", (void **)&job.out)) ||
        (status = output_data(ctx, 1, mask_dims, 4, "Embeddings: no mask output", (void **)&job.additive_mask)))
        return status;
    return run_tasks(runner, &EMBEDDINGS_TASKS, &job, job.tokens, SQB_TOKENS_PER_TASK, "Embeddings: out of memory");
}

static OrtStatus *create_embeddings(const OrtCustomOp *op, const OrtApiSlot *ort, const OrtKernelInfo *info, void **out)
{
    (void)ort;
    (void)info;
    runner_t *runner = (runner_t *)malloc(sizeof *runner); /* the kernel's one piece of state */
    if (!runner) return ORT(CreateStatus, create_status_fn)(ORT_FAIL_CODE, "Embeddings: out of memory");
    *runner = runner_of(op);
    *out = runner;
    return NULL;
}

static const char *embeddings_name(const OrtCustomOp *op) { (void)op; return "Embeddings"; }
static int embeddings_input_type(const OrtCustomOp *op, size_t i)
{
    (void)op;
    return i < 12 ? EMBEDDINGS_INPUT_TYPES[i] : 0;
}
static size_t twelve(const OrtCustomOp *op) { (void)op; return 12; }
static size_t two(const OrtCustomOp *op) { (void)op; return 2; }

static const OrtCustomOp embeddings = {
    SQB_ORT_API_VERSION, NULL, embeddings_name, op_provider, embeddings_input_type, twelve, float_type,
    two, NULL, destroy_kernel, required_io, required_io, default_memory, one, one, one, one,
    create_embeddings, compute_embeddings, NULL, since_version, until_version, no_pairs, release_pairs, no_pairs,
    release_pairs,
};

/* The highest slot used, checked before the table is trusted: one with a result known without a session. */
static const char *abi_mismatch(void)
{
    const char *info = ORT(GetBuildInfoString, build_info_fn)();
    return info && strncmp(info, "ORT Build Info", 14) == 0 ? NULL : "GetBuildInfoString is not where expected";
}

/* The session's thread count for these ops: its config entry THREADS_KEY (engine.session sets it; ORT's own pool
   may have fewer), 1 without it. */
#define THREADS_KEY "squeezebert.threads"
static int session_threads(const OrtSessionOptions *options)
{
    char value[16];
    size_t size = sizeof value;
    OrtStatus *status = ORT(GetSessionConfigEntry, config_entry_fn)(options, THREADS_KEY, value, &size);
    if (status) { /* absent, or too long to be a count */
        ORT(ReleaseStatus, release_status_fn)(status);
        return 1;
    }
    int threads = atoi(value);
    return threads < 1 ? 1 : threads > SQB_MAX_THREADS ? SQB_MAX_THREADS : threads;
}

/* The ops for each thread count, made on first use and kept: ORT holds on to them for its sessions' lives. */
#define OP_KINDS 4
static threaded_op_t threaded_ops[SQB_MAX_THREADS][OP_KINDS];
static pthread_mutex_t threaded_ops_lock = PTHREAD_MUTEX_INITIALIZER;

static const threaded_op_t *ops_for(int threads)
{
    static const OrtCustomOp *const kinds[OP_KINDS] = {&grouped_qgemm, &masked_attention, &quantize_rows, &embeddings};
    threaded_op_t *ops = threaded_ops[threads - 1];
    pthread_mutex_lock(&threaded_ops_lock);
    if (ops[0].threads == 0)
        for (int i = 0; i < OP_KINDS; i++) ops[i] = (threaded_op_t){*kinds[i], threads};
    pthread_mutex_unlock(&threaded_ops_lock);
    return ops;
}

#define DOMAIN "squeezebert.desktop"

__attribute__((visibility("default"))) OrtStatus *RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *base)
{
    api = base->GetApi(SQB_ORT_API_VERSION);
    if (!api) return NULL; /* cannot even report: ORT older than API 17 */
    const char *mismatch = abi_mismatch();
    if (mismatch) return ORT(CreateStatus, create_status_fn)(ORT_FAIL_CODE, mismatch);
    const threaded_op_t *ops = ops_for(session_threads(options));
    OrtCustomOpDomain *domain;
    OrtStatus *status = ORT(CreateCustomOpDomain, create_domain_fn)(DOMAIN, &domain);
    for (int i = 0; i < OP_KINDS && !status; i++) status = ORT(CustomOpDomain_Add, domain_add_fn)(domain, &ops[i].op);
    if (!status) status = ORT(AddCustomOpDomain, add_domain_fn)(options, domain);
    return status;
}

/* Which path kernels created now take: "avx512-bf16", "avx512-vnni", "avx2" or "portable". */
__attribute__((visibility("default"))) const char *sqb_native_path(void) { return SQB_PATH_NAMES[sqb_best_path()]; }
