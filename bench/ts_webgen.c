/*
 * ts_webgen: the web edge's load generator (bench/README.md, "The web
 * edge"). Simulated browsers on plain sockets, many per thread (one epoll
 * loop per --threads), against one `threadsync web`:
 *
 *   --scenario sse   N watchers on GET /t/KEY/events; once all are
 *                    connected and idle, the edge's RSS growth per watcher
 *                    is measured; then posts go through the edge's form
 *                    (JSON path, keep-alive, each answer carries the next
 *                    nonce and CSRF token) at --rate per second for
 *                    --duration seconds. Every post's body starts with
 *                    "tsb <CLOCK_MONOTONIC ns>", so each watcher's delivery
 *                    gives a post-to-browser latency.
 *   --scenario form  --posters keep-alive connections post as fast as the
 *                    edge answers for --duration seconds: form posts/s
 *                    through the edge to the cluster.
 *
 * The edge's CPU (utime + stime from /proc/PID/stat over the measured
 * phase) and RSS (/proc/PID/status) need --edge-pid. Output: one human
 * line (TABLE|...) and one JSON line, like ts_loadgen.
 *
 * HTTP here is the subset the edge speaks: HTTP/1.1, Content-Length or
 * chunked bodies, no compression asked for. Watchers decode the chunked
 * stream and look for the "tsb " stamp in each event; a watcher that
 * closes, errs or gets a non-200 is counted in `errors`.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_bench_hist.h"
#include "ts_bench_proc.h"

#define THREADS_MAX 16
#define EPOLL_BATCH 256
#define RBUF 16384
#define POSTERS_MAX 256

struct opts {
    const char *host, *key, *scenario;
    int port, threads, posters, edge_pid, recv_uring;
    long watchers;
    double rate, duration;
} o = {.host = "127.0.0.1",
       .key = "bench",
       .scenario = "sse",
       .threads = 1,
       .posters = 8,
       .watchers = 100,
       .rate = 10,
       .duration = 10};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- chunked decoding --------------------------------------------------- */

enum { CH_SIZE, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_DONE };

struct dechunk {
    int st;
    uint64_t rem;
};

/* Decodes in[0..n) in place into its payload bytes; returns their count. */
static size_t dechunk(struct dechunk *d, char *in, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        switch (d->st) {
        case CH_SIZE:
            if (c >= '0' && c <= '9')
                d->rem = d->rem * 16 + (uint64_t)(c - '0');
            else if ((c | 32) >= 'a' && (c | 32) <= 'f')
                d->rem = d->rem * 16 + (uint64_t)((c | 32) - 'a' + 10);
            else if (c == '\n')
                d->st = d->rem ? CH_DATA : CH_DONE;
            else
                d->st = CH_SIZE_LF; /* ';' extensions or '\r' */
            break;
        case CH_SIZE_LF:
            if (c == '\n')
                d->st = d->rem ? CH_DATA : CH_DONE;
            break;
        case CH_DATA: {
            size_t take = n - i < d->rem ? n - i : (size_t)d->rem;
            memmove(in + out, in + i, take);
            out += take;
            d->rem -= take;
            i += take - 1;
            if (!d->rem)
                d->st = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            d->st = c == '\r' ? CH_DATA_LF : CH_SIZE;
            if (c == '\n')
                d->st = CH_SIZE;
            break;
        case CH_DATA_LF:
            d->st = CH_SIZE;
            break;
        default:
            break;
        }
    }
    return out;
}

/* ---- watchers ------------------------------------------------------------ */

struct watcher {
    int fd;
    int head_done;
    char head[1024];
    size_t head_len;
    struct dechunk dc;
    /* SSE scanning: the "tsb " stamp of the current event */
    int match;      /* chars of "tsb " matched so far; 4: reading digits */
    uint64_t stamp; /* digits read */
    char prev;      /* previous byte: "\n\n" ends an event */
    uint64_t events;
};

struct worker {
    pthread_t th;
    int ep;
    struct watcher *w;
    long n;
    atomic_long connected, errors;
    atomic_ullong deliveries;
    atomic_int measuring, stop;
    struct tsb_hist hist;
};

static struct worker workers[THREADS_MAX];
static struct sockaddr_in edge;

static int connect_nb(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&edge, sizeof(edge)) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void watcher_bytes(struct worker *k, struct watcher *w, char *p, size_t n)
{
    n = dechunk(&w->dc, p, n);
    for (size_t i = 0; i < n; i++) {
        /* Outside a stamp only '\n' (an event's end) and 't' (a stamp's
         * start) change anything: skip to the next one (a byte-by-byte scan
         * of every event cost this generator more CPU than the edge's
         * relay spends on it). */
        if (w->match == 0 || w->match == 5) {
            char *nl = memchr(p + i, '\n', n - i);
            size_t stop = nl ? (size_t)(nl - p) : n;
            char *t = w->match == 0 ? memchr(p + i, 't', stop - i) : NULL;
            if (t)
                stop = (size_t)(t - p);
            if (stop > i) {
                w->prev = p[stop - 1];
                i = stop;
                if (i == n)
                    break;
            }
        }
        char c = p[i];
        if (w->match < 4) {
            w->match = c == "tsb "[w->match] ? w->match + 1 : (c == 't' ? 1 : 0);
            if (w->match == 4)
                w->stamp = 0;
        } else if (w->match == 4) {
            if (c >= '0' && c <= '9')
                w->stamp = w->stamp * 10 + (uint64_t)(c - '0');
            else
                w->match = 5; /* stamp complete for this event */
        }
        if (c == '\n' && w->prev == '\n') {
            if (w->match == 5) {
                w->events++;
                atomic_fetch_add_explicit(&k->deliveries, 1, memory_order_relaxed);
                if (atomic_load_explicit(&k->measuring, memory_order_relaxed)) {
                    /* the worker's own histogram: read after its join */
                    uint64_t t = now_ns();
                    tsb_hist_record(&k->hist, t > w->stamp ? t - w->stamp : 1);
                }
            }
            w->match = 0;
        }
        w->prev = c;
    }
}

