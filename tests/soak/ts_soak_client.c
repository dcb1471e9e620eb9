/*
 * ts_soak_client: the posting and checking half of the cluster soak
 * (tests/soak/cluster_soak.sh), a small program over libthreadsync.
 *
 *   ts_soak_client post  --server H:P... --ca CA --token-file T --acked FILE
 *                        [--count 5000] [--threads 10] [--rate 60] [--timeout-s 1800]
 *   ts_soak_client check --server H:P... --ca CA --token-file T --acked FILE
 *
 * post: one client over all servers (reconnecting, failing over) posts
 * count comments spread over `threads` threads of a fresh run tag, at most
 * `rate` new posts a second and a few in flight. Each post has its own
 * idempotency key and is re-posted with that key whatever the library
 * reports (a timeout, UNAVAILABLE, NOT_LEADER it gave up on; RATE_LIMITED
 * after retry_after_ms), so every post ends acknowledged exactly once. Each
 * acknowledgement is appended to FILE ("INDEX ID", after a "# run TAG
 * threads N count C" line) and flushed at once. Prints one summary line of
 * figures (elapsed, disconnects, NOT_LEADER redirects, retries) and exits 0
 * once all are acknowledged, 1 on a refusal or the timeout.
 *
 * check: reads FILE, then asks every server alone (a follower answers from
 * its own state) for every thread, waiting up to 120 s for it to catch up,
 * and checks that each acknowledged post is there exactly once with the id
 * it was acknowledged with, nothing else is, and every node holds the same
 * threads byte for byte (seq aside). Exit 0 when all hold, 1 otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <uv.h>

#include "threadsync.h"
#include "ts_testpoll.h"

#define MAX_SERVERS 8
#define WINDOW 16

static struct {
    const char *servers[MAX_SERVERS];
    size_t n_servers;
    const char *ca, *token_file, *acked;
    char token[256];
    int count, threads, rate;
    unsigned timeout_s;
} opt = {.count = 5000, .threads = 10, .rate = 60, .timeout_s = 1800};

static void body_of(const char *tag, int i, char *out, size_t size)
{
    snprintf(out, size, "soak %s post %d: %.*s", tag, i, i % 50 + 1,
             "the quick brown fox jumps over the lazy dog, again");
}

static void thread_of(const char *tag, int i, char *out, size_t size)
{
    snprintf(out, size, "soak-%s/t%d", tag, i % opt.threads);
}

static void base_config(struct ts_client_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->servers = opt.servers;
    cfg->n_servers = opt.n_servers;
    cfg->ca_file = opt.ca;
    cfg->token = opt.token;
    cfg->client_name = "ts_soak_client";
}

/* ---- post ---------------------------------------------------------------- */

struct poster {
    uv_loop_t *loop;
    uv_timer_t tick;
    struct ts_client *c;
    char tag[17];
    FILE *acked;
    int next, in_flight, done, failed;
    uint64_t *ids;
    uint64_t *retry_at; /* RATE_LIMITED: re-post at, loop ms */
    int *slot;          /* callback arg per post: its index */
    uint64_t start, last_tick, deadline;
    unsigned disconnects, not_leader, ready, retries, rate_limited;
};

static struct poster P;

static void submit(int idx);

