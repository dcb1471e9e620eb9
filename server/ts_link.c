/*
 * ts_link: client connections on I/O threads, driven from the main loop
 * (see ts_link.h for the contract).
 *
 * Why: under fan-out the main loop's time went to TLS and write(2), about
 * 9 us per subscriber per event, so a post's commit (raft's disk write
 * completes on the main loop) waited behind the previous post's fan-out.
 * With I/O threads the main loop only encodes (once per event, in the hub)
 * and copies the bytes into one message per subscriber. Under ingest the
 * main loop's CPU per post paces libraft's one-write-at-a-time cycle, so
 * the stateless part of a request goes here too: an I/O thread runs a
 * Post's field checks (ts_valid_post) and flags the frame valid
 * (ts_link_frame_valid); the main loop checks only what is not flagged.
 *
 * Threads and ownership:
 *   - the main loop owns the pool, every link's main-side fields and calls
 *     every user callback; an I/O thread owns its uv loop, its handles and
 *     the ts_conn (and so the SSL object) of each link it carries. A uv
 *     handle or an SSL object is touched by one thread only; the SSL_CTX is
 *     shared read-only (its session cache and ticket keys are OpenSSL's,
 *     locked internally; our callbacks on it keep no state);
 *   - the threads talk through mutex-guarded FIFOs of messages, each with
 *     the consumer's uv_async_t: per I/O thread an urgent queue (opening,
 *     answers, pause/resume and other control) and a bulk one (pushes,
 *     close, free, stop), and one for the main loop's events (open, frame,
 *     error, drain, closed). uv_async_send is the only uv call made across
 *     threads, and only when a queue was empty (the consumer takes the
 *     whole list at once, so a non-empty queue already has a wake-up
 *     coming). An I/O thread serves bulk in slices between polls of its
 *     sockets, urgent before each slice (see io_wakeup);
 *   - a link's struct is shared: main frees nothing. After on_close (event
 *     CLOSED) main queues FREE to the link's thread, behind every command
 *     that names it, and that thread frees it. The thread posts nothing
 *     about a link after CLOSED.
 *
 * Bounds (memory per connection stays bounded):
 *   - output: main counts what it queued and the thread has not yet handed
 *     to TLS (in_transit) and the thread publishes its ts_conn's queue
 *     (conn_queued) after every send and drain; senders wait for on_drain
 *     as with a ts_conn (the hub writes only to an empty sink), and past
 *     TS_CONN_QUEUE_HARD_MAX main closes the link;
 *   - input: frames decoded and not yet handled by main are counted in
 *     bytes (inbound, with FRAME_COST each for their decoded structs); past
 *     INBOUND_MAX the thread stops reading the socket until main has caught
 *     up, so a client that floods requests while the main loop is busy
 *     cannot grow the event queue;
 *   - pausing keeps ts_conn's promise that no frame is delivered while
 *     paused: main holds a paused link's frame events (still counted in
 *     inbound, so its thread stops reading too) and hands them on once
 *     resumed, from main_wakeup (the ready list). Without that, the frames
 *     already decoded (thousands of small Gets) would each be answered
 *     after the session paused, into memory;
 *   - so a queue holds, per link, at most one push batch, the answers
 *     below the session's output budget, one input window and a few
 *     control messages: bounded per link, and the links by the
 *     per-address and file-descriptor limits.
 *
 * Answers (ts_link_send_frame) are coalesced per link and loop turn: a
 * PostBatch applies hundreds of posts of one connection in one callback,
 * and one write and one TLS record per answer made the answer the largest
 * part of a post after the digests (1 write(2) per post). They are packed
 * into the link's `answers` message (up to ANSWER_MAX) and handed on as
 * one CMD_SEND, so one ts_conn_send, TLS records of up to 16 KiB and one
 * write: when the loop turn ends (the pool's uv_prepare, which runs before
 * the loop next polls, so no answer waits on a poll), when the message is
 * full, and before a push or a close of that link (a push never overtakes
 * an answer queued before it). Inline links take the same path, to their
 * ts_conn. The bytes count as queued from the moment they are packed
 * (in_transit, or for an inline link in ts_link_queued), so the hard cap
 * and on_drain see them as before.
 *
 * Accepting: main accepts on its listener (one accept path, one place for
 * the connection limits), hands a dup of the socket to the least loaded
 * thread and closes its own handle; the thread adopts the descriptor
 * (ts_conn_adopt). Per-thread SO_REUSEPORT listeners would save the dup but
 * let the kernel hash connections unevenly over few threads and give up
 * the one listener the rest of the server reports and stops.
 *
 * Stopping: ts_link_pool_close waits until every link delivered on_close,
 * then queues STOP to every thread (behind their FREEs), joins them (each
 * only has to close its async handle), and closes the main async handle,
 * whose callback frees the pool.
 */
#include "ts_link.h"

#include "ts_addr.h"
#include "ts_conn.h"
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_lattrace.h"
#include "ts_log.h"
#include "ts_valid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Decoded frames waiting for the main loop (or held there while the link
 * is paused), per link, before its thread stops reading that socket. A
 * frame counts its wire size plus FRAME_COST, about what its decoded
 * structs and message take: 40,000 pipelined 25-byte Gets are 1 MB on the
 * wire but ten times that decoded. */
