/*
 * ts_loadgen: the threadsync load generator (bench/README.md explains every
 * figure it prints).
 *
 * One process runs one scenario against a running threadsyncd:
 *   fanout     N subscribers, posts as fast as the server acks them;
 *   latency    N subscribers, posts at a fixed rate, post-to-delivery times;
 *   ingest     K posting connections, durable acknowledged posts per second;
 *   catchup    preload M comments, then one mirror from cursor 0;
 *   memory     N idle subscribers, server RSS per subscriber;
 *   reconnect  N subscribers dropped at once reconnect and resume.
 *
 * Threads: posters and the scenario's controller run on the main loop;
 * subscribers on --threads worker loops, each on its own thread. The
 * controller talks to workers with one command word and a uv_async; workers
 * publish counters through relaxed atomics and keep their own histograms,
 * merged when the workers have stopped.
 *
 * Every delivered event is checked per subscriber: seqs strictly increasing
 * (a repeat or step back is a duplicate), the count and the sum of seqs
 * against the posts the server acknowledged (a loss shows in both). Post
 * time travels in the comment body ("tsb <uv_hrtime ns> ..."); the clock is
 * CLOCK_MONOTONIC, one for every thread of this process.
 *
 * Output: a human line per scenario ("TABLE|..." for run.sh) and one JSON
 * line with every figure, the server's and this process's CPU over the
 * measured phase included.
 */
#include "ts_bench_conn.h"
#include "ts_bench_hist.h"
#include "ts_bench_proc.h"
#include "ts_bench_wire.h"

#include "ts_err.h"
#include "ts_frame.h"
#include "ts_hello.h"
#include "ts_log.h"
#include "ts_tls.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define BODY_LEN 250
#define THREADS_MAX 16
#define CATCHUP_THREADS 1000 /* the preload spreads over this many threads */

/* ---- options ---- */

static struct opts {
    char host[64];
    uint16_t port;
    struct sockaddr_in addr;
    const char *ca, *reader_token, *poster_token;
    int server_pid;
    const char *scenario;
    unsigned subs, posters, window, threads, connect_window, storm_window;
    uint64_t posts;
    double rate, duration, timeout;
    int filter_thread, no_resume, quiet;
    const char *label;
} o = {
    .subs = 1000,
    .posters = 1,
    .window = 64,
    .threads = 1,
    .connect_window = 256,
    .posts = 20000,
    .rate = 100,
    .duration = 10,
    .timeout = 120,
    .label = "",
};

static uv_loop_t *ml; /* main loop: controller and posters */
static SSL_CTX *ctx;
static char run_id[32];
static char thread_key[96];
static char reader_tok[300], poster_tok[300];

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static void die(const char *msg)
{
    fprintf(stderr, "ts_loadgen: %s\n", msg);
    exit(1);
}

/* ---- frames ---- */

static int send_hello(struct tsb_conn *c, const char *token)
{
    Threadsync__Frame f;
    Threadsync__Hello h;
    ts_hello_frame(&f, &h, "ts_loadgen", token);
    return tsb_conn_send_frame(c, &f);
}

static void send_pong(struct tsb_conn *c, const uint8_t *msg, size_t len)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Pong p = THREADSYNC__PONG__INIT;
    p.nonce = tsb_wire_u64(msg, len, 1);
    f.msg_case = THREADSYNC__FRAME__MSG_PONG;
    f.pong = &p;
    tsb_conn_send_frame(c, &f);
}

static void report_error(const char *who, const Threadsync__Error *e)
{
    static _Atomic int printed;
    if (atomic_fetch_add(&printed, 1) < 5)
        fprintf(stderr, "ts_loadgen: %s got Error code=%d field=%s message=%s\n", who, e->code,
                e->field ? e->field : "", e->message ? e->message : "");
}

/* ---- subscribers (worker threads) ---- */

/* Latency: when an event (measured: posted after measure_from) reached its
 * first and its last subscriber of one worker. The spread between the two
 * is the fan-out's own duration, the first one the path without fan-out. */
#define EV_RING 65536
struct ev_times {
    uint64_t seq, stamp, first, last;
};

enum sub_state { SUB_DOWN, SUB_CONNECTING, SUB_HELLO, SUB_SUBSCRIBING, SUB_LIVE };

struct worker;

struct sub {
    struct worker *w;
    struct tsb_conn *c;
    int state;
    int started;      /* has a cursor (subscribed once) */
    uint64_t cursor;  /* Events.last_seq / SnapshotEnd.seq */
    uint64_t last_ev; /* seq of the last event counted */
    uint64_t events, dups, sum;
    uint64_t snap_comments; /* comments received in snapshot chunks */
    uint64_t bytes;
    uint64_t t_connect; /* when the current connection was started */
    int resumed;
    int errors;
};

enum cmd { CMD_NONE, CMD_CONNECT, CMD_DROP, CMD_RECONNECT, CMD_STOP };

struct worker {
    unsigned id;
    _Atomic int cmd;
    pthread_t th;
    uv_loop_t loop;
    uv_async_t async;
    struct sub *subs;
    unsigned n_subs;
    unsigned next_connect, handshaking, window;
    /* published to the controller */
    _Atomic uint64_t live, down, events, dups, errors, resumed, snap_comments, bytes;
    _Atomic uint64_t caught_up_at; /* catch-up: when the mirror was caught up */
    struct tsb_hist lat;           /* post-to-delivery, ns */
    struct tsb_hist to_live;       /* reconnect: connect-to-live per subscriber, ns */
    uint8_t *seen;                 /* catch-up: bitmap of comment ids received */
    uint64_t seen_bits;
    struct ev_times *ev; /* latency: per event, by seq % EV_RING */
};

static struct worker workers[THREADS_MAX];
static _Atomic uint64_t measure_from; /* latency: record events posted after this */
static _Atomic int record_latency;
static uint64_t catchup_head; /* catch-up: caught up means cursor >= this */

static void worker_pump_connects(struct worker *w);

static void sub_on_open(struct tsb_conn *c)
{
    struct sub *s = tsb_conn_data(c);
    s->state = SUB_HELLO;
    s->resumed = tsb_conn_resumed(c);
    send_hello(c, reader_tok);
}

static void send_subscribe(struct sub *s)
{
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Subscribe sb = THREADSYNC__SUBSCRIBE__INIT;
    char *keys[1] = {thread_key};
    sb.request_id = 1;
    if (o.filter_thread) {
        sb.n_thread_keys = 1;
        sb.thread_keys = keys;
    } else {
        sb.all = 1;
    }
    sb.since_seq = s->cursor;
    f.msg_case = THREADSYNC__FRAME__MSG_SUBSCRIBE;
    f.subscribe = &sb;
    s->state = SUB_SUBSCRIBING;
    tsb_conn_send_frame(s->c, &f);
}

