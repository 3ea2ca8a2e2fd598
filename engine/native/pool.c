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
#define SLOTS (MAX_HELPERS + 2) /* the op being run, and one per helper that may still be looking at an older one */
/* How long an idle helper polls for the next op before it sleeps. Waking it costs the caller a system call of about
   50 us in this VM, and the helper as long again to get going, more than a short request's whole run: 50 us of
   polling, the time between two ops, slept through the Python between requests in a burst (the Compare tab's
   runs, a batch) and made an 18-token request 0.47 -> 1.5 ms at times; 2 ms keeps it awake through those. */
#define SPIN_US 2000.0

enum { FREE, TAKEN, DONE }; /* a task's state */

typedef struct {
    const sqb_task_kind_t *kind;
    const void *job;              /* the caller's: read only while a task is unfinished (the caller waits for all) */
    size_t tasks, scratch_bytes;  /* scratch_bytes: each thread's, from kind->scratch_bytes(job) */
    int helpers;                  /* how many helpers may join */
    _Atomic unsigned char *state; /* one per task */
    size_t capacity;
} slot_t;

/* a thread's scratch memory, grown as ops need */
typedef struct {
    void *memory;
    size_t bytes;
} scratch_t;

static slot_t slots[SLOTS];
static _Atomic unsigned published = 0;       /* (generation << 8) | slot + 1; 0 before the first op. Futex word. */
static _Atomic int helper_slot[MAX_HELPERS]; /* the slot each helper is in, or -1 */
static unsigned first_seen[MAX_HELPERS];     /* `published` when each helper was made: it joins any later op */
static _Atomic int sleeping; /* a helper may be asleep and no op has woken it since */
static int started;                          /* helpers running; only a caller, under caller_lock, adds to it */
static pthread_mutex_t caller_lock = PTHREAD_MUTEX_INITIALIZER; /* one op at a time on the helpers; others alone */
static scratch_t caller_scratch;                                /* the caller's, under caller_lock */
static _Atomic size_t helper_tasks;                             /* tasks helpers have run since the library loaded */

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void sleep_until_changed(unsigned seen)
{
#if defined(__linux__)
    syscall(SYS_futex, &published, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    (void)seen;
    struct timespec t = {0, 50000};
    nanosleep(&t, NULL);
#endif
}

static void wake_sleepers(void)
{
#if defined(__linux__)
    syscall(SYS_futex, &published, FUTEX_WAKE_PRIVATE, MAX_HELPERS, NULL, NULL, 0);
#endif
}

static size_t scratch_bytes(const sqb_task_kind_t *kind, const void *job)
{
    return kind->scratch_bytes ? kind->scratch_bytes(job) : 0;
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

/* The i-th task thread `index` of `threads` (the caller 0) tries: its own share of the tasks in order, then the
   others' from the far end back. */
static size_t nth_task(size_t i, size_t tasks, int index, int threads)
{
    size_t start = tasks * (size_t)index / (size_t)threads, end = tasks * (size_t)(index + 1) / (size_t)threads;
    return i < end - start ? start + i : (start + tasks - 1 - (i - (end - start))) % tasks;
}

/* Run every task still free, in thread `index`'s order; how many it ran. */
static size_t run_share(slot_t *slot, int index, void *scratch)
{
    size_t ran = 0;
    for (size_t i = 0; i < slot->tasks; i++) {
        size_t t = nth_task(i, slot->tasks, index, slot->helpers + 1);
        unsigned char expected = FREE;
        if (atomic_load_explicit(&slot->state[t], memory_order_relaxed) != FREE ||
            !atomic_compare_exchange_strong(&slot->state[t], &expected, TAKEN))
            continue;
        slot->kind->run(slot->job, t, scratch);
        atomic_store(&slot->state[t], DONE);
        ran++;
    }
    return ran;
}

static void *helper_main(void *arg)
{
    int id = (int)(size_t)arg;
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "sqb-helper");
#endif
    scratch_t scratch = {NULL, 0};
    unsigned seen = first_seen[id];
    for (;;) {
        double idle_since = now_us();
        unsigned now;
        for (int polls = 1; (now = atomic_load(&published)) == seen; polls++) {
            PAUSE();
            if (polls % 256 == 0 && now_us() - idle_since > SPIN_US) {
                atomic_store(&sleeping, 1);
                sleep_until_changed(seen);
                idle_since = now_us();
            }
        }
        seen = now;
        int s = (int)(now & 0xff) - 1;
        slot_t *slot = &slots[s];
        atomic_store(&helper_slot[id], s);
        void *memory;
        /* the caller may have moved on and be refilling slot s already if it did not see us in it: check */
        if (atomic_load(&published) == now && id < slot->helpers && fit_scratch(&scratch, slot->scratch_bytes, &memory))
            atomic_fetch_add_explicit(&helper_tasks, run_share(slot, id + 1, memory), memory_order_relaxed);
        atomic_store(&helper_slot[id], -1);
    }
    return NULL;
}

/* Under caller_lock: helpers up to `wanted`; how many run */
static int start_helpers(int wanted)
{
    while (started < wanted) {
        pthread_t thread;
        atomic_store(&helper_slot[started], -1);
        first_seen[started] = atomic_load(&published);
        if (pthread_create(&thread, NULL, helper_main, (void *)(size_t)started) != 0) break;
        pthread_detach(thread);
        started++;
    }
    return started;
}

static int slot_in_use(int s, int current)
{
    if (s == current) return 1;
    for (int h = 0; h < started; h++)
        if (atomic_load(&helper_slot[h]) == s) return 1;
    return 0;
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
    if (threads <= 1 || tasks <= 1 || pthread_mutex_trylock(&caller_lock) != 0) return run_alone(kind, job, tasks);
    int helpers = start_helpers(threads - 1); /* fewer if a thread could not be made; more may run for others */
    helpers = helpers < threads - 1 ? helpers : threads - 1;
    unsigned last = atomic_load(&published);
    int s = 0;
    while (slot_in_use(s, (int)(last & 0xff) - 1)) s++;
    slot_t *slot = &slots[s];
    void *memory;
    if (tasks > slot->capacity) {
        free((void *)slot->state);
        slot->state = malloc(tasks);
        slot->capacity = slot->state ? tasks : 0;
    }
    size_t bytes = scratch_bytes(kind, job);
    if (!slot->capacity || !fit_scratch(&caller_scratch, bytes, &memory)) {
        pthread_mutex_unlock(&caller_lock);
        return run_alone(kind, job, tasks);
    }
    slot->kind = kind;
    slot->job = job;
    slot->tasks = tasks;
    slot->scratch_bytes = bytes;
    slot->helpers = helpers;
    for (size_t t = 0; t < tasks; t++) atomic_init(&slot->state[t], FREE);
    atomic_store(&published, (((last >> 8) + 1) << 8) | (unsigned)(s + 1));
    /* Waking takes a system call, and in a VM the helper may take longer to get going than a short request's
       whole run: wake it once, not at every op until it is up. */
    if (atomic_load_explicit(&sleeping, memory_order_relaxed) && atomic_exchange(&sleeping, 0)) wake_sleepers();

    run_share(slot, 0, memory);
    for (size_t t = 0; t < tasks; t++) /* the helpers' last tasks */
        while (atomic_load(&slot->state[t]) != DONE) PAUSE();
    pthread_mutex_unlock(&caller_lock);
    return 0;
}

/* Tasks helpers have run since the library loaded: exported for tests/test_pool.py. */
__attribute__((visibility("default"))) size_t sqb_pool_helper_tasks(void) { return atomic_load(&helper_tasks); }