#define INBOUND_MAX (256u << 10)
#define FRAME_COST 256
/* Bulk commands (mostly one subscriber's share of an event, ~6 us each)
 * served between two polls of an I/O thread's sockets. */
#define BULK_SLICE 64
/* Pushes are copied into messages of at most this (ts_conn's own slice). */
#define SEND_PIECE (64u << 10)
/* One loop turn's answers of a link go out in messages of at most this
 * (four full TLS records, one write); the first takes ANSWER_MIN and
 * doubles as answers come. A larger answer goes alone, as before. */
#define ANSWER_MAX SEND_PIECE
#define ANSWER_MIN 1024u

enum msg_type {
    /* main -> I/O thread */
    CMD_OPEN,
    CMD_SEND,
    CMD_MAX_FRAME,
    CMD_PAUSE,
    CMD_RESUME,
    CMD_UNTHROTTLE,
    CMD_ROLE,
    CMD_CLOSE,
    CMD_FREE,
    CMD_STOP,
    /* I/O thread -> main */
    EV_OPEN,
    EV_FRAME,
    EV_ERROR,
    EV_DRAIN,
    EV_CLOSED,
};

struct msg {
    struct msg *next;
    enum msg_type type;
    struct ts_link *link;
    union {
        int err;                  /* CMD_CLOSE, EV_ERROR, EV_CLOSED */
        uv_os_sock_t fd;          /* CMD_OPEN */
        uint32_t max_frame;       /* CMD_MAX_FRAME */
        const char *role;         /* CMD_ROLE: a static string */
        int resumed;              /* EV_OPEN */
        struct {                  /* EV_FRAME */
            Threadsync__Frame *f; /* owned by the message until handled */
            const char *bad;      /* a descriptor's field name: static */
            int status;
            int valid; /* a Post that passed ts_valid_post here */
            size_t size;
        } frame;
    } u;
    size_t len; /* CMD_SEND: bytes in data */
    uint8_t data[];
};

struct queue {
    uv_mutex_t mu;
    struct msg *head, *tail;
    uv_async_t *async; /* the consumer's wake-up */
};

struct io {
    struct ts_link_pool *pool;
    uv_loop_t loop;
    uv_async_t async;
    struct queue urgent;   /* answers and control: served first */
    struct queue bulk;     /* pushes (subscriptions' output), close, free, stop */
    struct msg *bulk_rest; /* taken from bulk, not yet served */
    uv_thread_t thread;
    size_t n_links; /* main's count, for placing new links */
    int started;
};

struct ts_link_pool {
    uv_loop_t *loop;
    uv_async_t async;
    uv_prepare_t prepare;  /* hands on the loop turn's answers; active while any */
    struct queue q;        /* events for the main loop; unused without threads */
    struct ts_link *ready; /* resumed links with held events, main's */
    struct ts_link *flush; /* links with answers not yet handed on, main's */
    struct io *io;
    unsigned n_io;
    size_t n_links;
    int closing, stopped;
    int handles; /* main-loop handles not yet closed once stopped */
};

struct ts_link {
    struct ts_link_pool *pool;
    struct io *io; /* NULL: conn lives on the main loop */
    struct ts_link_cbs cbs;
    void *data;
    /* Without threads: main's. With: the I/O thread's (NULL before open and
     * after on_close). */
    struct ts_conn *conn;
    /* Main's (threaded links): */
    SSL_CTX *ctx;
    uint32_t max_frame; /* initial limit, read by the thread at open */
    /* Flags as bytes, never bitfields: a byte is a memory location of its
     * own (C11 3.14), so main's and the thread's do not race. */
    uint8_t resumed, closing;
    /* Paused by the user: events of frames (and what follows them) wait in
     * held until resumed, then go out from main_wakeup (ready list). */
    uint8_t paused, ready;
    uint8_t frame_valid; /* main's: ts_link_frame_valid() inside on_frame */
    /* The thread's: */
    uint8_t paused_main, throttled;
    uint64_t id;
    const char *role;
    /* "ip:port", a string of its length (NULL: unknown), written before
     * the thread hears of the link; its ts_conn borrows it for its logs
     * (the link outlives its conn). */
    char *peer;
    struct msg *held_head, *held_tail;
    struct ts_link *ready_next;
    /* This loop turn's answers (a CMD_SEND with room for answers_cap bytes),
     * and the link's place in the pool's flush list while there are any;
     * both links' kinds. */
    struct msg *answers;
    size_t answers_cap;
    struct ts_link *flush_prev, *flush_next;
    size_t frame_bytes; /* wire size of the frame on_frame is handed */
    /* Shared: */
    _Atomic size_t in_transit;  /* plaintext main queued, not yet given to TLS */
    _Atomic size_t conn_queued; /* the thread's ts_conn_queued, last published */
    _Atomic size_t inbound;     /* decoded frames not yet handled by main */
};

static void link_free(struct ts_link *l)
{
    free(l->peer);
    free(l);
}

/* ---- queues ---- */

