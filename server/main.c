/*
 * threadsyncd: a threadsync node. Flags only here; everything else is in
 * libts_server. With no arguments it runs the embedded default: a one-node
 * cluster on loopback with its data in ./threadsync-data.
 */
#include "ts_err.h"
#include "ts_frame.h"
#include "ts_log.h"
#include "ts_server.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: threadsyncd [options]\n"
            "  --data-dir DIR          data directory (default threadsync-data)\n"
            "  --listen HOST:PORT      client listener (default 127.0.0.1:7420; port 0 = any)\n"
            "  --raft-listen HOST:PORT raft listener (default 127.0.0.1:7421)\n"
            "  --advertise HOST:PORT   client address told to clients (default: bound address)\n"
            "  --node-id N             this node's id (default 1)\n"
            "  --cert FILE --key FILE  server certificate and key (default: generated in DIR)\n"
            "  --tokens FILE           tokens file (default DIR/tokens, admin token generated)\n"
            "  --addr-file FILE        write the bound client address to FILE\n"
            "  --max-frame BYTES       largest client frame after the handshake (default %u)\n"
            "  --heartbeat-ms MS       heartbeat interval (default 10000)\n"
            "  --evlog-max-events N    events retained for subscribers (default 1000000)\n"
            "  --evlog-max-bytes N     bytes retained for subscribers (default 512 MiB)\n"
            "  --snapshot-threshold N  raft entries between snapshots (default 8192)\n"
            "  --snapshot-trailing N   raft entries kept after a snapshot (default 2048)\n"
            "  --premoderate           every new comment starts PENDING until approved\n"
            "  --edit-window-ms MS     authors may edit/delete for MS after posting\n"
            "                          (default 900000, at most 86400000)\n"
            "  --rate-author N/TIME    posts per author (e-mail, else name) per TIME, e.g.\n"
            "                          10/10s (default), 5/500ms; 'off' disables\n"
            "  --rate-token N/TIME     posts per token per TIME (default 100/1s; 'off')\n"
            "  --max-conns-per-addr N  open connections per source address (default 64,\n"
            "                          0 = unlimited)\n"
            "  --log-level LEVEL       error, warn, info or debug (default info)\n"
            "  --version, --help\n",
            TS_FRAME_MAX_DEFAULT);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* "N/TIME" with TIME a number and ms, s (default) or m; "off" or "0":
 * unlimited. */
static int parse_rate(const char *s, uint32_t *burst, uint32_t *window_ms)
{
    if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0) {
        *burst = TS_SERVER_UNLIMITED;
        *window_ms = 0;
        return 0;
    }
    char *end;
    unsigned long n = strtoul(s, &end, 10);
    if (end == s || *end != '/' || n == 0 || n >= TS_SERVER_UNLIMITED)
        return -1;
    const char *t = end + 1;
    unsigned long long w = strtoull(t, &end, 10);
    if (end == t || w == 0)
        return -1;
    if (strcmp(end, "m") == 0)
        w *= 60000;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        w *= 1000;
    else if (strcmp(end, "ms") != 0)
        return -1;
    if (w > 24ull * 3600 * 1000)
        return -1;
    *burst = (uint32_t)n;
    *window_ms = (uint32_t)w;
    return 0;
}

static uv_signal_t sigint_h, sigterm_h;
static struct ts_server *server;

static void on_signal(uv_signal_t *h, int signum)
{
    TS_INFO("event=signal signal=%d action=stop", signum);
    uv_close((uv_handle_t *)&sigint_h, NULL);
    uv_close((uv_handle_t *)&sigterm_h, NULL);
    ts_server_stop(server);
}