static void on_post(void *arg, int err, const Threadsync__Error *detail,
                    const Threadsync__PostResult *res)
{
    int idx = *(int *)arg;
    if (err == TS_E_CLOSED) {
        P.in_flight--;
        return;
    }
    if (err == TS_E_RATE_LIMITED) {
        P.rate_limited++;
        P.retry_at[idx] =
            uv_now(P.loop) + (detail && detail->retry_after_ms ? detail->retry_after_ms : 100);
        return;
    }
    if (err == TS_E_TIMEOUT || err == TS_E_UNAVAILABLE || err == TS_E_NOT_LEADER ||
        err == TS_E_IO || err == TS_E_TLS) {
        P.retries++;
        submit(idx);
        return;
    }
    P.in_flight--;
    if (err != TS_OK) {
        fprintf(stderr, "soak: post %d refused: %s %s\n", idx, ts_err_name(err),
                detail && detail->message ? detail->message : "");
        P.failed = 1;
        return;
    }
    if (P.ids[idx]) {
        if (P.ids[idx] != res->comment_id) {
            fprintf(stderr,
                    "soak: post %d acknowledged twice with ids %" PRIu64 " and %" PRIu64 "\n", idx,
                    P.ids[idx], res->comment_id);
            P.failed = 1;
        }
        return;
    }
    P.ids[idx] = res->comment_id;
    P.done++;
    fprintf(P.acked, "%d %" PRIu64 "\n", idx, res->comment_id);
    fflush(P.acked);
}

static void submit(int idx)
{
    char key[48], body[160], thread[64], author[32];
    snprintf(key, sizeof(key), "soak-%s-%d", P.tag, idx);
    body_of(P.tag, idx, body, sizeof(body));
    thread_of(P.tag, idx, thread, sizeof(thread));
    snprintf(author, sizeof(author), "Soak %d", idx); /* one post per author: no author limit */
    Threadsync__Post m = THREADSYNC__POST__INIT;
    m.idempotency_key = key;
    m.thread_key = thread;
    m.author_name = author;
    m.body = body;
    P.slot[idx] = idx;
    int rc = ts_client_post(P.c, &m, on_post, &P.slot[idx]);
    if (rc != TS_OK) {
        fprintf(stderr, "soak: ts_client_post: %s\n", ts_err_name(rc));
        P.failed = 1;
    }
}

