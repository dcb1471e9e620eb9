/*
 * ts_mirror_writer: a queue of copied Events batches and one thread that
 * applies them to the database in groups. See ts_mirror_writer.h for the
 * promises.
 *
 * One mutex guards the queue, the error and the idle state; the writer
 * thread alone uses db and its touched set while it runs, and hands both
 * back through the mutex when it is idle (queue empty, group committed),
 * which is what drain waits for.
 */
#include "ts_mirror_writer.h"

#include "ts_err.h"
#include "ts_mirror_fill.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One queued batch: the Events and everything it points to, in one block
 * (pointers first, then the structs, then the strings). */
struct item {
    struct item *next;
    size_t bytes;
    Threadsync__Events ev;
};

struct ts_mirror_writer {
    struct ts_mirror_db *db;
    size_t group_max_events, queue_max_bytes;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t work;  /* to the writer: an item, or stop */
    pthread_cond_t space; /* to push: room in the queue, or an error */
    pthread_cond_t idle;  /* to drain: the queue is empty and nothing is open */
    struct item *head, *tail;
    size_t queued_bytes;
    int busy; /* the writer holds an item or an open group */
    int stopping;
    int err;
    struct ts_mirror_touched touched; /* the writer's while busy */
    struct ts_mirror_fill *keep;      /* the writer's while it runs: gets applied batches */
    uint64_t cpu_ns;                  /* the thread's CPU time, set as it ends */
};

/* ---- copying a batch ---- */

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static char *str_copy(char **p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = memcpy(*p, s, n);
    *p += n;
    return d;
}

/* What ts_mirror_db_apply_events reads, no more: the e-mail and the
 * moderator's name are never stored, so they are not copied either. */
static struct item *item_copy(const Threadsync__Events *ev)
{
    size_t n = ev->n_events, n_thr = 0, n_com = 0, strings = 0;
    for (size_t i = 0; i < n; i++) {
        const Threadsync__Event *e = ev->events[i];
        if (e->thread) {
            n_thr++;
            strings +=
                str_size(e->thread->key) + str_size(e->thread->title) + str_size(e->thread->url);
        }
        if (e->comment) {
            n_com++;
            strings += str_size(e->comment->author_name) + str_size(e->comment->body);
        }
    }
    size_t bytes =
        sizeof(struct item) + n * (sizeof(Threadsync__Event *) + sizeof(Threadsync__Event)) +
        n_thr * sizeof(Threadsync__Thread) + n_com * sizeof(Threadsync__Comment) + strings;
    struct item *it = malloc(bytes);
    if (!it)
        return NULL;
    it->next = NULL;
    it->bytes = bytes;
    threadsync__events__init(&it->ev);
    it->ev.n_events = n;
    it->ev.last_seq = ev->last_seq;
    it->ev.caught_up = ev->caught_up;
    Threadsync__Event **pe = (Threadsync__Event **)(it + 1);
    Threadsync__Event *events = (Threadsync__Event *)(pe + n);
    Threadsync__Thread *thr = (Threadsync__Thread *)(events + n);
    Threadsync__Comment *com = (Threadsync__Comment *)(thr + n_thr);
    char *p = (char *)(com + n_com);
    it->ev.events = pe;
    for (size_t i = 0; i < n; i++) {
        const Threadsync__Event *e = ev->events[i];
        Threadsync__Event *d = pe[i] = &events[i];
        threadsync__event__init(d);
        d->seq = e->seq;
        if (e->thread) {
            const Threadsync__Thread *s = e->thread;
            Threadsync__Thread *t = d->thread = thr++;
            threadsync__thread__init(t);
            t->id = s->id;
            t->key = str_copy(&p, s->key);
            t->title = str_copy(&p, s->title);
            t->url = str_copy(&p, s->url);
            t->created_at_ms = s->created_at_ms;
            t->locked = s->locked;
            t->comment_count = s->comment_count;
            t->version = s->version;
            t->premoderated = s->premoderated;
        }
        if (e->comment) {
            const Threadsync__Comment *s = e->comment;
            Threadsync__Comment *c = d->comment = com++;
            threadsync__comment__init(c);
            c->id = s->id;
            c->thread_id = s->thread_id;
            c->parent_id = s->parent_id;
            c->author_name = str_copy(&p, s->author_name);
            c->body = str_copy(&p, s->body);
            c->created_at_ms = s->created_at_ms;
            c->edited_at_ms = s->edited_at_ms;
            c->status = s->status;
            c->version = s->version;
        }
    }
    return it;
}

/* ---- the thread ---- */

/* Applies one item inside the open group (opening one when needed) and
 * commits the group when it is full or nothing else waits. */