static int queue_init(struct queue *q, uv_async_t *async)
{
    if (uv_mutex_init(&q->mu) != 0)
        return TS_E_NOMEM;
    q->async = async;
    q->head = q->tail = NULL;
    return TS_OK;
}

static void queue_push(struct queue *q, struct msg *m)
{
    m->next = NULL;
    uv_mutex_lock(&q->mu);
    int was_empty = q->head == NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    uv_mutex_unlock(&q->mu);
    if (was_empty)
        uv_async_send(q->async);
}

static struct msg *queue_take(struct queue *q)
{
    uv_mutex_lock(&q->mu);
    struct msg *m = q->head;
    q->head = q->tail = NULL;
    uv_mutex_unlock(&q->mu);
    return m;
}

static int queue_empty(struct queue *q)
{
    uv_mutex_lock(&q->mu);
    int empty = q->head == NULL;
    uv_mutex_unlock(&q->mu);
    return empty;
}

static struct msg *msg_new(enum msg_type type, struct ts_link *l, size_t len)
{
    struct msg *m = malloc(sizeof(*m) + len);
    if (m) {
        m->type = type;
        m->link = l;
        m->len = len;
    }
    return m;
}

/* Control messages are small and rare; without memory for one the
 * process is failing anyway, and a lost control message would leave a
 * link half-closed forever. */
static struct msg *msg_must(enum msg_type type, struct ts_link *l)
{
    struct msg *m = msg_new(type, l, 0);
    if (!m) {
        TS_ERROR("event=link_nomem action=abort");
        abort();
    }
    return m;
}

/* To l's thread: bulk for output that may wait (pushes) and for what must
 * follow it (close, free), urgent for the rest. */
static void post_to(struct ts_link *l, struct msg *m, int bulk)
{
    queue_push(bulk ? &l->io->bulk : &l->io->urgent, m);
}

static void post(struct ts_link *l, struct msg *m)
{
    post_to(l, m, m->type == CMD_CLOSE || m->type == CMD_FREE);
}

/* ---- the I/O threads' side ---- */

static void apply_pause(struct ts_link *l)
{
    if (!l->conn)
        return;
    if (l->paused_main || l->throttled)
        ts_conn_pause_reading(l->conn);
    else
        ts_conn_resume_reading(l->conn);
}

static void to_main(struct ts_link *l, struct msg *m)
{
    queue_push(&l->pool->q, m);
}

static void io_on_open(struct ts_conn *c)
{
    struct ts_link *l = ts_conn_data(c);
    struct msg *m = msg_must(EV_OPEN, l);
    m->u.resumed = ts_conn_resumed(c);
    to_main(l, m);
}

static void io_on_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    struct ts_link *l = ts_conn_data(c);
    if (ts_lattrace_on && f && f->msg_case == THREADSYNC__FRAME__MSG_POST)
        ts_lattrace_decoded(ts_lattrace_stamp(f->post->body));
    struct msg *m = msg_new(EV_FRAME, l, 0);
    if (!m) {
        ts_frame_free(f);
        ts_conn_close(c, TS_E_NOMEM);
        return;
    }
    size_t size = ts_conn_frame_bytes(c) + FRAME_COST;
    m->u.frame.f = f;
    m->u.frame.bad = bad;
    m->u.frame.status = status;
    /* A Post's checks are stateless (ts_valid.h), so they run here, off
     * the main loop, which skips them for a Post flagged valid. One that
     * fails goes unflagged and is checked again there, where its refusal
     * is worded as on a link without I/O threads: rare (a client's bug),
     * and no verdict text has to cross threads. */
    struct ts_valid_err verr;
    m->u.frame.valid = status == TS_OK && f && f->msg_case == THREADSYNC__FRAME__MSG_POST &&
                       ts_valid_post(f->post, &verr) == TS_OK;
    m->u.frame.size = size;
    if (atomic_fetch_add(&l->inbound, size) + size >= INBOUND_MAX && !l->throttled) {
        l->throttled = 1;
        apply_pause(l);
    }
    to_main(l, m);
}

static void io_on_error(struct ts_conn *c, int err)
{
    struct ts_link *l = ts_conn_data(c);
    struct msg *m = msg_must(EV_ERROR, l);
    m->u.err = err;
    to_main(l, m);
}

static void io_on_drain(struct ts_conn *c)
{
    struct ts_link *l = ts_conn_data(c);
    atomic_store(&l->conn_queued, ts_conn_queued(c));
    to_main(l, msg_must(EV_DRAIN, l));
}

static void io_on_close(struct ts_conn *c, int err)
{
    struct ts_link *l = ts_conn_data(c);
    l->conn = NULL;
    atomic_store(&l->conn_queued, 0);
    struct msg *m = msg_must(EV_CLOSED, l);
    m->u.err = err;
    to_main(l, m);
}

static const struct ts_conn_cbs io_cbs = {
    .on_open = io_on_open,
    .on_frame = io_on_frame,
    .on_error = io_on_error,
    .on_drain = io_on_drain,
    .on_close = io_on_close,
};

