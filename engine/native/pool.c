/* The kernels' threads: the thread that runs an op (the caller) and helper threads split its tasks, each thread
   taking the same part of every op.

   ONNX Runtime's thread pool, which these ops used before, hands out an op's tasks in whatever order its threads
   come for them, so the rows one core wrote in one op are read by the other core in the next. Here thread i of n
   starts at the i-th n-th of the tasks, which for these ops is the i-th n-th of the rows, in every op; a thread that
   runs out takes what is left from the other end of another's share. SqueezeBERT ran 3-5% faster so in quiet minutes
   and 7-14% in the host's busy ones, BERT 0.4-2% and 3-14% (docs/benchmarks.md, ninth round; what those minutes
   cost is not this traffic: tenth round). */
#define _GNU_SOURCE
#include "kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

#define MAX_HELPERS (SQB_MAX_THREADS - 1)
/* How long an idle helper polls for the next op before it sleeps. Waking it costs the caller a system call of about
   50 us in this VM, and the helper as long again to get going, more than a short request's whole run: 50 us of
   polling, the time between two ops, slept through the Python between requests in a burst (the Compare tab's
   runs, a batch) and made an 18-token request 0.47 -> 1.5 ms at times; 2 ms keeps it awake through those. */
#define SPIN_US 2000.0
#define MAX_TASKS 0xffffu /* a share's ends are 16 bits (below); larger ops run on the caller alone */

/* What a thread touches in an op costs a trip of its cache line between the cores whenever the other core wrote it
   last, a quarter to half a microsecond in this VM. With a state byte per task, claimed and finished by both cores
   on the same few lines, and the op's fields and states reset by the caller each time, an op of 96 tiny tasks took
   2.6 us at two threads (0.4 on one). So the op's description is one line, written once by the caller; each
   thread's share and its report of what it ran sit on lines of their own, which only their owner writes unless
   another thread steals; and nothing is reset between ops: each share and report carries its op's number. That
   op now takes 1.5 us; a layer's GEMMs and row quantisations, 0.2-0.3 us less an op (docs/benchmarks.md). */

/* The op: `number` is odd while the caller writes the fields, even once they are the op's (a sequence lock: a helper
   that read them across a change reads them again). Futex word. */
static struct {
    _Alignas(64) _Atomic uint32_t number;
    _Atomic(const sqb_task_kind_t *) kind;
    _Atomic(const void *) job;       /* the caller's: read only while a task is unclaimed or unfinished */
    _Atomic size_t tasks, scratch_bytes; /* scratch_bytes: each thread's, from kind->scratch_bytes(job) */
    _Atomic int threads;             /* the caller and the helpers that may join */
} op;

/* Thread i's share of op n's tasks, (n << 32) | (front << 16) | back: its owner takes from the front, a thread that
   has run out of its own from the back. A share holding another op's number, while op n runs, is [i-th n-th,
   (i+1)-th n-th) of its tasks, made so by whichever thread comes to it first. */
typedef struct {
    _Alignas(64) _Atomic uint64_t range;
} share_t;

/* (n << 32) | the tasks a helper ran of op n, written when it finds none left to take */
typedef struct {
    _Alignas(64) _Atomic uint64_t word;
} report_t;

static share_t shares[SQB_MAX_THREADS];
static report_t reports[MAX_HELPERS];

/* a thread's scratch memory, grown as ops need */
typedef struct {
    void *memory;
    size_t bytes;
} scratch_t;

static _Atomic int sleeping; /* a helper may be asleep and no op has woken it since */
static int started;          /* helpers running; only a caller, under caller_lock, adds to it */
static uint32_t first_seen[MAX_HELPERS]; /* the op number when each helper was made: it joins any later op */
static pthread_mutex_t caller_lock = PTHREAD_MUTEX_INITIALIZER; /* one op at a time on the helpers; others alone */
static scratch_t caller_scratch;                                /* the caller's, under caller_lock */
static _Atomic size_t helper_tasks;                             /* tasks helpers have run since the library loaded */

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void sleep_until_changed(uint32_t seen)
{
#if defined(__linux__)
    syscall(SYS_futex, &op.number, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    (void)seen;
    struct timespec t = {0, 50000};
    nanosleep(&t, NULL);
#endif
}

static void wake_sleepers(void)
{
#if defined(__linux__)
    syscall(SYS_futex, &op.number, FUTEX_WAKE_PRIVATE, MAX_HELPERS, NULL, NULL, 0);
#endif
}

/* `bytes` of scratch for one thread in `scratch`; 0 when it cannot have them (out of memory) */
static int fit_scratch(scratch_t *scratch, size_t bytes, void **memory)
{
    if (bytes > scratch->bytes) {
        free(scratch->memory);
        scratch->bytes = 0;
        scratch->memory = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!scratch->memory) return 0;
        scratch->bytes = bytes;
    }
    *memory = scratch->memory;
    return 1;
}

