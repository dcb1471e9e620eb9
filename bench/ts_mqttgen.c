/*
 * ts_mqttgen: ts_loadgen's scenarios against an MQTT 3.1.1 broker over TLS
 * (bench/run.sh --versus mosquitto; bench/README.md says what each compares).
 *
 * One process runs one scenario against a running broker:
 *   fanout     N subscribers on one topic, posts (QoS 1) as fast as the
 *              broker acks them; deliveries per second;
 *   latency    N subscribers, posts at a fixed rate, post-to-delivery times;
 *   ingest     K publishing connections at QoS 1, PUBACKs per second;
 *   catchup    a clean_session=0 subscriber goes away while M messages are
 *              published at QoS 1, then comes back: messages/s to drain;
 *   memory     N idle subscribers, broker RSS per subscriber.
 *
 * Everything runs on one loop (ts_loadgen puts subscribers on worker
 * threads; at the broker's rates one loop keeps up, and the CPU line says
 * so when it does not). The same payload as ts_loadgen's comment body, 250
 * bytes starting "tsb <uv_hrtime ns> ", so delivery latency is read from
 * the message itself. Subscribers count what they get; a subscriber that
 * ends with fewer messages than were acknowledged shows as lost.
 *
 * Output: "TABLE|..." and "CPU|..." lines for run.sh and one JSON line with
 * every figure, as ts_loadgen prints them.
 */
#include "ts_bench_conn.h"
#include "ts_bench_hist.h"
#include "ts_bench_proc.h"
#include "ts_mqtt_pkt.h"

#include "ts_err.h"
#include "ts_log.h"
#include "ts_tls.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BODY_LEN 250
#define PID_RING 4096 /* packet ids cycle through this; a window stays below */
#define OUT_CAP (64u << 10)

static struct opts {
    char host[64];
    struct sockaddr_in addr;
    char session_key[96];
    const char *ca, *scenario, *label;
    int server_pid, sub_qos;
    unsigned subs, posters, window, connect_window;
    uint64_t posts;
    double rate, duration, timeout;
} o = {
    .subs = 1000,
    .posters = 1,
    .window = 64,
    .connect_window = 256,
    .posts = 20000,
    .rate = 100,
    .duration = 10,
    .timeout = 120,
    .label = "",
};

static uv_loop_t *ml;
static SSL_CTX *ctx;
static char loadavg[64];

/* ---- connections ---- */

enum role { SUB, PUB };

struct mc {
    struct tsb_conn *c;
    enum role role;
    unsigned idx;
    int clean, subscribe, connacked, live, session_present;
    const char *topic;
    char id[48];
    uint64_t got; /* PUBLISHes received */
    uint64_t sent, acked;
    unsigned inflight;
    uint64_t *sent_ns; /* posters: send time by packet id */
    uint8_t *out;      /* queued packets, written at the end of a batch */
    size_t out_len;
};

static struct {
    uint64_t connecting, live, closed, errors, total_got;
    uint64_t sent, acked, want_posts; /* posts over all posters */
    uint64_t first_post_ns, last_got_ns, measure_from_ns, measure_to_ns, measured_acks;
    uint64_t expect_each; /* a subscriber holding this many is complete */
    uint64_t complete_subs;
    int paced, posting;
    struct tsb_hist lat, ack;
} st;

static void die(const char *msg)
{
    fprintf(stderr, "ts_mqttgen: %s\n", msg);
    exit(1);
}

static void queue(struct mc *m, const uint8_t *p, size_t n)
{
    if (!m->c)
        return;
    if (m->out_len + n > OUT_CAP) {
        if (tsb_conn_send(m->c, m->out, m->out_len) != TS_OK)
            st.errors++;
        m->out_len = 0;
    }
    memcpy(m->out + m->out_len, p, n);
    m->out_len += n;
}

static void flush_out(struct mc *m)
{
    if (!m->out_len || !m->c) {
        m->out_len = 0;
        return;
    }
    if (tsb_conn_send(m->c, m->out, m->out_len) != TS_OK)
        st.errors++;
    m->out_len = 0;
}