int main(int argc, char **argv)
{
    enum {
        O_DATA = 256, O_LISTEN, O_RAFT, O_ADV, O_NODE, O_CERT, O_KEY, O_TOKENS, O_ADDRF,
        O_MAXF, O_HB, O_EVN, O_EVB, O_SNT, O_SNTR, O_LOG, O_VER, O_HELP,
        O_PREMOD, O_EDITW, O_RATEA, O_RATET, O_MAXC
    };
    static const struct option opts[] = {
        {"data-dir", required_argument, 0, O_DATA},
        {"listen", required_argument, 0, O_LISTEN},
        {"raft-listen", required_argument, 0, O_RAFT},
        {"advertise", required_argument, 0, O_ADV},
        {"node-id", required_argument, 0, O_NODE},
        {"cert", required_argument, 0, O_CERT},
        {"key", required_argument, 0, O_KEY},
        {"tokens", required_argument, 0, O_TOKENS},
        {"addr-file", required_argument, 0, O_ADDRF},
        {"max-frame", required_argument, 0, O_MAXF},
        {"heartbeat-ms", required_argument, 0, O_HB},
        {"evlog-max-events", required_argument, 0, O_EVN},
        {"evlog-max-bytes", required_argument, 0, O_EVB},
        {"snapshot-threshold", required_argument, 0, O_SNT},
        {"snapshot-trailing", required_argument, 0, O_SNTR},
        {"log-level", required_argument, 0, O_LOG},
        {"version", no_argument, 0, O_VER},
        {"help", no_argument, 0, O_HELP},
        {"premoderate", no_argument, 0, O_PREMOD},
        {"edit-window-ms", required_argument, 0, O_EDITW},
        {"rate-author", required_argument, 0, O_RATEA},
        {"rate-token", required_argument, 0, O_RATET},
        {"max-conns-per-addr", required_argument, 0, O_MAXC},
        {0, 0, 0, 0},
    };
    struct ts_server_config cfg = {0};
    int opt;
    uint64_t v;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case O_DATA: cfg.data_dir = optarg; break;
        case O_LISTEN: cfg.listen = optarg; break;
        case O_RAFT: cfg.raft_listen = optarg; break;
        case O_ADV: cfg.advertise = optarg; break;
        case O_CERT: cfg.cert_file = optarg; break;
        case O_KEY: cfg.key_file = optarg; break;
        case O_TOKENS: cfg.tokens_file = optarg; break;
        case O_ADDRF: cfg.addr_file = optarg; break;
        case O_NODE: bad = parse_u64(optarg, UINT64_MAX, &cfg.node_id) || !cfg.node_id; break;
        case O_MAXF: bad = parse_u64(optarg, TS_FRAME_MAX_LIMIT, &v); cfg.max_frame = (uint32_t)v; break;
        case O_HB: bad = parse_u64(optarg, 3600000, &v) || v < 50; cfg.heartbeat_ms = (uint32_t)v; break;
        case O_EVN: bad = parse_u64(optarg, SIZE_MAX, &v); cfg.evlog_max_events = (size_t)v; break;
        case O_EVB: bad = parse_u64(optarg, SIZE_MAX, &v); cfg.evlog_max_bytes = (size_t)v; break;
        case O_SNT: bad = parse_u64(optarg, UINT32_MAX, &v); cfg.snapshot_threshold = (unsigned)v; break;
        case O_SNTR: bad = parse_u64(optarg, UINT32_MAX, &v); cfg.snapshot_trailing = (unsigned)v; break;
        case O_LOG: bad = ts_log_set_level(optarg) != TS_OK; break;
        case O_VER: printf("threadsyncd %s\n", TS_VERSION); return 0;
        case O_HELP: usage(stdout); return 0;
        case O_PREMOD: cfg.premoderate = 1; break;
        case O_EDITW: bad = parse_u64(optarg, 24ull * 3600 * 1000, &v) || !v; cfg.edit_window_ms = v; break;
        case O_RATEA: bad = parse_rate(optarg, &cfg.rate_author_burst, &cfg.rate_author_window_ms); break;
        case O_RATET: bad = parse_rate(optarg, &cfg.rate_token_burst, &cfg.rate_token_window_ms); break;
        case O_MAXC: bad = parse_u64(optarg, UINT32_MAX - 1, &v); cfg.max_conns_per_addr = v ? (uint32_t)v : TS_SERVER_UNLIMITED; break;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "threadsyncd: bad value for --%s: %s\n", opts[opt - O_DATA].name,
                    optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "threadsyncd: unexpected argument: %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    uv_loop_t *loop = uv_default_loop();
    int rc = ts_server_start(loop, &cfg, &server);
    if (rc == TS_OK) {
        uv_signal_init(loop, &sigint_h);
        uv_signal_init(loop, &sigterm_h);
        uv_signal_start(&sigint_h, on_signal, SIGINT);
        uv_signal_start(&sigterm_h, on_signal, SIGTERM);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    int closed = uv_loop_close(loop);
    ts_server_free(server);
    if (closed != 0)
        TS_WARN("event=loop_not_closed");
    return rc == TS_OK ? 0 : 1;
}