static void mark_seen(struct worker *w, uint64_t id)
{
    if (!w->seen || id >= w->seen_bits)
        return;
    w->seen[id >> 3] |= (uint8_t)(1u << (id & 7));
}

struct ev_ctx {
    struct sub *s;
    uint64_t now, from;
    int lat;
};

static int on_event(void *arg, const struct tsb_wire_event *ev)
{
    struct ev_ctx *x = arg;
    struct sub *s = x->s;
    if (ev->seq <= s->last_ev) {
        s->dups++;
        return 0;
    }
    s->last_ev = ev->seq;
    s->events++;
    s->sum += ev->seq;
    if (ev->comment_id)
        mark_seen(s->w, ev->comment_id);
    if (x->lat && ev->body && ev->body_len > 24 && memcmp(ev->body, "tsb ", 4) == 0) {
        uint64_t t = 0;
        for (size_t i = 4; i < 24; i++)
            t = t * 10 + (uint64_t)(ev->body[i] - '0');
        if (t >= x->from && x->now >= t) {
            tsb_hist_record(&s->w->lat, x->now - t);
            struct ev_times *e = &s->w->ev[ev->seq % EV_RING];
            if (e->seq != ev->seq) {
                e->seq = ev->seq;
                e->stamp = t;
                e->first = e->last = x->now;
            } else if (x->now > e->last) {
                e->last = x->now;
            }
        }
    }
    return 0;
}

static void sub_go_live(struct sub *s)
{
    if (s->state == SUB_LIVE)
        return;
    s->state = SUB_LIVE;
    tsb_hist_record(&s->w->to_live, now_ns() - s->t_connect);
    atomic_fetch_add_explicit(&s->w->live, 1, memory_order_relaxed);
}

static void on_chunk_comment(void *arg, uint64_t id)
{
    mark_seen(arg, id);
}

static void sub_on_frame(struct tsb_conn *c, const uint8_t *body, size_t len)
{
    struct sub *s = tsb_conn_data(c);
    struct worker *w = s->w;
    unsigned field;
    const uint8_t *msg;
    size_t mlen;
    s->bytes += len + TS_FRAME_HEADER;
    if (tsb_wire_frame(body, len, &field, &msg, &mlen) != TS_OK) {
        s->errors++;
        return;
    }
    switch (field) {
    case 21: { /* Events */
        struct ev_ctx x = {s, now_ns(), atomic_load_explicit(&measure_from, memory_order_relaxed),
                           atomic_load_explicit(&record_latency, memory_order_relaxed)};
        uint64_t before = s->events, dups = s->dups;
        uint64_t last_seq;
        int caught_up;
        if (tsb_wire_events(msg, mlen, on_event, &x, &last_seq, &caught_up) != TS_OK) {
            s->errors++;
            break;
        }
        if (last_seq > s->cursor)
            s->cursor = last_seq;
        atomic_fetch_add_explicit(&w->events, s->events - before, memory_order_relaxed);
        if (s->dups != dups)
            atomic_fetch_add_explicit(&w->dups, s->dups - dups, memory_order_relaxed);
        if (caught_up && s->cursor >= catchup_head)
            sub_go_live(s);
        if (catchup_head && caught_up && s->cursor >= catchup_head &&
            !atomic_load(&w->caught_up_at))
            atomic_store(&w->caught_up_at, now_ns());
        break;
    }
    case 23: { /* SnapshotChunk */
        uint64_t th, cm;
        if (tsb_wire_chunk(msg, mlen, &th, &cm, w->seen ? on_chunk_comment : NULL, w) != TS_OK) {
            s->errors++;
            break;
        }
        s->snap_comments += cm;
        atomic_fetch_add_explicit(&w->snap_comments, cm, memory_order_relaxed);
        break;
    }
    case 22: /* SnapshotBegin */
        break;
    case 24: { /* SnapshotEnd */
        uint64_t seq = tsb_wire_u64(msg, mlen, 1);
        if (seq > s->cursor)
            s->cursor = seq;
        if (seq > s->last_ev)
            s->last_ev = seq;
        break;
    }
    case 4: /* Ping */
        send_pong(c, msg, mlen);
        break;
    default: {
        Threadsync__Frame *f;
        const char *bad;
        if (ts_frame_unpack(body, len, &f, &bad) != TS_OK) {
            s->errors++;
            break;
        }
        if (f->msg_case == THREADSYNC__FRAME__MSG_WELCOME && s->state == SUB_HELLO) {
            if (!s->started) {
                s->started = 1;
                s->cursor = s->last_ev = catchup_head ? 0 : f->welcome->last_seq;
            }
            if (w->handshaking) {
                w->handshaking--;
                worker_pump_connects(w);
            }
            send_subscribe(s);
        } else if (f->msg_case == THREADSYNC__FRAME__MSG_ERROR) {
            report_error("subscriber", f->error);
            s->errors++;
            atomic_fetch_add(&w->errors, 1);
        }
        ts_frame_free(f);
        break;
    }
    }
}

static void sub_on_close(struct tsb_conn *c, int err)
{
    struct sub *s = tsb_conn_data(c);
    struct worker *w = s->w;
    if (s->state == SUB_LIVE)
        atomic_fetch_sub(&w->live, 1);
    else if (s->state == SUB_CONNECTING || s->state == SUB_HELLO) {
        if (w->handshaking) {
            w->handshaking--;
            worker_pump_connects(w);
        }
    }
    if (err != TS_OK) {
        s->errors++;
        atomic_fetch_add(&w->errors, 1);
        static _Atomic int printed;
        if (atomic_fetch_add(&printed, 1) < 5)
            fprintf(stderr, "ts_loadgen: subscriber connection lost: %s\n", ts_err_name(err));
    }
    s->state = SUB_DOWN;
    s->c = NULL;
    atomic_fetch_add(&w->down, 1);
}

static const struct tsb_conn_cbs sub_cbs = {sub_on_open, sub_on_frame, NULL, sub_on_close, NULL};

static void sub_connect(struct sub *s)
{
    char key[80];
    snprintf(key, sizeof(key), "%s:%u", o.host, o.port);
    s->t_connect = now_ns();
    s->state = SUB_CONNECTING;
    int rc = tsb_conn_connect(&s->w->loop, &o.addr, ctx, o.host, o.no_resume ? NULL : key, &sub_cbs,
                              s, &s->c);
    if (rc != TS_OK) {
        s->state = SUB_DOWN;
        s->errors++;
        atomic_fetch_add(&s->w->errors, 1);
        atomic_fetch_add(&s->w->down, 1);
    }
}

/* Starts connections while fewer than the window are in their handshake:
 * the listen backlog is finite, and a SYN dropped on a full backlog costs a
 * one-second retransmission that would be measured as server slowness. */
static void worker_pump_connects(struct worker *w)
{
    while (w->next_connect < w->n_subs && w->handshaking < w->window) {
        struct sub *s = &w->subs[w->next_connect++];
        w->handshaking++;
        sub_connect(s);
    }
}

