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
#include <signal.h>
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
            "  --log-level LEVEL       error, warn, info or debug (default info)\n"
            "  --ca FILE               cluster CA: raft's mutual TLS (default DIR/ca.pem)\n"
            "  --join HOST:PORT        first start: join the cluster of the node with this\n"
            "                          client address (as a voter, once caught up)\n"
            "  --join-token-file FILE  admin token for --join (default DIR/admin.token)\n"
            "  --election-timeout-ms MS raft election timeout (default 1000)\n"
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
        O_CA, O_JOIN, O_JOINTOK, O_ELECT
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
        {"ca", required_argument, 0, O_CA},
        {"join", required_argument, 0, O_JOIN},
        {"join-token-file", required_argument, 0, O_JOINTOK},
        {"election-timeout-ms", required_argument, 0, O_ELECT},
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
        case O_CA: cfg.ca_file = optarg; break;
        case O_JOIN: cfg.join = optarg; break;
        case O_JOINTOK: cfg.join_token_file = optarg; break;
        case O_ELECT: bad = parse_u64(optarg, 600000, &v) || v < 200; cfg.election_timeout_ms = (unsigned)v; break;
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

    /* A peer that goes away must cost a write error, not the process:
     * libuv writes with write(2), and raft writes into its end of the
     * mTLS transport's socketpair after the tunnel closed. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    int rc = ts_server_start(loop, &cfg, &server);
    if (rc == TS_OK) {
        uv_signal_init(loop, &sigint_h);
        uv_signal_init(loop, &sigterm_h);
        uv_signal_start(&sigint_h, on_signal, SIGINT);
        uv_signal_start(&sigterm_h, on_signal, SIGTERM);
        /* The node may stop by itself (a refused --join): the signal
         * handles must not keep the loop alive then. */
        uv_unref((uv_handle_t *)&sigint_h);
        uv_unref((uv_handle_t *)&sigterm_h);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (rc == TS_OK && !uv_is_closing((uv_handle_t *)&sigint_h)) {
        uv_close((uv_handle_t *)&sigint_h, NULL);
        uv_close((uv_handle_t *)&sigterm_h, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    int closed = uv_loop_close(loop);
    int failed = ts_server_failed(server);
    ts_server_free(server);
    if (closed != 0)
        TS_WARN("event=loop_not_closed");
    return rc == TS_OK && !failed ? 0 : 1;
}
