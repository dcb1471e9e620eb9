/*
 * ts_store_audit: the audit trail, one record per moderation action that
 * changed the state (who, when, what, the text an edit replaced), kept in
 * the replicated state: applied from the log, carried in snapshots, in the
 * digest. docs/DESIGN.md, "The audit trail", says which actions count.
 *
 * Records are in seq order (seq = the position of the log entry, so one
 * action per entry and ascending), in a vector of pointers used as a queue:
 * new ones at the tail, the oldest dropped from the head once the trail's
 * cost passes TS_STORE_AUDIT_MAX_BYTES. The cost is computed from the
 * content (ts__store_audit_cost), never from the allocator, so every node
 * drops the same records at the same entry. Reads are a binary search by
 * seq, then a walk.
 *
 * Load: moderation is rare next to posts (tens to thousands of records a
 * day); a record is one allocation with its strings.
 */
#include "ts_store.h"
#include "ts_store_int.h"

#include "ts_err.h"
#include "ts_valid.h"

#include <stdlib.h>
#include <string.h>

static size_t strings_len(const struct audit *a)
{
    return (size_t)a->actor_len + a->text_len + a->reason_len + a->target_len + 4;
}

size_t ts__store_audit_cost(const struct audit *a)
{
    return TS_STORE_AUDIT_RECORD_COST + strings_len(a);
}

struct audit *ts__store_audit_alloc(const Threadsync__AuditEntry *v)
{
    size_t actor_len = ts__store_slen(v->actor), text_len = ts__store_slen(v->text_before);
    size_t reason_len = ts__store_slen(v->reason), target_len = ts__store_slen(v->target);
    if (actor_len > TS_STORE_NAME_MAX || text_len > TS_BODY_MAX ||
        reason_len > TS_STORE_AUDIT_REASON_MAX || target_len > TS_AUTHOR_EMAIL_MAX)
        return NULL;
    struct audit *a =
        malloc(offsetof(struct audit, text) + actor_len + text_len + reason_len + target_len + 4);
    if (!a)
        return NULL;
    a->seq = v->seq;
    a->time = v->time_ms;
    a->thread_id = v->thread_id;
    a->comment_id = v->comment_id;
    a->until = v->until_ms;
    a->action = (uint8_t)v->action;
    a->role = (uint8_t)v->role;
    a->actor_len = (uint16_t)actor_len;
    a->text_len = (uint32_t)text_len;
    a->reason_len = (uint16_t)reason_len;
    a->target_len = (uint16_t)target_len;
    char *p = a->text;
    const char *parts[] = {v->actor, v->text_before, v->reason, v->target};
    const size_t lens[] = {actor_len, text_len, reason_len, target_len};
    for (size_t i = 0; i < 4; i++) {
        if (lens[i])
            memcpy(p, parts[i], lens[i]);
        p[lens[i]] = '\0';
        p += lens[i] + 1;
    }
    return a;
}

static int valid_action(int a)
{
    return (a >= THREADSYNC__AUDIT_ACTION__AUDIT_APPROVE &&
            a <= THREADSYNC__AUDIT_ACTION__AUDIT_EDIT) ||
           (a >= THREADSYNC__AUDIT_ACTION__AUDIT_LOCK &&
            a <= THREADSYNC__AUDIT_ACTION__AUDIT_POSTMODERATE) ||
           a == THREADSYNC__AUDIT_ACTION__AUDIT_BAN || a == THREADSYNC__AUDIT_ACTION__AUDIT_UNBAN ||
           a == THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_ADD ||
           a == THREADSYNC__AUDIT_ACTION__AUDIT_TOKEN_REVOKE;
}

const struct audit *ts__store_audit_at(const struct state *st, size_t i)
{
    return st->audit[st->audit_head + i];
}

uint64_t ts__store_audit_last_seq(const struct state *st)
{
    return st->audit_n ? ts__store_audit_at(st, st->audit_n - 1)->seq : 0;
}

static void drop_oldest(struct state *st)
{
    struct audit *a = st->audit[st->audit_head];
    st->audit_bytes -= ts__store_audit_cost(a);
    st->record_bytes -= ts__store_alloc_cost(offsetof(struct audit, text) + strings_len(a));
    free(a);
    st->audit[st->audit_head++] = NULL;
    st->audit_n--;
}