static void worker_on_async(uv_async_t *a)
{
    struct worker *w = a->data;
    int cmd = atomic_exchange(&w->cmd, CMD_NONE);
    switch (cmd) {
    case CMD_CONNECT:
    case CMD_RECONNECT:
        atomic_store(&w->down, 0);
        w->next_connect = 0;
        w->handshaking = 0;
        w->window =
            cmd == CMD_CONNECT ? o.connect_window : (o.storm_window ? o.storm_window : w->n_subs);
        worker_pump_connects(w);
        break;
    case CMD_DROP:
        atomic_store(&w->down, 0);
        for (unsigned i = 0; i < w->n_subs; i++)
            if (w->subs[i].c)
                tsb_conn_close(w->subs[i].c);
            else
                atomic_fetch_add(&w->down, 1);
        break;
    case CMD_STOP:
        for (unsigned i = 0; i < w->n_subs; i++)
            if (w->subs[i].c)
                tsb_conn_close(w->subs[i].c);
        uv_close((uv_handle_t *)&w->async, NULL);
        break;
    default:
        break;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void workers_start(unsigned n_subs)
{
    for (unsigned t = 0; t < o.threads; t++) {
        struct worker *w = &workers[t];
        w->id = t;
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->async, worker_on_async);
        w->async.data = w;
        tsb_hist_init(&w->lat);
        tsb_hist_init(&w->to_live);
        w->n_subs = n_subs / o.threads + (t < n_subs % o.threads);
        w->subs = calloc(w->n_subs ? w->n_subs : 1, sizeof(*w->subs));
        w->ev = calloc(EV_RING, sizeof(*w->ev));
        if (!w->subs || !w->ev)
            die("out of memory");
        for (unsigned i = 0; i < w->n_subs; i++)
            w->subs[i].w = w;
        if (pthread_create(&w->th, NULL, worker_main, w) != 0)
            die("pthread_create");
    }
}

static void workers_cmd(int cmd)
{
    for (unsigned t = 0; t < o.threads; t++) {
        atomic_store(&workers[t].cmd, cmd);
        uv_async_send(&workers[t].async);
    }
}

static uint64_t workers_sum(size_t offset)
{
    uint64_t n = 0;
    for (unsigned t = 0; t < o.threads; t++)
        n += atomic_load_explicit((_Atomic uint64_t *)((char *)&workers[t] + offset),
                                  memory_order_relaxed);
    return n;
}
#define WSUM(field) workers_sum(offsetof(struct worker, field))

static void workers_join(void)
{
    for (unsigned t = 0; t < o.threads; t++) {
        pthread_join(workers[t].th, NULL);
        uv_run(&workers[t].loop, UV_RUN_DEFAULT);
        uv_loop_close(&workers[t].loop);
    }
}

/* Per-subscriber verification against what the server acknowledged. */
struct verdict {
    uint64_t subs, bad_subs, lost, dups, errors;
};

static struct verdict verify(uint64_t acked, uint64_t acked_sum)
{
    struct verdict v = {0};
    for (unsigned t = 0; t < o.threads; t++) {
        struct worker *w = &workers[t];
        for (unsigned i = 0; i < w->n_subs; i++) {
            struct sub *s = &w->subs[i];
            v.subs++;
            v.dups += s->dups;
            v.errors += (uint64_t)s->errors;
            if (s->events < acked)
                v.lost += acked - s->events;
            if (s->events != acked || s->sum != acked_sum || s->dups)
                v.bad_subs++;
        }
    }
    return v;
}

/* ---- posters (main loop) ---- */

struct poster {
    struct tsb_conn *c;
    unsigned idx;
    int ready;
    uint64_t next_rid, seq_no;
    unsigned outstanding;
    uint64_t *sent_at; /* by rid % ring */
    unsigned ring;
    uint8_t *batch;
    size_t batch_len, batch_cap;
};

static struct poster *posters;
static unsigned n_posters, posters_ready;
static struct {
    uint64_t limit; /* posts to send in total (UINT64_MAX: until stopped) */
    uint64_t sent, acked, acked_sum, errors, unavailable;
    uint64_t max_seq;
    int stop;         /* no new posts */
    int paced;        /* latency: the pacer decides, not the window */
    uint64_t allowed; /* paced: posts allowed so far */
    uint64_t *ids;    /* catch-up: acked comment ids */
    size_t n_ids, cap_ids;
    struct tsb_hist ack_lat;
} pst;
static const char filler[] =
    "The council met on Tuesday to discuss the bridge, and as usual the debate ran long: "
    "residents on the east bank want the footpath widened before anything else, while the "
    "shopkeepers would rather see the parking fixed first. I think both are right, honestly. "
    "Whatever they decide, please publish the budget this time.";

static void poster_flush(struct poster *p)
{
    if (p->batch_len && p->c) {
        tsb_conn_send(p->c, p->batch, p->batch_len);
        p->batch_len = 0;
    }
}

static void poster_queue_post(struct poster *p, const char *tkey)
{
    char key[64], body[BODY_LEN + 1], name[32];
    uint64_t rid = ++p->next_rid;
    uint64_t t = now_ns();
    snprintf(key, sizeof(key), "b%s-%u-%llu", run_id, p->idx, (unsigned long long)++p->seq_no);
    int n = snprintf(body, sizeof(body), "tsb %020llu ", (unsigned long long)t);
    memcpy(body + n, filler, BODY_LEN - (size_t)n);
    body[BODY_LEN] = '\0';
    snprintf(name, sizeof(name), "Bench Poster %u", p->idx);
    Threadsync__Frame f = THREADSYNC__FRAME__INIT;
    Threadsync__Post post = THREADSYNC__POST__INIT;
    post.request_id = rid;
    post.idempotency_key = key;
    post.thread_key = (char *)tkey;
    post.author_name = name;
    post.body = body;
    f.msg_case = THREADSYNC__FRAME__MSG_POST;
    f.post = &post;
    size_t need = ts_frame_size(&f);
    if (p->batch_len + need > p->batch_cap) {
        size_t cap = p->batch_cap ? p->batch_cap * 2 : 64 << 10;
        while (cap < p->batch_len + need)
            cap *= 2;
        uint8_t *nb = realloc(p->batch, cap);
        if (!nb)
            die("out of memory");
        p->batch = nb;
        p->batch_cap = cap;
    }
    p->batch_len += ts_frame_pack(&f, p->batch + p->batch_len);
    p->sent_at[rid % p->ring] = t;
    p->outstanding++;
    pst.sent++;
}

static const char *post_thread_key(struct poster *p)
{
    static char k[128];
    if (strcmp(o.scenario, "catchup") != 0)
        return thread_key;
    snprintf(k, sizeof(k), "%s/%llu", thread_key,
             (unsigned long long)((pst.sent + p->idx) % CATCHUP_THREADS));
    return k;
}

static void poster_fill(struct poster *p)
{
    if (!p->ready)
        return;
    while (!pst.stop && p->outstanding < o.window && pst.sent < pst.limit &&
           (!pst.paced || pst.sent < pst.allowed))
        poster_queue_post(p, post_thread_key(p));
    poster_flush(p);
}

static void poster_on_open(struct tsb_conn *c)
{
    send_hello(c, poster_tok);
}

static void poster_on_frame(struct tsb_conn *c, const uint8_t *body, size_t len)
{
    struct poster *p = tsb_conn_data(c);
    Threadsync__Frame *f;
    const char *bad;
    if (ts_frame_unpack(body, len, &f, &bad) != TS_OK) {
        pst.errors++;
        return;
    }
    switch (f->msg_case) {
    case THREADSYNC__FRAME__MSG_WELCOME:
        p->ready = 1;
        posters_ready++;
        break;
    case THREADSYNC__FRAME__MSG_RESULT:
        if (f->result->body_case == THREADSYNC__RESULT__BODY_POST) {
            uint64_t rid = f->result->request_id;
            p->outstanding--;
            pst.acked++;
            pst.acked_sum += f->result->post->seq;
            if (f->result->post->seq > pst.max_seq)
                pst.max_seq = f->result->post->seq;
            tsb_hist_record(&pst.ack_lat, now_ns() - p->sent_at[rid % p->ring]);
            if (pst.ids) {
                if (pst.n_ids == pst.cap_ids) {
                    pst.cap_ids *= 2;
                    pst.ids = realloc(pst.ids, pst.cap_ids * sizeof(*pst.ids));
                    if (!pst.ids)
                        die("out of memory");
                }
                pst.ids[pst.n_ids++] = f->result->post->comment_id;
            }
        }
        break;
    case THREADSYNC__FRAME__MSG_ERROR:
        if (f->error->request_id)
            p->outstanding--;
        if (f->error->code == THREADSYNC__ERROR_CODE__UNAVAILABLE) {
            /* too many writes in flight: the post was not made; the window
             * makes the next one. The limit counts successful posts. */
            pst.unavailable++;
            pst.sent--;
        } else {
            report_error("poster", f->error);
            pst.errors++;
        }
        break;
    case THREADSYNC__FRAME__MSG_PING: {
        Threadsync__Frame r = THREADSYNC__FRAME__INIT;
        Threadsync__Pong pong = THREADSYNC__PONG__INIT;
        pong.nonce = f->ping->nonce;
        r.msg_case = THREADSYNC__FRAME__MSG_PONG;
        r.pong = &pong;
        tsb_conn_send_frame(c, &r);
        break;
    }
    default:
        break;
    }
    ts_frame_free(f);
}

static void poster_on_batch_end(struct tsb_conn *c)
{
    poster_fill(tsb_conn_data(c));
}

static void poster_on_close(struct tsb_conn *c, int err)
{
    struct poster *p = tsb_conn_data(c);
    p->c = NULL;
    if (p->ready)
        posters_ready--;
    p->ready = 0;
    if (err != TS_OK) {
        fprintf(stderr, "ts_loadgen: poster %u connection lost: %s\n", p->idx, ts_err_name(err));
        pst.errors += p->outstanding;
        p->outstanding = 0;
    }
}

static const struct tsb_conn_cbs poster_cbs = {poster_on_open, poster_on_frame, poster_on_batch_end,
                                               poster_on_close, NULL};

static void posters_start(unsigned n)
{
    char key[80];
    snprintf(key, sizeof(key), "%s:%u", o.host, o.port);
    n_posters = n;
    posters = calloc(n, sizeof(*posters));
    if (!posters)
        die("out of memory");
    for (unsigned i = 0; i < n; i++) {
        struct poster *p = &posters[i];
        p->idx = i;
        p->ring = o.window * 4 + 16;
        p->sent_at = calloc(p->ring, sizeof(*p->sent_at));
        if (!p->sent_at ||
            tsb_conn_connect(ml, &o.addr, ctx, o.host, key, &poster_cbs, p, &p->c) != TS_OK)
            die("cannot start a poster");
    }
}

static void posters_kick(void)
{
    for (unsigned i = 0; i < n_posters; i++)
        poster_fill(&posters[i]);
}

static uint64_t posters_outstanding(void)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < n_posters; i++)
        n += posters[i].outstanding;
    return n;
}