static void on_state(void *arg, const struct ts_client_state_info *info)
{
    (void)arg;
    if (info->state == TS_CLIENT_READY) {
        P.ready++;
    } else if (info->state == TS_CLIENT_DISCONNECTED) {
        P.disconnects++;
        P.not_leader += info->err == TS_E_NOT_LEADER;
    } else if (info->state == TS_CLIENT_FAILED) {
        fprintf(stderr, "soak: client failed: %s\n", ts_err_name(info->err));
        P.failed = 1;
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(P.loop);
    if (P.failed || P.done == opt.count || ts_test_now_ms() > P.deadline) {
        if (P.done != opt.count && !P.failed) {
            fprintf(stderr, "soak: timed out with %d of %d acknowledged\n", P.done, opt.count);
            P.failed = 1;
        }
        uv_timer_stop(&P.tick);
        uv_close((uv_handle_t *)&P.tick, NULL);
        ts_client_close(P.c, NULL, NULL);
        return;
    }
    for (int i = 0; i < P.next; i++) {
        if (P.retry_at[i] && P.retry_at[i] <= now) {
            P.retry_at[i] = 0;
            submit(i);
        }
    }
    /* rate new posts a second, spread over the ticks; a steady poster:
     * after a stall (a failover) it goes on at its rate instead of firing
     * its backlog into the new leader's rate limit */
    uint64_t allowed = (now - P.start) * (uint64_t)opt.rate / 1000;
    if (allowed > (uint64_t)P.next + WINDOW) {
        P.start = now - (uint64_t)P.next * 1000 / (uint64_t)opt.rate;
        allowed = (uint64_t)P.next + 1;
    }
    while (P.next < opt.count && (uint64_t)P.next < allowed && P.in_flight < WINDOW) {
        P.in_flight++;
        submit(P.next++);
    }
}

static int run_post(void)
{
    unsigned char r[8];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return 1;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(P.tag + 2 * i, 3, "%02x", r[i]);
    P.acked = fopen(opt.acked, "w");
    P.ids = calloc((size_t)opt.count, sizeof(*P.ids));
    P.retry_at = calloc((size_t)opt.count, sizeof(*P.retry_at));
    P.slot = calloc((size_t)opt.count, sizeof(*P.slot));
    if (!P.acked || !P.ids || !P.retry_at || !P.slot) {
        fprintf(stderr, "soak: cannot write %s: %s\n", opt.acked, strerror(errno));
        return 1;
    }
    fprintf(P.acked, "# run %s threads %d count %d\n", P.tag, opt.threads, opt.count);
    fflush(P.acked);
    uv_loop_t loop;
    uv_loop_init(&loop);
    P.loop = &loop;
    struct ts_client_config cfg;
    base_config(&cfg);
    cfg.reconnect = 1;
    cfg.request_timeout_ms = 30000;
    cfg.connect_timeout_ms = 3000;
    cfg.backoff_min_ms = 50;
    cfg.backoff_max_ms = 2000;
    cfg.on_state = on_state;
    int rc = ts_client_new(&loop, &cfg, &P.c);
    if (rc != TS_OK) {
        fprintf(stderr, "soak: ts_client_new: %s\n", ts_err_name(rc));
        return 1;
    }
    uint64_t t0 = ts_test_now_ms();
    P.deadline = t0 + (uint64_t)opt.timeout_s * 1000;
    P.start = uv_now(&loop);
    uv_timer_init(&loop, &P.tick);
    uv_timer_start(&P.tick, on_tick, 5, 5);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    fclose(P.acked);
    printf("posted=%d elapsed_ms=%" PRIu64 " connections=%u disconnects=%u not_leader=%u "
           "retries=%u rate_limited=%u\n",
           P.done, ts_test_now_ms() - t0, P.ready, P.disconnects, P.not_leader, P.retries,
           P.rate_limited);
    free(P.ids);
    free(P.retry_at);
    free(P.slot);
    return P.failed || P.done != opt.count ? 1 : 0;
}

/* ---- check --------------------------------------------------------------- */

static Threadsync__GetResult *get_on(const char *server, const char *thread)
{
    struct ts_client_config cfg;
    base_config(&cfg);
    const char *one[] = {server};
    cfg.servers = one;
    cfg.n_servers = 1;
    cfg.request_timeout_ms = 10000;
    Threadsync__GetResult *g = NULL;
    Threadsync__Error *e = NULL;
    if (ts_sync_get(&cfg, thread, &g, &e) != TS_OK)
        g = NULL;
    ts_msg_free(e);
    return g;
}

static uint8_t *state_bytes(Threadsync__GetResult *g, size_t *len)
{
    uint64_t seq = g->seq;
    g->seq = 0;
    *len = protobuf_c_message_get_packed_size(&g->base);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b)
        protobuf_c_message_pack(&g->base, b);
    g->seq = seq;
    return b;
}

