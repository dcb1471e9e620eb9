"""The live feed written by delivery threads (client/web/ts_web_fan.c), a real
`threadsync web --fanout-threads 3` in front of a real threadsyncd: every
watching browser, whichever thread writes its stream, gets every event of
its thread exactly once and in seq order (posts made concurrently, so that
events arrive in bursts and a write carries several); a browser that reads
nothing while large events pile up (its socket full: the rest of a thread's
write goes through the loop) still gets them all, whole and in order; and
browsers that leave while events are being written to them are all seen
leaving (the per-address cap would refuse the next ones otherwise). The edge
must exit 0 at the end (no sanitizer report, no leak).

TS_TEST_FANOUT_IO (uring, the default, or sendmsg) is the edge's --fanout-io:
the same cases run once per way the threads write (ctest runs both). With
uring the edge must say that all 3 threads batch through io_uring when it
was built with liburing (TS_TEST_URING_BUILT=1) and this kernel lets a
process make a ring, and none otherwise; with sendmsg none.

Usage: web_fanout_test.py THREADSYNCD THREADSYNC"""
import concurrent.futures
import ctypes
import json
import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
from tsweb import SSE, Node, Web, quote, wait_for  # noqa: E402

BINS = {}
FANOUT_IO = os.environ.get("TS_TEST_FANOUT_IO", "uring")
CAP = 40  # --max-conns-per-addr: every browser here comes from 127.0.0.1


def kernel_makes_rings():
    """Whether io_uring_setup(2) works for this process (sysctl
    kernel.io_uring_disabled, seccomp and old kernels refuse it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(425, 4, params)  # __NR_io_uring_setup on x86_64 and arm64
    if fd < 0:
        return False
    os.close(fd)
    return True


def post_all(node, items):
    """Posts (key, body) pairs four at a time; returns {key: [(seq, body)]}."""
    out = {}
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        for (key, body), (_, seq) in zip(items, ex.map(lambda kb: node.post(*kb), items)):
            out.setdefault(key, []).append((seq, body))
    return out


def comment_events(sse, n, timeout=30):
    """The next n comment events as (seq, body); every event's id (comments,
    thread events) must be above the one before."""
    got, last = [], 0
    while len(got) < n:
        ev = sse.next_event(timeout=timeout)
        if ev.get("event") == "reload":
            raise AssertionError("told to reload")
        if "id" in ev:
            seq = int(ev["id"])
            if seq <= last:
                raise AssertionError("seq %d after %d: duplicated or misordered" % (seq, last))
            last = seq
        if ev.get("event") == "comment":
            got.append((int(ev["id"]), json.loads(ev["data"])["comment"]["body"]))
    return got


# A reader whose socket fills at once when it does not read: a tiny receive
# buffer, and a small MSS, since the edge's send buffer is sized from it (on
# loopback, MSS 64 KiB: a send buffer of over 1 MiB).
SLOW = ((socket.SOL_SOCKET, socket.SO_RCVBUF, 2048), (socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536))


class FanoutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(BINS)
        for key in ("fan/a", "fan/b", "fan/slow", "fan/leave"):
            cls.node.post(key, "seed")
        cls.web = Web(cls.node, ["--fanout-threads", "3", "--fanout-io", FANOUT_IO,
                                 "--heartbeat-ms", "100", "--max-conns-per-addr", str(CAP)])
        for key in ("fan/a", "fan/b", "fan/slow", "fan/leave"):
            cls.web.wait_thread(key)
        out = cls.web.proc.output()
        batched = 0
        if (FANOUT_IO == "uring" and os.environ.get("TS_TEST_URING_BUILT") == "1"
                and kernel_makes_rings()):
            batched = 3
        want = "event streams on 3 delivery threads (%d batching through io_uring)" % batched
        assert want in out, out

    @classmethod
    def tearDownClass(cls):
        tsweb.stop_web_and_node(cls.web, cls.node)

    def open(self, key, n):
        streams = [SSE(self.web.port, "/t/%s/events" % quote(key)) for _ in range(n)]
        for s in streams:
            self.assertEqual(s.status, 200)
        return streams

    def test_every_watcher_every_event_once_in_order(self):
        # 2 x 15 streams: every delivery thread writes to both threads' watchers.
        streams = {k: self.open(k, 15) for k in ("fan/a", "fan/b")}
        items = [("fan/a" if i % 2 else "fan/b", "burst %d" % i) for i in range(24)]
        posted = post_all(self.node, items)
        for key, ss in streams.items():
            want = sorted(posted[key])
            for s in ss:
                self.assertEqual(comment_events(s, len(want)), want, key)
        # Nothing else follows but the next post: no duplicate was queued.
        last = {k: self.node.post(k, "sentinel")[1] for k in streams}
        for key, ss in streams.items():
            for s in ss:
                self.assertEqual(comment_events(s, 1), [(last[key], "sentinel")])
                s.close()

    def test_a_full_socket_keeps_order(self):
        key = "fan/slow"
        slow = SSE(self.web.port, "/t/%s/events" % quote(key), sockopts=SLOW)
        self.assertEqual(slow.status, 200)
        (fast,) = self.open(key, 1)
        # 40 x 12 KB: far more than the slow socket's buffers hold.
        items = [(key, ("%02d " % i) + chr(ord("a") + i % 26) * 12000) for i in range(40)]
        want = sorted(post_all(self.node, items)[key])
        self.assertEqual(comment_events(fast, len(want)), want)
        self.assertEqual(comment_events(slow, len(want), timeout=60), want)
        fast.close()
        slow.close()

    def test_browsers_leaving_mid_write_are_all_seen(self):
        key = "fan/leave"
        n = CAP - 4  # what the other tests' streams, if still closing, leave free
        for rnd in range(2):
            streams = wait_for(lambda: self.try_open(key, n), timeout=20,
                               what="%d streams (round %d): every close seen" % (n, rnd))
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                burst = ex.submit(post_all, self.node,
                                  [(key, "leaving %d %d" % (rnd, i)) for i in range(8)])
                # Leave while the burst's events are being written.
                comment_events(streams[0], 1)
                for s in streams:
                    s.close()
                burst.result()
        streams = wait_for(lambda: self.try_open(key, n), timeout=20, what="streams after")
        _, seq = self.node.post(key, "after")
        for s in streams:
            self.assertEqual(comment_events(s, 1), [(seq, "after")])
            s.close()

    def try_open(self, key, n):
        got = []
        try:
            for _ in range(n):
                got.append(SSE(self.web.port, "/t/%s/events" % quote(key)))
                if got[-1].status != 200:
                    raise ConnectionError(got[-1].status)
            return got
        except (ConnectionError, EOFError, socket.timeout):
            for s in got:
                s.close()
            return None


if __name__ == "__main__":
    BINS["threadsyncd"], BINS["threadsync"] = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[3:])
