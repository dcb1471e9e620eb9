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
#include <time.h>
#include <unistd.h>

#include "ts_bench_hist.h"
#include "ts_bench_proc.h"

#define THREADS_MAX 16
#define RBUF 16384
#define POSTERS_MAX 256

struct opts {
    const char *host, *key, *scenario;
    int port, threads, posters, edge_pid;
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
    pthread_mutex_t hist_mu;
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
                    uint64_t t = now_ns();
                    pthread_mutex_lock(&k->hist_mu);
                    tsb_hist_record(&k->hist, t > w->stamp ? t - w->stamp : 1);
                    pthread_mutex_unlock(&k->hist_mu);
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

static void *worker_main(void *arg)
{
    struct worker *k = arg;
    struct epoll_event evs[256];
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
        int n = epoll_wait(k->ep, evs, 256, 50);
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
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                watcher_readable(k, w, (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
        }
    }
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

static int usage(void)
{
    fprintf(stderr,
            "usage: ts_webgen --port PORT [--host 127.0.0.1] [--key bench] [--edge-pid PID]\n"
            "         --scenario sse [--watchers N] [--threads T] [--rate POSTS/S] [--duration S]\n"
            "         --scenario form [--posters K] [--duration S]\n");
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
        else
            return usage();
    }
    if (!o.port || o.threads < 1 || o.threads > THREADS_MAX || o.posters < 1 ||
        o.posters > POSTERS_MAX || o.rate <= 0 || o.duration <= 0)
        return usage();
    int sse = strcmp(o.scenario, "sse") == 0;
    if (!sse && strcmp(o.scenario, "form") != 0)
        return usage();
    sem_init(&post_tickets, 0, 0);
    /* N watchers need N descriptors, plus a few. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (sse && (rlim_t)o.watchers + 64 > rl.rlim_cur) {
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
    long per = o.watchers / o.threads, rest = o.watchers % o.threads;
    for (int i = 0; i < o.threads; i++) {
        struct worker *k = &workers[i];
        k->n = per + (i < rest);
        k->w = calloc((size_t)k->n ? (size_t)k->n : 1, sizeof(*k->w));
        k->ep = epoll_create1(EPOLL_CLOEXEC);
        tsb_hist_init(&k->hist);
        pthread_mutex_init(&k->hist_mu, NULL);
        for (long j = 0; j < k->n; j++)
            k->w[j].fd = -1;
        pthread_create(&k->th, NULL, worker_main, k);
    }
    /* All connected (or failed), bounded: 2 minutes. */
    uint64_t t_conn = now_ns();
    while (total(w_connected, o.threads) + total(w_errors, o.threads) < o.watchers &&
           now_ns() - t_conn < 120ull * 1000000000u)
        sleep_s(0.05);
    double connect_s = (double)(now_ns() - t_conn) / 1e9;
    sleep_s(1.0); /* idle: let the edge settle before reading its RSS */
    long rss1 = edge_rss_kib();
    long connected = total(w_connected, o.threads);

    for (int i = 0; i < o.posters; i++)
        pthread_create(&posters[i].th, NULL, poster_main, &posters[i]);
    sleep_s(0.5); /* posters have their first form tokens */
    for (int i = 0; i < o.threads; i++)
        atomic_store(&workers[i].measuring, 1);
    unsigned long long d0 = deliveries();
    double c0 = edge_cpu_s();
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
    unsigned long long dl = deliveries() - d0;
    for (int i = 0; i < o.threads; i++)
        atomic_store(&workers[i].stop, 1);
    struct tsb_hist h;
    tsb_hist_init(&h);
    for (int i = 0; i < o.threads; i++) {
        pthread_join(workers[i].th, NULL);
        tsb_hist_merge(&h, &workers[i].hist);
        close(workers[i].ep);
        free(workers[i].w);
    }
    long ok = total(p_ok, o.posters), fail = total(p_fail, o.posters);
    long errors = total(w_errors, o.threads);
    double rss_per = connected ? (double)(rss1 - rss0) * 1024.0 / (double)connected : 0;
    double p50 = (double)tsb_hist_quantile(&h, 0.5) / 1e6,
           p99 = (double)tsb_hist_quantile(&h, 0.99) / 1e6;
    /* Every acknowledged post should reach every connected watcher. */
    double expect = (double)ok * (double)(connected - errors);
    printf("TABLE|web-sse|N=%ld rate=%.0f/s|%.0f deliveries/s|p50 %.2f ms p99 %.2f ms|edge cpu "
           "%.2f cores|rss %.0f B/watcher|delivered %.3f of expected|errors %ld late %ld\n",
           o.watchers, o.rate, (double)dl / wall, p50, p99, cpu / wall, rss_per,
           expect > 0 ? (double)dl / expect : 0, errors + fail, late);
    printf("{\"scenario\":\"web_sse\",\"loadavg\":\"%s\",\"watchers\":%ld,\"connected\":%ld,"
           "\"connect_s\":%.2f,\"rate\":%.1f,\"wall_s\":%.2f,\"posts\":%ld,\"deliveries\":%llu,"
           "\"deliveries_per_s\":%.1f,\"delivered_ratio\":%.4f,\"latency_p50_ms\":%.3f,"
           "\"latency_p99_ms\":%.3f,\"latency_max_ms\":%.3f,\"edge_cpu_cores\":%.3f,"
           "\"edge_rss_idle_kib_before\":%ld,\"edge_rss_idle_kib_after\":%ld,"
           "\"edge_rss_bytes_per_watcher\":%.0f,\"watcher_errors\":%ld,\"post_errors\":%ld,"
           "\"late_posts\":%ld}\n",
           load, o.watchers, connected, connect_s, o.rate, wall, ok, dl, (double)dl / wall,
           expect > 0 ? (double)dl / expect : 0, p50, p99, (double)h.max / 1e6, cpu / wall, rss0,
           rss1, rss_per, errors, fail, late);
    return errors || fail ? 1 : 0;
}