static void io_open(struct io *io, struct ts_link *l, uv_os_sock_t fd)
{
    int rc =
        ts_conn_adopt(&io->loop, fd, l->id, l->peer, l->ctx, &io_cbs, l, l->max_frame, &l->conn);
    if (rc == TS_OK)
        return;
    /* No ts_conn, so no on_close of its own: tell main as one would. */
    struct msg *m = msg_must(EV_CLOSED, l);
    m->u.err = rc;
    to_main(l, m);
}

static void io_send(struct ts_link *l, struct msg *m)
{
    if (l->conn) {
        ts_conn_send(l->conn, m->data, m->len);
        /* A failed send closes the conn; on_close still comes. */
        atomic_store(&l->conn_queued, l->conn ? ts_conn_queued(l->conn) : 0);
    }
    /* After conn_queued: main reads in_transit first (see ts_link_queued). */
    atomic_fetch_sub(&l->in_transit, m->len);
}

static void io_command(struct io *io, struct msg *m)
{
    struct ts_link *l = m->link;
    switch (m->type) {
    case CMD_OPEN:
        io_open(io, l, m->u.fd);
        break;
    case CMD_SEND:
        io_send(l, m);
        break;
    case CMD_MAX_FRAME:
        if (l->conn)
            ts_conn_set_max_frame(l->conn, m->u.max_frame);
        break;
    case CMD_PAUSE:
    case CMD_RESUME:
        l->paused_main = m->type == CMD_PAUSE;
        apply_pause(l);
        break;
    case CMD_UNTHROTTLE:
        if (l->throttled && atomic_load(&l->inbound) < INBOUND_MAX) {
            l->throttled = 0;
            apply_pause(l);
        }
        break;
    case CMD_ROLE:
        if (l->conn)
            ts_conn_set_role(l->conn, m->u.role);
        break;
    case CMD_CLOSE:
        if (l->conn)
            ts_conn_close(l->conn, m->u.err);
        break;
    case CMD_FREE:
        link_free(l);
        break;
    case CMD_STOP:
        uv_close((uv_handle_t *)&io->async, NULL);
        break;
    default:
        break;
    }
    free(m);
}

static void serve_all(struct io *io, struct msg *m)
{
    while (m) {
        struct msg *next = m->next;
        io_command(io, m);
        m = next;
    }
}

/* Urgent commands first, every time; then at most BULK_SLICE bulk ones, and
 * if more are left, back after the loop has polled the sockets. So a
 * post arriving during a fan-out is read (and its answer written) within a
 * slice, not after the whole fan-out. A bulk command is served only after
 * every urgent one queued before it (bulk is taken before urgent is
 * drained), so a link's open precedes its output and its free follows
 * everything about it. */
static void io_wakeup(uv_async_t *a)
{
    struct io *io = a->data;
    if (!io->bulk_rest)
        io->bulk_rest = queue_take(&io->bulk);
    serve_all(io, queue_take(&io->urgent));
    for (int n = 0; io->bulk_rest && n < BULK_SLICE; n++) {
        struct msg *m = io->bulk_rest;
        io->bulk_rest = m->next;
        io_command(io, m);
    }
    /* The bulk queue was not taken while a rest was left, and its pushes
     * since then found it non-empty and sent no wake-up: come back for
     * them too. */
    if (io->bulk_rest || !queue_empty(&io->bulk))
        uv_async_send(&io->async);
}

static void io_main(void *arg)
{
    struct io *io = arg;
    uv_run(&io->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&io->loop) != 0)
        TS_WARN("event=io_loop_not_closed");
}

/* ---- the main loop's side ---- */

static void pool_free(uv_handle_t *h)
{
    struct ts_link_pool *p = h->data;
    if (--p->handles > 0)
        return;
    free(p->io);
    free(p);
}

/* Every link is gone: end the threads. */
static void pool_stop(struct ts_link_pool *p)
{
    if (p->stopped)
        return;
    p->stopped = 1;
    for (unsigned i = 0; i < p->n_io; i++) {
        struct io *io = &p->io[i];
        if (!io->started)
            continue;
        queue_push(&io->bulk, msg_must(CMD_STOP, NULL));
        uv_thread_join(&io->thread);
        uv_mutex_destroy(&io->urgent.mu);
        uv_mutex_destroy(&io->bulk.mu);
    }
    p->handles = 1;
    uv_close((uv_handle_t *)&p->prepare, pool_free);
    if (!p->n_io)
        return;
    uv_mutex_destroy(&p->q.mu);
    p->handles++;
    uv_close((uv_handle_t *)&p->async, pool_free);
}

/* A link of p (carried by io, NULL without threads) is gone. */
static void link_gone(struct ts_link_pool *p, struct io *io)
{
    p->n_links--;
    if (io)
        io->n_links--;
    if (p->closing && p->n_links == 0)
        pool_stop(p);
}

/* ---- answers (both kinds of links) ---- */

static void flush_unlist(struct ts_link *l)
{
    if (l->flush_prev)
        l->flush_prev->flush_next = l->flush_next;
    else
        l->pool->flush = l->flush_next;
    if (l->flush_next)
        l->flush_next->flush_prev = l->flush_prev;
    l->flush_prev = l->flush_next = NULL;
}