int ts__store_audit_push(struct state *st, struct audit *a)
{
    if (a->seq <= ts__store_audit_last_seq(st) || !valid_action(a->action))
        return TS_E_BAD_FRAME;
    if (st->audit_head + st->audit_n == st->audit_cap) {
        if (st->audit_head >= st->audit_cap / 2 && st->audit_head) {
            /* Half the vector is dropped records: slide instead of growing. */
            memmove(st->audit, st->audit + st->audit_head, st->audit_n * sizeof(*st->audit));
            st->audit_head = 0;
        } else {
            size_t cap = st->audit_cap ? st->audit_cap * 2 : 64;
            struct audit **v = realloc(st->audit, cap * sizeof(*v));
            if (!v)
                return TS_E_NOMEM;
            st->audit = v;
            st->audit_cap = cap;
        }
    }
    st->audit[st->audit_head + st->audit_n++] = a;
    st->audit_bytes += ts__store_audit_cost(a);
    st->record_bytes += ts__store_alloc_cost(offsetof(struct audit, text) + strings_len(a));
    /* The newest record always stays, whatever its size. */
    while (st->audit_bytes > TS_STORE_AUDIT_MAX_BYTES && st->audit_n > 1)
        drop_oldest(st);
    return TS_OK;
}

int ts__store_audit_add(struct state *st, const Threadsync__AuditEntry *v)
{
    struct audit *a = ts__store_audit_alloc(v);
    if (!a)
        return TS_E_NOMEM;
    int rc = ts__store_audit_push(st, a);
    if (rc != TS_OK)
        free(a);
    return rc;
}

void ts__store_audit_free(struct state *st)
{
    for (size_t i = 0; i < st->audit_n; i++)
        free(st->audit[st->audit_head + i]);
    free(st->audit);
    st->audit = NULL;
    st->audit_n = st->audit_head = st->audit_cap = 0;
}

void ts__store_audit_view(const struct state *st, const struct audit *a, Threadsync__AuditEntry *v)
{
    threadsync__audit_entry__init(v);
    v->seq = a->seq;
    v->time_ms = a->time;
    v->action = (Threadsync__AuditAction)a->action;
    v->thread_id = a->thread_id;
    v->comment_id = a->comment_id;
    v->until_ms = a->until;
    v->role = (Threadsync__Role)a->role;
    char *p = (char *)a->text;
    v->actor = p;
    p += a->actor_len + 1;
    v->text_before = p;
    p += a->text_len + 1;
    v->reason = p;
    p += a->reason_len + 1;
    v->target = p;
    const struct thread *t = a->thread_id ? ts__store_find_thread_id(st, a->thread_id) : NULL;
    if (t)
        v->thread_key = (char *)t->text;
}

/* The index of the first record whose seq is at least seq. */
static size_t audit_slot(const struct state *st, uint64_t seq)
{
    size_t lo = 0, hi = st->audit_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ts__store_audit_at(st, mid)->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int audit_matches(const struct audit *a, const struct ts_store_audit_query *q)
{
    return (!q->thread_id || a->thread_id == q->thread_id) &&
           (!q->comment_id || a->comment_id == q->comment_id);
}

int ts_store_audit_list(const struct ts_store *s, const struct ts_store_audit_query *q,
                        Threadsync__AuditEntry *out, size_t limit, size_t *n, int *more)
{
    const struct state *st = &s->st;
    *n = 0;
    *more = 0;
    /* [from, to) in the direction asked: step -1 walks newest first */
    size_t from, to;
    int step = q->newest_first ? -1 : 1;
    if (q->newest_first) {
        from = (q->before_seq ? audit_slot(st, q->before_seq) : st->audit_n) - 1;
        to = (size_t)-1;
    } else {
        if (q->after_seq == UINT64_MAX)
            return TS_OK;
        from = audit_slot(st, q->after_seq + 1);
        to = st->audit_n;
    }
    for (size_t i = from; i != to; i += (size_t)step) {
        const struct audit *a = ts__store_audit_at(st, i);
        if (!audit_matches(a, q))
            continue;
        if (*n == limit)
            return *more = 1, TS_OK;
        ts__store_audit_view(st, a, &out[(*n)++]);
    }
    return TS_OK;
}

size_t ts_store_audit_count(const struct ts_store *s)
{
    return s->st.audit_n;
}

uint64_t ts_store_audit_oldest(const struct ts_store *s)
{
    return s->st.audit_n ? ts__store_audit_at(&s->st, 0)->seq : 0;
}