static void fill_body(uint8_t *b, uint64_t seq)
{
    int n = snprintf((char *)b, BODY_LEN, "tsb %llu %llu ", (unsigned long long)uv_hrtime(),
                     (unsigned long long)seq);
    memset(b + n, 'x', BODY_LEN - (size_t)n);
}

/* Posts while the connection's window allows, up to upto posts in all. */
static void post_more(struct mc *m, uint64_t upto)
{
    uint8_t pkt[BODY_LEN + 128], body[BODY_LEN];
    if (upto > st.want_posts)
        upto = st.want_posts;
    while (st.posting && m->inflight < o.window && st.sent < upto) {
        uint16_t pid = (uint16_t)(m->sent % PID_RING + 1);
        fill_body(body, st.sent);
        size_t n = tsb_mqtt_publish(pkt, sizeof(pkt), m->topic, 1, pid, body, BODY_LEN);
        if (!st.first_post_ns)
            st.first_post_ns = uv_hrtime();
        m->sent_ns[pid - 1] = uv_hrtime();
        queue(m, pkt, n);
        m->sent++;
        m->inflight++;
        st.sent++;
    }
}

static void on_open(struct tsb_conn *c)
{
    struct mc *m = tsb_conn_data(c);
    uint8_t pkt[128];
    queue(m, pkt, tsb_mqtt_connect(pkt, sizeof(pkt), m->id, m->clean, 0));
    flush_out(m);
}

static void got_publish(struct mc *m, const struct tsb_mqtt_pkt *p)
{
    uint64_t now = uv_hrtime();
    m->got++;
    st.total_got++;
    st.last_got_ns = now;
    if (m->got == st.expect_each)
        st.complete_subs++;
    unsigned long long t;
    if (p->payload_len > 4 && memcmp(p->payload, "tsb ", 4) == 0 &&
        sscanf((const char *)p->payload + 4, "%llu", &t) == 1 && t >= st.measure_from_ns &&
        t < st.measure_to_ns && now >= t)
        tsb_hist_record(&st.lat, now - t);
    if (p->qos == 1) {
        uint8_t ack[4];
        queue(m, ack, tsb_mqtt_puback(ack, sizeof(ack), p->pid));
    }
}

static void on_frame(struct tsb_conn *c, const uint8_t *b, size_t len)
{
    struct mc *m = tsb_conn_data(c);
    struct tsb_mqtt_pkt p;
    if (tsb_mqtt_parse(b, len, &p) != TS_OK) {
        st.errors++;
        tsb_conn_close(c);
        return;
    }
    uint8_t pkt[256];
    switch (p.type) {
    case TSB_MQTT_CONNACK:
        if (p.rc != 0) {
            fprintf(stderr, "ts_mqttgen: CONNACK refused (%d)\n", p.rc);
            st.errors++;
            tsb_conn_close(c);
            return;
        }
        m->connacked = 1;
        m->session_present = p.session_present;
        st.connecting--;
        if (m->subscribe) {
            queue(m, pkt, tsb_mqtt_subscribe(pkt, sizeof(pkt), 1, m->topic, o.sub_qos));
        } else {
            m->live = 1;
            st.live++;
        }
        break;
    case TSB_MQTT_SUBACK:
        if (p.rc == 0x80) {
            st.errors++;
            tsb_conn_close(c);
            return;
        }
        m->live = 1;
        st.live++;
        break;
    case TSB_MQTT_PUBLISH:
        got_publish(m, &p);
        break;
    case TSB_MQTT_PUBACK: {
        if (!m->inflight || p.pid == 0 || p.pid > PID_RING) {
            st.errors++;
            break;
        }
        uint64_t now = uv_hrtime();
        m->inflight--;
        m->acked++;
        st.acked++;
        if (now >= st.measure_from_ns && now < st.measure_to_ns)
            st.measured_acks++;
        tsb_hist_record(&st.ack, now - m->sent_ns[p.pid - 1]);
        break;
    }
    default:
        break;
    }
}

