/*
 * ts_cli_mirror: the `threadsync mirror` and `threadsync verify` commands,
 * over libthreadsync (async, on the default uv loop) and the network-free
 * mirror core (ts_mirror_db, ts_mirror_render).
 *
 *   mirror --dir DIR [--thread KEY]... [--all] [--once]
 *     Subscribes from DIR/mirror.db's cursor and applies every Events batch
 *     and snapshot chunk in one transaction with the cursor; re-renders the
 *     touched threads' DIR/threads/<file>.{json,html}. Runs until SIGINT or
 *     SIGTERM (exit 0), or with --once until caught up (exit 0). Reconnects
 *     with backoff across --server; exits 3 when no server ever answered or
 *     the mirror cannot be written.
 *   verify --dir DIR [--thread KEY]... [--all]
 *     Syncs like --once, then compares every thread with the server's
 *     Digest at the same seq: presence, id, comment_count, number of
 *     comments, digest. Exit 0 with a summary line on stdout when equal, 1
 *     with the first difference on stdout, 3 on a connection or local
 *     failure.
 *
 * Without --thread or --all both follow the filter the mirror was last
 * synced with (kept in mirror.db as the setting 'filter'), else every
 * thread.
 */
#ifndef TS_CLI_MIRROR_H
#define TS_CLI_MIRROR_H

#include "threadsync.h"
#include "ts_cli.h"

/* Run the command to its end and return the exit code. cfg is the CLI's
 * client config (servers, CA, token); its on_state, state_arg and reconnect
 * are set here. */
int ts_cli_mirror_run(const struct ts_cli_opts *o, struct ts_client_config *cfg);

/* What runs beside a mirror on its loop (the web edge, client/web), called
 * on the loop thread; any member may be NULL. start: the database is open
 * at cursor and the client made, before subscribing; non-zero stops the
 * mirror (exit 3). events: each batch as it arrives, before it is applied
 * and rendered (a relay's latency is not the database's; what it serves
 * from the database may lag the batch by that long). reset: after a snapshot ended at seq. flushed:
 * after a render flush, with the threads it rendered. stop: the mirror is stopping (close your
 * handles). done: the loop has ended, before it is closed. */
struct ts_mirror_touched;
struct ts_cli_mirror_hooks {
    void *arg;
    int (*start)(void *arg, uv_loop_t *loop, uint64_t cursor);
    void (*events)(void *arg, const Threadsync__Events *ev);
    void (*reset)(void *arg, uint64_t seq);
    void (*flushed)(void *arg, const struct ts_mirror_touched *ids);
    void (*stop)(void *arg);
    void (*done)(void *arg);
};
int ts_cli_mirror_run_hooked(const struct ts_cli_opts *o, struct ts_client_config *cfg,
                             const struct ts_cli_mirror_hooks *hooks);
int ts_cli_verify_run(const struct ts_cli_opts *o, struct ts_client_config *cfg);

#endif
