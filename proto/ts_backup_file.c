/*
 * ts_backup_file: the backup file's header and checks (see ts_backup_file.h).
 */
#include "ts_backup_file.h"

#include "ts_endian.h"
#include "ts_err.h"

#include <openssl/evp.h>
#include <string.h>

/* Bytes, not a string: the header carries no terminator. */
static const uint8_t MAGIC[8] = {'T', 'S', 'B', 'K', 'U', 'P', '0', '1'};

void ts_backup_file_sha256(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                           uint8_t out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned n = 0;
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) || !EVP_DigestUpdate(md, a, alen) ||
        !EVP_DigestUpdate(md, b, blen) || !EVP_DigestFinal_ex(md, out, &n))
        memset(out, 0, 32);
    EVP_MD_CTX_free(md);
}

void ts_backup_file_header(uint8_t out[TS_BACKUP_FILE_HEADER], uint64_t seq,
                           const uint8_t *snapshot, size_t len)
{
    memcpy(out, MAGIC, sizeof(MAGIC));
    ts_store_be64(out + 8, seq);
    ts_store_be64(out + 16, len);
    ts_backup_file_sha256(snapshot, len, NULL, 0, out + 24);
}

int ts_backup_file_check_header(const uint8_t header[TS_BACKUP_FILE_HEADER], uint64_t *seq,
                                uint64_t *snapshot_len)
{
    if (memcmp(header, MAGIC, sizeof(MAGIC)) != 0)
        return TS_E_BAD_FRAME;
    *seq = ts_load_be64(header + 8);
    *snapshot_len = ts_load_be64(header + 16);
    return TS_OK;
}

int ts_backup_file_parse(const uint8_t *buf, size_t len, uint64_t *seq, const uint8_t **snapshot,
                         size_t *snapshot_len)
{
    uint64_t n;
    if (len < TS_BACKUP_FILE_HEADER || ts_backup_file_check_header(buf, seq, &n) != TS_OK ||
        n != len - TS_BACKUP_FILE_HEADER)
        return TS_E_BAD_FRAME;
    uint8_t md[32];
    ts_backup_file_sha256(buf + TS_BACKUP_FILE_HEADER, (size_t)n, NULL, 0, md);
    if (memcmp(md, buf + 24, 32) != 0)
        return TS_E_INVALID_ARGUMENT;
    *snapshot = buf + TS_BACKUP_FILE_HEADER;
    *snapshot_len = (size_t)n;
    return TS_OK;
}