/* The loop turn's answers of l go on: to its thread, ahead of anything
 * queued after this, or for an inline link into its ts_conn (which closes
 * itself on failure; its on_close follows). */
static void answers_flush(struct ts_link *l)
{
    struct msg *m = l->answers;
    if (!m)
        return;
    l->answers = NULL;
    l->answers_cap = 0;
    flush_unlist(l);
    if (l->io) {
        post_to(l, m, 0);
        return;
    }
    ts_conn_send(l->conn, m->data, m->len);
    free(m);
}

/* l is gone: its answers with it. */
static void answers_drop(struct ts_link *l)
{
    if (!l->answers)
        return;
    flush_unlist(l);
    free(l->answers);
    l->answers = NULL;
    l->answers_cap = 0;
}

static void on_prepare(uv_prepare_t *h)
{
    struct ts_link_pool *p = h->data;
    while (p->flush)
        answers_flush(p->flush);
    uv_prepare_stop(h);
}

/* l's answers with room for n more bytes (n <= ANSWER_MAX - what they
 * hold); NULL when out of memory (they stay as they were). */
static struct msg *answers_room(struct ts_link *l, size_t n)
{
    struct msg *m = l->answers;
    size_t len = m ? m->len : 0;
    if (m && l->answers_cap - len >= n)
        return m;
    size_t cap = l->answers_cap ? l->answers_cap * 2 : ANSWER_MIN;
    while (cap < len + n)
        cap *= 2;
    if (cap > ANSWER_MAX)
        cap = ANSWER_MAX;
    struct msg *nm = realloc(m, sizeof(*nm) + cap);
    if (!nm)
        return NULL;
    l->answers = nm;
    l->answers_cap = cap;
    if (!m) {
        nm->type = CMD_SEND;
        nm->link = l;
        nm->len = 0;
        struct ts_link_pool *p = l->pool;
        if (!p->flush)
            uv_prepare_start(&p->prepare, on_prepare);
        l->flush_prev = NULL;
        l->flush_next = p->flush;
        if (p->flush)
            p->flush->flush_prev = l;
        p->flush = l;
    }
    return nm;
}

static void drop_held(struct ts_link *l)
{
    for (struct ts_link **pp = &l->pool->ready; *pp; pp = &(*pp)->ready_next)
        if (*pp == l) {
            *pp = l->ready_next;
            break;
        }
    l->ready = 0;
    while (l->held_head) {
        struct msg *m = l->held_head;
        l->held_head = m->next;
        if (m->type == EV_FRAME)
            ts_frame_free(m->u.frame.f);
        free(m);
    }
    l->held_tail = NULL;
}

static void link_closed(struct ts_link *l, int err)
{
    l->closing = 1;
    drop_held(l);
    answers_drop(l);
    if (l->cbs.on_close)
        l->cbs.on_close(l, err);
    struct ts_link_pool *p = l->pool;
    struct io *io = l->io;
    post(l, msg_must(CMD_FREE, l)); /* its thread frees l: not touched after */
    link_gone(p, io);
}

static void deliver_frame(struct ts_link *l, struct msg *m)
{
    size_t size = m->u.frame.size;
    size_t before = atomic_fetch_sub(&l->inbound, size);
    if (before >= INBOUND_MAX && before - size < INBOUND_MAX && !l->closing)
        post(l, msg_must(CMD_UNTHROTTLE, l));
    if (l->closing || !l->cbs.on_frame) {
        ts_frame_free(m->u.frame.f);
        return;
    }
    l->frame_bytes = size - FRAME_COST;
    l->frame_valid = (uint8_t)m->u.frame.valid;
    l->cbs.on_frame(l, m->u.frame.f, m->u.frame.status, m->u.frame.bad);
}

static void dispatch_event(struct msg *m);

static void main_event(struct msg *m)
{
    struct ts_link *l = m->link;
    /* A paused link's frames wait, still counted in inbound (so its thread
     * stays throttled), and so does an input error behind them. */
    if ((m->type == EV_FRAME || m->type == EV_ERROR) && !l->closing &&
        (l->paused || l->held_head)) {
        m->next = NULL;
        if (l->held_tail)
            l->held_tail->next = m;
        else
            l->held_head = m;
        l->held_tail = m;
        return;
    }
    dispatch_event(m);
}

static void dispatch_event(struct msg *m)
{
    struct ts_link *l = m->link;
    switch (m->type) {
    case EV_OPEN:
        l->resumed = m->u.resumed;
        if (!l->closing && l->cbs.on_open)
            l->cbs.on_open(l);
        break;
    case EV_FRAME:
        deliver_frame(l, m);
        break;
    case EV_ERROR:
        if (l->closing)
            break;
        if (l->cbs.on_error)
            l->cbs.on_error(l, m->u.err);
        else
            ts_link_close(l, m->u.err);
        break;
    case EV_DRAIN:
        if (!l->closing && l->cbs.on_drain && ts_link_queued(l) == 0)
            l->cbs.on_drain(l);
        break;
    case EV_CLOSED:
        link_closed(l, m->u.err);
        break;
    default:
        break;
    }
    free(m);
}

