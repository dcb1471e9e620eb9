/*
 * ts_repl: the only module that knows about Raft (canonical raft, libraft
 * 0.15, on its libuv I/O backend). The rest of the server sees "propose a
 * command, get called back once it is committed and applied".
 *
 * ts_repl owns the raft instance, its data directory (with an exclusive lock
 * on it), and the glue to a state machine given as struct ts_repl_fsm (in the
 * server: ts_store_apply, ts_store_snapshot, ts_store_restore). It does not
 * know what a command means.
 *
 * Workarounds for libraft 0.15 defects live here and only here:
 *   - entry payloads are framed (4-byte length) and padded to a multiple of
 *     8 bytes (an unpadded entry is lost on restart);
 *   - auto-recovery is off (it would rename a damaged segment aside and
 *     drop acknowledged entries): corruption stops the node with an error;
 *   - raft_close() is never called from a raft callback (it aborts): close
 *     is deferred to an idle handle;
 *   - in-flight applies are capped: past the cap, propose answers
 *     TS_E_UNAVAILABLE without touching raft;
 *   - pre-vote on; election timeout, heartbeat, snapshot threshold and
 *     trailing are set explicitly from the config;
 *   - raft_close() waits until every appended entry is on disk (0.15 crashes
 *     when close cancels a leader's in-flight append), and raft's close
 *     callback, which 0.15 may fire twice (canonical/raft#341), is absorbed;
 *   - a successful AppendEntries answer claims no more than the request
 *     checked (prev_log_index + n_entries), not 0.15's whole stored log, so
 *     a former leader's uncommitted tail is repaired by the new leader
 *     instead of being taken as matched (ts_repl.c);
 *   - snapshots are serialised off the loop (fsm version 3, in a forked
 *     child: ts_repl.c); raft_uv 0.15 provides the async_work that needs but
 *     calls its io version 1, which raft_init refuses: we set it to 2, as
 *     libraft 0.18's raft_uv does.
 *
 * Cluster: raft's transport is ts_raft_tls (mutual TLS with the cluster CA)
 * whenever a certificate is configured. A node's raft address, as stored in
 * raft's configuration, is "RAFT_HOST:PORT,CLIENT_HOST:PORT": every node
 * learns every node's client address (for NOT_LEADER answers and the
 * Cluster listing) from the configuration itself, without a store change.
 * Membership follows dqlite: a node is added as a spare (raft_add), then
 * given its role (raft_assign): a voter, which libraft commits only once
 * the node has caught up with the log, or a standby (a read replica:
 * replicates the log and serves reads, never votes, never counts for
 * quorum), committed at once. Nothing here changes a node's role after
 * that: a standby is never promoted by a retried join, a transfer of
 * leadership (libraft picks voters only) or a restart. Before adding, the
 * leader dials the new node over the mTLS transport (a probe), so a node
 * whose certificate the cluster does not accept is refused up front. One
 * membership change runs at a time. On close, a leader first hands
 * leadership to another voter (raft_transfer), bounded by transfer_ms.
 *
 * Data directory: raft's files (metadata1/2, segments, snapshot-*) plus
 * LOCK. The file system need not support O_DIRECT or kernel AIO: libraft
 * probes it and falls back to buffered writes + fdatasync on the thread
 * pool (tmpfs works, tested); on ext4 it uses O_DIRECT + AIO, and appends
 * that queue while a write is in flight go out as one write (group commit).
 */
#ifndef TS_REPL_H
#define TS_REPL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct ts_repl;

/* The state machine. apply must be deterministic; its result is written
 * into a buffer of result_size bytes that ts_repl hands to the proposer's
 * callback. A non-zero return from apply or restore is fatal to the node
 * (out of memory, corrupt snapshot): raft stops.
 * snapshot runs in a forked child of the process (ts_repl.c), on a
 * copy-on-write image of arg taken at the snapshot's index, while the
 * parent goes on applying: it may read arg and malloc, nothing else (no
 * logging, no locks other threads may hold, no file descriptor but its
 * own: the child has closed the others). Its failure there only fails that
 * snapshot. Only when fork() fails does it run in the process, on the
 * loop, and a failure is fatal as above. */
struct ts_repl_fsm {
    int (*apply)(void *arg, uint64_t index, const uint8_t *payload, size_t len, void *result);
    int (*snapshot)(void *arg, uint8_t **out, size_t *len); /* *out: malloc'd, ts_repl frees */
    /* buf is restore's to overwrite or release pages of (madvise) until it
     * returns; ts_repl frees it after. */
    int (*restore)(void *arg, uint64_t index, uint8_t *buf, size_t len);
    size_t result_size;
    void *arg;
};