static int apply_item(struct ts_mirror_writer *w, struct item *it, size_t *group_events,
                      int queue_empty)
{
    int err = ts_mirror_db_group_begin(w->db);
    if (err == TS_OK)
        err = ts_mirror_db_apply_events(w->db, &it->ev, &w->touched);
    *group_events += it->ev.n_events;
    if (err == TS_OK && (queue_empty || *group_events >= w->group_max_events)) {
        err = ts_mirror_db_group_end(w->db);
        *group_events = 0;
    }
    return err;
}

static void *writer_main(void *arg)
{
    struct ts_mirror_writer *w = arg;
    size_t group_events = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->work, &w->mu);
        struct item *it = w->head;
        if (!it)
            break;
        w->head = it->next;
        if (!w->head)
            w->tail = NULL;
        w->queued_bytes -= it->bytes;
        w->busy = 1;
        int failed = w->err, empty = !w->head;
        pthread_cond_broadcast(&w->space);
        pthread_mutex_unlock(&w->mu);
        /* After a failure the rest is dropped: the program stops. */
        int err = failed ? TS_OK : apply_item(w, it, &group_events, empty);
        /* A failure stops the sync: what was kept is never rendered. */
        if (err == TS_OK && !failed && w->keep)
            ts_mirror_fill_add(w->keep, &it->ev);
        free(it);
        pthread_mutex_lock(&w->mu);
        if (err != TS_OK) {
            w->err = err;
            group_events = 0; /* the failure rolled the group back */
            pthread_cond_broadcast(&w->space);
        }
        /* Commits when the queue empties, so idle means committed. */
        w->busy = ts_mirror_db_group_is_open(w->db);
        if (!w->busy)
            pthread_cond_broadcast(&w->idle);
    }
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    w->cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- the API ---- */

int ts_mirror_writer_start(struct ts_mirror_db *db, size_t group_max_events, size_t queue_max_bytes,
                           struct ts_mirror_writer **out)
{
    *out = NULL;
    struct ts_mirror_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return TS_E_NOMEM;
    w->db = db;
    w->group_max_events = group_max_events;
    w->queue_max_bytes = queue_max_bytes;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->space, NULL);
    pthread_cond_init(&w->idle, NULL);
    if (pthread_create(&w->tid, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->idle);
        pthread_cond_destroy(&w->space);
        pthread_cond_destroy(&w->work);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return TS_E_INTERNAL;
    }
    *out = w;
    return TS_OK;
}

void ts_mirror_writer_keep(struct ts_mirror_writer *w, struct ts_mirror_fill *fill)
{
    pthread_mutex_lock(&w->mu);
    w->keep = fill;
    pthread_mutex_unlock(&w->mu);
}

int ts_mirror_writer_push(struct ts_mirror_writer *w, const Threadsync__Events *ev)
{
    struct item *it = item_copy(ev);
    if (!it)
        return TS_E_NOMEM;
    pthread_mutex_lock(&w->mu);
    /* One batch larger than the bound still goes, alone. */
    while (!w->err && w->queued_bytes && w->queued_bytes + it->bytes > w->queue_max_bytes)
        pthread_cond_wait(&w->space, &w->mu);
    int err = w->err;
    if (err == TS_OK) {
        if (w->tail)
            w->tail->next = it;
        else
            w->head = it;
        w->tail = it;
        w->queued_bytes += it->bytes;
        pthread_cond_signal(&w->work);
    }
    pthread_mutex_unlock(&w->mu);
    if (err != TS_OK)
        free(it);
    return err;
}

/* With mu held: waits for the writer to be idle, then hands its touched
 * ids over. */
static int wait_idle(struct ts_mirror_writer *w, struct ts_mirror_touched *touched)
{
    while (w->head || w->busy)
        pthread_cond_wait(&w->idle, &w->mu);
    int err = w->err;
    for (size_t i = 0; touched && i < w->touched.n; i++)
        if (ts_mirror_touched_add(touched, w->touched.ids[i]) != TS_OK && err == TS_OK)
            err = TS_E_NOMEM;
    ts_mirror_touched_clear(&w->touched);
    return err;
}

int ts_mirror_writer_drain(struct ts_mirror_writer *w, struct ts_mirror_touched *touched)
{
    pthread_mutex_lock(&w->mu);
    int err = wait_idle(w, touched);
    pthread_mutex_unlock(&w->mu);
    return err;
}

int ts_mirror_writer_stop(struct ts_mirror_writer *w, struct ts_mirror_touched *touched,
                          uint64_t *cpu_ns)
{
    if (!w)
        return TS_OK;
    pthread_mutex_lock(&w->mu);
    int err = wait_idle(w, touched);
    w->stopping = 1;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->tid, NULL);
    if (cpu_ns)
        *cpu_ns = w->cpu_ns;
    ts_mirror_touched_free(&w->touched);
    pthread_cond_destroy(&w->idle);
    pthread_cond_destroy(&w->space);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return err;
}