/* Hands l's held events on until it is paused again or closes. */
static void release_held(struct ts_link *l)
{
    while (l->held_head && !l->paused && !l->closing) {
        struct msg *m = l->held_head;
        l->held_head = m->next;
        if (!l->held_head)
            l->held_tail = NULL;
        dispatch_event(m);
    }
}

static void main_wakeup(uv_async_t *a)
{
    struct ts_link_pool *p = a->data;
    while (p->ready) {
        struct ts_link *l = p->ready;
        p->ready = l->ready_next;
        l->ready = 0;
        release_held(l);
    }
    struct msg *m = queue_take(&p->q);
    while (m) {
        struct msg *next = m->next;
        main_event(m);
        m = next;
    }
}

int ts_link_pool_new(uv_loop_t *loop, unsigned n_threads, struct ts_link_pool **out)
{
    *out = NULL;
    if (n_threads > TS_LINK_THREADS_MAX)
        return TS_E_INVALID_ARGUMENT;
    struct ts_link_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return TS_E_NOMEM;
    p->loop = loop;
    /* The prepare handle is made once nothing fails but through pool_stop,
     * which closes it (the early failures below free p at once). */
    if (n_threads == 0) {
        uv_prepare_init(loop, &p->prepare);
        p->prepare.data = p;
        *out = p;
        return TS_OK;
    }
    p->io = calloc(n_threads, sizeof(*p->io));
    if (!p->io || queue_init(&p->q, &p->async) != TS_OK) {
        free(p->io);
        free(p);
        return TS_E_NOMEM;
    }
    if (uv_async_init(loop, &p->async, main_wakeup) != 0) {
        uv_mutex_destroy(&p->q.mu);
        free(p->io);
        free(p);
        return TS_E_NOMEM;
    }
    p->async.data = p;
    uv_prepare_init(loop, &p->prepare);
    p->prepare.data = p;
    p->n_io = n_threads;
    int rc = TS_OK;
    for (unsigned i = 0; i < n_threads && rc == TS_OK; i++) {
        struct io *io = &p->io[i];
        io->pool = p;
        if (uv_loop_init(&io->loop) != 0) {
            rc = TS_E_NOMEM;
            break;
        }
        /* The handle is made here, before the thread exists; from then on
         * only that thread touches its loop. */
        if (uv_async_init(&io->loop, &io->async, io_wakeup) != 0) {
            uv_loop_close(&io->loop);
            rc = TS_E_NOMEM;
            break;
        }
        io->async.data = io;
        int qrc = queue_init(&io->urgent, &io->async);
        if (qrc == TS_OK && (qrc = queue_init(&io->bulk, &io->async)) != TS_OK)
            uv_mutex_destroy(&io->urgent.mu);
        if (qrc != TS_OK || uv_thread_create(&io->thread, io_main, io) != 0) {
            if (qrc == TS_OK) {
                uv_mutex_destroy(&io->urgent.mu);
                uv_mutex_destroy(&io->bulk.mu);
            }
            uv_close((uv_handle_t *)&io->async, NULL);
            uv_run(&io->loop, UV_RUN_DEFAULT);
            uv_loop_close(&io->loop);
            rc = TS_E_NOMEM;
            break;
        }
        io->started = 1;
    }
    if (rc != TS_OK) {
        TS_ERROR("event=io_threads_failed threads=%u", n_threads);
        p->closing = 1;
        pool_stop(p);
        return rc;
    }
    TS_INFO("event=io_threads threads=%u", n_threads);
    *out = p;
    return TS_OK;
}

void ts_link_pool_close(struct ts_link_pool *p)
{
    if (!p || p->closing)
        return;
    p->closing = 1;
    if (p->n_links == 0)
        pool_stop(p);
}

unsigned ts_link_pool_threads(const struct ts_link_pool *p)
{
    return p->n_io;
}

/* ---- links on the main loop (no threads): straight to the ts_conn ---- */

static void inline_on_open(struct ts_conn *c)
{
    struct ts_link *l = ts_conn_data(c);
    if (l->cbs.on_open)
        l->cbs.on_open(l);
}

static void inline_on_frame(struct ts_conn *c, Threadsync__Frame *f, int status, const char *bad)
{
    struct ts_link *l = ts_conn_data(c);
    l->frame_bytes = ts_conn_frame_bytes(c);
    l->frame_valid = 0; /* the caller runs the checks, on this same loop */
    if (l->cbs.on_frame)
        l->cbs.on_frame(l, f, status, bad);
    else
        ts_frame_free(f);
}

static void inline_on_error(struct ts_conn *c, int err)
{
    struct ts_link *l = ts_conn_data(c);
    if (l->cbs.on_error)
        l->cbs.on_error(l, err);
    else
        ts_conn_close(c, err);
}

static void inline_on_drain(struct ts_conn *c)
{
    struct ts_link *l = ts_conn_data(c);
    /* With answers still to hand on, the drain comes after them. */
    if (l->cbs.on_drain && !l->answers)
        l->cbs.on_drain(l);
}