static size_t scratch_bytes(const sqb_task_kind_t *kind, const void *job)
{
    return kind->scratch_bytes ? kind->scratch_bytes(job) : 0;
}

/* One op as a thread read it. */
typedef struct {
    uint32_t number;
    const sqb_task_kind_t *kind;
    const void *job;
    size_t tasks, scratch_bytes;
    int threads;
} op_view_t;

static uint64_t share_of(uint32_t number, size_t front, size_t back)
{
    return ((uint64_t)number << 32) | ((uint64_t)front << 16) | (uint64_t)back;
}

/* A task of op `o` from share i, its front if `own`, else its back; 0 when it has none left (or the op is over). */
static int take(const op_view_t *o, int i, int own, size_t *task)
{
    _Atomic uint64_t *range = &shares[i].range;
    uint64_t word = atomic_load_explicit(range, memory_order_acquire);
    for (;;) {
        uint32_t number = (uint32_t)(word >> 32);
        if (number != o->number) { /* an older op's, or a later one's if this one has ended */
            if (atomic_load_explicit(&op.number, memory_order_relaxed) != o->number) return 0;
            uint64_t fresh = share_of(o->number, o->tasks * (size_t)i / (size_t)o->threads,
                                      o->tasks * (size_t)(i + 1) / (size_t)o->threads);
            if (!atomic_compare_exchange_weak(range, &word, fresh)) continue;
            word = fresh;
        }
        size_t front = (size_t)(word >> 16) & 0xffffu, back = (size_t)word & 0xffffu;
        if (front >= back) return 0;
        uint64_t rest = own ? share_of(o->number, front + 1, back) : share_of(o->number, front, back - 1);
        if (atomic_compare_exchange_weak(range, &word, rest)) {
            *task = own ? front : back - 1;
            return 1;
        }
    }
}

/* Thread `index` (the caller 0) runs its own share of the tasks in order, then what is left of the others', from the
   back of the share before its own round to its own; how many it ran. */
static size_t run_shares(const op_view_t *o, int index, void *scratch)
{
    size_t ran = 0, task;
    for (int k = 0; k < o->threads; k++) {
        int i = (index - k + o->threads) % o->threads;
        while (take(o, i, k == 0, &task)) {
            o->kind->run(o->job, task, scratch);
            ran++;
        }
    }
    return ran;
}

/* The op after `seen`, once its fields are written and read whole. */
static op_view_t read_op(uint32_t seen)
{
    op_view_t o;
    double idle_since = now_us();
    for (int polls = 1;; polls++) {
        uint32_t number = atomic_load_explicit(&op.number, memory_order_acquire);
        if (number != seen && !(number & 1)) {
            o.kind = atomic_load_explicit(&op.kind, memory_order_relaxed);
            o.job = atomic_load_explicit(&op.job, memory_order_relaxed);
            o.tasks = atomic_load_explicit(&op.tasks, memory_order_relaxed);
            o.scratch_bytes = atomic_load_explicit(&op.scratch_bytes, memory_order_relaxed);
            o.threads = atomic_load_explicit(&op.threads, memory_order_relaxed);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&op.number, memory_order_relaxed) == number) {
                o.number = number;
                return o;
            }
            continue;
        }
        PAUSE();
        if (polls % 256 == 0 && now_us() - idle_since > SPIN_US) {
            atomic_store(&sleeping, 1);
            sleep_until_changed(number);
            idle_since = now_us();
        }
    }
}

