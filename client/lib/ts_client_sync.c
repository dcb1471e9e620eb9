/*
 * ts_client_sync: blocking helpers over the async client, for programs that
 * do one request and exit (the CLI's post and get).
 *
 * Each call owns a private uv loop, creates a client on it, submits one
 * request, closes the client from the request's callback and runs the loop
 * until every handle is closed, so nothing outlives the call. Results are
 * copied out of the borrowed frame by pack + unpack: the caller gets one
 * protobuf-c allocation tree and frees it with ts_msg_free().
 */
#include <stdlib.h>
#include <string.h>

#include "threadsync.h"
#include "ts_client_int.h"
#include "ts_frame.h"

struct backup_req;

struct sync_call {
    struct ts_client *c;
    const struct backup_req *chunks; /* ts_sync_backup only */
    int err;
    ProtobufCMessage *out;
    Threadsync__Error *detail;
};

void ts_msg_free(void *msg)
{
    if (msg)
        protobuf_c_message_free_unpacked((ProtobufCMessage *)msg, NULL);
}

static void finish(struct sync_call *s, int err, const Threadsync__Error *detail,
                   const ProtobufCMessage *result)
{
    s->err = err;
    if (err == TS_OK && result) {
        s->out = ts_frame_msg_copy(result);
        if (!s->out)
            s->err = TS_E_NOMEM;
    } else if (err == TS_OK) {
        s->err = TS_E_INTERNAL;
    }
    if (err >= TS_E_BAD_FRAME && err <= TS_E_WIRE_MAX && detail)
        s->detail = (Threadsync__Error *)ts_frame_msg_copy(&detail->base);
    ts_client_close(s->c, NULL, NULL);
}

static void on_post(void *arg, int err, const Threadsync__Error *detail,
                    const Threadsync__PostResult *result)
{
    finish(arg, err, detail, result ? &result->base : NULL);
}

static void on_get(void *arg, int err, const Threadsync__Error *detail,
                   const Threadsync__GetResult *result)
{
    finish(arg, err, detail, result ? &result->base : NULL);
}

/* Every other answer type: the same copy-out, through the base message. */
#define TS__SYNC_CB(name, type)                                                                    \
    static void name(void *arg, int err, const Threadsync__Error *detail, const type *result)      \
    {                                                                                              \
        finish(arg, err, detail, result ? &result->base : NULL);                                   \
    }
TS__SYNC_CB(on_change, Threadsync__ChangeResult)
TS__SYNC_CB(on_pending, Threadsync__PendingQueueResult)
TS__SYNC_CB(on_audit_list, Threadsync__AuditListResult)
TS__SYNC_CB(on_ban, Threadsync__BanResult)
TS__SYNC_CB(on_token_add, Threadsync__TokenAddResult)
TS__SYNC_CB(on_token_list, Threadsync__TokenListResult)
TS__SYNC_CB(on_token_revoke, Threadsync__TokenRevokeResult)
TS__SYNC_CB(on_cluster, Threadsync__ClusterResult)
TS__SYNC_CB(on_import, Threadsync__ImportResult)
TS__SYNC_CB(on_remove_node, Threadsync__RemoveNodeResult)
TS__SYNC_CB(on_backup, Threadsync__BackupResult)
TS__SYNC_CB(on_state_digest, Threadsync__StateDigestResult)

/* Runs one request; submit starts it on s->c and returns its ts_client_*
 * result. */
