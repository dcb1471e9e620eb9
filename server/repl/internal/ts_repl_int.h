/*
 * ts_repl_int.h: what the three parts of ts_repl share, private to
 * server/repl: ts_repl.c (raft glue: start and stop, proposals, apply,
 * snapshots, leader tracking, staleness), ts_repl_member.c (the
 * configuration: listing, join, remove) and ts_repl_seed.c (bootstrap,
 * seeding a data directory from a backup). struct ts_repl's invariants are
 * stated in ts_repl.c's opening paragraph; one membership change at a time
 * hangs off r->mop (ts_repl_member.c's).
 */
#ifndef TS_REPL_INT_H
#define TS_REPL_INT_H

#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "ts_repl.h"

/* A snapshot's header: [u64 LE magic][u64 LE last index] (ts_repl.c).
 * Format 1 (REPL_SNAP_MAGIC, releases before issue 17 item 7): the state
 * machine's bytes follow, and raft compresses the file. Format 2
 * (REPL_SNAP_MAGIC_LZ4): [u64 LE raw length][LZ4 frame of the state
 * machine's bytes] follow, packed by ts__repl_snap_pack, and raft stores
 * it as it is. Both are restored. */
#define REPL_SNAP_MAGIC 0x31504e5374727374ULL     /* bytes "tsrtSNP1" */
#define REPL_SNAP_MAGIC_LZ4 0x32504e5374727374ULL /* bytes "tsrtSNP2" */
#define REPL_SNAP_HDR 16

/* Tests only: nonzero makes ts_repl_start and seeding write format 1 with
 * raft's own compression on, as an older release did. 0 in production. */
extern int ts__repl_snap_legacy;

/* Packs a state machine image (raw, len bytes; the caller keeps it) into
 * *out, a malloc'd [u64 LE raw length][LZ4 frame] of *out_len bytes, the
 * caller's to free. Only malloc, free and liblz4: callable in the snapshot
 * child. -1 on failure (no memory; *out is then untouched). */
int ts__repl_snap_pack(const uint8_t *raw, size_t len, uint8_t **out, size_t *out_len);

/* The raw length a packed image declares (p: the packed bytes). */
uint64_t ts__repl_snap_raw_len(const uint8_t *p, size_t n);

/* Unpacks a packed image (p, n) into *out, a private anonymous mapping of
 * *out_len bytes (so that freeing it, ts__repl_snap_unmap, returns every
 * page at once, whatever malloc's thresholds). TS_E_BAD_FRAME when the
 * bytes are not a whole frame of the declared length, TS_E_NOMEM. */
int ts__repl_snap_unpack(const uint8_t *p, size_t n, uint8_t **out, size_t *out_len);
void ts__repl_snap_unmap(uint8_t *out, size_t out_len);

/* Tests only: ts__repl_snap_fault = TS__REPL_SNAP_FAULT_SHORT makes the
 * next snapshot children write half their image and exit 0 (ts_repl.c
 * must refuse it). Set before the fork; 0 in production. */
enum { TS__REPL_SNAP_FAULT_SHORT = 1 };
extern int ts__repl_snap_fault;

struct repl_snap; /* the snapshot in progress (ts_repl.c) */

struct repl_prop {
    struct raft_apply req; /* req.index is set by raft_apply */
    struct ts_repl *r;
    ts_repl_cb cb;
    void *arg;
    struct repl_prop *prev, *next;
    unsigned char result[]; /* fsm->result_size bytes */
};

/* The one membership change in progress (libraft takes one at a time). */
enum { MOP_PROBE = 1, MOP_ADD, MOP_ASSIGN, MOP_REMOVE, MOP_DONE };

struct repl_mop {
    int stage;
    int raft_pending; /* raft holds change, its callback is due */
    int status;       /* of the last step, TS_OK to go on */
    uint64_t id;
    int role;      /* RAFT_VOTER or RAFT_STANDBY: what a join assigns */
    char *address; /* composite raft address */
    struct raft_change change;
    ts_repl_change_cb cb;
    void *arg;
};

/* The latest AppendEntries this node received: its sender, its term and
 * the last index it checked (prev_log_index + n_entries). */
struct repl_ae_seen {
    raft_id from;
    raft_term term;
    raft_index checked;
};

/* Notes m in seen when it is an AppendEntries. */
void ts__repl_ae_note(struct repl_ae_seen *seen, const struct raft_message *m);