static void watcher_fail(struct worker *k, struct watcher *w)
{
    if (w->fd >= 0) {
        epoll_ctl(k->ep, EPOLL_CTL_DEL, w->fd, NULL);
        close(w->fd);
        w->fd = -1;
        atomic_fetch_add(&k->errors, 1);
    }
}

/* Reads what w's socket holds; hup: the edge closed (read on to EOF). */
static void watcher_readable(struct worker *k, struct watcher *w, int hup)
{
    char buf[RBUF];
    for (;;) {
        ssize_t r = read(w->fd, buf, sizeof(buf));
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            watcher_fail(k, w);
            return;
        }
        char *p = buf;
        size_t n = (size_t)r;
        if (!w->head_done) {
            size_t take =
                n < sizeof(w->head) - 1 - w->head_len ? n : sizeof(w->head) - 1 - w->head_len;
            memcpy(w->head + w->head_len, p, take);
            w->head_len += take;
            w->head[w->head_len] = '\0';
            char *end = strstr(w->head, "\r\n\r\n");
            if (!end) {
                if (w->head_len == sizeof(w->head) - 1) {
                    watcher_fail(k, w);
                    return;
                }
                continue; /* edge-triggered: read on until EAGAIN */
            }
            if (strncmp(w->head, "HTTP/1.1 200", 12) != 0) {
                watcher_fail(k, w);
                return;
            }
            w->head_done = 1;
            atomic_fetch_add(&k->connected, 1);
            size_t body_off = (size_t)(end + 4 - w->head);
            size_t consumed_before = w->head_len - take; /* head bytes from earlier reads */
            size_t skip = body_off - consumed_before;    /* of this read */
            p += skip;
            n -= skip;
        }
        if (n)
            watcher_bytes(k, w, p, n);
        /* A short read drained the socket: edge-triggered epoll reports
         * the next bytes anew, so no read for EAGAIN (which doubled this
         * generator's syscalls on the 2 cores it shares with the edge). */
        if ((size_t)r < sizeof(buf) && !hup)
            return;
    }
}

#ifdef TSB_URING
#include <liburing.h>

/* --recv uring: the reads of one epoll_wait's ready watchers in one
 * io_uring_enter (a read of a ready socket completes inline), each into a
 * slot of its own; a slot filled to the brim means more is waiting, read
 * on the usual way. On this VM (page-table isolation, no PCID) a system
 * call is a large part of a small read's cost. */
#define RECV_SLOT 4096
struct recv_ring {
    struct io_uring ring;
    char (*slot)[RECV_SLOT];
    int ok;
};

static void recv_ring_init(struct recv_ring *r)
{
    r->ok = io_uring_queue_init(EPOLL_BATCH, &r->ring, 0) == 0 &&
            (r->slot = malloc((size_t)EPOLL_BATCH * RECV_SLOT)) != NULL;
}

/* Reads ready[0..n) (watchers past their head, not hung up) in one go. */
static void recv_ring_read(struct worker *k, struct recv_ring *r, struct watcher **ready, int n)
{
    for (int i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
        io_uring_prep_recv(sqe, ready[i]->fd, r->slot[i], RECV_SLOT, MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, (uint64_t)i);
    }
    io_uring_submit_and_wait(&r->ring, (unsigned)n);
    unsigned head, seen = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&r->ring, head, cqe)
    {
        int i = (int)io_uring_cqe_get_data64(cqe);
        struct watcher *w = ready[i];
        seen++;
        if (cqe->res == -EAGAIN)
            continue;
        if (cqe->res <= 0) {
            watcher_fail(k, w);
            continue;
        }
        watcher_bytes(k, w, r->slot[i], (size_t)cqe->res);
        if (cqe->res == RECV_SLOT)
            watcher_readable(k, w, 0); /* the rest, up to EAGAIN */
    }
    io_uring_cq_advance(&r->ring, seen);
}
#endif

static void *worker_main(void *arg)
{
    struct worker *k = arg;
    struct epoll_event evs[EPOLL_BATCH];
    struct watcher *ready[EPOLL_BATCH];
    int n_ready = 0;
#ifdef TSB_URING
    struct recv_ring rr = {0};
    if (o.recv_uring)
        recv_ring_init(&rr);
#endif
    char req[256];
    int rl = snprintf(
        req, sizeof(req),
        "GET /t/%s/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n", o.key);
    /* Connect in waves so the edge's accept queue is not overrun. */
    long next = 0;
    while (!atomic_load(&k->stop)) {
        for (int burst = 0; next < k->n && burst < 200; burst++, next++) {
            struct watcher *w = &k->w[next];
            w->fd = connect_nb();
            if (w->fd < 0) {
                atomic_fetch_add(&k->errors, 1);
                continue;
            }
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = w};
            epoll_ctl(k->ep, EPOLL_CTL_ADD, w->fd, &ev);
        }
        int n = epoll_wait(k->ep, evs, EPOLL_BATCH, 50);
        n_ready = 0;
        for (int i = 0; i < n; i++) {
            struct watcher *w = evs[i].data.ptr;
            if (w->fd < 0)
                continue;
            if ((evs[i].events & EPOLLOUT) && !w->head_len && !w->head_done) {
                /* connected: the request fits any socket buffer at once */
                if (write(w->fd, req, (size_t)rl) != rl) {
                    watcher_fail(k, w);
                    continue;
                }
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = w};
                epoll_ctl(k->ep, EPOLL_CTL_MOD, w->fd, &ev);
                w->head_len = 0;
            }
            int hup = (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
#ifdef TSB_URING
            if (rr.ok && w->head_done && !hup && (evs[i].events & EPOLLIN)) {
                ready[n_ready++] = w;
                continue;
            }
#endif
            if (hup || (evs[i].events & EPOLLIN))
                watcher_readable(k, w, hup);
        }
#ifdef TSB_URING
        if (n_ready)
            recv_ring_read(k, &rr, ready, n_ready);
#endif
        (void)ready;
        (void)n_ready;
    }