static int run(const struct ts_client_config *cfg, int (*submit)(struct sync_call *, const void *),
               const void *req, void **out, Threadsync__Error **err_out)
{
    if (out)
        *out = NULL;
    if (err_out)
        *err_out = NULL;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return TS_E_IO;
    struct ts_client_config conf;
    ts__struct_copy(&conf, sizeof(conf), cfg, TS__CONFIG_FIRST_SIZE);
    conf.on_state = NULL;
    conf.state_arg = NULL;
    struct sync_call s = {.err = TS_E_INTERNAL};
    int rc = ts_client_new(&loop, &conf, &s.c);
    if (rc == TS_OK) {
        rc = submit(&s, req);
        if (rc != TS_OK)
            ts_client_close(s.c, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (rc == TS_OK)
            rc = s.err;
    }
    uv_loop_close(&loop);
    if (rc == TS_OK && out)
        *out = s.out;
    else
        ts_msg_free(s.out);
    if (err_out)
        *err_out = s.detail;
    else
        ts_msg_free(s.detail);
    return rc;
}

static int submit_post(struct sync_call *s, const void *req)
{
    return ts_client_post(s->c, req, on_post, s);
}

static int submit_get(struct sync_call *s, const void *req)
{
    return ts_client_get(s->c, req, on_get, s);
}

int ts_sync_post(const struct ts_client_config *cfg, const Threadsync__Post *post,
                 Threadsync__PostResult **out, Threadsync__Error **err_out)
{
    return run(cfg, submit_post, post, (void **)out, err_out);
}

int ts_sync_get(const struct ts_client_config *cfg, const char *thread_key,
                Threadsync__GetResult **out, Threadsync__Error **err_out)
{
    return run(cfg, submit_get, thread_key, (void **)out, err_out);
}

/* NOLINTBEGIN(bugprone-macro-parentheses): the arguments are type and function names. */
#define TS__SYNC_API(fn, reqtype, outtype, client_fn, cb)                                          \
    static int submit_##client_fn(struct sync_call *s, const void *req)                            \
    {                                                                                              \
        return client_fn(s->c, req, cb, s);                                                        \
    }                                                                                              \
    int fn(const struct ts_client_config *cfg, const reqtype *m, outtype **out,                    \
           Threadsync__Error **err_out)                                                            \
    {                                                                                              \
        return run(cfg, submit_##client_fn, m, (void **)out, err_out);                             \
    }
/* NOLINTEND(bugprone-macro-parentheses) */

TS__SYNC_API(ts_sync_moderate, Threadsync__Moderate, Threadsync__ChangeResult, ts_client_moderate,
             on_change)
TS__SYNC_API(ts_sync_edit, Threadsync__Edit, Threadsync__ChangeResult, ts_client_edit, on_change)
TS__SYNC_API(ts_sync_delete, Threadsync__Delete, Threadsync__ChangeResult, ts_client_delete,
             on_change)
TS__SYNC_API(ts_sync_moderate_thread, Threadsync__ModerateThread, Threadsync__ChangeResult,
             ts_client_moderate_thread, on_change)
TS__SYNC_API(ts_sync_pending, Threadsync__PendingQueue, Threadsync__PendingQueueResult,
             ts_client_pending, on_pending)
TS__SYNC_API(ts_sync_audit_list, Threadsync__AuditList, Threadsync__AuditListResult,
             ts_client_audit_list, on_audit_list)
TS__SYNC_API(ts_sync_ban, Threadsync__BanAuthor, Threadsync__BanResult, ts_client_ban, on_ban)
TS__SYNC_API(ts_sync_token_add, Threadsync__TokenAdd, Threadsync__TokenAddResult,
             ts_client_token_add, on_token_add)
TS__SYNC_API(ts_sync_token_revoke, Threadsync__TokenRevoke, Threadsync__TokenRevokeResult,
             ts_client_token_revoke, on_token_revoke)
TS__SYNC_API(ts_sync_import, Threadsync__Import, Threadsync__ImportResult, ts_client_import,
             on_import)

TS__SYNC_API(ts_sync_remove_node, Threadsync__RemoveNode, Threadsync__RemoveNodeResult,
             ts_client_remove_node, on_remove_node)

static int submit_cluster(struct sync_call *s, const void *req)
{
    (void)req;
    return ts_client_cluster(s->c, on_cluster, s);
}

int ts_sync_cluster(const struct ts_client_config *cfg, Threadsync__ClusterResult **out,
                    Threadsync__Error **err_out)
{
    return run(cfg, submit_cluster, NULL, (void **)out, err_out);
}

/* ts_sync_backup's chunk consumer, handed through run()'s req. */
struct backup_req {
    ts_client_backup_chunk_cb on_chunk;
    void *arg;
};

static void relay_chunk(void *arg, const Threadsync__BackupChunk *chunk)
{
    struct sync_call *s = arg;
    s->chunks->on_chunk(s->chunks->arg, chunk);
}

static int submit_backup(struct sync_call *s, const void *req)
{
    s->chunks = req;
    return ts_client_backup(s->c, relay_chunk, on_backup, s);
}

int ts_sync_backup(const struct ts_client_config *cfg, ts_client_backup_chunk_cb on_chunk,
                   void *chunk_arg, Threadsync__BackupResult **out, Threadsync__Error **err_out)
{
    if (!on_chunk)
        return TS_E_INVALID_ARGUMENT;
    struct backup_req b = {.on_chunk = on_chunk, .arg = chunk_arg};
    return run(cfg, submit_backup, &b, (void **)out, err_out);
}

static int submit_state_digest(struct sync_call *s, const void *req)
{
    (void)req;
    return ts_client_state_digest(s->c, on_state_digest, s);
}

int ts_sync_state_digest(const struct ts_client_config *cfg, Threadsync__StateDigestResult **out,
                         Threadsync__Error **err_out)
{
    return run(cfg, submit_state_digest, NULL, (void **)out, err_out);
}

static int submit_token_list(struct sync_call *s, const void *req)
{
    (void)req;
    return ts_client_token_list(s->c, on_token_list, s);
}

int ts_sync_token_list(const struct ts_client_config *cfg, Threadsync__TokenListResult **out,
                       Threadsync__Error **err_out)
{
    return run(cfg, submit_token_list, NULL, (void **)out, err_out);
}
