"""Harness for the web edge's tests: a real threadsyncd (embedded defaults in
a scratch directory, ports picked by the kernel) and a real `threadsync web`
in front of it, plus a small HTTP/1.1 and server-sent-events client on raw
sockets (no dependency beyond the standard library).

Children get PR_SET_PDEATHSIG, so a killed test leaves no process behind;
stop() ends them with SIGTERM and returns their exit status (0 for a clean
exit with no leak reported by the sanitizers)."""
import ctypes
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_for(cond, timeout=20.0, what="condition"):
    """Polls cond until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class Proc:
    def __init__(self, argv, cwd, log):
        self.log = log
        with open(log, "ab") as out:
            self.p = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                      preexec_fn=_die_with_parent)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("process did not stop on signal %d" % sig)

    def output(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")


class Node:
    """A one-node cluster with embedded defaults (admin token, CA)."""

    def __init__(self, bins, extra=()):
        self.bins = bins
        self.dir = tempfile.mkdtemp(prefix="ts_web_test.")
        addr_file = os.path.join(self.dir, "addr")
        self.proc = Proc([bins["threadsyncd"], "--listen", "127.0.0.1:0", "--raft-listen",
                          "127.0.0.1:0", "--addr-file", addr_file, "--rate-author", "off",
                          "--rate-token", "off"] + list(extra), self.dir,
                         os.path.join(self.dir, "node.log"))

        def addr():
            if self.proc.p.poll() is not None:
                raise AssertionError("threadsyncd exited:\n" + self.proc.output())
            try:
                with open(addr_file) as f:
                    return f.read().strip()
            except FileNotFoundError:
                return None
        self.addr = wait_for(addr, what="threadsyncd to listen")
        self.data = os.path.join(self.dir, "threadsync-data")
        self.ca = os.path.join(self.data, "ca.pem")
        self.token_file = os.path.join(self.data, "admin.token")

    def cli(self, *args, check=True):
        """Runs the threadsync CLI against this node; returns stdout."""
        r = subprocess.run([self.bins["threadsync"], *args, "--server", self.addr, "--ca", self.ca,
                            "--token-file", self.token_file], capture_output=True, text=True,
                           timeout=60, preexec_fn=_die_with_parent)
        if check and r.returncode != 0:
            raise AssertionError("threadsync %s: %s" % (args, r.stderr))
        return r.stdout

    def post(self, key, body, name="Ann", parent=0):
        out = self.cli("post", "--thread", key, "--name", name, "--body", body,
                       *(["--parent", str(parent)] if parent else []))
        m = re.search(r"id=(\d+) seq=(\d+)", out)
        return int(m.group(1)), int(m.group(2))

    def stop(self):
        st = self.proc.stop()
        return st

    def cleanup(self):
        if self.proc.p.poll() is None:
            self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Web:
    """`threadsync web` in front of node, mirror in node.dir/mirror."""

    def __init__(self, node, extra=(), mirror_dir=None, token_args=()):
        self.node = node
        self.token_args = list(token_args)  # e.g. ["--gateway"]
        self.dir = mirror_dir or os.path.join(node.dir, "mirror")
        self.extra = list(extra)
        self.start()

    def start(self):
        if not hasattr(self, "post_token_file"):
            # The edge posts as a POSTER (an admin's posts skip moderation).
            self.post_token_file = os.path.join(self.node.dir, "web-%d.token" % id(self))
            out = self.node.cli("admin", "token", "add", "--role", "poster", "--name",
                                "web%d" % id(self), *self.token_args)
            with open(self.post_token_file, "w") as f:
                f.write(re.search(r"token=(\S+)", out).group(1) + "\n")
        log = os.path.join(self.node.dir, "web.log")
        with open(log, "ab") as f:
            f.write(b"--- start\n")
        self.mark = os.path.getsize(log)
        self.proc = Proc([self.node.bins["threadsync"], "web", "--server", self.node.addr,
                          "--ca", self.node.ca, "--token-file", self.node.token_file,
                          "--dir", self.dir, "--listen", "127.0.0.1:0",
                          "--post-token-file", self.post_token_file] + self.extra,
                         self.node.dir, log)

        def port():
            if self.proc.p.poll() is not None:
                raise AssertionError("threadsync web exited:\n" + self.proc.output())
            m = re.search(r"web edge on https?://127\.0\.0\.1:(\d+)", self.proc.output()[self.mark:])
            return int(m.group(1)) if m else None
        self.port = wait_for(port, what="the web edge to listen")

    def stop(self):
        return self.proc.stop()

    def request(self, method, path, body=None, headers=None):
        """One request on its own connection: (status, headers dict (lower-case
        names; set-cookie as a list), body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Connection": "close"}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = {}
        for k, v in r.getheaders():
            k = k.lower()
            if k == "set-cookie":
                hdrs.setdefault(k, []).append(v)
            else:
                hdrs[k] = v
        c.close()
        return r.status, hdrs, data

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def form(self, key, **over):
        """GETs the thread page and returns its form's fields (nonce, csrf)."""
        st, _, body = self.get("/t/" + quote(key))
        assert st == 200, (st, body)
        html = body.decode()
        return {"nonce": re.search(r'name="nonce" value="([^"]+)"', html).group(1),
                "csrf": re.search(r'name="csrf" value="([^"]+)"', html).group(1)}

    def post_form(self, key, fields, headers=None, action="post"):
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        return self.request("POST", "/t/%s/%s" % (quote(key), action),
                            body=urllib.parse.urlencode(fields), headers=h)

    def thread_json(self, key):
        import json
        st, _, body = self.get("/t/%s.json" % quote(key))
        return json.loads(body) if st == 200 else None

    def wait_thread(self, key, cond=lambda j: True, what="the thread in the mirror"):
        return wait_for(lambda: (lambda j: j if j and cond(j) else None)(self.thread_json(key)),
                        what=what)


def quote(key):
    """A thread key as the edge writes it in URLs."""
    return "".join(c if re.match(r"[A-Za-z0-9_~-]", c) else "%%%02X" % b
                   for c, b in ((chr(b), b) for b in key.encode()))


class SSE:
    """A server-sent-events reader on a raw socket (chunked decoding)."""

    def __init__(self, port, path, last_event_id=None, headers=None, sockopts=()):
        """sockopts: (level, option, value) triples set before connecting."""
        self.s = socket.socket()
        for opt in sockopts:
            self.s.setsockopt(*opt)
        self.s.settimeout(30)
        self.s.connect(("127.0.0.1", port))
        req = "GET %s HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n" % path
        if last_event_id is not None:
            req += "Last-Event-ID: %s\r\n" % last_event_id
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        self.s.sendall((req + "\r\n").encode())
        self.raw = b""
        self.body = b""
        self.eof = False
        while b"\r\n\r\n" not in self.raw:
            self._recv()
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])
        self.head = head.decode()

    def _recv(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("stream closed")
        self.raw += d

    def _dechunk(self):
        while True:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            n = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + n + 2:
                return
            self.body += self.raw[i + 2:i + 2 + n]
            self.raw = self.raw[i + 2 + n + 2:]
            if n == 0:
                self.eof = True
                return

    def next_event(self, timeout=20):
        """The next event with data: dict(id, event, data); comments skipped."""
        self.s.settimeout(timeout)
        while True:
            self._dechunk()
            while b"\n\n" in self.body:
                block, self.body = self.body.split(b"\n\n", 1)
                ev = {}
                for line in block.decode().split("\n"):
                    if line.startswith(":") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    ev[k] = v[1:] if v.startswith(" ") else v
                if "data" in ev:
                    return ev
            if self.eof:
                raise EOFError("stream ended")
            self._recv()

    def close(self):
        self.s.close()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def stop_web_and_node(web, node):
    """Ends a test class: the edge must exit 0 (no sanitizer report)."""
    st = web.stop()
    out = web.proc.output()
    node.cleanup()
    assert st == 0, "web edge exit status %s:\n%s" % (st, out)
