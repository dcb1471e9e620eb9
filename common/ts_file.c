/*
 * ts_file: temp file + fsync + rename + fsync(dir), the sequence redis uses
 * for rdb.c. The temporary name comes from mkstemp so two processes writing
 * different files in one directory never collide, and a half-written
 * temporary is never mistaken for the real file.
 */
#include "ts_file.h"

#include "ts_err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_full(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Makes a completed rename durable: without this a crash can forget the
 * directory entry change even though the file's data reached the disk. */
static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int ts_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return TS_E_IO;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return TS_E_IO;
    /* fchmod, not open's mode argument: mkstemp fixes 0600 and the umask
     * would mask it anyway; the caller asked for exactly mode. */
    if (fchmod(fd, mode) != 0 || write_full(fd, data, len) != 0 || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    if (fsync_parent(path) != 0)
        return TS_E_IO; /* the new content is in place, only its durability is unknown */
    return TS_OK;

fail:;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = saved;
    return TS_E_IO;
}

int ts_file_read_all(const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (max > SIZE_MAX / 4)
        max = SIZE_MAX / 4; /* keeps the growth arithmetic below from overflowing */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TS_E_NOT_FOUND : TS_E_IO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return TS_E_IO;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > max) {
        close(fd);
        return TS_E_TOO_LARGE;
    }
    /* The size is a hint only (the file may grow or be a pipe): read until
     * EOF, growing the buffer, and still enforce max on what is read. */
    size_t cap = (size_t)st.st_size + 1;
    uint8_t *buf = malloc(cap + 1);
    if (buf == NULL) {
        close(fd);
        return TS_E_NOMEM;
    }
    size_t used = 0;
    for (;;) {
        if (used == cap) {
            if (cap > max) {
                free(buf);
                close(fd);
                return TS_E_TOO_LARGE;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            uint8_t *nb = realloc(buf, ncap + 1);
            if (nb == NULL) {
                free(buf);
                close(fd);
                return TS_E_NOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + used, cap - used);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            free(buf);
            close(fd);
            errno = saved;
            return TS_E_IO;
        }
        if (r == 0)
            break;
        used += (size_t)r;
    }
    close(fd);
    if (used > max) {
        free(buf);
        return TS_E_TOO_LARGE;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return TS_OK;
}