struct ts_repl_config {
    const char *data_dir;         /* raft log and snapshots; locked exclusively */
    uint64_t node_id;             /* 1 for the embedded default */
    const char *raft_address;     /* host:port of this node's raft listener */
    unsigned election_timeout_ms; /* 0 = 1000 */
    unsigned heartbeat_ms;        /* 0 = 100 */
    unsigned snapshot_threshold;  /* min. entries between snapshots, 0 = 8192 (ts_repl.c) */
    unsigned snapshot_trailing;   /* entries kept after one, 0 = 2048 */
    unsigned max_inflight;        /* proposals awaiting apply, 0 = 4096 */
    /* Cluster (all optional). client_address is carried in the raft
     * address (see above). Without cert_file raft uses libraft's stock,
     * unauthenticated TCP transport: for tests of one node only. */
    const char *client_address;
    const char *cert_file, *key_file, *ca_file;
    int join;             /* first start: do not bootstrap, wait to be added */
    unsigned transfer_ms; /* bound on the leadership transfer at close, 0 = 3000 */
};

/* Called once per proposal: status TS_OK with result filled by the fsm's
 * apply (which may still say "rejected"), or TS_E_NOT_LEADER /
 * TS_E_UNAVAILABLE when the entry was not (or may not have been) applied.
 * result is valid during the call only. Never called synchronously from
 * propose. */
typedef void (*ts_repl_cb)(void *arg, int status, const void *result);

struct ts_repl_hooks {
    /* After each fsm->apply that returned 0 (to wake the hub); ts_repl cannot
     * tell whether the entry changed the store. */
    void (*on_applied)(void *arg, uint64_t index);
    /* After a snapshot replaced the store (subscribers need snapshots). */
    void (*on_restore)(void *arg, uint64_t index);
    void *arg;
};

/* Opens the data directory (creating it and bootstrapping a one-node
 * cluster on first start), takes its lock (TS_E_BUSY with a clear log line
 * when another process holds it), replays snapshot and log into store, and
 * starts raft. fsm is copied; its arg is borrowed.
 * The snapshot is restored (fsm->restore, hooks->on_restore) inside this
 * call; on a one-node cluster raft also elects itself and applies the log
 * tail inside it; with peers the tail is applied once the leader's commit
 * index is known. Errors: TS_E_CONFIG (missing field, heartbeat >= election
 * timeout), TS_E_BUSY, TS_E_IO (unreadable or corrupt data: the node does
 * not start and nothing is renamed or deleted), TS_E_NOMEM; *out is NULL
 * then. After a failed start raft still finishes closing on the loop. */
int ts_repl_start(uv_loop_t *loop, const struct ts_repl_config *cfg, const struct ts_repl_fsm *fsm,
                  const struct ts_repl_hooks *hooks, struct ts_repl **out);

/* Proposes one command payload (copied).
 * TS_E_NOT_LEADER (this node cannot propose: cb not called),
 * TS_E_UNAVAILABLE (too many in flight, or closing or stopped: cb not
 * called), TS_E_TOO_LARGE / TS_E_NOMEM (cb not called), or TS_OK and cb
 * follows exactly once. */
int ts_repl_propose(struct ts_repl *r, const uint8_t *payload, size_t len, ts_repl_cb cb,
                    void *arg);

int ts_repl_is_leader(const struct ts_repl *r);
/* The leader's raft address as configured ("RAFT,CLIENT" or "RAFT"), ""
 * when unknown. */
const char *ts_repl_leader_address(const struct ts_repl *r);
/* The leader's client address, "" when no leader is known or its entry
 * carries none. Points into r: valid until the next call. */
const char *ts_repl_leader_client_address(struct ts_repl *r);
/* The leader's id, 0 when unknown. Here and in the two above, a standby or
 * spare (which never turns candidate, so raft would name a dead leader for
 * ever) knows no leader once it has not heard from it for an election
 * timeout. */
uint64_t ts_repl_leader_id(const struct ts_repl *r);
/* This node's role in the configuration it knows (TS_REPL_VOTER,
 * TS_REPL_STANDBY, TS_REPL_SPARE), 0 when it is not in it. */
int ts_repl_role(const struct ts_repl *r);
/* 1 when this node is in the configuration it knows (a joining node is
 * not, until the leader added it and it received the entry). */
int ts_repl_is_member(const struct ts_repl *r);
/* Whether this node's state may be served to readers. 0: yes (it leads, or
 * knew a leader within the staleness bound: 3 election timeouts). 1: stale,
 * no leader known for longer than that; 2: removed, the node was in the
 * configuration and is no longer, or failed: it stopped applying the log
 * after an error it cannot recover from (an apply error, a bad entry, one
 * of a later release). On 1 and 2 a reason for humans is written
 * into why (n bytes), naming the last leader known. */
int ts_repl_stale(struct ts_repl *r, char *why, size_t n);
/* Marks this node as removed (the cluster said its configuration no longer
 * lists it, see ts_join's check mode): ts_repl_stale answers 2 from now on,
 * and it is logged once. */
void ts_repl_set_removed(struct ts_repl *r);
/* The client address of the last leader this node knew, "" when none.
 * Points into r. */
