"""The README's first command (issue 14, acceptance): deploy/run-node.sh, in
an empty directory, starts a node AND a web edge with embedded defaults and
prints the URL of a page where a newcomer posts through the form while a
second "tab" (an event stream on the same thread) shows the reply live;
Ctrl-C (SIGINT to the script's process group, as a terminal sends it)
stops both, leaving no process behind. A second start reuses the tokens
and the thread.

The script's install-and-build step is skipped (TS_BIN_DIR points at the
binaries under test); ports are the kernel's (port 0), so the printed URL
is the real one.

Usage: quickstart_test.py RUN_NODE_SH THREADSYNCD THREADSYNC"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
from tsweb import SSE, wait_for  # noqa: E402

ARGS = {}


def children(pid):
    """Every live descendant of pid (from /proc)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == p and fields[0] != "Z":
                out.add(int(d))
                todo.append(int(d))
    return out


class QuickStart:
    def __init__(self, cwd, bindir):
        env = dict(os.environ, TS_BIN_DIR=bindir, TS_WEB_LISTEN="127.0.0.1:0")
        self.log = os.path.join(cwd, "run-node.out")
        self.out = open(self.log, "wb")
        self.p = subprocess.Popen(
            ["bash", ARGS["script"], "--listen", "127.0.0.1:0", "--raft-listen", "127.0.0.1:0",
             "--metrics-listen", ""],
            cwd=cwd, env=env, stdout=self.out, stderr=subprocess.STDOUT,
            start_new_session=True)

        def url():
            if self.p.poll() is not None:
                raise AssertionError("run-node.sh exited:\n" + self.output())
            m = re.search(r"^\s+(http://127\.0\.0\.1:\d+/t/\S+)$", self.output(), re.M)
            return m.group(1) if m else None
        self.url = wait_for(url, timeout=60, what="run-node.sh to print the URL")

    def output(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def ctrl_c(self):
        kids = children(self.p.pid)
        os.killpg(self.p.pid, signal.SIGINT)
        st = self.p.wait(60)
        self.out.close()
        wait_for(lambda: not any(alive(k) for k in kids),
                 what="the node and the web edge to exit")
        return st, kids


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class QuickStartTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ts_quickstart.")
        self.bindir = os.path.join(self.dir, "bin")
        os.mkdir(self.bindir)
        os.symlink(ARGS["threadsyncd"], os.path.join(self.bindir, "threadsyncd"))
        os.symlink(ARGS["threadsync"], os.path.join(self.bindir, "threadsync"))
        self.run_dir = os.path.join(self.dir, "site")
        os.mkdir(self.run_dir)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_first_command_serves_a_live_page(self):
        qs = QuickStart(self.run_dir, self.bindir)
        u = urllib.parse.urlsplit(qs.url)
        port, path = u.port, u.path
        self.assertEqual(path, "/t/welcome")

        class Edge(tsweb.Web):  # the harness's HTTP helpers, on this edge
            def __init__(self, port):
                self.port = port
        web = Edge(port)
        st, _, page = web.get(path)
        self.assertEqual(st, 200)
        self.assertIn("Welcome!", page.decode())
        # The second tab: the page's event stream.
        tab2 = SSE(port, path + "/events")
        self.assertEqual(tab2.status, 200)
        fields = dict(web.form("welcome"), name="Newcomer", email="", body="Hello from tab one",
                      parent="0", website="")
        st, h, _ = web.post_form("welcome", fields)
        self.assertEqual(st, 303)
        self.assertRegex(h["location"], r"^/t/welcome#c\d+$")
        ev = tab2.next_event(timeout=30)
        while "Hello from tab one" not in ev["data"]:
            ev = tab2.next_event(timeout=30)
        self.assertEqual(ev.get("event"), "comment")
        tab2.close()
        # The edge's token is a gateway: the comment carries a reader key.
        data = os.path.join(self.run_dir, "threadsync-data")
        self.assertTrue(os.path.exists(os.path.join(data, "web-poster.token")))
        self.assertEqual(os.stat(os.path.join(data, "web-poster.token")).st_mode & 0o777, 0o600)
        node = re.search(r"^(127\.0\.0\.1:\d+)$", tsweb.read(os.path.join(data, "node.addr")).decode(),
                         re.M).group(1)
        out = subprocess.run([ARGS["threadsync"], "--server", node, "get", "--thread", "welcome",
                              "--json"], cwd=self.run_dir, capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r'"reader_key":"[0-9a-f]{64}"')

        st, kids = qs.ctrl_c()
        self.assertEqual(st, 0, qs.output())
        self.assertGreaterEqual(len(kids), 2)
        logs = qs.output() + tsweb.read(os.path.join(self.run_dir, "threadsync-web", "web.log")).decode()
        self.assertNotIn("Sanitizer", logs)

        # Again in the same directory: same tokens, same thread, no error.
        tok = tsweb.read(os.path.join(data, "web-poster.token")).decode()
        qs = QuickStart(self.run_dir, self.bindir)
        web = Edge(urllib.parse.urlsplit(qs.url).port)
        st, _, page = web.get(path)
        self.assertEqual(st, 200)
        self.assertIn("Hello from tab one", page.decode())
        self.assertEqual(page.decode().count("Welcome! Reply below"), 1)
        self.assertEqual(tsweb.read(os.path.join(data, "web-poster.token")).decode(), tok)
        st, _ = qs.ctrl_c()
        self.assertEqual(st, 0, qs.output())


if __name__ == "__main__":
    ARGS["script"], ARGS["threadsyncd"], ARGS["threadsync"] = sys.argv[1:4]
    unittest.main(argv=sys.argv[:1], verbosity=2)