static void inline_on_close(struct ts_conn *c, int err)
{
    struct ts_link *l = ts_conn_data(c);
    l->closing = 1;
    answers_drop(l);
    if (l->cbs.on_close)
        l->cbs.on_close(l, err);
    link_gone(l->pool, NULL);
    link_free(l);
}

static const struct ts_conn_cbs inline_cbs = {
    .on_open = inline_on_open,
    .on_frame = inline_on_frame,
    .on_error = inline_on_error,
    .on_drain = inline_on_drain,
    .on_close = inline_on_close,
};

/* ---- accepting ---- */

static void tmp_closed(uv_handle_t *h)
{
    free(h);
}

/* Accepts on main's listener and returns a duplicate of the socket for
 * another loop (the handle, and so the original descriptor, is closed). */
static int accept_fd(struct ts_link *l, uv_stream_t *listener, uv_os_sock_t *fd)
{
    uv_tcp_t *tmp = malloc(sizeof(*tmp));
    if (!tmp)
        return TS_E_NOMEM;
    uv_tcp_init(l->pool->loop, tmp);
    int r = uv_accept(listener, (uv_stream_t *)tmp);
    uv_os_fd_t orig = -1;
    if (r == 0)
        r = uv_fileno((uv_handle_t *)tmp, &orig);
    if (r == 0) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        char peer[64];
        if (uv_tcp_getpeername(tmp, (struct sockaddr *)&ss, &len) == 0) {
            ts_addr_format((struct sockaddr *)&ss, peer, sizeof(peer));
            size_t n = strlen(peer) + 1;
            l->peer = malloc(n); /* without it the peer is "?": logs only */
            if (l->peer)
                memcpy(l->peer, peer, n);
        }
        *fd = fcntl(orig, F_DUPFD_CLOEXEC, 0);
        if (*fd < 0)
            r = errno ? uv_translate_sys_error(errno) : UV_EIO;
    }
    uv_close((uv_handle_t *)tmp, tmp_closed);
    if (r < 0) {
        TS_INFO("event=conn_accept_error conn=%llu peer=? role=none error=%s",
                (unsigned long long)l->id, uv_err_name(r));
        return TS_E_IO;
    }
    return TS_OK;
}

static struct io *least_loaded(struct ts_link_pool *p)
{
    struct io *best = &p->io[0];
    for (unsigned i = 1; i < p->n_io; i++)
        if (p->io[i].n_links < best->n_links)
            best = &p->io[i];
    return best;
}

int ts_link_accept(struct ts_link_pool *p, uv_stream_t *listener, SSL_CTX *ctx,
                   const struct ts_link_cbs *cbs, void *data, uint32_t max_frame,
                   struct ts_link **out)
{
    *out = NULL;
    if (p->closing)
        return TS_E_CLOSED;
    struct ts_link *l = calloc(1, sizeof(*l));
    if (!l)
        return TS_E_NOMEM;
    l->pool = p;
    l->cbs = *cbs;
    l->data = data;
    l->role = "none";
    if (!p->n_io) {
        int rc = ts_conn_accept(p->loop, listener, ctx, &inline_cbs, l, max_frame, &l->conn);
        if (rc != TS_OK) {
            free(l);
            return rc;
        }
        p->n_links++;
        *out = l;
        return TS_OK;
    }
    l->ctx = ctx;
    l->max_frame = max_frame;
    l->id = ts_conn_reserve_id();
    uv_os_sock_t fd = -1;
    int rc = accept_fd(l, listener, &fd);
    if (rc != TS_OK) {
        link_free(l);
        return rc;
    }
    l->io = least_loaded(p);
    l->io->n_links++;
    p->n_links++;
    struct msg *m = msg_must(CMD_OPEN, l);
    m->u.fd = fd;
    post(l, m);
    *out = l;
    return TS_OK;
}

/* ---- the rest of the API ---- */

void *ts_link_data(const struct ts_link *l)
{
    return l->data;
}

size_t ts_link_queued(const struct ts_link *l)
{
    if (!l->io)
        return ts_conn_queued(l->conn) + (l->answers ? l->answers->len : 0);
    size_t transit = atomic_load(&((struct ts_link *)l)->in_transit);
    return transit + atomic_load(&((struct ts_link *)l)->conn_queued);
}

/* TS_OK when len more bytes stay within the hard cap; else the link is
 * closing and TS_E_TOO_LARGE. */
static int check_cap(struct ts_link *l, size_t len)
{
    size_t queued = ts_link_queued(l);
    if (len <= TS_CONN_QUEUE_HARD_MAX && queued <= TS_CONN_QUEUE_HARD_MAX - len)
        return TS_OK;
    TS_WARN("event=conn_queue_full conn=%llu peer=%s role=%s queued=%zu",
            (unsigned long long)ts_link_id(l), ts_link_peer(l), l->role, queued);
    if (l->io) {
        ts_link_close(l, TS_E_TOO_LARGE);
    } else { /* as ts_conn_send itself does past the cap */
        answers_drop(l);
        ts_conn_abort(l->conn, TS_E_TOO_LARGE);
    }
    return TS_E_TOO_LARGE;
}