#ifdef TSB_URING
    if (rr.ok)
        io_uring_queue_exit(&rr.ring);
    free(rr.slot);
#endif
    for (long i = 0; i < k->n; i++)
        if (k->w[i].fd >= 0)
            close(k->w[i].fd);
    return NULL;
}

/* ---- posters (blocking, one thread each: they are few) ------------------- */

struct poster {
    pthread_t th;
    int fd;
    char nonce[64], csrf[80];
    char *buf; /* grows: a thread page holds every comment posted so far */
    size_t len, cap;
    atomic_long ok, fail;
};

static struct poster posters[POSTERS_MAX];
static atomic_int post_stop;
/* sse: posts due, handed out by the pacer. A semaphore, not a counter the
 * posters poll: 8 posters polling every 200 us woke 40,000 times a second
 * on the cores the edge is measured on. */
static sem_t post_tickets;

static int connect_blocking(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&edge, sizeof(edge)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Room for at least 64 KiB more after off in p->buf. */
static int room(struct poster *p, size_t off)
{
    if (off + 65536 <= p->cap)
        return 0;
    size_t cap = p->cap ? p->cap : 1 << 20;
    while (off + 65536 > cap)
        cap *= 2;
    char *b = cap <= ((size_t)256 << 20) ? realloc(p->buf, cap) : NULL;
    if (!b)
        return -1;
    p->buf = b;
    p->cap = cap;
    return 0;
}

/* Reads one response (Content-Length or chunked) into p->buf, body
 * NUL-terminated; returns its status or -1. */
static int read_response(struct poster *p)
{
    p->len = 0;
    char *end = NULL;
    while (!end) {
        if (room(p, p->len) || p->len > 65536)
            return -1;
        ssize_t r = read(p->fd, p->buf + p->len, p->cap - 1 - p->len);
        if (r <= 0)
            return -1;
        p->len += (size_t)r;
        p->buf[p->len] = '\0';
        end = strstr(p->buf, "\r\n\r\n");
    }
    int status = atoi(p->buf + 9);
    size_t hl = (size_t)(end + 4 - p->buf);
    const char *cl = strcasestr(p->buf, "\r\ncontent-length:");
    int chunked = cl == NULL || cl > end;
    size_t want = chunked ? 0 : strtoul(cl + 17, NULL, 10);
    struct dechunk dc = {0};
    char *b = p->buf + hl; /* room() may move buf: b is taken again below */
    size_t body = chunked ? dechunk(&dc, b, p->len - hl) : p->len - hl;
    /* dechunk compacts in place, so each read lands right after the
     * payload so far and is decoded where it lies. */
    while (chunked ? dc.st != CH_DONE : body < want) {
        size_t off = hl + body;
        if (room(p, off))
            return -1;
        ssize_t r = read(p->fd, p->buf + off, p->cap - 1 - off);
        if (r <= 0)
            return -1;
        body += chunked ? dechunk(&dc, p->buf + off, (size_t)r) : (size_t)r;
    }
    if (!chunked && body > want)
        body = want;
    b = p->buf + hl;
    b[body] = '\0';
    memmove(p->buf, b, body + 1);
    return status;
}

static int grab(const char *s, const char *before, char *out, size_t size)
{
    const char *a = strstr(s, before);
    if (!a)
        return -1;
    a += strlen(before);
    size_t i = 0;
    while (a[i] && a[i] != '"' && i + 1 < size) {
        out[i] = a[i];
        i++;
    }
    out[i] = '\0';
    return 0;
}

static int poster_tokens_from_page(struct poster *p)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET /t/%s HTTP/1.1\r\nHost: bench\r\n\r\n", o.key);
    if (write(p->fd, req, (size_t)n) != n || read_response(p) != 200)
        return -1;
    if (grab(p->buf, "name=\"nonce\" value=\"", p->nonce, sizeof(p->nonce)) ||
        grab(p->buf, "name=\"csrf\" value=\"", p->csrf, sizeof(p->csrf)))
        return -1;
    return 0;
}

static int poster_post(struct poster *p)
{
    static const char pad[] = "+lorem+ipsum+dolor+sit+amet+consectetur+adipiscing+elit+sed+do+"
                              "eiusmod+tempor+incididunt+ut+labore+et+dolore+magna+aliqua+ut+"
                              "enim+ad+minim+veniam+quis+nostrud+exercitation+ullamco+laboris";
    char body[1024], req[1536];
    int bl = snprintf(
        body, sizeof(body),
        "nonce=%s&csrf=%s&name=Bench+Reader&email=&parent=0&website=&body=tsb+%" PRIu64 "%s",
        p->nonce, p->csrf, now_ns(), pad);
    int rl =
        snprintf(req, sizeof(req),
                 "POST /t/%s/post HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n"
                 "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
                 o.key, bl, body);
    if (write(p->fd, req, (size_t)rl) != rl)
        return -1;
    int st = read_response(p);
    if (st != 200)
        return -1;
    if (grab(p->buf, "\"nonce\":\"", p->nonce, sizeof(p->nonce)) ||
        grab(p->buf, "\"csrf\":\"", p->csrf, sizeof(p->csrf)))
        return -1;
    return 0;
}

