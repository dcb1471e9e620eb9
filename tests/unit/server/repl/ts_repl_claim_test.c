/*
 * ts_repl's AppendEntries answers (ts__repl_ae_claim): a successful answer
 * to the latest AppendEntries claims no more than that request checked
 * (prev_log_index + n_entries), so a node holding a tail of entries from
 * an older term (appended as leader, never committed) does not claim them
 * to the new leader, which would then never repair them (the flake of
 * ts_exactly_once_test's library_stopped_leader: the stopped leader came
 * back, answered its first heartbeat with its own uncommitted entry 7 as
 * matched, and rejected every later heartbeat at index 7 for good). A
 * rejection, an answer to another server or in another term, and a claim
 * already below the checked index pass unchanged.
 */
#include <check.h>

#include <raft.h>

#include "ts_check_main.h"
#include "ts_repl_int.h"

static struct raft_message append_entries(raft_id from, raft_term term, raft_index prev, unsigned n)
{
    struct raft_message m = {0};
    m.type = RAFT_IO_APPEND_ENTRIES;
    m.server_id = from;
    m.append_entries.term = term;
    m.append_entries.prev_log_index = prev;
    m.append_entries.n_entries = n;
    return m;
}

static struct raft_message answer(raft_id to, raft_term term, raft_index rejected, raft_index last)
{
    struct raft_message m = {0};
    m.type = RAFT_IO_APPEND_ENTRIES_RESULT;
    m.server_id = to;
    m.append_entries_result.term = term;
    m.append_entries_result.rejected = rejected;
    m.append_entries_result.last_log_index = last;
    return m;
}

START_TEST(test_claim_stops_at_checked)
{
    struct repl_ae_seen seen = {0};
    /* the new leader's heartbeat: prev 6, no entries; this log ends at 7 */
    struct raft_message ae = append_entries(2, 3, 6, 0);
    ts__repl_ae_note(&seen, &ae);
    struct raft_message ok = answer(2, 3, 0, 7);
    ck_assert_uint_eq(ts__repl_ae_claim(&seen, &ok), 6);
    /* entries 7..8 sent and stored: all of them checked */
    ae = append_entries(2, 3, 6, 2);
    ts__repl_ae_note(&seen, &ae);
    ok = answer(2, 3, 0, 8);
    ck_assert_uint_eq(ts__repl_ae_claim(&seen, &ok), 8);
    /* still writing: the stored index, below the checked one, stands */
    ok = answer(2, 3, 0, 7);
    ck_assert_uint_eq(ts__repl_ae_claim(&seen, &ok), 7);
}
END_TEST

START_TEST(test_other_answers_unchanged)
{
    struct repl_ae_seen seen = {0};
    struct raft_message none = answer(2, 3, 0, 7);
    ck_assert_uint_eq(ts__repl_ae_claim(&seen, &none), 7); /* nothing received yet */
    struct raft_message ae = append_entries(2, 3, 6, 0);
    ts__repl_ae_note(&seen, &ae);
    struct raft_message rejected = answer(2, 3, 7, 7);
    ck_assert_uint_eq(ts__repl_ae_claim(&seen, &rejected), 7);
    struct raft_message other = answer(3, 3, 0, 7);
    ck_assert_uint_eq(ts__repl_ae_claim(&seen, &other), 7);
    struct raft_message later = answer(2, 4, 0, 7);
    ck_assert_uint_eq(ts__repl_ae_claim(&seen, &later), 7);
    /* other messages are not AppendEntries: noted nothing */
    struct raft_message vote = {0};
    vote.type = RAFT_IO_REQUEST_VOTE;
    vote.server_id = 3;
    ts__repl_ae_note(&seen, &vote);
    ck_assert_uint_eq(seen.from, 2);
    ck_assert_uint_eq(seen.checked, 6);
}
END_TEST

static Suite *claim_suite(void)
{
    Suite *s = suite_create("ts_repl_claim");
    TCase *tc = tcase_create("claim");
    tcase_add_test(tc, test_claim_stops_at_checked);
    tcase_add_test(tc, test_other_answers_unchanged);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_check_run(claim_suite());
}
