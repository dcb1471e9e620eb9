/*
 * ts_disk: the free-space guard of the data directory's file system, so a
 * node never hands raft a write it cannot store.
 *
 * libraft 0.15 does not survive a full disk: once it cannot prepare a new
 * log segment (it preallocates them, TS_DISK_SEGMENT_BYTES each) or write a
 * snapshot, appends fail and later ones crash it inside its own code
 * (issue 12, section 5). So writes stop while the space left is below a
 * reserve that covers the next step raft may take on its own:
 *
 *     reserve = configured margin (--disk-reserve, default 8 MiB)
 *             + one log segment (TS_DISK_SEGMENT_BYTES)
 *             + the next snapshot (estimated as the store's size in memory,
 *               which is at least what it serialises to)
 *
 * and the space counted as left is the file system's free space (for an
 * unprivileged user: f_bavail) minus the bytes proposed but not applied
 * yet. Reads, subscriptions and moderation views touch no disk and go on;
 * writes resume by themselves as soon as a check sees the space back.
 *
 * A check is one statvfs(2): on the server's ticker, which keeps the figure
 * fresh for /healthz and the metric threadsync_disk_free_bytes, and on a
 * proposal only when the cheap admission cannot vouch for it. Admission
 * (ts_disk_admit, once per proposal) counts every byte proposed since the
 * last statvfs as written: the space left is the last check's free space
 * minus what was in flight then, minus everything proposed since. That is
 * never more than what statvfs would say now for our own writes (raft
 * writes each proposed byte once, plus headers the margin covers); another
 * process filling the disk is seen at the next check, which comes at the
 * latest after TS_DISK_RECHECK_FRACTION of the margin was proposed or on
 * the next tick, so the margin absorbs it. While the state is low, or the
 * admission figure falls below the reserve, every proposal checks for real:
 * freed space lets the very next write through. At 25,000 posts/s the
 * per-post statvfs was 5-6 % of the server's instructions (bench/README.md,
 * "Where a post's CPU goes"). A crossing of the reserve, either way, is
 * logged with the figures. Single-threaded: the main loop only.
 */
#ifndef TS_DISK_H
#define TS_DISK_H

#include <stddef.h>
#include <stdint.h>

/* libraft's log segment size (uv.c's default, which ts_repl keeps). */
#define TS_DISK_SEGMENT_BYTES ((uint64_t)8 * 1024 * 1024)
#define TS_DISK_RESERVE_DEFAULT ((uint64_t)8 * 1024 * 1024)
/* Admission re-checks once the bytes proposed since the last statvfs
 * reach margin / TS_DISK_RECHECK_FRACTION. */
#define TS_DISK_RECHECK_FRACTION 4
/* What a refused write is told to wait: a few ticker periods. */
#define TS_DISK_RETRY_AFTER_MS 5000

struct ts_disk {
    char path[4096];
    uint64_t margin;  /* the configured part of the reserve */
    uint64_t avail;   /* bytes free to us at the last check */
    uint64_t reserve; /* the whole reserve at the last check */
    uint64_t pending; /* bytes proposed and not applied yet */
    uint64_t left;    /* avail - pending at the last check (0 when below) */
    uint64_t since;   /* bytes proposed since the last check */
    int low;          /* the last check found avail - pending below reserve */
    int stat_error;   /* errno of a failed statvfs, 0 when it worked */
};

/* Sets d up for the file system holding path (copied), with the given
 * margin (0: TS_DISK_RESERVE_DEFAULT). Does not check yet. */
void ts_disk_init(struct ts_disk *d, const char *path, uint64_t margin);

/* statvfs now, with snapshot_estimate bytes for the next snapshot: 1 when
 * writes may go on, 0 when the space left is below the reserve (or the
 * file system cannot be asked: a write then is not known to fit). */
int ts_disk_check(struct ts_disk *d, uint64_t snapshot_estimate);

/* Whether a proposal may go to raft now, with snapshot_estimate bytes for
 * the next snapshot: 1 when the last check's figure, less every byte
 * proposed since, still clears the reserve (no system call), else the
 * answer of a fresh ts_disk_check. */
int ts_disk_admit(struct ts_disk *d, uint64_t snapshot_estimate);

/* A proposal of len bytes is in flight / has been applied or failed. */
void ts_disk_proposed(struct ts_disk *d, uint64_t len);
void ts_disk_settled(struct ts_disk *d, uint64_t len);

/* The refusal's text, "disk space low: N MiB free, reserve M MiB", into
 * out. */
void ts_disk_describe(const struct ts_disk *d, char *out, size_t n);

#endif