static void send_post(struct ts_link *l, struct msg *m, int bulk)
{
    atomic_fetch_add(&l->in_transit, m->len);
    post_to(l, m, bulk);
}

int ts_link_send(struct ts_link *l, const void *data, size_t len)
{
    answers_flush(l); /* a push never overtakes an answer */
    if (!l->io)
        return ts_conn_send(l->conn, data, len);
    if (l->closing)
        return TS_E_CLOSED;
    if (len == 0)
        return TS_OK;
    int rc = check_cap(l, len);
    if (rc != TS_OK)
        return rc;
    /* In pieces: a batch (up to TS_HUB_BATCH_MAX) in one allocation would
     * be above malloc's mmap threshold, and a fresh mapping, faulted in and
     * unmapped per batch per subscriber, cost more than the copy. */
    const uint8_t *p = data;
    while (len > 0) {
        size_t n = len < SEND_PIECE ? len : SEND_PIECE;
        struct msg *m = msg_new(CMD_SEND, l, n);
        if (!m) {
            ts_link_close(l, TS_E_NOMEM);
            return TS_E_NOMEM;
        }
        memcpy(m->data, p, n);
        send_post(l, m, 1);
        p += n;
        len -= n;
    }
    return TS_OK;
}

int ts_link_send_frame(struct ts_link *l, const Threadsync__Frame *f, size_t *bytes)
{
    if (bytes)
        *bytes = 0;
    if (l->closing || (!l->io && ts_conn_closing(l->conn)))
        return TS_E_CLOSED;
    size_t size = ts_frame_size(f);
    if (size - TS_FRAME_HEADER > TS_FRAME_MAX_LIMIT)
        return TS_E_TOO_LARGE;
    int rc = check_cap(l, size);
    if (rc != TS_OK)
        return rc;
    if (size > ANSWER_MAX) { /* alone, behind the answers before it */
        answers_flush(l);
        struct msg *m = msg_new(CMD_SEND, l, size);
        if (!m)
            return TS_E_NOMEM;
        m->len = ts_frame_pack(f, m->data);
        if (l->io) {
            send_post(l, m, 0);
        } else {
            ts_conn_send(l->conn, m->data, m->len);
            free(m);
        }
    } else {
        if (l->answers && l->answers->len + size > ANSWER_MAX)
            answers_flush(l);
        struct msg *m = answers_room(l, size);
        if (!m)
            return TS_E_NOMEM;
        m->len += ts_frame_pack(f, m->data + m->len);
        if (l->io)
            atomic_fetch_add(&l->in_transit, size);
    }
    if (bytes)
        *bytes = size;
    return TS_OK;
}

void ts_link_set_max_frame(struct ts_link *l, uint32_t max_frame)
{
    if (!l->io) {
        ts_conn_set_max_frame(l->conn, max_frame);
        return;
    }
    struct msg *m = msg_must(CMD_MAX_FRAME, l);
    m->u.max_frame = max_frame;
    post(l, m);
}

static void control(struct ts_link *l, enum msg_type type)
{
    if (!l->closing)
        post(l, msg_must(type, l));
}

void ts_link_pause_reading(struct ts_link *l)
{
    if (!l->io) {
        ts_conn_pause_reading(l->conn);
        return;
    }
    l->paused = 1;
    control(l, CMD_PAUSE);
}

void ts_link_resume_reading(struct ts_link *l)
{
    if (!l->io) {
        ts_conn_resume_reading(l->conn);
        return;
    }
    l->paused = 0;
    control(l, CMD_RESUME);
    /* What is held goes out from the loop, never from inside this call. */
    if (l->held_head && !l->ready && !l->closing) {
        l->ready = 1;
        l->ready_next = l->pool->ready;
        l->pool->ready = l;
        uv_async_send(&l->pool->async);
    }
}

void ts_link_close(struct ts_link *l, int err)
{
    if (l->closing)
        return;
    answers_flush(l); /* the close follows them */
    if (!l->io) {
        ts_conn_close(l->conn, err);
        return;
    }
    struct msg *m = msg_must(CMD_CLOSE, l);
    m->u.err = err;
    post(l, m);
    l->closing = 1;
}

const char *ts_link_peer(const struct ts_link *l)
{
    if (!l->io)
        return ts_conn_peer(l->conn);
    return l->peer ? l->peer : "?";
}

void ts_link_set_role(struct ts_link *l, const char *role)
{
    l->role = role ? role : "none";
    if (!l->io) {
        ts_conn_set_role(l->conn, role);
        return;
    }
    struct msg *m = msg_must(CMD_ROLE, l);
    m->u.role = l->role;
    post(l, m);
}

size_t ts_link_frame_bytes(const struct ts_link *l)
{
    return l->frame_bytes;
}

int ts_link_frame_valid(const struct ts_link *l)
{
    return l->frame_valid;
}

uint64_t ts_link_id(const struct ts_link *l)
{
    return l->io ? l->id : ts_conn_id(l->conn);
}

int ts_link_resumed(const struct ts_link *l)
{
    return l->io ? l->resumed : ts_conn_resumed(l->conn);
}

size_t ts_link_size(void)
{
    return sizeof(struct ts_link);
}
