/*
 * ts_disk: see ts_disk.h. The figures are plain counters; the only system
 * call is statvfs (in ts_disk_check only), the only side effect a log line
 * when the state flips.
 */
#include "ts_disk.h"

#include "ts_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#define MIB (1024.0 * 1024.0)

void ts_disk_init(struct ts_disk *d, const char *path, uint64_t margin)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->path, sizeof(d->path), "%s", path);
    d->margin = margin ? margin : TS_DISK_RESERVE_DEFAULT;
}

int ts_disk_check(struct ts_disk *d, uint64_t snapshot_estimate)
{
    struct statvfs sv;
    int was_low = d->low, had_error = d->stat_error;
    d->reserve = d->margin + TS_DISK_SEGMENT_BYTES + snapshot_estimate;
    if (statvfs(d->path, &sv) != 0) {
        d->stat_error = errno ? errno : EIO;
        d->low = 1;
        if (!had_error)
            TS_ERROR("event=disk_check_failed path=%s error=\"%s\" writes=refused", d->path,
                     strerror(d->stat_error));
        return 0;
    }
    d->stat_error = 0;
    d->avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    d->left = d->avail > d->pending ? d->avail - d->pending : 0;
    d->since = 0;
    d->low = d->left < d->reserve;
    if (d->low && !was_low)
        TS_WARN("event=disk_low path=%s free_bytes=%llu pending_bytes=%llu reserve_bytes=%llu "
                "writes=refused",
                d->path, (unsigned long long)d->avail, (unsigned long long)d->pending,
                (unsigned long long)d->reserve);
    else if (!d->low && (was_low || had_error))
        TS_INFO("event=disk_ok path=%s free_bytes=%llu reserve_bytes=%llu writes=accepted", d->path,
                (unsigned long long)d->avail, (unsigned long long)d->reserve);
    return !d->low;
}

int ts_disk_admit(struct ts_disk *d, uint64_t snapshot_estimate)
{
    uint64_t reserve = d->margin + TS_DISK_SEGMENT_BYTES + snapshot_estimate;
    if (!d->low && !d->stat_error && d->since < d->margin / TS_DISK_RECHECK_FRACTION &&
        d->left >= d->since && d->left - d->since >= reserve)
        return 1;
    return ts_disk_check(d, snapshot_estimate);
}

void ts_disk_proposed(struct ts_disk *d, uint64_t len)
{
    d->pending += len;
    d->since += len;
}

void ts_disk_settled(struct ts_disk *d, uint64_t len)
{
    d->pending = d->pending > len ? d->pending - len : 0;
}

void ts_disk_describe(const struct ts_disk *d, char *out, size_t n)
{
    if (d->stat_error)
        snprintf(out, n, "disk space unknown: statvfs %s: %s", d->path, strerror(d->stat_error));
    else
        snprintf(out, n, "disk space low: %.1f MiB free, reserve %.1f MiB", d->avail / MIB,
                 d->reserve / MIB);
}
