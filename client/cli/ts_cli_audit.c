/*
 * ts_cli_audit: `threadsync admin audit` (see ts_cli_audit.h) and the
 * audit record export writes. One blocking AuditList per page
 * (ts_sync_audit_list, fail-fast over the server list), 1,000 entries a
 * page: a trail is at most 64 MiB, so a full listing is a few hundred
 * round trips at worst.
 */
#include "ts_cli_audit.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "threadsync.h"
#include "ts_cli.h"
#include "ts_json.h"

const char *ts_cli_audit_action_name(int action)
{
    switch (action) {
    case THREADSYNC__AUDIT_ACTION__AUDIT_APPROVE:
        return "approve";
    case THREADSYNC__AUDIT_ACTION__AUDIT_HIDE:
        return "hide";
    case THREADSYNC__AUDIT_ACTION__AUDIT_UNHIDE:
        return "unhide";
    case THREADSYNC__AUDIT_ACTION__AUDIT_DELETE:
        return "delete";
    case THREADSYNC__AUDIT_ACTION__AUDIT_EDIT:
        return "edit";
    case THREADSYNC__AUDIT_ACTION__AUDIT_LOCK:
        return "lock";
    case THREADSYNC__AUDIT_ACTION__AUDIT_UNLOCK:
        return "unlock";
    case THREADSYNC__AUDIT_ACTION__AUDIT_PREMODERATE:
        return "premoderate";
    case THREADSYNC__AUDIT_ACTION__AUDIT_POSTMODERATE:
        return "postmoderate";
    case THREADSYNC__AUDIT_ACTION__AUDIT_BAN:
        return "ban";
    case THREADSYNC__AUDIT_ACTION__AUDIT_UNBAN:
        return "unban";
    case THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_ADD:
        return "token-add";
    case THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_REVOKE:
        return "token-revoke";
    default:
        return "unknown";
    }
}

static const char *role_name(int r)
{
    static const char *const names[] = {"", "reader", "poster", "moderator", "admin"};
    return r >= 0 && r <= 4 ? names[r] : "";
}

void ts_cli_audit_write(FILE *out, const Threadsync__AuditEntry *e)
{
    fputs("{\"type\":\"audit\"", out);
    ts_json_kv_u64(out, "seq", e->seq, 0);
    ts_json_kv_i64(out, "time_ms", e->time_ms, 0);
    ts_json_kv_str(out, "actor", e->actor, 0);
    ts_json_kv_str(out, "action", ts_cli_audit_action_name(e->action), 0);
    ts_json_kv_u64(out, "thread_id", e->thread_id, 0);
    ts_json_kv_str(out, "thread_key", e->thread_key, 0);
    ts_json_kv_u64(out, "comment_id", e->comment_id, 0);
    ts_json_kv_str(out, "text_before", e->text_before, 0);
    ts_json_kv_str(out, "reason", e->reason, 0);
    ts_json_kv_str(out, "target", e->target, 0);
    ts_json_kv_i64(out, "until_ms", e->until_ms, 0);
    ts_json_kv_str(out, "role", role_name(e->role), 0);
    fputs("}\n", out);
}

static void print_line(FILE *out, const Threadsync__AuditEntry *e)
{
    fprintf(out, "seq=%" PRIu64 " time_ms=%" PRId64 " actor=%s action=%s", e->seq, e->time_ms,
            e->actor && *e->actor ? e->actor : "-", ts_cli_audit_action_name(e->action));
    if (e->thread_key && *e->thread_key) {
        fputs(" thread=", out);
        ts_json_str(out, e->thread_key);
    }
    if (e->comment_id)
        fprintf(out, " comment=%" PRIu64, e->comment_id);
    if (e->target && *e->target) {
        fputs(" target=", out);
        ts_json_str(out, e->target);
    }
    if (e->until_ms)
        fprintf(out, " until_ms=%" PRId64, e->until_ms);
    if (e->role)
        fprintf(out, " role=%s", role_name(e->role));
    if (e->reason && *e->reason) {
        fputs(" reason=", out);
        ts_json_str(out, e->reason);
    }
    if (e->text_before && *e->text_before) {
        fputs(" text_before=", out);
        ts_json_str(out, e->text_before);
    }
    fputc('\n', out);
}

int ts_cli_audit_run(const struct ts_cli_opts *o, struct ts_client_config *cfg)
{
    Threadsync__AuditList q = THREADSYNC__AUDIT_LIST__INIT;
    q.thread_key = o->n_threads ? (char *)o->threads[0] : NULL;
    q.comment_id = o->comment_id;
    q.after_seq = o->after_seq;
    q.limit = 1000;
    int code = TS_CLI_EXIT_OK;
    for (;;) {
        Threadsync__AuditListResult *r = NULL;
        Threadsync__Error *detail = NULL;
        int rc = ts_sync_audit_list(cfg, &q, &r, &detail);
        if (rc != TS_OK) {
            ts_cli_print_error(stderr, rc, detail, "admin audit");
            ts_msg_free(detail);
            code = ts_cli_exit_code(rc);
            break;
        }
        for (size_t i = 0; i < r->n_entries; i++) {
            if (o->json)
                ts_cli_audit_write(stdout, r->entries[i]);
            else
                print_line(stdout, r->entries[i]);
        }
        int more = r->more && r->n_entries;
        if (r->n_entries)
            q.after_seq = r->entries[r->n_entries - 1]->seq;
        ts_msg_free(r);
        if (!more)
            break;
    }
    return code;
}