/* The last_log_index that m, an AppendEntries answer about to be sent, may
 * claim: libraft 0.15 puts its whole stored log there, but a leader takes
 * it as matched, so a follower whose log has a tail the request did not
 * check (entries it appended as leader in an older term) must claim no
 * more than what the request checked, or the leader never repairs that
 * tail (ts_repl.c's opening paragraph). m's own value when it is not a
 * successful answer to seen's sender in seen's term. */
raft_index ts__repl_ae_claim(const struct repl_ae_seen *seen, const struct raft_message *m);

struct ts_repl {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io; /* raft_uv's, with send and start wrapped (ts_repl.c) */
    struct raft_uv_transport transport;
    /* raft_uv's own send and start, and libraft's receive callback: the
     * wrappers pass everything through, the AppendEntries answers claiming
     * no more than ts__repl_ae_claim allows. */
    int (*uv_send)(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                   raft_io_send_cb cb);
    int (*uv_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    raft_io_recv_cb raft_recv;
    struct repl_ae_seen ae_seen;
    struct raft_fsm rfsm;
    struct ts_repl_fsm fsm;
    struct ts_repl_hooks hooks;
    char *dir;
    char *address; /* composite: "RAFT,CLIENT" when a client address is known */
    char *client_address;
    char leader_client[256];
    int lock_fd;
    int tls; /* transport is ts_raft_tls */
    unsigned transfer_ms;

    struct repl_mop *mop;
    uv_timer_t kick; /* continues a membership change outside raft's callbacks */
    struct raft_transfer transfer;
    int transferring;
    int handles_open; /* defer, kick and watch */

    /* Staleness: watch samples raft every heartbeat (raft 0.15 has no state
     * callback). */
    uv_timer_t watch;
    uint64_t leader_seen_ms; /* loop ms a leader was last known; start time first */
    uint64_t stale_after_ms; /* REPL_STALE_ELECTIONS election timeouts */
    char last_leader[256];   /* client address of the last leader known, "" none */
    uint64_t last_leader_id; /* its id, 0 none */
    int was_member;          /* this node was in the configuration once */
    int removed;             /* ... and is no longer: it must not serve */
    int stale;               /* last reported state, for the log lines */

    struct repl_prop *head, *tail; /* pending proposals, ascending index */
    unsigned inflight;
    unsigned max_inflight;
    unsigned char *scratch; /* result buffer for entries nobody here proposed */
    uint64_t applied;
    uint64_t snapshots, snapshot_bytes; /* for ts_repl_get_status */
    uint64_t snapshot_index;            /* ... and the last one's index */
    struct repl_snap *snap;             /* from fsm_snapshot to its finalize, else NULL */
    uint64_t snap_backoff;              /* entries added to the threshold after a failure */
    unsigned min_threshold;             /* the configured snapshot threshold */
    unsigned trailing;                  /* the configured snapshot trailing */
    uint64_t entry_bytes;               /* payload bytes applied, and entries, since */
    uint64_t entry_count;               /* the last snapshot: their mean sizes the next */
    uint64_t snap_base;                 /* bytes of the last snapshot taken or restored */
    int threshold_open; /* no snapshot taken yet: each apply re-sizes the threshold */

    uv_timer_t defer;
    unsigned store_waits; /* 1 ms polls of on_defer waiting for the disk */
    int failed;           /* fsm error or corrupt entry: raft is being stopped */
    int raft_stopping;    /* raft_close() called */
    int raft_closed;      /* raft's close callback ran */
    int io_released;      /* raft_uv_close and the transport's close done */
    int closing;          /* ts_repl_close() called */
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* The one way a data directory is opened: checks cfg's data_dir,
 * raft_address and node_id, allocates *out with dir and address set (the
 * address as repl_address composes it, refused when malformed), creates the
 * directory and takes its LOCK (TS_E_BUSY when another process holds it).
 * The lock is held until ts__repl_free. On error *out is NULL and nothing
 * is held. ts_repl_start and ts_repl_seed_snapshot both start here. */
int ts__repl_open(const struct ts_repl_config *cfg, struct ts_repl **out);

/* Frees r and releases its LOCK; raft and its I/O must be closed. */
void ts__repl_free(struct ts_repl *r);

/* libraft's error code as a TS_E_* code. */
int ts__repl_err(int rv);

void ts__repl_transport_close(struct ts_repl *r);

/* Writes a one-voter configuration on a first start (ts_repl_seed.c). */
int ts__repl_bootstrap(struct ts_repl *r, uint64_t node_id);

/* Ends the membership change in progress with status (ts_repl_member.c). */
void ts__repl_mop_finish(struct ts_repl *r, int status);

#endif
