/*
 * ts_web_fan: delivery threads (see ts_web_fan.h).
 *
 * A shard is one thread with a FIFO of batches under its own mutex; the loop
 * fills the shard's current batch (cur, the loop's alone) and appends it to
 * the FIFO when it holds BATCH_ENTRIES writes or when the idle handle runs.
 * A thread makes a batch's writes, then moves it to the fan's done list and
 * wakes the loop (uv_async_send); the loop reports each entry and frees the
 * batch. pending counts the entries queued and not yet reported: the async
 * handle is referenced exactly while it is nonzero.
 *
 * With io_uring (TS_HAVE_LIBURING, and a kernel that lets this process have
 * a ring) a thread submits a batch's sends RING_ENTRIES at a time in one
 * io_uring_enter instead of one sendmsg each: the sends are the same (made
 * inline by the submitting thread, MSG_DONTWAIT: a full socket completes
 * with -EAGAIN, never waits in the kernel), the system calls fewer. A
 * thread whose ring cannot be made, or fails, writes with sendmsg.
 */
#include "ts_web_fan.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ts_err.h"

#ifdef TS_HAVE_LIBURING
#include <liburing.h>
#endif

/* Writes per batch before it is handed over: small enough that a thread
 * starts on an event's first browsers while the loop queues the others,
 * large enough that the lock and the wake-up are paid rarely. */
#define BATCH_ENTRIES 256
#define THREADS_MAX 64
/* The default's cap: past a few threads the writes contend in the kernel
 * (the listener's accept queue, the loopback device) more than they gain. */
#define DEFAULT_MAX 8
/* Sends per io_uring_enter: a batch's worth. */
#define RING_ENTRIES BATCH_ENTRIES

/* An entry's written before its thread made the write. */
#define UNSENT SIZE_MAX

struct entry {
    void *arg;
    int fd;
    unsigned n;
    size_t written; /* UNSENT until made */
    struct iovec iov[];
};

struct batch {
    struct batch *next;
    size_t len, cap, n_entries;
    unsigned char *data; /* entries, each aligned to 8 bytes */
};

struct shard {
    struct ts_web_fan *f;
    uv_thread_t tid;
    uv_mutex_t mu;
    uv_cond_t cv;                  /* queue grew, a batch is done, or quit */
    struct batch *q_head, *q_tail; /* handed over, not taken yet */
    struct batch *cur;             /* being filled by the loop */
    int busy;                      /* the thread is writing a batch */
    int quit;                      /* the thread ends once its queue is empty */
    int started;
    int ready;    /* the thread has tried its ring (f->rings counts it) */
    int has_ring; /* the thread's alone once ready */
#ifdef TS_HAVE_LIBURING
    struct io_uring ring; /* the thread's alone */
#endif
};

struct ts_web_fan {
    uv_loop_t *loop;
    ts_web_fan_done done;
    unsigned n;
    struct shard *shards;
    uv_async_t async; /* a batch was done */
    uv_idle_t idle;   /* hands over what the loop queued, once it turns */
    uv_mutex_t done_mu;
    struct batch *done_head, *done_tail;
    size_t pending;
    int idle_on, closing, handles;
    int want_ring;
    atomic_uint rings; /* threads writing through a ring */
};

static size_t entry_size(size_t n)
{
    size_t s = sizeof(struct entry) + n * sizeof(struct iovec);
    return (s + 7) & ~(size_t)7;
}

static void batch_free(struct batch *b)
{
    if (b)
        free(b->data);
    free(b);
}

/* Appends b to the list head..tail (the caller holds the list's lock). */
static void batch_append(struct batch **head, struct batch **tail, struct batch *b)
{
    b->next = NULL;
    if (*tail)
        (*tail)->next = b;
    else
        *head = b;
    *tail = b;
}

#ifdef TS_HAVE_LIBURING
static int ring_init(struct io_uring *ring)
{
    /* One thread submits and reaps; completions wait for it (the sends
     * complete inline anyway). Older kernels take fewer flags. */
    static const unsigned flags[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                     IORING_SETUP_COOP_TASKRUN, 0};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (io_uring_queue_init(RING_ENTRIES, ring, flags[i]) == 0)
            return 1;
    return 0;
}