static void posters_close(void)
{
    for (unsigned i = 0; i < n_posters; i++)
        if (posters[i].c)
            tsb_conn_close(posters[i].c);
}

static uv_timer_t tick; /* wakes the main loop every millisecond while waiting */

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the main loop until cond() holds (0) or the time is up (-1). cond is
 * checked after every loop iteration, at least once a millisecond. */
static int wait_until(int (*cond)(void), double seconds)
{
    uint64_t deadline = now_ns() + (uint64_t)(seconds * 1e9);
    int rc = 0;
    uv_timer_start(&tick, on_tick, 1, 1);
    while (!cond()) {
        if (now_ns() > deadline) {
            rc = -1;
            break;
        }
        uv_run(ml, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick);
    return rc;
}

static int cond_posters_ready(void)
{
    return posters_ready == n_posters;
}

static int cond_posts_done(void)
{
    posters_kick();
    return (pst.sent >= pst.limit || pst.stop) && posters_outstanding() == 0;
}

static uint64_t want_live;
static int cond_all_live(void)
{
    return WSUM(live) >= want_live;
}

static uint64_t want_events;
static int cond_all_events(void)
{
    return WSUM(events) >= want_events;
}

static int cond_all_down(void)
{
    return WSUM(down) >= want_live;
}

static void post_n(uint64_t n)
{
    pst.limit = pst.sent + n;
    pst.stop = 0;
    if (wait_until(cond_posts_done, o.timeout) != 0)
        fprintf(stderr, "ts_loadgen: posting timed out (%llu of %llu acked)\n",
                (unsigned long long)pst.acked, (unsigned long long)pst.limit);
}

static void reset_counts(void)
{
    pst.acked = pst.acked_sum = pst.sent = pst.errors = pst.unavailable = 0;
    tsb_hist_init(&pst.ack_lat);
}

/* ---- output ---- */

static void print_row(const char *name, const char *params, const char *figures)
{
    printf("TABLE|%s|%s|%s\n", name, params, figures);
}

static char loadavg[64]; /* /proc/loadavg at start: other work on the machine skews figures */

static void json_begin(char *buf, size_t cap, const char *scenario)
{
    snprintf(buf, cap, "{\"scenario\":\"%s\",\"label\":\"%s\",\"threads\":%u,\"loadavg\":\"%s\"",
             scenario, o.label, o.threads, loadavg);
}

/* Server CPU microseconds per unit of work: steadier than rates on a
 * machine where other work competes for the cores. */
static void json_cost(char *buf, size_t cap, const char *name, struct tsb_cpu_use u, uint64_t units)
{
    tsb_json_add(buf, cap, ",\"%s\":%.3f", name,
                 units ? u.srv_cores * u.wall_s * 1e6 / (double)units : 0.0);
}

static void json_cpu(char *buf, size_t cap, struct tsb_cpu_use u)
{
    tsb_json_add(buf, cap, ",\"wall_s\":%.3f,\"server_cpu_cores\":%.3f,\"gen_cpu_cores\":%.3f",
                 u.wall_s, u.srv_cores, u.gen_cores);
}

static void json_verdict(char *buf, size_t cap, struct verdict v)
{
    tsb_json_add(
        buf, cap,
        ",\"checked_subs\":%llu,\"bad_subs\":%llu,\"lost\":%llu,\"dup\":%llu,\"errors\":%llu",
        (unsigned long long)v.subs, (unsigned long long)v.bad_subs, (unsigned long long)v.lost,
        (unsigned long long)v.dups, (unsigned long long)v.errors);
}

/* ---- scenarios ---- */

static void setup_subs(unsigned n)
{
    workers_start(n);
    want_live = n;
    workers_cmd(CMD_CONNECT);
    if (wait_until(cond_all_live, o.timeout) != 0)
        fprintf(stderr, "ts_loadgen: only %llu of %u subscribers live\n",
                (unsigned long long)WSUM(live), n);
}

static void teardown(void)
{
    workers_cmd(CMD_STOP);
    posters_close();
    workers_join();
    uv_run(ml, UV_RUN_DEFAULT);
}

static uint64_t pace_t0, ingest_end;

static int cond_paced_done(void)
{
    pst.allowed = (uint64_t)((double)(now_ns() - pace_t0) / 1e9 * o.rate) + 1;
    posters_kick();
    return pst.sent >= pst.limit && posters_outstanding() == 0;
}

static int cond_ingest_time(void)
{
    posters_kick();
    return now_ns() >= ingest_end;
}

/* Latency: per measured event, the delivery to its first and to its last
 * subscriber (over every worker), after its post's stamp. */
static void event_spread(struct tsb_hist *first, struct tsb_hist *last)
{
    tsb_hist_init(first);
    tsb_hist_init(last);
    for (size_t i = 0; i < EV_RING; i++) {
        struct ev_times e = {0};
        for (unsigned t = 0; t < o.threads; t++) {
            const struct ev_times *x = &workers[t].ev[i];
            if (!x->seq)
                continue;
            if (!e.seq) {
                e = *x;
            } else if (x->seq == e.seq) {
                e.first = x->first < e.first ? x->first : e.first;
                e.last = x->last > e.last ? x->last : e.last;
            }
        }
        if (e.seq) {
            tsb_hist_record(first, e.first - e.stamp);
            tsb_hist_record(last, e.last - e.stamp);
        }
    }
}

static void scenario_fanout(int paced)
{
    char json[2048], params[128], fig[256];
    posters_start(o.posters);
    if (wait_until(cond_posters_ready, o.timeout) != 0)
        die("posters did not connect");
    setup_subs(o.subs);
    reset_counts();
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    uint64_t t0 = a.wall_ns;
    if (paced) {
        /* latency: a fixed rate for the duration, the first second excluded
         * from the histogram (connections warm up, the allocator settles). */
        pst.paced = 1;
        pst.limit = (uint64_t)(o.rate * o.duration);
        pace_t0 = t0;
        atomic_store(&measure_from, t0 + 1000000000ull);
        atomic_store(&record_latency, 1);
        if (wait_until(cond_paced_done, o.duration + o.timeout) != 0)
            fprintf(stderr, "ts_loadgen: paced posting timed out\n");
    } else {
        pst.limit = o.posts;
        if (wait_until(cond_posts_done, o.timeout) != 0)
            fprintf(stderr, "ts_loadgen: posting timed out\n");
    }
    uint64_t t_posted = now_ns();
    want_events = (uint64_t)o.subs * pst.acked;
    int drained = wait_until(cond_all_events, o.timeout) == 0;
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    struct tsb_cpu_use u = tsb_cpu_between(a, b);
    double post_s = (double)(t_posted - t0) / 1e9;
    uint64_t delivered = WSUM(events);
    teardown();
    struct verdict v = verify(pst.acked, pst.acked_sum);
    double rate = (double)delivered / u.wall_s;
    json_begin(json, sizeof(json), paced ? "latency" : "fanout");
    tsb_json_add(json, sizeof(json),
                 ",\"subs\":%u,\"filter\":\"%s\",\"posts_acked\":%llu,\"post_rate\":%.0f,"
                 "\"delivered\":%llu,\"delivered_per_s\":%.0f,\"drained\":%s",
                 o.subs, o.filter_thread ? "thread" : "all", (unsigned long long)pst.acked,
                 (double)pst.acked / post_s, (unsigned long long)delivered, rate,
                 drained ? "true" : "false");
    struct tsb_hist lat;
    tsb_hist_init(&lat);
    for (unsigned t = 0; t < o.threads; t++)
        tsb_hist_merge(&lat, &workers[t].lat);
    static struct tsb_hist first, last;
    if (paced) {
        event_spread(&first, &last);
        tsb_json_add(json, sizeof(json),
                     ",\"target_rate\":%.0f,\"samples\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                     "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f",
                     o.rate, (unsigned long long)lat.count, tsb_hist_quantile(&lat, 0.5) / 1e6,
                     tsb_hist_quantile(&lat, 0.99) / 1e6, tsb_hist_quantile(&lat, 0.999) / 1e6,
                     lat.max / 1e6, tsb_hist_quantile(&pst.ack_lat, 0.5) / 1e6,
                     tsb_hist_quantile(&pst.ack_lat, 0.99) / 1e6);
        tsb_json_add(json, sizeof(json),
                     ",\"first_p50_ms\":%.3f,\"first_p99_ms\":%.3f,\"last_p50_ms\":%.3f,"
                     "\"last_p99_ms\":%.3f",
                     tsb_hist_quantile(&first, 0.5) / 1e6, tsb_hist_quantile(&first, 0.99) / 1e6,
                     tsb_hist_quantile(&last, 0.5) / 1e6, tsb_hist_quantile(&last, 0.99) / 1e6);
    }
    json_verdict(json, sizeof(json), v);
    json_cpu(json, sizeof(json), u);
    json_cost(json, sizeof(json), "server_us_per_event", u, delivered);
    tsb_json_add(json, sizeof(json), "}");
    snprintf(params, sizeof(params), "N=%u%s %s", o.subs, o.filter_thread ? " thread" : "",
             paced ? "" : "max-rate");
    if (paced) {
        snprintf(params, sizeof(params), "N=%u rate=%.0f/s", o.subs, o.rate);
        snprintf(fig, sizeof(fig),
                 "p50=%.2fms p99=%.2fms p99.9=%.2fms (%llu samples; first sub p99=%.2fms, last "
                 "p99=%.2fms) loss=%llu dup=%llu",
                 tsb_hist_quantile(&lat, 0.5) / 1e6, tsb_hist_quantile(&lat, 0.99) / 1e6,
                 tsb_hist_quantile(&lat, 0.999) / 1e6, (unsigned long long)lat.count,
                 tsb_hist_quantile(&first, 0.99) / 1e6, tsb_hist_quantile(&last, 0.99) / 1e6,
                 (unsigned long long)v.lost, (unsigned long long)v.dups);
    } else {
        snprintf(fig, sizeof(fig), "%.0f events/s (%llu posts at %.0f/s) loss=%llu dup=%llu", rate,
                 (unsigned long long)pst.acked, (double)pst.acked / post_s,
                 (unsigned long long)v.lost, (unsigned long long)v.dups);
    }
    print_row(paced ? "latency" : "fanout", params, fig);
    printf("CPU|server %.2f cores, generator %.2f cores over %.1f s\n", u.srv_cores, u.gen_cores,
           u.wall_s);
    printf("%s\n", json);
}

static void scenario_ingest(void)
{
    char json[2048], params[128], fig[256];
    posters_start(o.posters);
    if (wait_until(cond_posters_ready, o.timeout) != 0)
        die("posters did not connect");
    reset_counts();
    /* One second of warm-up, not measured. */
    pst.limit = UINT64_MAX;
    ingest_end = now_ns() + 1000000000ull;
    wait_until(cond_ingest_time, 60);
    uint64_t acked0 = pst.acked, unav0 = pst.unavailable;
    tsb_hist_init(&pst.ack_lat);
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    ingest_end = a.wall_ns + (uint64_t)(o.duration * 1e9);
    wait_until(cond_ingest_time, o.duration + 60);
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    uint64_t acked = pst.acked - acked0;
    pst.stop = 1;
    wait_until(cond_posts_done, o.timeout);
    struct tsb_cpu_use u = tsb_cpu_between(a, b);
    posters_close();
    uv_run(ml, UV_RUN_DEFAULT);
    double rate = (double)acked / u.wall_s;
    json_begin(json, sizeof(json), "ingest");
    tsb_json_add(
        json, sizeof(json),
        ",\"posters\":%u,\"window\":%u,\"acked\":%llu,\"acked_per_s\":%.0f,"
        "\"unavailable\":%llu,\"post_errors\":%llu,\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f,"
        "\"ack_max_ms\":%.3f",
        o.posters, o.window, (unsigned long long)acked, rate,
        (unsigned long long)(pst.unavailable - unav0), (unsigned long long)pst.errors,
        tsb_hist_quantile(&pst.ack_lat, 0.5) / 1e6, tsb_hist_quantile(&pst.ack_lat, 0.99) / 1e6,
        pst.ack_lat.max / 1e6);
    json_cpu(json, sizeof(json), u);
    json_cost(json, sizeof(json), "server_us_per_post", u, acked);
    tsb_json_add(json, sizeof(json), "}");
    snprintf(params, sizeof(params), "K=%u window=%u", o.posters, o.window);
    snprintf(fig, sizeof(fig), "%.0f acked posts/s (ack p50=%.1fms p99=%.1fms) errors=%llu", rate,
             tsb_hist_quantile(&pst.ack_lat, 0.5) / 1e6,
             tsb_hist_quantile(&pst.ack_lat, 0.99) / 1e6, (unsigned long long)pst.errors);
    print_row("ingest", params, fig);
    printf("CPU|server %.2f cores, generator %.2f cores over %.1f s\n", u.srv_cores, u.gen_cores,
           u.wall_s);
    printf("%s\n", json);
}

static int cond_caught_up(void)
{
    return atomic_load(&workers[0].caught_up_at) != 0;
}

static void scenario_catchup(void)
{
    char json[2048], params[128], fig[320];
    /* Preload: o.posts comments over CATCHUP_THREADS threads. */
    posters_start(o.posters);
    if (wait_until(cond_posters_ready, o.timeout) != 0)
        die("posters did not connect");
    reset_counts();
    pst.cap_ids = 1024;
    pst.ids = malloc(pst.cap_ids * sizeof(*pst.ids));
    if (!pst.ids)
        die("out of memory");
    uint64_t rss0 = tsb_proc_rss_kib(o.server_pid);
    struct tsb_cpu_mark p0 = tsb_mark(o.server_pid);
    post_n(o.posts);
    struct tsb_cpu_mark p1 = tsb_mark(o.server_pid);
    posters_close();
    uv_run(ml, UV_RUN_DEFAULT);
    sleep(1); /* let the server settle (snapshot writes, frees) */
    uint64_t rss1 = tsb_proc_rss_kib(o.server_pid);
    struct tsb_cpu_use pu = tsb_cpu_between(p0, p1);
    size_t raw = BODY_LEN + strlen("Bench Poster 0") + strlen(thread_key) + 4;

    /* The mirror: one subscriber, all threads, from cursor 0. */
    o.filter_thread = 0;
    catchup_head = pst.max_seq;
    o.threads = 1;
    workers_start(1);
    struct worker *w = &workers[0];
    w->seen_bits = pst.max_seq + 1;
    w->seen = calloc(w->seen_bits / 8 + 1, 1);
    if (!w->seen)
        die("out of memory");
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    workers_cmd(CMD_CONNECT);
    int done = wait_until(cond_caught_up, o.timeout) == 0;
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    uint64_t t_end = done ? atomic_load(&w->caught_up_at) : b.wall_ns;
    b.wall_ns = t_end;
    struct tsb_cpu_use u = tsb_cpu_between(a, b);
    teardown();
    struct sub *s = &w->subs[0];
    uint64_t received = s->snap_comments + s->events;
    uint64_t missing = 0;
    for (size_t i = 0; i < pst.n_ids; i++) {
        uint64_t id = pst.ids[i];
        if (!(w->seen[id >> 3] & (1u << (id & 7))))
            missing++;
    }
    double rate = (double)received / u.wall_s;
    double per_comment = pst.acked ? (double)(rss1 - rss0) * 1024.0 / (double)pst.acked : 0;
    json_begin(json, sizeof(json), "catchup");
    tsb_json_add(json, sizeof(json),
                 ",\"preloaded\":%llu,\"preload_per_s\":%.0f,\"preload_server_cpu\":%.2f,"
                 "\"snapshot_comments\":%llu,\"event_comments\":%llu,\"comments_per_s\":%.0f,"
                 "\"wire_mb_per_s\":%.1f,\"missing\":%llu,\"dup\":%llu,\"caught_up\":%s,"
                 "\"rss_per_comment_b\":%.0f,\"raw_per_comment_b\":%zu,\"mirror_dir\":null",
                 (unsigned long long)pst.acked, (double)pst.acked / pu.wall_s, pu.srv_cores,
                 (unsigned long long)s->snap_comments, (unsigned long long)s->events, rate,
                 (double)s->bytes / u.wall_s / 1e6, (unsigned long long)missing,
                 (unsigned long long)s->dups, done ? "true" : "false", per_comment, raw);
    json_cpu(json, sizeof(json), u);
    tsb_json_add(json, sizeof(json), "}");
    snprintf(params, sizeof(params), "M=%llu from cursor 0", (unsigned long long)pst.acked);
    snprintf(fig, sizeof(fig), "%.0f comments/s on the wire (%.0f MB/s, %s) missing=%llu dup=%llu",
             rate, (double)s->bytes / u.wall_s / 1e6, s->snap_comments ? "snapshot" : "event log",
             (unsigned long long)missing, (unsigned long long)s->dups);
    print_row("catchup", params, fig);
    snprintf(fig, sizeof(fig), "%.0f B RSS per comment, raw %zu B (%.2fx)", per_comment, raw,
             per_comment / (double)raw);
    print_row("memory", "per stored comment", fig);
    printf("CPU|server %.2f cores, generator %.2f cores over %.1f s (preload: %.0f posts/s, server "
           "%.2f cores)\n",
           u.srv_cores, u.gen_cores, u.wall_s, (double)pst.acked / pu.wall_s, pu.srv_cores);
    printf("%s\n", json);
    free(w->seen);
    w->seen = NULL;
    free(pst.ids);
}

static void scenario_memory(void)
{
    char json[1024], params[64], fig[160];
    uint64_t rss0 = tsb_proc_rss_kib(o.server_pid);
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    setup_subs(o.subs);
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    sleep(2); /* idle: every handshake flight and batch is done */
    uint64_t rss1 = tsb_proc_rss_kib(o.server_pid);
    uint64_t live = WSUM(live);
    struct tsb_cpu_use u = tsb_cpu_between(a, b);
    teardown();
    double per = live ? (double)(rss1 - rss0) * 1024.0 / (double)live : 0;
    json_begin(json, sizeof(json), "memory");
    tsb_json_add(json, sizeof(json),
                 ",\"subs\":%u,\"live\":%llu,\"rss_before_kib\":%llu,\"rss_after_kib\":%llu,"
                 "\"rss_per_sub_b\":%.0f,\"connect_per_s\":%.0f",
                 o.subs, (unsigned long long)live, (unsigned long long)rss0,
                 (unsigned long long)rss1, per, (double)live / u.wall_s);
    json_cpu(json, sizeof(json), u);
    tsb_json_add(json, sizeof(json), "}");
    snprintf(params, sizeof(params), "N=%u idle TLS subscribers", o.subs);
    snprintf(fig, sizeof(fig), "%.0f B server RSS per subscriber (%llu live; set up at %.0f/s)",
             per, (unsigned long long)live, (double)live / u.wall_s);
    print_row("memory", params, fig);
    printf("CPU|server %.2f cores, generator %.2f cores over %.1f s (connection setup)\n",
           u.srv_cores, u.gen_cores, u.wall_s);
    printf("%s\n", json);
}

static void scenario_reconnect(void)
{
    char json[2048], params[96], fig[256];
    const uint64_t batch = 100;
    posters_start(1);
    if (wait_until(cond_posters_ready, o.timeout) != 0)
        die("poster did not connect");
    setup_subs(o.subs);
    reset_counts();
    post_n(batch); /* events before the drop */
    want_events = (uint64_t)o.subs * pst.acked;
    wait_until(cond_all_events, o.timeout);
    workers_cmd(CMD_DROP);
    if (wait_until(cond_all_down, o.timeout) != 0)
        fprintf(stderr, "ts_loadgen: not all subscribers dropped\n");
    post_n(batch); /* events while they are away: resumed from cursors */
    for (unsigned t = 0; t < o.threads; t++)
        tsb_hist_init(&workers[t].to_live);
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    workers_cmd(CMD_RECONNECT);
    int all = wait_until(cond_all_live, o.timeout) == 0;
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    want_events = (uint64_t)o.subs * pst.acked;
    wait_until(cond_all_events, 10);
    uint64_t resumed = 0;
    teardown();
    struct tsb_hist tl;
    tsb_hist_init(&tl);
    for (unsigned t = 0; t < o.threads; t++) {
        tsb_hist_merge(&tl, &workers[t].to_live);
        for (unsigned i = 0; i < workers[t].n_subs; i++)
            resumed += (uint64_t)workers[t].subs[i].resumed;
    }
    struct verdict v = verify(pst.acked, pst.acked_sum);
    struct tsb_cpu_use u = tsb_cpu_between(a, b);
    /* The storm is CPU work on both ends (a resumed handshake costs the
     * generator about what it costs the server, bench/ts_tlshs): when the
     * two share the machine, no schedule finishes before their CPU time
     * summed over the machine's cores. */
    double srv_s = u.srv_cores * u.wall_s, gen_s = u.gen_cores * u.wall_s;
    unsigned cores = uv_available_parallelism();
    double floor_s = (srv_s + gen_s) / cores;
    json_begin(json, sizeof(json), "reconnect");
    tsb_json_add(json, sizeof(json),
                 ",\"subs\":%u,\"all_live\":%s,\"all_live_s\":%.3f,\"resumed\":%llu,"
                 "\"resumption\":%s,\"storm_window\":%u,\"to_live_p50_ms\":%.1f,"
                 "\"to_live_p99_ms\":%.1f,\"missed_events_each\":%llu",
                 o.subs, all ? "true" : "false", u.wall_s, (unsigned long long)resumed,
                 o.no_resume ? "false" : "true", o.storm_window ? o.storm_window : o.subs,
                 tsb_hist_quantile(&tl, 0.5) / 1e6, tsb_hist_quantile(&tl, 0.99) / 1e6,
                 (unsigned long long)batch);
    tsb_json_add(json, sizeof(json),
                 ",\"server_ms_per_sub\":%.3f,\"gen_ms_per_sub\":%.3f,\"cores\":%u,"
                 "\"cpu_floor_s\":%.3f",
                 srv_s * 1e3 / o.subs, gen_s * 1e3 / o.subs, cores, floor_s);
    json_verdict(json, sizeof(json), v);
    json_cpu(json, sizeof(json), u);
    tsb_json_add(json, sizeof(json), "}");
    snprintf(params, sizeof(params), "N=%u%s", o.subs, o.no_resume ? " no resumption" : "");
    snprintf(fig, sizeof(fig), "all live in %.2f s (%llu resumed TLS) loss=%llu dup=%llu", u.wall_s,
             (unsigned long long)resumed, (unsigned long long)v.lost, (unsigned long long)v.dups);
    print_row("reconnect", params, fig);
    printf("CPU|server %.2f cores, generator %.2f cores over %.2f s: %.2f + %.2f ms per "
           "subscriber, at least %.2f s on %u cores\n",
           u.srv_cores, u.gen_cores, u.wall_s, srv_s * 1e3 / o.subs, gen_s * 1e3 / o.subs, floor_s,
           cores);
    printf("%s\n", json);
}

/* ---- main ---- */

static int read_token(const char *arg, char *out, size_t cap)
{
    if (!arg)
        return -1;
    if (arg[0] == '@') {
        FILE *f = fopen(arg + 1, "r");
        if (!f)
            return -1;
        int ok = fgets(out, (int)cap, f) != NULL;
        fclose(f);
        out[strcspn(out, "\r\n")] = '\0';
        return ok ? 0 : -1;
    }
    snprintf(out, cap, "%s", arg);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ts_loadgen --addr IP:PORT --ca FILE --reader-token T|@FILE "
               "--poster-token T|@FILE\n"
               "                  --scenario fanout|latency|ingest|catchup|memory|reconnect\n"
               "  --server-pid PID     server to measure (CPU, RSS)\n"
               "  --subs N             subscribers (fanout, latency, memory, reconnect)\n"
               "  --posters K          posting connections (ingest, catchup preload, fanout)\n"
               "  --window W           posts in flight per posting connection (default 64)\n"
               "  --posts P            posts (fanout) or comments to preload (catchup)\n"
               "  --rate R             posts per second (latency)\n"
               "  --duration S         seconds of posting (latency, ingest)\n"
               "  --threads T          subscriber loops, one thread each (default 1)\n"
               "  --filter-thread      subscribe to the benchmark's thread instead of all\n"
               "  --connect-window C   concurrent handshakes while setting up (default 256)\n"
               "  --storm-window C     concurrent handshakes in the reconnect storm (default all)\n"
               "  --no-resume          no TLS session resumption\n"
               "  --timeout S          give up waiting after S seconds (default 120)\n"
               "  --label TEXT         copied into the JSON line\n");
}