static int run_check(void)
{
    FILE *f = fopen(opt.acked, "r");
    char tag[17] = "";
    int threads = 0, count = 0;
    if (!f || fscanf(f, "# run %16s threads %d count %d", tag, &threads, &count) != 3 ||
        threads < 1 || count < 1) {
        fprintf(stderr, "soak: %s: not an acknowledgement file\n", opt.acked);
        if (f)
            fclose(f);
        return 1;
    }
    opt.threads = threads;
    uint64_t *ids = calloc((size_t)count, sizeof(*ids));
    if (!ids) {
        fprintf(stderr, "soak: out of memory for %d posts\n", count);
        fclose(f);
        return 1;
    }
    int acked = 0, idx;
    uint64_t id;
    while (fscanf(f, "%d %" SCNu64, &idx, &id) == 2) {
        if (idx < 0 || idx >= count || ids[idx]) {
            fprintf(stderr, "soak: bad or repeated line for post %d\n", idx);
            fclose(f);
            free(ids);
            return 1;
        }
        ids[idx] = id;
        acked++;
    }
    fclose(f);
    int bad = 0;
    for (int t = 0; t < threads && !bad; t++) {
        char thread[64];
        thread_of(tag, t, thread, sizeof(thread));
        int want = 0;
        for (int i = 0; i < count; i++)
            want += ids[i] && i % threads == t;
        uint8_t *ref = NULL;
        size_t ref_len = 0;
        for (size_t s = 0; s < opt.n_servers && !bad; s++) {
            Threadsync__GetResult *g = NULL;
            uint64_t deadline = ts_test_now_ms() + 120000;
            for (;;) {
                g = get_on(opt.servers[s], thread);
                if ((g && g->n_comments >= (size_t)want) || !ts_test_poll(deadline))
                    break;
                ts_msg_free(g);
                g = NULL;
            }
            if (!g || g->n_comments != (size_t)want) {
                fprintf(stderr, "soak: %s: %s has %zu comments, %d acknowledged\n", opt.servers[s],
                        thread, g ? g->n_comments : 0, want);
                ts_msg_free(g);
                bad = 1;
                break;
            }
            /* every acknowledged post once, with its id; nothing else */
            for (size_t c = 0; c < g->n_comments && !bad; c++) {
                const Threadsync__Comment *cm = g->comments[c];
                char prefix[64];
                int n = -1;
                snprintf(prefix, sizeof(prefix), "soak %s post ", tag);
                if (strncmp(cm->body, prefix, strlen(prefix)) == 0)
                    n = atoi(cm->body + strlen(prefix));
                char body[160];
                if (n >= 0 && n < count)
                    body_of(tag, n, body, sizeof(body));
                if (n < 0 || n >= count || !ids[n] || ids[n] != cm->id ||
                    strcmp(body, cm->body) != 0) {
                    fprintf(stderr,
                            "soak: %s: %s: comment %" PRIu64 " is not an acknowledged post\n",
                            opt.servers[s], thread, cm->id);
                    bad = 1;
                }
            }
            /* (ids distinct and count equal: each exactly once) */
            size_t len;
            uint8_t *b = state_bytes(g, &len);
            if (!ref) {
                ref = b;
                ref_len = len;
            } else {
                if (!b || len != ref_len || memcmp(b, ref, len) != 0) {
                    fprintf(stderr, "soak: %s: %s differs from %s\n", opt.servers[s], thread,
                            opt.servers[0]);
                    bad = 1;
                }
                free(b);
            }
            ts_msg_free(g);
        }
        free(ref);
    }
    free(ids);
    if (!bad)
        printf("checked=%d acknowledged posts on %zu nodes, %d threads: each exactly once, nodes "
               "identical\n",
               acked, opt.n_servers, threads);
    return bad;
}

/* ---- main ---------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: ts_soak_client post|check --server H:P... --ca CA --token-file T "
                    "--acked FILE [--count N] [--threads N] [--rate N] [--timeout-s S]\n");
    return 2;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        return usage();
    const char *mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--server") && opt.n_servers < MAX_SERVERS)
            opt.servers[opt.n_servers++] = v;
        else if (!strcmp(k, "--ca"))
            opt.ca = v;
        else if (!strcmp(k, "--token-file"))
            opt.token_file = v;
        else if (!strcmp(k, "--acked"))
            opt.acked = v;
        else if (!strcmp(k, "--count"))
            opt.count = atoi(v);
        else if (!strcmp(k, "--threads"))
            opt.threads = atoi(v);
        else if (!strcmp(k, "--rate"))
            opt.rate = atoi(v);
        else if (!strcmp(k, "--timeout-s"))
            opt.timeout_s = (unsigned)atoi(v);
        else
            return usage();
    }
    if (!opt.n_servers || !opt.ca || !opt.token_file || !opt.acked || opt.count < 1 ||
        opt.threads < 1 || opt.rate < 1)
        return usage();
    FILE *t = fopen(opt.token_file, "r");
    if (!t || !fgets(opt.token, sizeof(opt.token), t)) {
        fprintf(stderr, "soak: cannot read %s\n", opt.token_file);
        if (t)
            fclose(t);
        return 1;
    }
    fclose(t);
    opt.token[strcspn(opt.token, "\r\n")] = '\0';
    if (!strcmp(mode, "post"))
        return run_post();
    if (!strcmp(mode, "check"))
        return run_check();
    return usage();
}
