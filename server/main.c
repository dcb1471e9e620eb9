/*
 * threadsyncd: a threadsync node. Settings come from ts_config (flags and
 * an optional INI file); everything else is in libts_server. With no
 * arguments it runs the embedded default: a one-node cluster on loopback
 * with its data in ./threadsync-data. SIGINT/SIGTERM stop it in order;
 * SIGHUP re-reads the file and applies what can change live.
 */
#include "ts_config.h"
#include "ts_err.h"
#include "ts_lattrace.h"
#include "ts_log.h"
#include "ts_server.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uv_signal_t sigint_h, sigterm_h, sighup_h;
static struct ts_server *server;
static struct ts_config *config;

static void on_stop_signal(uv_signal_t *h, int signum)
{
    TS_INFO("event=signal signal=%d action=stop", signum);
    uv_close((uv_handle_t *)&sigint_h, NULL);
    uv_close((uv_handle_t *)&sigterm_h, NULL);
    uv_close((uv_handle_t *)&sighup_h, NULL);
    if (server)
        ts_server_stop(server);
}

/* Logs each of ts_config's newline-separated messages as its own line. */
static void log_config_errors(const char *event, const char *errors)
{
    char line[512], q[600];
    while (*errors) {
        size_t n = strcspn(errors, "\n");
        snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) ? n : sizeof(line) - 1),
                 errors);
        TS_ERROR("event=%s reason=%s", event, ts_log_quote(line, q, sizeof(q)));
        errors += n + (errors[n] == '\n');
    }
}

static void on_hup(uv_signal_t *h, int signum)
{
    if (!server)
        return;
    const char *path = ts_config_path(config);
    TS_INFO("event=signal signal=%d action=reload config=%s", signum, path ? path : "-");
    struct ts_config *next;
    if (ts_config_reload(config, &next) != TS_OK) {
        log_config_errors("reload_failed", ts_config_error(config));
        TS_ERROR("event=reload_failed action=\"kept the running configuration\"");
        return;
    }
    const char *old_level = ts_config_log_level(config);
    const char *level = ts_config_log_level(next);
    if (strcmp(old_level, level) != 0) {
        ts_log_set_level(level); /* validated by ts_config */
        TS_WARN("event=reloaded log_level=%s old=%s", level, old_level);
    }
    ts_server_reload(server, ts_config_server(next)); /* copies what it keeps */
    ts_config_free(config);
    config = next;
}

/* Runs the node again (same pid, arguments and environment) with glibc's
 * malloc asking for transparent huge pages, unless GLIBC_TUNABLES is set
 * already: the operator's tunables stand, an empty value included (the way
 * to turn this off). glibc reads its tunables once, before main, and has no
 * mallopt for this one, hence the exec; if it fails the node runs as it is.
 *
 * Why: a post leaves about 1.2 KB of memory behind that nothing touched
 * before (its comment record, its event-log bytes, its Raft entry, which
 * libraft keeps until a snapshot), so on 4 KiB pages ingest took 0.3 page
 * faults per acknowledged post: 12 % of the node's CPU samples were in the
 * fault path, under the memcpy into the new Raft entry, the event encode
 * into the event log and the comment's malloc (bench/README.md, "Where a
 * post's CPU goes"). With huge pages the heap grows 2 MiB per fault: 0.03
 * faults and about a fifth less server CPU per post. The cost: RSS rounds
 * up to whole 2 MiB pages where the heap grows. With the kernel's THP
 * setting "madvise" (Debian's default) only memory glibc marks gets huge
 * pages; with "never" this changes nothing. Sanitizer builds replace
 * malloc: nothing to ask for there. */
static void exec_with_huge_pages(char **argv)
{
#if !defined(__SANITIZE_ADDRESS__)
    if (getenv("GLIBC_TUNABLES") || setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv("GLIBC_TUNABLES");
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    config = ts_config_new();
    if (!config) {
        fprintf(stderr, "threadsyncd: out of memory\n");
        return 1;
    }
    enum ts_config_action action;
    int rc = ts_config_parse_args(config, argc, argv, &action);
    if (rc != TS_OK) {
        const char *e = ts_config_error(config);
        while (*e) { /* one message a line, each prefixed */
            size_t n = strcspn(e, "\n");
            fprintf(stderr, "threadsyncd: %.*s\n", (int)n, e);
            e += n + (e[n] == '\n');
        }
        if (rc == TS_E_INVALID_ARGUMENT)
            fprintf(stderr, "threadsyncd: --help lists the options\n");
        ts_config_free(config);
        return rc == TS_E_INVALID_ARGUMENT ? 2 : 1;
    }
    switch (action) {
    case TS_CONFIG_HELP:
        ts_config_print_usage(stdout);
        ts_config_free(config);
        return 0;
    case TS_CONFIG_VERSION:
        printf("threadsyncd %s\n", TS_VERSION);
        ts_config_free(config);
        return 0;
    case TS_CONFIG_CHECK:
        ts_config_print(config, stdout);
        fprintf(stderr, "threadsyncd: %s: configuration OK\n", ts_config_path(config));
        ts_config_free(config);
        return 0;
    case TS_CONFIG_RUN:
        break;
    }
    exec_with_huge_pages(argv);
    ts_log_set_level(ts_config_log_level(config));

    /* glibc raises its mmap threshold (to at most 32 MiB) whenever an
     * mmapped block is freed, and its trim threshold with it. The snapshot
     * buffers (the store serialised, and raft compressing it on libuv's
     * threads, each with its own arena) grow with the state, so after a few
     * snapshots they come from the arenas instead, and the arenas keep the
     * freed megabytes: at 300,000 comments that was 430 B of RSS per comment
     * on top of the store's 513 (bench/README.md, memory per stored
     * comment). A fixed threshold turns the adjustment off; 1 MiB keeps
     * frame-sized buffers on the heap, where they are reused. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);

    /* A peer that vanishes mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    /* Handlers go in before the server starts: it announces itself (the
     * address file) during the start, and a SIGTERM right after must stop it
     * in order, not kill it. A signal caught during the start is acted on
     * at the loop's first turn. */
    uv_signal_init(loop, &sigint_h);
    uv_signal_init(loop, &sigterm_h);
    uv_signal_init(loop, &sighup_h);
    uv_signal_start(&sigint_h, on_stop_signal, SIGINT);
    uv_signal_start(&sigterm_h, on_stop_signal, SIGTERM);
    uv_signal_start(&sighup_h, on_hup, SIGHUP);
    /* The node may stop by itself (a refused --join): the signal handles
     * must not keep the loop alive then. */
    uv_unref((uv_handle_t *)&sigint_h);
    uv_unref((uv_handle_t *)&sigterm_h);
    uv_unref((uv_handle_t *)&sighup_h);
    /* bench/README.md, "Where latency goes": off unless asked for */
    if (ts_lattrace_open() != TS_OK)
        TS_WARN("event=latency_trace_failed error=out_of_memory");
    rc = ts_server_start(loop, ts_config_server(config), &server);
    uv_run(loop, UV_RUN_DEFAULT);
    if (!uv_is_closing((uv_handle_t *)&sigint_h)) {
        uv_close((uv_handle_t *)&sigint_h, NULL);
        uv_close((uv_handle_t *)&sigterm_h, NULL);
        uv_close((uv_handle_t *)&sighup_h, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    int closed = uv_loop_close(loop);
    int failed = ts_server_failed(server);
    ts_server_free(server);
    ts_lattrace_close();
    ts_config_free(config);
    if (closed != 0)
        TS_WARN("event=loop_not_closed");
    return rc == TS_OK && !failed ? 0 : 1;
}