static void *poster_main(void *arg)
{
    struct poster *p = arg;
    p->fd = connect_blocking();
    if (p->fd < 0 || poster_tokens_from_page(p)) {
        atomic_fetch_add(&p->fail, 1);
        return NULL;
    }
    int paced = strcmp(o.scenario, "sse") == 0;
    while (!atomic_load(&post_stop)) {
        if (paced) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 50L * 1000 * 1000; /* then post_stop is looked at again */
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            if (sem_timedwait(&post_tickets, &until) != 0)
                continue;
        }
        if (poster_post(p)) {
            atomic_fetch_add(&p->fail, 1);
            /* a refused or broken exchange: start over on a new connection */
            close(p->fd);
            p->fd = connect_blocking();
            if (p->fd < 0 || poster_tokens_from_page(p))
                return NULL;
        } else {
            atomic_fetch_add(&p->ok, 1);
        }
    }
    close(p->fd);
    free(p->buf);
    return NULL;
}

/* ---- the edge's figures --------------------------------------------------- */

static double edge_cpu_s(void)
{
    return tsb_proc_cpu_s(o.edge_pid);
}

static long edge_rss_kib(void)
{
    return (long)tsb_proc_rss_kib(o.edge_pid);
}

static long total(atomic_long *(*get)(int), int n)
{
    long s = 0;
    for (int i = 0; i < n; i++)
        s += atomic_load(get(i));
    return s;
}
static atomic_long *w_connected(int i)
{
    return &workers[i].connected;
}
static atomic_long *w_errors(int i)
{
    return &workers[i].errors;
}
static atomic_long *p_ok(int i)
{
    return &posters[i].ok;
}
static atomic_long *p_fail(int i)
{
    return &posters[i].fail;
}

static unsigned long long deliveries(void)
{
    unsigned long long s = 0;
    for (int i = 0; i < o.threads; i++)
        s += atomic_load(&workers[i].deliveries);
    return s;
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- watchers: start, wait, stop (sse and floor) -------------------------- */

static const char *recv_how(void)
{
#ifdef TSB_URING
    return o.recv_uring ? "uring" : "read";
#else
    return o.recv_uring ? "read (built without liburing)" : "read";
#endif
}

static void watchers_start(void)
{
    long per = o.watchers / o.threads, rest = o.watchers % o.threads;
    for (int i = 0; i < o.threads; i++) {
        struct worker *k = &workers[i];
        k->n = per + (i < rest);
        k->w = calloc((size_t)k->n ? (size_t)k->n : 1, sizeof(*k->w));
        k->ep = epoll_create1(EPOLL_CLOEXEC);
        tsb_hist_init(&k->hist);
        for (long j = 0; j < k->n; j++)
            k->w[j].fd = -1;
        pthread_create(&k->th, NULL, worker_main, k);
    }
}

/* Waits until every watcher is connected or failed, at most 2 minutes;
 * returns the seconds it took. */
static double watchers_wait(void)
{
    uint64_t t = now_ns();
    while (total(w_connected, o.threads) + total(w_errors, o.threads) < o.watchers &&
           now_ns() - t < 120ull * 1000000000u)
        sleep_s(0.05);
    return (double)(now_ns() - t) / 1e9;
}

/* CPU seconds of the watcher threads so far (their receive side alone). */
static double watchers_cpu_s(void)
{
    double s = 0;
    for (int i = 0; i < o.threads; i++) {
        clockid_t id;
        struct timespec ts;
        if (pthread_getcpuclockid(workers[i].th, &id) == 0 && clock_gettime(id, &ts) == 0)
            s += (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    return s;
}

static void watchers_set_measuring(int on)
{
    for (int i = 0; i < o.threads; i++)
        atomic_store(&workers[i].measuring, on);
}

/* Stops and joins the watchers; their latencies merged into h. */
static void watchers_stop(struct tsb_hist *h)
{
    for (int i = 0; i < o.threads; i++)
        atomic_store(&workers[i].stop, 1);
    tsb_hist_init(h);
    for (int i = 0; i < o.threads; i++) {
        pthread_join(workers[i].th, NULL);
        tsb_hist_merge(h, &workers[i].hist);
        close(workers[i].ep);
        free(workers[i].w);
    }
}

/* All CPU time of the machine so far (every core, every state but idle and
 * iowait, from /proc/stat), in seconds: on loopback part of a delivery's
 * cost may land outside both processes (softirq work run by ksoftirqd). */
static double machine_busy_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8)
        return 0;
    /* user nice system idle iowait irq softirq steal */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- floor: the kernel's share of a delivery, without the edge ------------
 *
 * --scenario floor: this process listens on loopback itself, its watchers
 * (the same receive side as sse) connect to it, and --writers threads write
 * one event of --msg-bytes (a chunk of the edge's format, with a "tsb"
 * stamp taken when the sweep starts) to every watcher's socket, --rate
 * sweeps a second: each writer its share of the sockets (socket i to writer
 * i % W), one send(2) each (--send sendmsg) or batches of --batch sends in
 * one io_uring_enter (--send uring). Per sweep: the writers' CPU (their
 * thread clocks) per send, the sweep's wall time (its stamp to the last
 * writer's end) and, at the receivers, the stamp-to-read latency. What an
 * edge adds to a delivery beyond this is its own code and its hand-offs.
 */

#define FLOOR_WRITERS_MAX 8

struct floor_writer {
    pthread_t th;
    int idx;
    uint64_t sends, partial, errors, cpu_ns, end_ns;
};

static struct {
    int *fds;
    long n_fds;
    atomic_long accepted;
    atomic_int stop;
    int lfd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen; /* sweep number: writers start when it moves */
    int done;     /* writers done with this sweep */
    int quit;
    char msg[4096];
    size_t msg_len;
    struct floor_writer w[FLOOR_WRITERS_MAX];
} fl = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static struct {
    int writers, msg_bytes, sndbuf, nodelay, batch, uring;
} fo = {.writers = 1, .msg_bytes = 200, .nodelay = 1, .batch = 256};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *floor_accept_main(void *arg)
{
    (void)arg;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    while (!atomic_load(&fl.stop) && atomic_load(&fl.accepted) < fl.n_fds) {
        int fd = accept4(fl.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                sleep_s(0.001);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &fo.nodelay, sizeof(fo.nodelay));
        if (fo.sndbuf)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &fo.sndbuf, sizeof(fo.sndbuf));
        /* the request stays unread in the socket: nothing here needs it */
        if (write(fd, head, sizeof(head) - 1) != (ssize_t)sizeof(head) - 1) {
            close(fd);
            continue;
        }
        long i = atomic_load(&fl.accepted);
        fl.fds[i] = fd;
        atomic_store(&fl.accepted, i + 1);
    }
    return NULL;
}

