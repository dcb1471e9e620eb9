/*
 * ts_file: temp file + fsync + rename + fsync(dir), the sequence redis uses
 * for rdb.c. The temporary name comes from mkstemp so two processes writing
 * different files in one directory never collide, and a half-written
 * temporary is never mistaken for the real file.
 */
#include "ts_file.h"

#include "ts_buf.h"
#include "ts_err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ts_file_write_full(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
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

int ts_file_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return TS_E_IO;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc == 0 ? TS_OK : TS_E_IO;
}

int ts_file_fsync_parent(const char *path)
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
            return TS_E_IO;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return ts_file_fsync_dir(dir);
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
    if (fchmod(fd, mode) != 0 || ts_file_write_full(fd, data, len) != 0 || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    if (ts_file_fsync_parent(path) != TS_OK)
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
     * EOF, growing the buffer, and still enforce max on what is read. The
     * first read asks for one byte more than the hint, to see EOF without
     * growing. */
    struct ts_buf b = TS_BUF_INIT;
    size_t first = (size_t)st.st_size + 1;
    int rc = TS_OK, saved = 0;
    for (;;) {
        size_t room = b.cap > b.len + 1 ? b.cap - b.len - 1 : (b.len ? b.len : first);
        if (room > max + 1 - b.len)
            room = max + 1 - b.len;
        char *p = ts_buf_space(&b, room);
        if (!p) {
            rc = TS_E_NOMEM;
            break;
        }
        ssize_t r = read(fd, p, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            saved = errno;
            rc = TS_E_IO;
            break;
        }
        if (r == 0)
            break;
        ts_buf_commit(&b, (size_t)r);
        if (b.len > max) {
            rc = TS_E_TOO_LARGE;
            break;
        }
    }
    close(fd);
    if (rc != TS_OK) {
        ts_buf_free(&b);
        if (rc == TS_E_IO)
            errno = saved; /* the read's, for the caller's message */
        return rc;
    }
    char *text;
    rc = ts_buf_finish(&b, &text, len);
    *out = (uint8_t *)text;
    return rc;
}