const char *ts_repl_last_leader(const struct ts_repl *r);
/* The index of the last entry given to fsm->apply or restored from a
 * snapshot (raft's own entries, e.g. configuration changes, do not move it). */
uint64_t ts_repl_last_applied(const struct ts_repl *r);

/* ---- membership (leader only) ---- */

/* Called once with TS_OK, or TS_E_NOT_LEADER, TS_E_UNAVAILABLE (retry:
 * leadership lost, another change in progress, the node did not catch up
 * in time, closing), TS_E_FORBIDDEN (the node's raft endpoint failed mutual
 * TLS: wrong CA, or not a node certificate), TS_E_INVALID_ARGUMENT, TS_E_IO
 * (the node could not be reached). Never called synchronously. */
typedef void (*ts_repl_change_cb)(void *arg, int status);

/* Adds node id with raft_address and client_address (host:port each) as a
 * spare, then gives it role: TS_REPL_VOTER once it caught up, or
 * TS_REPL_STANDBY (a read replica) at once. Joining again with the same
 * id, addresses and role finishes an interrupted join (or succeeds at once
 * for a node that has the role). Errors returned directly (cb not called):
 * TS_E_NOT_LEADER, TS_E_UNAVAILABLE (closing, or a change in progress),
 * TS_E_INVALID_ARGUMENT (id 0, a bad address or role, the id known with
 * other addresses, the raft address used by another id), TS_E_EXISTS (the
 * node is a voter or standby already and role is the other one: a join
 * never changes a member's role). */
int ts_repl_join(struct ts_repl *r, uint64_t id, const char *raft_address,
                 const char *client_address, int role, ts_repl_change_cb cb, void *arg);

/* Removes node id from the configuration. Direct errors as for join, plus
 * TS_E_NOT_FOUND (unknown id) and TS_E_INVALID_ARGUMENT for the leader
 * itself (stop it: it hands over leadership, then remove it). */
int ts_repl_remove(struct ts_repl *r, uint64_t id, ts_repl_change_cb cb, void *arg);

enum { TS_REPL_VOTER = 1, TS_REPL_STANDBY = 2, TS_REPL_SPARE = 3 }; /* = NodeRole */

struct ts_repl_node {
    uint64_t id;
    char raft_address[256];
    char client_address[256];
    int role; /* TS_REPL_VOTER... */
    int is_leader;
};

/* The configuration this node knows, in id order: *out is malloc'd (the
 * caller frees it), *n its length (0 and NULL when empty). TS_E_NOMEM. */
int ts_repl_nodes(const struct ts_repl *r, struct ts_repl_node **out, size_t *n);

/* What operators watch (metrics, /healthz). */
struct ts_repl_status {
    uint64_t term;          /* raft's current term */
    uint64_t commit_index;  /* highest index known committed */
    uint64_t applied_index; /* raft's last applied (configuration entries too) */
    uint64_t last_index;    /* last index in the log */
    uint64_t leader_id;     /* 0 when no leader is known */
    int is_leader;
    uint64_t snapshots;      /* snapshots taken (written) by this process */
    uint64_t snapshot_bytes; /* state machine bytes of the last one (0: none yet) */
    uint64_t snapshot_index; /* the index it stands for (0: none yet) */
    int snapshot_running;    /* one is being serialised (a child) or written */
};

/* Fills *out; all zero once raft is stopping. */
void ts_repl_get_status(const struct ts_repl *r, struct ts_repl_status *out);

/* Seeds a fresh raft directory (cfg->data_dir) with a snapshot of a state
 * machine, so that ts_repl_start with the same cfg afterwards restores
 * fsm_bytes (through fsm->restore, with index last_index) and numbers new
 * entries from last_index + 1: ids and seqs stay monotonic across a backup
 * and restore. The snapshot carries term 1 and a configuration of this node
 * alone (cfg->node_id, a voter, at the address ts_repl_start gives raft:
 * raft_address, with client_address on the TLS transport); the metadata
 * records term 1, so the node does not bootstrap. Only data_dir, node_id,
 * raft_address, client_address and cert_file are read. The directory is
 * created when missing and locked for the duration; it must hold no raft
 * data (TS_E_EXISTS otherwise, nothing written). Blocks (a private loop,
 * fsyncs); a start-up step, not for a running node. Errors: TS_E_CONFIG,
 * TS_E_EXISTS, TS_E_BUSY, TS_E_IO, TS_E_NOMEM, logged. */
int ts_repl_seed_snapshot(const struct ts_repl_config *cfg, uint64_t last_index,
                          const uint8_t *fsm_bytes, size_t len);

/* Stops raft (deferred out of any raft callback); a leader first transfers
 * leadership to another voter (at most transfer_ms); pending proposals get
 * TS_E_UNAVAILABLE (or TS_OK if their entry was stored and applied while
 * closing); cb is called when everything is closed and freed, never from
 * inside ts_repl_close. Call once; r is invalid once cb runs. */
void ts_repl_close(struct ts_repl *r, void (*cb)(void *arg), void *arg);

#endif