static void *helper_main(void *arg)
{
    int id = (int)(size_t)arg;
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "sqb-helper");
#endif
    scratch_t scratch = {NULL, 0};
    uint32_t seen = first_seen[id];
    for (;;) {
        op_view_t o = read_op(seen);
        seen = o.number;
        void *memory;
        if (id + 1 >= o.threads || !fit_scratch(&scratch, o.scratch_bytes, &memory)) continue;
        size_t ran = run_shares(&o, id + 1, memory);
        atomic_store_explicit(&reports[id].word, ((uint64_t)o.number << 32) | ran, memory_order_release);
        atomic_fetch_add_explicit(&helper_tasks, ran, memory_order_relaxed);
    }
    return NULL;
}

/* Under caller_lock: helpers up to `wanted`; how many run */
static int start_helpers(int wanted)
{
    while (started < wanted) {
        pthread_t thread;
        first_seen[started] = atomic_load(&op.number);
        if (pthread_create(&thread, NULL, helper_main, (void *)(size_t)started) != 0) break;
        pthread_detach(thread);
        started++;
    }
    return started;
}

/* every task on the calling thread, with scratch of its own; -1 if there is no memory for it */
static int run_alone(const sqb_task_kind_t *kind, const void *job, size_t tasks)
{
    scratch_t scratch = {NULL, 0};
    void *memory;
    if (!fit_scratch(&scratch, scratch_bytes(kind, job), &memory)) return -1;
    for (size_t t = 0; t < tasks; t++) kind->run(job, t, memory);
    free(scratch.memory);
    return 0;
}

__attribute__((visibility("default"))) int sqb_pool_run(const sqb_task_kind_t *kind, const void *job, size_t tasks,
                                                        int threads)
{
    if (threads > SQB_MAX_THREADS) threads = SQB_MAX_THREADS;
    if (threads <= 1 || tasks <= 1 || tasks > MAX_TASKS || pthread_mutex_trylock(&caller_lock) != 0)
        return run_alone(kind, job, tasks);
    int helpers = start_helpers(threads - 1); /* fewer if a thread could not be made; more may run for others */
    helpers = helpers < threads - 1 ? helpers : threads - 1;
    size_t bytes = scratch_bytes(kind, job);
    void *memory;
    if (!fit_scratch(&caller_scratch, bytes, &memory)) {
        pthread_mutex_unlock(&caller_lock);
        return run_alone(kind, job, tasks);
    }
    uint32_t number = atomic_load_explicit(&op.number, memory_order_relaxed) + 2;
    if (number == 0) { /* after 2^31 ops, a share or report left from long ago could hold a number that comes round */
        for (int i = 0; i < SQB_MAX_THREADS; i++) atomic_store(&shares[i].range, 0);
        for (int h = 0; h < MAX_HELPERS; h++) atomic_store(&reports[h].word, 0);
        number = 2;
    }
    atomic_store_explicit(&op.number, number - 1, memory_order_relaxed); /* odd: being written */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&op.kind, kind, memory_order_relaxed);
    atomic_store_explicit(&op.job, job, memory_order_relaxed);
    atomic_store_explicit(&op.tasks, tasks, memory_order_relaxed);
    atomic_store_explicit(&op.scratch_bytes, bytes, memory_order_relaxed);
    atomic_store_explicit(&op.threads, helpers + 1, memory_order_relaxed);
    atomic_store_explicit(&op.number, number, memory_order_release);
    /* Waking takes a system call, and in a VM the helper may take longer to get going than a short request's
       whole run: wake it once, not at every op until it is up. */
    if (atomic_load_explicit(&sleeping, memory_order_relaxed) && atomic_exchange(&sleeping, 0)) wake_sleepers();

    op_view_t o = {number, kind, job, tasks, bytes, helpers + 1};
    size_t finished = run_shares(&o, 0, memory);
    /* Every task is taken now; wait for the helpers' reports of the ones they ran. */
    uint64_t counted = 0; /* a bit per helper */
    for (int h = 0; finished < tasks; h = (h + 1) % helpers) {
        uint64_t report = atomic_load_explicit(&reports[h].word, memory_order_acquire);
        if (!(counted >> h & 1) && (uint32_t)(report >> 32) == number) {
            finished += (size_t)(report & 0xffffffffu);
            counted |= (uint64_t)1 << h;
        } else {
            PAUSE();
        }
    }
    pthread_mutex_unlock(&caller_lock);
    return 0;
}

/* Tasks helpers have run since the library loaded: exported for tests/test_pool.py. */
__attribute__((visibility("default"))) size_t sqb_pool_helper_tasks(void) { return atomic_load(&helper_tasks); }