/* Sends b's entries through sh's ring, RING_ENTRIES a system call. 0, or
 * -1 when the ring failed: entries it did not report are left UNSENT (the
 * caller sends them with sendmsg and gives the ring up). */
static int write_batch_ring(struct shard *sh, struct batch *b)
{
    struct msghdr m[RING_ENTRIES];
    for (size_t off = 0; off < b->len;) {
        unsigned k = 0;
        for (; k < RING_ENTRIES && off < b->len; k++) {
            struct entry *e = (struct entry *)(void *)(b->data + off);
            struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
            m[k] = (struct msghdr){.msg_iov = e->iov, .msg_iovlen = e->n};
            io_uring_prep_sendmsg(sqe, e->fd, &m[k], MSG_NOSIGNAL | MSG_DONTWAIT);
            io_uring_sqe_set_data(sqe, e);
            off += entry_size(e->n);
        }
        /* A socket send with MSG_DONTWAIT completes during the submit, so
         * one enter submits the lot and finds every completion. */
        unsigned seen = 0;
        int r = io_uring_submit_and_wait(&sh->ring, k);
        for (int tries = 0;; tries++) {
            unsigned head, n = 0;
            struct io_uring_cqe *cqe;
            io_uring_for_each_cqe(&sh->ring, head, cqe)
            {
                struct entry *e = io_uring_cqe_get_data(cqe);
                e->written = cqe->res > 0 ? (size_t)cqe->res : 0;
                n++;
            }
            io_uring_cq_advance(&sh->ring, n);
            if ((seen += n) == k)
                break;
            if ((r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) || tries == 100)
                return -1; /* unsubmitted entries go with the ring */
            r = io_uring_submit_and_wait(&sh->ring, 1);
        }
    }
    return 0;
}
#endif