int main(int argc, char **argv)
{
    enum {
        O_ADDR = 256,
        O_CA,
        O_RT,
        O_PT,
        O_PID,
        O_SCEN,
        O_SUBS,
        O_POSTERS,
        O_WIN,
        O_POSTS,
        O_RATE,
        O_DUR,
        O_THR,
        O_FILT,
        O_CW,
        O_SW,
        O_NORES,
        O_TMO,
        O_LABEL,
        O_HELP
    };
    static const struct option lo[] = {{"addr", 1, 0, O_ADDR},
                                       {"ca", 1, 0, O_CA},
                                       {"reader-token", 1, 0, O_RT},
                                       {"poster-token", 1, 0, O_PT},
                                       {"server-pid", 1, 0, O_PID},
                                       {"scenario", 1, 0, O_SCEN},
                                       {"subs", 1, 0, O_SUBS},
                                       {"posters", 1, 0, O_POSTERS},
                                       {"window", 1, 0, O_WIN},
                                       {"posts", 1, 0, O_POSTS},
                                       {"rate", 1, 0, O_RATE},
                                       {"duration", 1, 0, O_DUR},
                                       {"threads", 1, 0, O_THR},
                                       {"filter-thread", 0, 0, O_FILT},
                                       {"connect-window", 1, 0, O_CW},
                                       {"storm-window", 1, 0, O_SW},
                                       {"no-resume", 0, 0, O_NORES},
                                       {"timeout", 1, 0, O_TMO},
                                       {"label", 1, 0, O_LABEL},
                                       {"help", 0, 0, O_HELP},
                                       {0, 0, 0, 0}};
    const char *addr = NULL, *rt = NULL, *pt = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case O_ADDR:
            addr = optarg;
            break;
        case O_CA:
            o.ca = optarg;
            break;
        case O_RT:
            rt = optarg;
            break;
        case O_PT:
            pt = optarg;
            break;
        case O_PID:
            o.server_pid = atoi(optarg);
            break;
        case O_SCEN:
            o.scenario = optarg;
            break;
        case O_SUBS:
            o.subs = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_POSTERS:
            o.posters = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_WIN:
            o.window = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_POSTS:
            o.posts = strtoull(optarg, NULL, 10);
            break;
        case O_RATE:
            o.rate = atof(optarg);
            break;
        case O_DUR:
            o.duration = atof(optarg);
            break;
        case O_THR:
            o.threads = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_FILT:
            o.filter_thread = 1;
            break;
        case O_CW:
            o.connect_window = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_SW:
            o.storm_window = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_NORES:
            o.no_resume = 1;
            break;
        case O_TMO:
            o.timeout = atof(optarg);
            break;
        case O_LABEL:
            o.label = optarg;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!addr || !o.ca || !o.scenario || read_token(rt, reader_tok, sizeof(reader_tok)) ||
        read_token(pt, poster_tok, sizeof(poster_tok))) {
        usage(stderr);
        return 2;
    }
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof(o.host))
        die("--addr wants IP:PORT");
    memcpy(o.host, addr, (size_t)(colon - addr));
    o.port = (uint16_t)atoi(colon + 1);
    if (uv_ip4_addr(o.host, o.port, &o.addr) != 0)
        die("--addr wants a numeric IPv4 address");
    if (o.threads < 1 || o.threads > THREADS_MAX || !o.window || !o.posters || !o.connect_window)
        die("bad --threads, --window, --posters or --connect-window");
    ts_log_set_level("warn");
    if (ts_tls_client_ctx(o.ca, NULL, NULL, &ctx) != TS_OK)
        die("cannot load the CA");
    snprintf(run_id, sizeof(run_id), "%d.%llu", (int)getpid(),
             (unsigned long long)(now_ns() / 1000000));
    snprintf(thread_key, sizeof(thread_key), "bench/%s/%s", o.scenario, run_id);
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fgets(loadavg, sizeof(loadavg), la))
            loadavg[strcspn(loadavg, "\n")] = '\0';
        fclose(la);
    }
    ml = uv_default_loop();
    uv_timer_init(ml, &tick);
    tsb_hist_init(&pst.ack_lat);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (!strcmp(o.scenario, "fanout"))
        scenario_fanout(0);
    else if (!strcmp(o.scenario, "latency"))
        scenario_fanout(1);
    else if (!strcmp(o.scenario, "ingest"))
        scenario_ingest();
    else if (!strcmp(o.scenario, "catchup"))
        scenario_catchup();
    else if (!strcmp(o.scenario, "memory"))
        scenario_memory();
    else if (!strcmp(o.scenario, "reconnect"))
        scenario_reconnect();
    else
        die("unknown --scenario");

    for (unsigned t = 0; t < THREADS_MAX; t++) {
        free(workers[t].subs);
        free(workers[t].ev);
    }
    for (unsigned i = 0; i < n_posters; i++) {
        free(posters[i].sent_at);
        free(posters[i].batch);
    }
    free(posters);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(ml, UV_RUN_DEFAULT);
    uv_loop_close(ml);
    SSL_CTX_free(ctx);
    return 0;
}