static void on_batch_end(struct tsb_conn *c)
{
    struct mc *m = tsb_conn_data(c);
    if (m->role == PUB && !st.paced)
        post_more(m, st.want_posts);
    flush_out(m);
}

static void on_close(struct tsb_conn *c, int err)
{
    struct mc *m = tsb_conn_data(c);
    if (err != TS_OK && err != TS_E_CLOSED)
        st.errors++;
    if (!m->connacked)
        st.connecting--;
    if (m->live)
        st.live--;
    m->c = NULL;
    st.closed++;
}

static const struct tsb_conn_cbs cbs = {on_open, on_frame, on_batch_end, on_close, tsb_mqtt_split};

static struct mc *mc_new(enum role role, unsigned idx, const char *topic, int clean, int subscribe)
{
    struct mc *m = calloc(1, sizeof(*m));
    if (!m || !(m->out = malloc(OUT_CAP)))
        die("out of memory");
    if (role == PUB && !(m->sent_ns = calloc(PID_RING, sizeof(uint64_t))))
        die("out of memory");
    m->role = role;
    m->idx = idx;
    m->topic = topic;
    m->clean = clean;
    m->subscribe = subscribe;
    snprintf(m->id, sizeof(m->id), "tsb-%d-%c%u", (int)getpid(), role == SUB ? 's' : 'p', idx);
    return m;
}

static void mc_connect(struct mc *m)
{
    m->connacked = m->live = 0;
    st.connecting++;
    if (tsb_conn_connect(ml, &o.addr, ctx, o.host, o.session_key, &cbs, m, &m->c) != TS_OK) {
        st.connecting--;
        st.errors++;
    }
}

static void mc_free(struct mc *m)
{
    free(m->sent_ns);
    free(m->out);
    free(m);
}

/* ---- the loop as a controller ---- */

static uv_timer_t tick;
static void on_tick(uv_timer_t *t)
{
    (void)t;
}

typedef int (*cond_fn)(void);

/* Runs the loop until cond() holds; -1 after timeout seconds. */
static int wait_until(cond_fn cond, double timeout)
{
    uint64_t end = uv_hrtime() + (uint64_t)(timeout * 1e9);
    while (!cond()) {
        if (uv_hrtime() >= end)
            return -1;
        uv_run(ml, UV_RUN_ONCE);
    }
    return 0;
}

static uint64_t want_live;
static int cond_live(void)
{
    return st.live >= want_live;
}
static int cond_never(void)
{
    return 0;
}

/* Connects the n conns, at most connect_window handshakes at a time. */
static void connect_all(struct mc **v, unsigned n)
{
    uint64_t base = st.live;
    for (unsigned i = 0; i < n; i++) {
        while (st.connecting >= o.connect_window)
            uv_run(ml, UV_RUN_ONCE);
        mc_connect(v[i]);
    }
    want_live = base + n;
    if (wait_until(cond_live, o.timeout) != 0)
        fprintf(stderr, "ts_mqttgen: only %llu of %u connections live\n",
                (unsigned long long)(st.live - base), n);
}

static uint64_t want_closed;
static int cond_closed(void)
{
    return st.closed >= want_closed;
}

/* DISCONNECT (the broker then drops a clean session, keeps a persistent
 * one without a will), close_notify, and waits for every close. */
static void close_all(struct mc **v, unsigned n)
{
    uint64_t open = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!v[i]->c)
            continue;
        uint8_t pkt[4];
        queue(v[i], pkt, tsb_mqtt_disconnect(pkt, sizeof(pkt)));
        flush_out(v[i]);
        tsb_conn_close(v[i]->c);
        open++;
    }
    want_closed = st.closed + open;
    wait_until(cond_closed, 10);
}

static void free_all(struct mc **v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        mc_free(v[i]);
    free(v);
}

static struct mc **make(enum role role, unsigned n, const char *topic, int subscribe)
{
    struct mc **v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        die("out of memory");
    for (unsigned i = 0; i < n; i++)
        v[i] = mc_new(role, i, topic, 1, subscribe);
    return v;
}

/* ---- output ---- */