static void floor_send_plain(struct floor_writer *fw)
{
    for (long i = fw->idx; i < fl.n_fds; i += fo.writers) {
        /* as the edge's threads write: sendmsg, one iovec */
        struct iovec v = {.iov_base = fl.msg, .iov_len = fl.msg_len};
        struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
        ssize_t r = sendmsg(fl.fds[i], &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        fw->sends++;
        if (r < 0)
            fw->errors++;
        else if ((size_t)r < fl.msg_len)
            fw->partial++;
    }
}

#ifdef TSB_URING

static int floor_ring_init(struct io_uring *ring)
{
    /* The cheapest completion mode the kernel takes: one thread submits
     * and reaps, completions run when it waits for them. */
    unsigned flags[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                        IORING_SETUP_COOP_TASKRUN, 0};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (io_uring_queue_init((unsigned)fo.batch, ring, flags[i]) == 0)
            return 0;
    return -1;
}

static void floor_send_uring(struct floor_writer *fw, struct io_uring *ring)
{
    /* sendmsg, as the edge's threads submit theirs (the kernel only reads
     * the header: one for all) */
    struct iovec v = {.iov_base = fl.msg, .iov_len = fl.msg_len};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    long i = fw->idx;
    while (i < fl.n_fds) {
        unsigned k = 0;
        for (; k < (unsigned)fo.batch && i < fl.n_fds; k++, i += fo.writers) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            io_uring_prep_sendmsg(sqe, fl.fds[i], &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        io_uring_submit_and_wait(ring, k);
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(ring, head, cqe)
        {
            fw->sends++;
            if (cqe->res < 0)
                fw->errors++;
            else if ((size_t)cqe->res < fl.msg_len)
                fw->partial++;
            seen++;
        }
        io_uring_cq_advance(ring, seen);
    }
}
#endif

static void *floor_writer_main(void *arg)
{
    struct floor_writer *fw = arg;
#ifdef TSB_URING
    struct io_uring ring;
    int have_ring = fo.uring && floor_ring_init(&ring) == 0;
#endif
    uint64_t seen = 0;
    pthread_mutex_lock(&fl.mu);
    for (;;) {
        while (fl.gen == seen && !fl.quit)
            pthread_cond_wait(&fl.cv, &fl.mu);
        if (fl.quit)
            break;
        seen = fl.gen;
        pthread_mutex_unlock(&fl.mu);
        uint64_t c0 = thread_cpu_ns();
#ifdef TSB_URING
        if (have_ring)
            floor_send_uring(fw, &ring);
        else
#endif
            floor_send_plain(fw);
        uint64_t c1 = thread_cpu_ns(), t1 = now_ns();
        pthread_mutex_lock(&fl.mu);
        fw->cpu_ns += c1 - c0;
        fw->end_ns = t1;
        fl.done++;
        pthread_cond_broadcast(&fl.cv);
    }
    pthread_mutex_unlock(&fl.mu);
#ifdef TSB_URING
    if (have_ring)
        io_uring_queue_exit(&ring);
#endif
    return NULL;
}

/* The sweep's event: one chunk in the edge's framing, about msg_bytes long
 * with its chunk head and tail, the stamp in its body. */
static void floor_msg(uint64_t seq, uint64_t stamp)
{
    char ev[4096];
    int n =
        snprintf(ev, sizeof(ev),
                 "id: %" PRIu64 "\nevent: comment\ndata: {\"comment\":{\"body\":\"tsb %" PRIu64 " ",
                 seq, stamp);
    int want = fo.msg_bytes - 8 /* chunk head and tail */ - 5 /* "\"}}\n\n" */;
    while (n < want && n < (int)sizeof(ev) - 8)
        ev[n++] = 'x';
    n += snprintf(ev + n, sizeof(ev) - (size_t)n, "\"}}\n\n");
    fl.msg_len = (size_t)snprintf(fl.msg, sizeof(fl.msg), "%x\r\n%.*s\r\n", n, n, ev);
}

/* The floor's receiving end, a child process of its own (both ends of
 * 10,000 connections in one process would need more descriptors than
 * this machine's hard limit, 20,000): its watchers connect, it tells the
 * parent how many did (up), starts measuring at 'm' and stops at 's' (down),
 * then reports its figures and its latencies. */
struct floor_report {
    long connected, errors;
    unsigned long long deliveries;
    double recv_cpu_s;
};

static int io_all(int fd, void *p, size_t n, int out)
{
    for (size_t k = 0; k < n;) {
        ssize_t r = out ? write(fd, (char *)p + k, n - k) : read(fd, (char *)p + k, n - k);
        if (r <= 0)
            return -1;
        k += (size_t)r;
    }
    return 0;
}

static int floor_child(int down, int up)
{
    static struct tsb_hist h;
    struct floor_report rep = {0};
    char cmd = 0;
    watchers_start();
    watchers_wait();
    rep.connected = total(w_connected, o.threads);
    io_all(up, &rep.connected, sizeof(rep.connected), 1);
    io_all(down, &cmd, 1, 0); /* 'm' */
    watchers_set_measuring(1);
    unsigned long long d0 = deliveries();
    double r0 = tsb_self_cpu_s();
    io_all(down, &cmd, 1, 0); /* 's' */
    rep.deliveries = deliveries() - d0;
    rep.recv_cpu_s = tsb_self_cpu_s() - r0;
    rep.errors = total(w_errors, o.threads);
    watchers_stop(&h);
    io_all(up, &rep, sizeof(rep), 1);
    io_all(up, &h, sizeof(h), 1);
    return 0;
}

static int floor_run(const char *load)
{
    fl.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fl.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (bind(fl.lfd, (struct sockaddr *)&a, sizeof(a)) || listen(fl.lfd, 4096) ||
        getsockname(fl.lfd, (struct sockaddr *)&a, &al)) {
        perror("ts_webgen: floor listener");
        return 1;
    }
    edge = a;
    int down[2], up[2];
    if (pipe(down) || pipe(up)) {
        perror("ts_webgen: pipe");
        return 1;
    }
    fflush(stdout);
    pid_t child = fork(); /* before any thread */
    if (child < 0) {
        perror("ts_webgen: fork");
        return 1;
    }
    if (child == 0) {
        close(fl.lfd);
        close(down[1]);
        close(up[0]);
        _exit(floor_child(down[0], up[1]));
    }
    close(down[0]);
    close(up[1]);
    fl.n_fds = o.watchers;
    fl.fds = calloc((size_t)o.watchers, sizeof(*fl.fds));
    uint64_t tc = now_ns();
    pthread_t acc;
    pthread_create(&acc, NULL, floor_accept_main, NULL);
    long connected = 0;
    if (io_all(up[0], &connected, sizeof(connected), 0)) {
        fprintf(stderr, "ts_webgen: the floor's receiving process ended\n");
        return 1;
    }
    double connect_s = (double)(now_ns() - tc) / 1e9;
    atomic_store(&fl.stop, 1);
    pthread_join(acc, NULL);
    fl.n_fds = atomic_load(&fl.accepted); /* the writers' share of these */
    for (int i = 0; i < fo.writers; i++) {
        fl.w[i].idx = i;
        pthread_create(&fl.w[i].th, NULL, floor_writer_main, &fl.w[i]);
    }
    sleep_s(0.5);
    char cmd = 'm';
    io_all(down[1], &cmd, 1, 1);
    struct tsb_hist sweeps;
    tsb_hist_init(&sweeps);
    double g0 = tsb_self_cpu_s(), m0 = machine_busy_s();
    uint64_t t0 = now_ns(), next = t0, seq = 0;
    long late = 0;
    while (now_ns() - t0 < (uint64_t)(o.duration * 1e9)) {
        uint64_t t = now_ns();
        if (t < next) {
            sleep_s((double)(next - t) / 1e9);
            t = now_ns();
        }
        if (t > next + 1000000)
            late++; /* the last sweep ran past this one's start */
        next += (uint64_t)(1e9 / o.rate);
        pthread_mutex_lock(&fl.mu);
        floor_msg(++seq, t);
        fl.done = 0;
        fl.gen++;
        pthread_cond_broadcast(&fl.cv);
        while (fl.done < fo.writers)
            pthread_cond_wait(&fl.cv, &fl.mu);
        uint64_t end = 0;
        for (int i = 0; i < fo.writers; i++)
            end = fl.w[i].end_ns > end ? fl.w[i].end_ns : end;
        pthread_mutex_unlock(&fl.mu);
        tsb_hist_record(&sweeps, end - t);
    }
    sleep_s(0.5); /* the last reads */
    double wall = (double)(now_ns() - t0) / 1e9;
    double gen_cpu = tsb_self_cpu_s() - g0, machine = machine_busy_s() - m0;
    cmd = 's';
    io_all(down[1], &cmd, 1, 1);
    static struct tsb_hist h;
    struct floor_report rep = {0};
    if (io_all(up[0], &rep, sizeof(rep), 0) || io_all(up[0], &h, sizeof(h), 0)) {
        fprintf(stderr, "ts_webgen: the floor's receiving process ended\n");
        return 1;
    }
    waitpid(child, NULL, 0);
    unsigned long long dl = rep.deliveries;
    double recv_cpu = rep.recv_cpu_s;
    pthread_mutex_lock(&fl.mu);
    fl.quit = 1;
    pthread_cond_broadcast(&fl.cv);
    pthread_mutex_unlock(&fl.mu);
    uint64_t sends = 0, partial = 0, errs = 0, cpu_ns = 0;
    for (int i = 0; i < fo.writers; i++) {
        pthread_join(fl.w[i].th, NULL);
        sends += fl.w[i].sends;
        partial += fl.w[i].partial;
        errs += fl.w[i].errors;
        cpu_ns += fl.w[i].cpu_ns;
    }
    for (long i = 0; i < fl.n_fds; i++)
        close(fl.fds[i]);
    close(fl.lfd);
    free(fl.fds);
    long errors = rep.errors;
    double send_us = sends ? (double)cpu_ns / 1e3 / (double)sends : 0;
    double recv_us = dl ? recv_cpu * 1e6 / (double)dl : 0;
    double mach_us = dl ? machine * 1e6 / (double)dl : 0;
    double p50 = (double)tsb_hist_quantile(&h, 0.5) / 1e6,
           p99 = (double)tsb_hist_quantile(&h, 0.99) / 1e6;
    double sw50 = (double)tsb_hist_quantile(&sweeps, 0.5) / 1e6,
           sw99 = (double)tsb_hist_quantile(&sweeps, 0.99) / 1e6;
    const char *how = fo.uring ? "uring" : "sendmsg";
#ifndef TSB_URING
    if (fo.uring)
        how = "sendmsg (built without liburing)";
#endif
    printf("TABLE|web-floor|N=%ld writers=%d %s msg=%zu B|%.2f us CPU/send|sweep p50 %.2f ms "
           "max %.2f ms|p50 %.2f ms p99 %.2f ms|recv %.2f us/delivery|machine %.2f "
           "us/delivery|errors %ld late %ld\n",
           o.watchers, fo.writers, how, fl.msg_len, send_us, sw50, (double)sweeps.max / 1e6, p50,
           p99, recv_us, mach_us, errors + (long)errs, late);
    printf("{\"scenario\":\"web_floor\",\"loadavg\":\"%s\",\"watchers\":%ld,\"connected\":%ld,"
           "\"connect_s\":%.2f,\"writers\":%d,\"send\":\"%s\",\"batch\":%d,\"msg_bytes\":%zu,"
           "\"nodelay\":%d,\"sndbuf\":%d,\"rate\":%.1f,\"wall_s\":%.2f,\"sweeps\":%" PRIu64
           ",\"sends\":%" PRIu64 ",\"partial_sends\":%" PRIu64 ",\"send_errors\":%" PRIu64
           ",\"send_cpu_us\":%.3f,\"sweep_p50_ms\":%.3f,\"sweep_p99_ms\":%.3f,\"sweep_max_ms\":"
           "%.3f,\"deliveries\":%llu,\"delivered_ratio\":%.4f,\"latency_p50_ms\":%.3f,"
           "\"latency_p99_ms\":%.3f,\"latency_max_ms\":%.3f,\"recv_cpu_us_per_delivery\":%.3f,"
           "\"writer_cpu_cores\":%.3f,\"machine_cpu_us_per_delivery\":%.3f,\"machine_cpu_cores\":"
           "%.3f,\"watcher_errors\":%ld,\"late_sweeps\":%ld,\"recv\":\"%s\"}\n",
           load, o.watchers, connected, connect_s, fo.writers, how, fo.batch, fl.msg_len,
           fo.nodelay, fo.sndbuf, o.rate, wall, seq, sends, partial, errs, send_us, sw50, sw99,
           (double)sweeps.max / 1e6, dl, sends ? (double)dl / (double)sends : 0, p50, p99,
           (double)h.max / 1e6, recv_us, gen_cpu / wall, mach_us, machine / wall, errors, late,
           recv_how());
    return errors || errs ? 1 : 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: ts_webgen --port PORT [--host 127.0.0.1] [--key bench] [--edge-pid PID]\n"
            "         --scenario sse [--watchers N] [--threads T] [--rate POSTS/S] [--duration S]\n"
            "         [--recv read|uring]\n"
            "         --scenario form [--posters K] [--duration S]\n"
            "       ts_webgen --scenario floor [--watchers N] [--threads T] [--rate SWEEPS/S]\n"
            "         [--duration S] [--writers W] [--send sendmsg|uring] [--batch B]\n"
            "         [--msg-bytes B] [--nodelay 0|1] [--sndbuf BYTES]\n");
    return 2;
}

int main(int argc, char **argv)
{
    /* flag value pairs: two arguments a step */
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (!strcmp(a, "--host"))
            o.host = v;
        else if (!strcmp(a, "--port"))
            o.port = atoi(v);
        else if (!strcmp(a, "--key"))
            o.key = v;
        else if (!strcmp(a, "--scenario"))
            o.scenario = v;
        else if (!strcmp(a, "--watchers"))
            o.watchers = atol(v);
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--posters"))
            o.posters = atoi(v);
        else if (!strcmp(a, "--rate"))
            o.rate = atof(v);
        else if (!strcmp(a, "--duration"))
            o.duration = atof(v);
        else if (!strcmp(a, "--edge-pid"))
            o.edge_pid = atoi(v);
        else if (!strcmp(a, "--recv"))
            o.recv_uring = !strcmp(v, "uring") ? 1 : !strcmp(v, "read") ? 0 : -1;
        else if (!strcmp(a, "--writers"))
            fo.writers = atoi(v);
        else if (!strcmp(a, "--send"))
            fo.uring = !strcmp(v, "uring") ? 1 : !strcmp(v, "sendmsg") ? 0 : -1;
        else if (!strcmp(a, "--batch"))
            fo.batch = atoi(v);
        else if (!strcmp(a, "--msg-bytes"))
            fo.msg_bytes = atoi(v);
        else if (!strcmp(a, "--nodelay"))
            fo.nodelay = atoi(v);
        else if (!strcmp(a, "--sndbuf"))
            fo.sndbuf = atoi(v);
        else
            return usage();
    }
    int floor_mode = strcmp(o.scenario, "floor") == 0;
    if (floor_mode && (fo.writers < 1 || fo.writers > FLOOR_WRITERS_MAX || fo.uring < 0 ||
                       fo.batch < 1 || fo.batch > 4096 || fo.msg_bytes < 64 || fo.msg_bytes > 4000))
        return usage();
    if ((!o.port && !floor_mode) || o.recv_uring < 0 || o.threads < 1 || o.threads > THREADS_MAX ||
        o.posters < 1 || o.posters > POSTERS_MAX || o.rate <= 0 || o.duration <= 0)
        return usage();
    int sse = strcmp(o.scenario, "sse") == 0;
    if (!sse && !floor_mode && strcmp(o.scenario, "form") != 0)
        return usage();
    sem_init(&post_tickets, 0, 0);
    /* N watchers need N descriptors, plus a few. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t need = (rlim_t)o.watchers + 64; /* floor: each of its two processes */
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((sse || floor_mode) && need > rl.rlim_cur) {
        fprintf(stderr, "ts_webgen: RLIMIT_NOFILE %lu is below %ld watchers\n",
                (unsigned long)rl.rlim_cur, o.watchers);
        return 1;
    }
    edge.sin_family = AF_INET;
    edge.sin_port = htons((uint16_t)o.port);
    inet_pton(AF_INET, o.host, &edge.sin_addr);
    char load[64] = "";
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (!fgets(load, sizeof(load), la))
            load[0] = '\0';
        fclose(la);
        load[strcspn(load, "\n")] = '\0';
    }
    if (floor_mode)
        return floor_run(load);

    if (!sse) {
        double c0 = edge_cpu_s();
        uint64_t t0 = now_ns();
        for (int i = 0; i < o.posters; i++)
            pthread_create(&posters[i].th, NULL, poster_main, &posters[i]);
        sleep_s(o.duration);
        atomic_store(&post_stop, 1);
        for (int i = 0; i < o.posters; i++)
            pthread_join(posters[i].th, NULL);
        double wall = (double)(now_ns() - t0) / 1e9, cpu = edge_cpu_s() - c0;
        long ok = total(p_ok, o.posters), fail = total(p_fail, o.posters);
        printf("TABLE|web-form|posters=%d|%.0f posts/s|edge cpu %.2f cores|errors %ld\n", o.posters,
               (double)ok / wall, cpu / wall, fail);
        printf("{\"scenario\":\"web_form\",\"loadavg\":\"%s\",\"posters\":%d,\"wall_s\":%.2f,"
               "\"posts\":%ld,\"posts_per_s\":%.1f,\"edge_cpu_cores\":%.3f,\"errors\":%ld}\n",
               load, o.posters, wall, ok, (double)ok / wall, cpu / wall, fail);
        return fail ? 1 : 0;
    }

    long rss0 = edge_rss_kib();
    watchers_start();
    double connect_s = watchers_wait();
    sleep_s(1.0); /* idle: let the edge settle before reading its RSS */
    long rss1 = edge_rss_kib();
    long connected = total(w_connected, o.threads);

    for (int i = 0; i < o.posters; i++)
        pthread_create(&posters[i].th, NULL, poster_main, &posters[i]);
    sleep_s(0.5); /* posters have their first form tokens */
    watchers_set_measuring(1);
    unsigned long long d0 = deliveries();
    double c0 = edge_cpu_s(), r0 = watchers_cpu_s(), g0 = tsb_self_cpu_s();
    uint64_t t0 = now_ns();
    double interval = 1.0 / o.rate;
    long due = 0, late = 0;
    while (now_ns() - t0 < (uint64_t)(o.duration * 1e9)) {
        long should = (long)((double)(now_ns() - t0) / 1e9 / interval) + 1;
        if (should > due) {
            int queued = 0;
            sem_getvalue(&post_tickets, &queued);
            if (queued > o.posters)
                late += should - due; /* posters cannot keep up: counted, not queued */
            else
                for (long i = due; i < should; i++)
                    sem_post(&post_tickets);
            due = should;
        }
        sleep_s(interval / 4 < 0.002 ? interval / 4 : 0.002);
    }
    atomic_store(&post_stop, 1);
    for (int i = 0; i < o.posters; i++)
        pthread_join(posters[i].th, NULL);
    sleep_s(1.0); /* the last deliveries */
    double wall = (double)(now_ns() - t0) / 1e9, cpu = edge_cpu_s() - c0;
    double recv_cpu = watchers_cpu_s() - r0, gen_cpu = tsb_self_cpu_s() - g0;
    unsigned long long dl = deliveries() - d0;
    struct tsb_hist h;
    watchers_stop(&h);
    long ok = total(p_ok, o.posters), fail = total(p_fail, o.posters);
    long errors = total(w_errors, o.threads);
    double rss_per = connected ? (double)(rss1 - rss0) * 1024.0 / (double)connected : 0;
    double p50 = (double)tsb_hist_quantile(&h, 0.5) / 1e6,
           p99 = (double)tsb_hist_quantile(&h, 0.99) / 1e6;
    /* Every acknowledged post should reach every connected watcher. */
    double expect = (double)ok * (double)(connected - errors);
    printf("TABLE|web-sse|N=%ld rate=%.0f/s|%.0f deliveries/s|p50 %.2f ms p99 %.2f ms|edge cpu "
           "%.2f cores, %.2f us/delivery|gen %.2f us/delivery|rss %.0f B/watcher|delivered %.3f "
           "of expected|errors %ld late %ld\n",
           o.watchers, o.rate, (double)dl / wall, p50, p99, cpu / wall,
           dl ? cpu * 1e6 / (double)dl : 0, dl ? gen_cpu * 1e6 / (double)dl : 0, rss_per,
           expect > 0 ? (double)dl / expect : 0, errors + fail, late);
    printf("{\"scenario\":\"web_sse\",\"loadavg\":\"%s\",\"watchers\":%ld,\"connected\":%ld,"
           "\"connect_s\":%.2f,\"rate\":%.1f,\"wall_s\":%.2f,\"posts\":%ld,\"deliveries\":%llu,"
           "\"deliveries_per_s\":%.1f,\"delivered_ratio\":%.4f,\"latency_p50_ms\":%.3f,"
           "\"latency_p99_ms\":%.3f,\"latency_max_ms\":%.3f,\"edge_cpu_cores\":%.3f,"
           "\"edge_rss_idle_kib_before\":%ld,\"edge_rss_idle_kib_after\":%ld,"
           "\"edge_rss_bytes_per_watcher\":%.0f,\"watcher_errors\":%ld,\"post_errors\":%ld,"
           "\"late_posts\":%ld,\"edge_cpu_us_per_delivery\":%.3f,\"gen_cpu_cores\":%.3f,"
           "\"gen_cpu_us_per_delivery\":%.3f,\"recv_cpu_us_per_delivery\":%.3f,\"recv\":\"%s\"}\n",
           load, o.watchers, connected, connect_s, o.rate, wall, ok, dl, (double)dl / wall,
           expect > 0 ? (double)dl / expect : 0, p50, p99, (double)h.max / 1e6, cpu / wall, rss0,
           rss1, rss_per, errors, fail, late, dl ? cpu * 1e6 / (double)dl : 0, gen_cpu / wall,
           dl ? gen_cpu * 1e6 / (double)dl : 0, dl ? recv_cpu * 1e6 / (double)dl : 0, recv_how());
    return errors || fail ? 1 : 0;
}
