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
 */
#include "ts_web_fan.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ts_err.h"

/* Writes per batch before it is handed over: small enough that a thread
 * starts on an event's first browsers while the loop queues the others,
 * large enough that the lock and the wake-up are paid rarely. */
#define BATCH_ENTRIES 256
#define THREADS_MAX 64
/* The default's cap: past a few threads the writes contend in the kernel
 * (the listener's accept queue, the loopback device) more than they gain. */
#define DEFAULT_MAX 8

struct entry {
    void *arg;
    int fd;
    unsigned n;
    size_t written;
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

static void write_batch(struct batch *b)
{
    for (size_t off = 0; off < b->len;) {
        struct entry *e = (struct entry *)(void *)(b->data + off);
        struct msghdr m = {.msg_iov = e->iov, .msg_iovlen = e->n};
        ssize_t r;
        do
            r = sendmsg(e->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        e->written = r > 0 ? (size_t)r : 0;
        off += entry_size(e->n);
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
        write_batch(b);
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

int ts_web_fan_new(uv_loop_t *loop, unsigned threads, ts_web_fan_done done, struct ts_web_fan **out)
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
    e->written = 0;
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