static void write_batch(struct shard *sh, struct batch *b)
{
#ifdef TS_HAVE_LIBURING
    if (sh->has_ring) {
        if (write_batch_ring(sh, b) == 0)
            return;
        io_uring_queue_exit(&sh->ring);
        sh->has_ring = 0;
        atomic_fetch_sub(&sh->f->rings, 1);
    }
#else
    (void)sh;
#endif
    for (size_t off = 0; off < b->len;) {
        struct entry *e = (struct entry *)(void *)(b->data + off);
        off += entry_size(e->n);
        if (e->written != UNSENT)
            continue; /* the ring made it before it failed */
        struct msghdr m = {.msg_iov = e->iov, .msg_iovlen = e->n};
        ssize_t r;
        do
            r = sendmsg(e->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        e->written = r > 0 ? (size_t)r : 0;
    }
}

static void worker(void *arg)
{
    struct shard *sh = arg;
    struct ts_web_fan *f = sh->f;
    /* Signals are the loop's (uv_signal): none may interrupt a thread here. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    uv_mutex_lock(&sh->mu);
#ifdef TS_HAVE_LIBURING
    /* Made here: a single-issuer ring belongs to the thread that makes it. */
    sh->has_ring = f->want_ring && ring_init(&sh->ring);
    if (sh->has_ring)
        atomic_fetch_add(&f->rings, 1);
#endif
    sh->ready = 1;
    uv_cond_broadcast(&sh->cv);
    for (;;) {
        while (!sh->q_head && !sh->quit)
            uv_cond_wait(&sh->cv, &sh->mu);
        struct batch *b = sh->q_head;
        if (!b)
            break; /* quit, and nothing left */
        sh->q_head = b->next;
        if (!sh->q_head)
            sh->q_tail = NULL;
        sh->busy = 1;
        uv_mutex_unlock(&sh->mu);
        write_batch(sh, b);
        /* The wake-up under the lock: the loop cannot report this batch,
         * and close the async handle after the last one, before it. */
        uv_mutex_lock(&f->done_mu);
        batch_append(&f->done_head, &f->done_tail, b);
        uv_async_send(&f->async);
        uv_mutex_unlock(&f->done_mu);
        uv_mutex_lock(&sh->mu);
        sh->busy = 0;
        uv_cond_broadcast(&sh->cv); /* a waiting ts_web_fan_close */
    }
    uv_mutex_unlock(&sh->mu);
#ifdef TS_HAVE_LIBURING
    if (sh->has_ring)
        io_uring_queue_exit(&sh->ring);
#endif
}

/* Hands sh's current batch to its thread. */
static void submit(struct shard *sh)
{
    struct batch *b = sh->cur;
    if (!b)
        return;
    sh->cur = NULL;
    uv_mutex_lock(&sh->mu);
    batch_append(&sh->q_head, &sh->q_tail, b);
    uv_cond_broadcast(&sh->cv);
    uv_mutex_unlock(&sh->mu);
}

static void submit_all(struct ts_web_fan *f)
{
    for (unsigned i = 0; i < f->n; i++)
        submit(&f->shards[i]);
}

static void on_idle(uv_idle_t *h)
{
    struct ts_web_fan *f = h->data;
    submit_all(f);
    uv_idle_stop(h);
    f->idle_on = 0;
}

static void close_handles(struct ts_web_fan *f)
{
    if (f->handles != 2)
        return;
    f->handles = 0;
    uv_close((uv_handle_t *)&f->async, NULL);
    uv_close((uv_handle_t *)&f->idle, NULL);
}

static void on_done(uv_async_t *h)
{
    struct ts_web_fan *f = h->data;
    uv_mutex_lock(&f->done_mu);
    struct batch *b = f->done_head;
    f->done_head = f->done_tail = NULL;
    uv_mutex_unlock(&f->done_mu);
    while (b) {
        struct batch *next = b->next;
        for (size_t off = 0; off < b->len;) {
            struct entry *e = (struct entry *)(void *)(b->data + off);
            off += entry_size(e->n);
            f->done(e->arg, e->iov, e->n, e->written);
        }
        f->pending -= b->n_entries;
        batch_free(b);
        b = next;
    }
    if (!f->pending) {
        uv_unref((uv_handle_t *)&f->async);
        if (f->closing)
            close_handles(f);
    }
}

static void stop_threads(struct ts_web_fan *f)
{
    for (unsigned i = 0; i < f->n; i++) {
        struct shard *sh = &f->shards[i];
        if (!sh->started)
            continue;
        uv_mutex_lock(&sh->mu);
        sh->quit = 1;
        uv_cond_broadcast(&sh->cv);
        uv_mutex_unlock(&sh->mu);
        uv_thread_join(&sh->tid);
        sh->started = 0;
    }
}

static void shards_free(struct ts_web_fan *f)
{
    for (unsigned i = 0; i < f->n; i++) {
        struct shard *sh = &f->shards[i];
        for (struct batch *b = sh->q_head, *next; b; b = next) {
            next = b->next;
            batch_free(b);
        }
        batch_free(sh->cur);
        uv_cond_destroy(&sh->cv);
        uv_mutex_destroy(&sh->mu);
    }
    free(f->shards);
}

int ts_web_fan_new(uv_loop_t *loop, unsigned threads, int batched, ts_web_fan_done done,
                   struct ts_web_fan **out)
{
    *out = NULL;
    if (!threads)
        threads = 1;
    if (threads > THREADS_MAX)
        threads = THREADS_MAX;
    struct ts_web_fan *f = calloc(1, sizeof(*f));
    if (!f || !(f->shards = calloc(threads, sizeof(*f->shards))) || uv_mutex_init(&f->done_mu)) {
        if (f)
            free(f->shards);
        free(f);
        return TS_E_NOMEM;
    }
    f->loop = loop;
    f->done = done;
    f->want_ring = batched;
    for (; f->n < threads; f->n++) {
        struct shard *sh = &f->shards[f->n];
        sh->f = f;
        if (uv_mutex_init(&sh->mu))
            break;
        if (uv_cond_init(&sh->cv)) {
            uv_mutex_destroy(&sh->mu);
            break;
        }
    }
    int rc = f->n < threads ? TS_E_NOMEM : TS_OK;
    /* The threads before the loop's handles, so that a failure leaves no
     * handle to close: a thread touches the async handle only after a
     * batch, and there is none before this returns. */
    for (unsigned i = 0; i < f->n && rc == TS_OK; i++) {
        if (uv_thread_create(&f->shards[i].tid, worker, &f->shards[i]) != 0)
            rc = TS_E_NOMEM;
        else
            f->shards[i].started = 1;
    }
    if (rc == TS_OK && uv_async_init(loop, &f->async, on_done) != 0)
        rc = TS_E_NOMEM;
    /* Each thread has tried its ring before this returns, so that
     * ts_web_fan_batched() tells the truth from the start. */
    for (unsigned i = 0; i < f->n && rc == TS_OK; i++) {
        struct shard *sh = &f->shards[i];
        uv_mutex_lock(&sh->mu);
        while (!sh->ready)
            uv_cond_wait(&sh->cv, &sh->mu);
        uv_mutex_unlock(&sh->mu);
    }
    if (rc != TS_OK) {
        ts_web_fan_free(f);
        return rc;
    }
    f->async.data = f;
    uv_unref((uv_handle_t *)&f->async);
    uv_idle_init(loop, &f->idle);
    f->idle.data = f;
    f->handles = 2;
    *out = f;
    return TS_OK;
}

unsigned ts_web_fan_default_threads(void)
{
    unsigned n = uv_available_parallelism();
    return n < 1 ? 1 : n > DEFAULT_MAX ? DEFAULT_MAX : n;
}

unsigned ts_web_fan_threads(const struct ts_web_fan *f)
{
    return f ? f->n : 0;
}

unsigned ts_web_fan_batched(const struct ts_web_fan *f)
{
    return f ? atomic_load(&f->rings) : 0;
}

int ts_web_fan_write(struct ts_web_fan *f, unsigned shard, int fd, const struct iovec *iov,
                     size_t n, void *arg)
{
    if (f->closing)
        return TS_E_CLOSED;
    if (!n || n > IOV_MAX)
        return TS_E_INVALID_ARGUMENT;
    struct shard *sh = &f->shards[shard % f->n];
    size_t need = entry_size(n);
    struct batch *b = sh->cur;
    if (!b) {
        if (!(b = calloc(1, sizeof(*b))))
            return TS_E_NOMEM;
        sh->cur = b;
    }
    if (!b->data || b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : (size_t)BATCH_ENTRIES * entry_size(1);
        while (cap < b->len + need)
            cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d)
            return TS_E_NOMEM; /* an empty batch stays cur, reused */
        b->data = d;
        b->cap = cap;
    }
    struct entry *e = (struct entry *)(void *)(b->data + b->len);
    e->arg = arg;
    e->fd = fd;
    e->n = (unsigned)n;
    e->written = UNSENT;
    memcpy(e->iov, iov, n * sizeof(*iov));
    b->len += need;
    b->n_entries++;
    if (!f->pending++)
        uv_ref((uv_handle_t *)&f->async);
    if (b->n_entries >= BATCH_ENTRIES)
        submit(sh);
    else if (!f->idle_on) {
        f->idle_on = 1;
        uv_idle_start(&f->idle, on_idle);
    }
    return TS_OK;
}

void ts_web_fan_close(struct ts_web_fan *f)
{
    if (!f || f->closing)
        return;
    f->closing = 1;
    submit_all(f);
    for (unsigned i = 0; i < f->n; i++) {
        struct shard *sh = &f->shards[i];
        uv_mutex_lock(&sh->mu);
        while (sh->q_head || sh->busy)
            uv_cond_wait(&sh->cv, &sh->mu);
        uv_mutex_unlock(&sh->mu);
    }
    if (f->idle_on) {
        uv_idle_stop(&f->idle);
        f->idle_on = 0;
    }
    /* The async handle stays open for the done callbacks owed. */
    if (!f->pending)
        close_handles(f);
}

void ts_web_fan_free(struct ts_web_fan *f)
{
    if (!f)
        return;
    stop_threads(f);
    uv_mutex_lock(&f->done_mu);
    for (struct batch *b = f->done_head, *next; b; b = next) {
        next = b->next;
        batch_free(b);
    }
    uv_mutex_unlock(&f->done_mu);
    shards_free(f);
    uv_mutex_destroy(&f->done_mu);
    free(f);
}