static void json_begin(char *buf, size_t cap, const char *scenario)
{
    snprintf(buf, cap,
             "{\"scenario\":\"%s\",\"broker\":\"mqtt\",\"label\":\"%s\",\"loadavg\":\"%s\"",
             scenario, o.label, loadavg);
}

static void json_cpu(char *buf, size_t cap, struct tsb_cpu_use u)
{
    tsb_json_add(buf, cap,
                 ",\"wall_s\":%.3f,\"server_cpu_cores\":%.3f,\"gen_cpu_cores\":%.3f,"
                 "\"errors\":%llu",
                 u.wall_s, u.srv_cores, u.gen_cores, (unsigned long long)st.errors);
}

static void print_cpu(struct tsb_cpu_use u)
{
    printf("CPU|server %.2f cores, generator %.2f cores over %.2fs\n", u.srv_cores, u.gen_cores,
           u.wall_s);
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* ---- scenarios ---- */

static void start_posting(uint64_t n, int paced)
{
    st.want_posts = st.sent + n;
    st.paced = paced;
    st.posting = 1;
}

static uint64_t want_got;
static int cond_drained(void)
{
    return st.complete_subs >= want_got;
}
static int cond_all_acked(void)
{
    return st.acked >= st.want_posts;
}

/* fanout and latency: N subscribers on one topic, posts from --posters
 * (fanout, as fast as acked) or one poster at --rate (latency). */
static void run_delivery(int paced)
{
    const char *topic = "tsb/fanout";
    unsigned np = paced ? 1 : o.posters;
    const unsigned ns = o.subs; /* local: see run_memory */
    struct mc **subs = make(SUB, ns, topic, 1);
    struct mc **pubs = make(PUB, np, topic, 0);
    connect_all(subs, ns);
    connect_all(pubs, np);
    uint64_t posts = paced ? (uint64_t)(o.rate * o.duration) : o.posts;
    st.expect_each = posts;
    st.complete_subs = 0;
    st.measure_from_ns = paced ? uv_hrtime() + 1000000000ull : 0;
    st.measure_to_ns = UINT64_MAX;
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    uint64_t t0 = uv_hrtime();
    start_posting(posts, paced);
    if (paced) {
        /* one post every 1/rate s, counted from t0 so a late tick catches up */
        while (st.sent < st.want_posts) {
            uint64_t due = (uint64_t)((double)(uv_hrtime() - t0) / 1e9 * o.rate) + 1;
            post_more(pubs[0], due);
            flush_out(pubs[0]);
            uv_run(ml, UV_RUN_ONCE);
        }
    } else {
        for (unsigned i = 0; i < np; i++) {
            post_more(pubs[i], st.want_posts);
            flush_out(pubs[i]);
        }
    }
    want_got = o.subs;
    int drained = wait_until(cond_drained, o.timeout) == 0;
    wait_until(cond_all_acked, 10);
    uint64_t t1 = drained ? st.last_got_ns : uv_hrtime();
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    struct tsb_cpu_use u = tsb_cpu_between(a, b);
    double wall = (double)(t1 - st.first_post_ns) / 1e9;
    double per_s = wall > 0 ? (double)st.total_got / wall : 0;
    uint64_t lost = posts * o.subs > st.total_got ? posts * o.subs - st.total_got : 0;
    char j[2048], fig[256];
    json_begin(j, sizeof(j), paced ? "latency" : "fanout");
    tsb_json_add(j, sizeof(j),
                 ",\"subs\":%u,\"sub_qos\":%d,\"posts_acked\":%llu,\"post_rate\":%.0f,"
                 "\"delivered\":%llu,\"delivered_per_s\":%.0f,\"drained\":%s,\"lost\":%llu",
                 o.subs, o.sub_qos, (unsigned long long)st.acked,
                 wall > 0 ? (double)st.acked / wall : 0, (unsigned long long)st.total_got, per_s,
                 drained ? "true" : "false", (unsigned long long)lost);
    if (paced) {
        tsb_json_add(j, sizeof(j),
                     ",\"target_rate\":%.0f,\"samples\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                     "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f",
                     o.rate, (unsigned long long)st.lat.count, ms(tsb_hist_quantile(&st.lat, .5)),
                     ms(tsb_hist_quantile(&st.lat, .99)), ms(tsb_hist_quantile(&st.lat, .999)),
                     ms(st.lat.max), ms(tsb_hist_quantile(&st.ack, .5)),
                     ms(tsb_hist_quantile(&st.ack, .99)));
        snprintf(fig, sizeof(fig), "p50 %.2f ms|p99 %.2f ms|lost %llu",
                 ms(tsb_hist_quantile(&st.lat, .5)), ms(tsb_hist_quantile(&st.lat, .99)),
                 (unsigned long long)lost);
        printf("TABLE|mqtt latency|N=%u rate=%.0f/s|%s\n", o.subs, o.rate, fig);
    } else {
        printf("TABLE|mqtt fanout|N=%u posts=%llu|%.0f deliveries/s|lost %llu%s\n", o.subs,
               (unsigned long long)posts, per_s, (unsigned long long)lost,
               drained ? "" : " (not drained)");
    }
    json_cpu(j, sizeof(j), u);
    print_cpu(u);
    printf("%s}\n", j);
    close_all(subs, ns);
    close_all(pubs, np);
    free_all(subs, ns);
    free_all(pubs, np);
}

/* ingest: K posters, each on its own topic nobody reads, each keeping
 * --window QoS 1 publishes in flight; PUBACKs counted after 1 s warm-up. */
static void run_ingest(void)
{
    unsigned k = o.posters;
    struct mc **pubs = calloc(k, sizeof(*pubs));
    char(*topics)[32] = calloc(k, 32);
    if (!pubs || !topics)
        die("out of memory");
    for (unsigned i = 0; i < k; i++) {
        snprintf(topics[i], 32, "tsb/ingest/%u", i);
        pubs[i] = mc_new(PUB, i, topics[i], 1, 0);
    }
    connect_all(pubs, k);
    st.measure_from_ns = uv_hrtime() + 1000000000ull;
    st.measure_to_ns = st.measure_from_ns + (uint64_t)(o.duration * 1e9);
    start_posting(UINT64_MAX / 2, 0);
    for (unsigned i = 0; i < k; i++) {
        post_more(pubs[i], st.want_posts);
        flush_out(pubs[i]);
    }
    while (uv_hrtime() < st.measure_from_ns)
        uv_run(ml, UV_RUN_ONCE);
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    tsb_hist_init(&st.ack);
    while (uv_hrtime() < st.measure_to_ns)
        uv_run(ml, UV_RUN_ONCE);
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    st.posting = 0;
    struct tsb_cpu_use u = tsb_cpu_between(a, b);
    double per_s = (double)st.measured_acks / u.wall_s;
    char j[1024];
    json_begin(j, sizeof(j), "ingest");
    tsb_json_add(j, sizeof(j),
                 ",\"posters\":%u,\"window\":%u,\"acked\":%llu,\"acked_per_s\":%.0f,"
                 "\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f,\"server_us_per_post\":%.3f",
                 k, o.window, (unsigned long long)st.measured_acks, per_s,
                 ms(tsb_hist_quantile(&st.ack, .5)), ms(tsb_hist_quantile(&st.ack, .99)),
                 st.measured_acks ? u.srv_cores * u.wall_s * 1e6 / (double)st.measured_acks : 0);
    json_cpu(j, sizeof(j), u);
    printf("TABLE|mqtt ingest|K=%u window=%u|%.0f acked publishes/s|ack p99 %.2f ms\n", k, o.window,
           per_s, ms(tsb_hist_quantile(&st.ack, .99)));
    print_cpu(u);
    printf("%s}\n", j);
    close_all(pubs, k);
    free_all(pubs, k);
    free(topics);
}

/* catchup: one persistent session (clean_session=0, QoS 1 subscription)
 * disconnects; M messages are published at QoS 1 and acked (the broker
 * queues them for it); the session reconnects and drains them. */
static void run_catchup(void)
{
    const char *topic = "tsb/catchup";
    struct mc *sub = mc_new(SUB, 0, topic, 0, 1);
    o.sub_qos = 1;
    const unsigned np = o.posters; /* local: see run_memory */
    struct mc **pubs = make(PUB, np, topic, 0);
    connect_all(&sub, 1);
    close_all(&sub, 1);
    connect_all(pubs, np);
    uint64_t p0 = uv_hrtime();
    start_posting(o.posts, 0);
    for (unsigned i = 0; i < np; i++) {
        post_more(pubs[i], st.want_posts);
        flush_out(pubs[i]);
    }
    wait_until(cond_all_acked, o.timeout);
    double preload_s = (double)(uv_hrtime() - p0) / 1e9;
    uint64_t preloaded = st.acked;
    close_all(pubs, np);

    sub->subscribe = 0; /* the session keeps its subscription */
    st.expect_each = preloaded;
    st.complete_subs = 0;
    want_got = 1;
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    uint64_t t0 = uv_hrtime();
    connect_all(&sub, 1);
    int caught_up = wait_until(cond_drained, o.timeout) == 0;
    uint64_t t1 = caught_up ? st.last_got_ns : uv_hrtime();
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    struct tsb_cpu_use u = tsb_cpu_between(a, b);
    double wall = (double)(t1 - t0) / 1e9;
    double per_s = wall > 0 ? (double)sub->got / wall : 0;
    uint64_t missing = preloaded > sub->got ? preloaded - sub->got : 0;
    char j[1024];
    json_begin(j, sizeof(j), "catchup");
    tsb_json_add(j, sizeof(j),
                 ",\"preloaded\":%llu,\"preload_per_s\":%.0f,\"session_present\":%s,"
                 "\"comments_per_s\":%.0f,\"missing\":%llu,\"caught_up\":%s",
                 (unsigned long long)preloaded, preload_s > 0 ? (double)preloaded / preload_s : 0,
                 sub->session_present ? "true" : "false", per_s, (unsigned long long)missing,
                 caught_up ? "true" : "false");
    json_cpu(j, sizeof(j), u);
    printf("TABLE|mqtt catchup|M=%llu|%.0f messages/s|missing %llu\n",
           (unsigned long long)preloaded, per_s, (unsigned long long)missing);
    print_cpu(u);
    printf("%s}\n", j);
    close_all(&sub, 1);
    mc_free(sub);
    free_all(pubs, np);
}

/* memory: N idle subscribers; the broker's RSS growth from before they
 * connect to 2 s after all are subscribed, per subscriber. */
static void run_memory(void)
{
    /* a local count: o lives across the calls below, so the analyzer
     * cannot see it stays what make() allocated for */
    const unsigned n = o.subs;
    struct mc **subs = make(SUB, n, "tsb/idle", 1);
    uint64_t rss0 = tsb_proc_rss_kib(o.server_pid);
    struct tsb_cpu_mark a = tsb_mark(o.server_pid);
    connect_all(subs, n);
    struct tsb_cpu_mark b = tsb_mark(o.server_pid);
    double connect_s = (double)(b.wall_ns - a.wall_ns) / 1e9;
    wait_until(cond_never, 2);
    uint64_t rss1 = tsb_proc_rss_kib(o.server_pid);
    uint64_t live = st.live;
    double per = live ? (double)(rss1 - rss0) * 1024.0 / (double)live : 0;
    char j[1024];
    json_begin(j, sizeof(j), "memory");
    tsb_json_add(j, sizeof(j),
                 ",\"subs\":%u,\"live\":%llu,\"rss_before_kib\":%llu,\"rss_after_kib\":%llu,"
                 "\"rss_per_sub_b\":%.0f,\"connect_per_s\":%.0f",
                 o.subs, (unsigned long long)live, (unsigned long long)rss0,
                 (unsigned long long)rss1, per, connect_s > 0 ? (double)live / connect_s : 0);
    struct tsb_cpu_use u = tsb_cpu_between(a, b); /* connection setup */
    json_cpu(j, sizeof(j), u);
    printf("TABLE|mqtt memory|N=%u|%.0f B RSS per idle subscriber|live %llu\n", o.subs, per,
           (unsigned long long)live);
    print_cpu(u);
    printf("%s}\n", j);
    close_all(subs, n);
    free_all(subs, n);
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: ts_mqttgen --addr HOST:PORT --ca CA.pem --scenario "
                    "fanout|latency|ingest|catchup|memory\n"
                    "  [--server-pid PID] [--subs N] [--posts N] [--posters K] [--window W]\n"
                    "  [--rate R] [--duration S] [--timeout S] [--sub-qos 0|1]\n"
                    "  [--connect-window N] [--label L]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"addr", 1, 0, 'a'},           {"ca", 1, 0, 'c'},
        {"scenario", 1, 0, 's'},       {"server-pid", 1, 0, 'P'},
        {"subs", 1, 0, 'n'},           {"posts", 1, 0, 'm'},
        {"posters", 1, 0, 'k'},        {"window", 1, 0, 'w'},
        {"rate", 1, 0, 'r'},           {"duration", 1, 0, 'd'},
        {"timeout", 1, 0, 't'},        {"sub-qos", 1, 0, 'q'},
        {"connect-window", 1, 0, 'W'}, {"label", 1, 0, 'l'},
        {"help", 0, 0, 'h'},           {0, 0, 0, 0},
    };
    const char *addr = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'a':
            addr = optarg;
            break;
        case 'c':
            o.ca = optarg;
            break;
        case 's':
            o.scenario = optarg;
            break;
        case 'P':
            o.server_pid = atoi(optarg);
            break;
        case 'n':
            o.subs = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            o.posts = strtoull(optarg, NULL, 10);
            break;
        case 'k':
            o.posters = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            o.window = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o.rate = atof(optarg);
            break;
        case 'd':
            o.duration = atof(optarg);
            break;
        case 't':
            o.timeout = atof(optarg);
            break;
        case 'q':
            o.sub_qos = atoi(optarg);
            break;
        case 'W':
            o.connect_window = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'l':
            o.label = optarg;
            break;
        default:
            usage();
        }
    }
    if (!addr || !o.ca || !o.scenario || o.posters == 0 || o.window == 0 || o.window >= PID_RING ||
        o.connect_window == 0 || o.sub_qos < 0 || o.sub_qos > 1)
        usage();
    /* checked non-NULL just above; a local keeps that visible to the
     * analyzer across the calls that follow */
    const char *scenario = o.scenario;
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof(o.host))
        usage();
    memcpy(o.host, addr, (size_t)(colon - addr));
    o.addr.sin_family = AF_INET;
    o.addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, o.host, &o.addr.sin_addr) != 1)
        die("--addr wants an IPv4 address and a port");
    snprintf(o.session_key, sizeof(o.session_key), "%s", addr);
    ts_log_level_current = TS_LOG_ERROR;
    if (ts_tls_client_ctx_foreign(o.ca, &ctx) != TS_OK)
        die("cannot load --ca");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fgets(loadavg, sizeof(loadavg), f))
            loadavg[strcspn(loadavg, "\n")] = '\0';
        fclose(f);
    }
    tsb_hist_init(&st.lat);
    tsb_hist_init(&st.ack);
    ml = uv_default_loop();
    /* keeps UV_RUN_ONCE from blocking forever while a controller waits */
    uv_timer_init(ml, &tick);
    uv_timer_start(&tick, on_tick, 1, 1);
    if (strcmp(scenario, "fanout") == 0)
        run_delivery(0);
    else if (strcmp(scenario, "latency") == 0)
        run_delivery(1);
    else if (strcmp(scenario, "ingest") == 0)
        run_ingest();
    else if (strcmp(scenario, "catchup") == 0)
        run_catchup();
    else if (strcmp(scenario, "memory") == 0)
        run_memory();
    else
        usage();
    fflush(stdout);
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(ml, UV_RUN_DEFAULT);
    uv_loop_close(ml);
    SSL_CTX_free(ctx);
    return st.errors ? 1 : 0;
}
