"""SSE resume across a restart of the cluster's leader (issue 14, "SSE
resume"), against real processes: a one-node cluster (its only node is the
leader) behind `threadsync web`. Two browsers watch one thread through the
edge while the node is stopped and started again on the same addresses and
data directory: one keeps its event stream open through the outage, the
other drops it during the outage and comes back with Last-Event-ID. Each
must see every comment acknowledged before, and after, the restart exactly
once, in seq order, with nothing missed (the edge's mirror resumes from its
cursor; its relay hands the reconnecting browser exactly what it missed).

Usage: web_resume_test.py THREADSYNCD THREADSYNC"""
import json
import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
from tsweb import SSE, Node, Proc, Web, quote, wait_for  # noqa: E402

BINS = {}
KEY = "resume/leader"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def comments_until(sse, want_ids, timeout=30):
    """Reads comment events until every id in want_ids was seen; returns the
    (id, body) list in arrival order."""
    got = []
    while not set(want_ids) <= {i for i, _ in got}:
        ev = sse.next_event(timeout=timeout)
        if ev.get("event") == "reload":
            raise AssertionError("told to reload instead of resuming")
        if ev.get("event") == "comment":
            got.append((int(ev["id"]), json.loads(ev["data"])["comment"]["body"]))
    return got


class LeaderRestartTest(unittest.TestCase):
    def setUp(self):
        self.raft = "127.0.0.1:%d" % free_port()
        self.node = Node(BINS, ["--raft-listen", self.raft])
        self.node.post(KEY, "seed")
        self.web = Web(self.node, ["--heartbeat-ms", "200"])
        self.web.wait_thread(KEY)

    def tearDown(self):
        tsweb.stop_web_and_node(self.web, self.node)

    def restart_node(self):
        """Stops the node (SIGTERM, clean) and starts it again on the same
        client and raft addresses and data directory."""
        self.assertEqual(self.node.stop(), 0, self.node.proc.output())
        addr_file = os.path.join(self.node.dir, "addr")
        os.unlink(addr_file)
        self.node.proc = Proc([BINS["threadsyncd"], "--listen", self.node.addr, "--raft-listen",
                               self.raft, "--addr-file", addr_file, "--rate-author", "off",
                               "--rate-token", "off"], self.node.dir,
                              os.path.join(self.node.dir, "node.log"))
        wait_for(lambda: os.path.exists(addr_file), what="threadsyncd to listen again")

    def test_streams_resume_across_leader_restart(self):
        path = "/t/%s/events" % quote(KEY)
        stay = SSE(self.web.port, path)     # open through the outage
        drop = SSE(self.web.port, path)     # gone during it, back with Last-Event-ID
        before = [self.node.post(KEY, "before %d" % i)[1] for i in range(3)]
        self.assertEqual([i for i, _ in comments_until(stay, before)], before)
        self.assertEqual([i for i, _ in comments_until(drop, before)], before)

        drop.close()
        self.restart_node()
        # Posts once the restarted node has elected itself (a post refused
        # before that was never proposed, but waiting keeps the test from
        # relying on it: a duplicate would fail the count below).
        wait_for(lambda: "leader=1" in self.node.cli("admin", "cluster", check=False),
                 what="the restarted node to lead")
        after = [self.node.post(KEY, "after %d" % i)[1] for i in range(3)]

        got = comments_until(stay, after)
        self.assertEqual([i for i, _ in got], after, "open stream: missed or repeated events")
        self.assertEqual([b for _, b in got], ["after %d" % i for i in range(3)])
        back = SSE(self.web.port, path, last_event_id=before[-1])
        got = comments_until(back, after)
        self.assertEqual([i for i, _ in got], after, "resumed stream: missed or repeated events")
        # The page itself shows all of them once.
        j = self.web.wait_thread(KEY, lambda j: len(j["comments"]) == 7)
        self.assertEqual(sorted(c["body"] for c in j["comments"]),
                         sorted(["seed"] + ["before %d" % i for i in range(3)] +
                                ["after %d" % i for i in range(3)]))
        stay.close()
        back.close()


if __name__ == "__main__":
    BINS["threadsyncd"], BINS["threadsync"] = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1], verbosity=2)
