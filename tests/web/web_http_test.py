"""The web edge over real HTTP, in front of a real threadsyncd: the no-script
form path (post, redirect to the anchor, double submit, refusals with the
text kept, CSRF, honeypot), limits (body size, header flood, slow client,
connections per address), pre-moderation seen only by the poster, edit and
delete of an own comment, the SSE relay (live, exact resume with
Last-Event-ID, reload when too far behind, resume across a restart of the
edge), caching headers, gzip, the Atom file, and a clean shutdown.

Usage: web_http_test.py THREADSYNCD THREADSYNC"""
import json
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
from tsweb import SSE, Node, Web, quote, wait_for  # noqa: E402

BINS = {}


def comments(j, body=None):
    return [c for c in j["comments"] if body is None or c["body"] == body]


class WebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(BINS)
        cls.node.post("news/first", "Opening comment")
        cls.web = Web(cls.node, ["--heartbeat-ms", "300"])
        cls.web.wait_thread("news/first")

    @classmethod
    def tearDownClass(cls):
        tsweb.stop_web_and_node(cls.web, cls.node)

    def test_post_redirect_and_double_submit(self):
        key = "news/first"
        f = self.web.form(key)
        fields = dict(f, name="Bea", email="bea@example.org", body="Via the form “quoted” 😀",
                      parent="0", website="")
        st, h, _ = self.web.post_form(key, fields)
        self.assertEqual(st, 303)
        m = re.match(r"^/t/news%2Ffirst#c(\d+)$", h["location"])
        self.assertTrue(m, h["location"])
        cid = int(m.group(1))
        cookie = h["set-cookie"][0]
        self.assertIn("ts_ek_%d=" % cid, cookie)
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/t/news%2Ffirst"):
            self.assertIn(attr, cookie)
        # The same form again (double submit, reload, replay): same comment.
        st, h2, _ = self.web.post_form(key, fields)
        self.assertEqual(st, 303)
        self.assertEqual(h2["location"], h["location"])
        j = self.web.wait_thread(key, lambda j: comments(j, fields["body"]))
        self.assertEqual(len(comments(j, fields["body"])), 1)
        self.assertNotIn("bea@example.org", json.dumps(j))
        st, _, page = self.web.get("/t/news%2Ffirst")
        self.assertIn(('id="c%d"' % cid).encode(), page)
        self.assertNotIn(b"bea@example.org", page)

    def test_refusals_keep_the_text(self):
        key = "news/first"
        before = len(self.web.thread_json(key)["comments"])
        f = self.web.form(key)
        # Forged token: nothing posted.
        st, _, _ = self.web.post_form(key, dict(f, csrf="0" * 64, name="X", body="forged"))
        self.assertEqual(st, 403)
        st, _, _ = self.web.post_form(key, {"name": "X", "body": "no token"})
        self.assertEqual(st, 403)
        # A token for another thread does not open this one.
        g = self.web.form("news/first")
        self.node.post("news/other", "x")
        self.web.wait_thread("news/other")
        st, _, _ = self.web.post_form("news/other", dict(g, name="X", body="moved token"))
        self.assertEqual(st, 403)
        # Honeypot: looks fine to the bot, nothing posted.
        st, h, _ = self.web.post_form(key, dict(f, name="Bot", body="spam", website="http://x"))
        self.assertEqual(st, 303)
        self.assertEqual(h["location"], "/t/news%2Ffirst")
        # Missing comment: the form again with the name kept.
        st, _, page = self.web.post_form(key, dict(f, name="Keep <me>", body="  "))
        self.assertEqual(st, 422)
        self.assertIn(b"Please write a comment.", page)
        self.assertIn(b'value="Keep &lt;me&gt;"', page)
        # The server's refusal (a body over 16384 bytes) with its message,
        # the text kept.
        long_body = "word " * 3300
        st, _, page = self.web.post_form(key, dict(self.web.form(key), name="Long",
                                                   body=long_body))
        self.assertIn(st, (413, 422))
        self.assertIn(long_body[:200].encode(), page)
        self.assertRegex(page.decode(), r'role="alert">[^<]+</p>')
        # Over the edge's own body limit: refused before reading it all.
        st, _, _ = self.web.post_form(key, dict(f, name="Huge", body="x" * 200000))
        self.assertEqual(st, 413)
        # A header flood: refused by h2o's parser.
        s = socket.create_connection(("127.0.0.1", self.web.port), timeout=30)
        req = "GET /t/news%2Ffirst HTTP/1.1\r\nHost: t\r\n" + "".join(
            "X-Flood-%d: %s\r\n" % (i, "y" * 10) for i in range(200)) + "\r\n"
        s.sendall(req.encode())
        resp = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            resp += d
        s.close()
        self.assertTrue(resp.startswith(b"HTTP/1.1 4"), resp[:80])
        self.assertEqual(len(self.web.thread_json(key)["comments"]), before)

    def test_locked_thread_refusal(self):
        key = "news/locked"
        self.node.post(key, "before the lock")
        self.web.wait_thread(key)
        f = self.web.form(key)
        self.node.cli("moderate", "lock", "--thread", key)
        st, _, page = self.web.post_form(key, dict(f, name="Late", body="my late words"))
        self.assertEqual(st, 403)
        self.assertIn(b"my late words", page)
        self.assertRegex(page.decode(), r'role="alert">[^<]*lock[^<]*</p>')

    def test_json_answer_for_the_script(self):
        key = "news/first"
        f = self.web.form(key)
        st, h, body = self.web.post_form(key, dict(f, name="Js", body="inline one"),
                                         headers={"Accept": "application/json"})
        self.assertEqual(st, 200)
        j = json.loads(body)
        self.assertTrue(j["ok"])
        self.assertEqual(j["comment"]["body"], "inline one")
        self.assertNotEqual(j["nonce"], f["nonce"])
        st, _, body = self.web.post_form(key, dict(f, name="Js", body=" "),
                                         headers={"Accept": "application/json"})
        self.assertEqual(st, 422)
        self.assertFalse(json.loads(body)["ok"])

    def test_premoderation_seen_only_by_the_poster(self):
        key = "news/premod"
        self.node.post(key, "visible one")
        self.node.cli("moderate", "premoderate", "--thread", key)
        self.web.wait_thread(key)
        f = self.web.form(key)
        st, h, _ = self.web.post_form(key, dict(f, name="Pat", body="waiting words"))
        self.assertEqual(st, 303)
        cid = int(h["location"].split("#c")[1])
        cookie = h["set-cookie"][0].split(";")[0]
        self.web.wait_thread(key, lambda j: any(c["id"] == cid for c in j["comments"]))
        _, _, mine = self.web.get("/t/" + quote(key), {"Cookie": cookie})
        self.assertIn(b"waiting words", mine)
        self.assertIn(b"awaiting moderation", mine)
        _, _, theirs = self.web.get("/t/" + quote(key))
        self.assertNotIn(b"waiting words", theirs)
        self.assertNotIn(('id="c%d"' % cid).encode(), theirs)
        # A made-up key in the cookie shows nothing.
        _, _, fake = self.web.get("/t/" + quote(key), {"Cookie": "ts_ek_%d=%s" % (cid, "0" * 32)})
        self.assertNotIn(b"waiting words", fake)
        self.node.cli("moderate", "approve", str(cid))
        self.web.wait_thread(key, lambda j: comments(j, "waiting words"))
        _, _, theirs = self.web.get("/t/" + quote(key))
        self.assertIn(b"waiting words", theirs)

    def test_edit_and_delete_own(self):
        key = "news/edit"
        self.node.post(key, "someone else's")
        self.web.wait_thread(key)
        f = self.web.form(key)
        st, h, _ = self.web.post_form(key, dict(f, name="Ed", body="first version"))
        cid = int(h["location"].split("#c")[1])
        cookie = h["set-cookie"][0].split(";")[0]
        self.web.wait_thread(key, lambda j: comments(j, "first version"))
        _, _, page = self.web.get("/t/" + quote(key), {"Cookie": cookie})
        self.assertIn(("?edit=%d#reply" % cid).encode(), page)
        f = self.web.form(key)
        # Without the cookie: refused.
        st, _, _ = self.web.post_form(key, dict(f, comment=str(cid), body="hijack"), action="edit")
        self.assertEqual(st, 403)
        st, h, _ = self.web.post_form(key, dict(f, comment=str(cid), body="second version"),
                                      headers={"Cookie": cookie}, action="edit")
        self.assertEqual(st, 303, _)
        self.web.wait_thread(key, lambda j: comments(j, "second version"))
        st, h, _ = self.web.post_form(key, dict(f, comment=str(cid)), headers={"Cookie": cookie},
                                      action="delete")
        self.assertEqual(st, 303)
        self.assertIn("Max-Age=0", h["set-cookie"][0])
        self.web.wait_thread(key, lambda j: any(c["id"] == cid and c["status"] == "DELETED"
                                                for c in j["comments"]))
        _, _, page = self.web.get("/t/" + quote(key))
        self.assertNotIn(('id="c%d"' % cid).encode(), page)  # a removed leaf is gone

    def test_caching_gzip_counts_atom(self):
        key = "news/first"
        st, h, _ = self.web.get("/t/news%2Ffirst.json")
        self.assertEqual(st, 200)
        self.assertIn("max-age", h["cache-control"])
        st, _, _ = self.web.get("/t/news%2Ffirst.json", {"If-None-Match": h["etag"]})
        self.assertEqual(st, 304)
        self.node.post(key, "changes the etag")
        self.web.wait_thread(key, lambda j: comments(j, "changes the etag"))
        st, h2, _ = self.web.get("/t/news%2Ffirst.json", {"If-None-Match": h["etag"]})
        self.assertEqual(st, 200)
        self.assertNotEqual(h2["etag"], h["etag"])
        st, h, body = self.web.get("/t/news%2Ffirst", {"Accept-Encoding": "gzip"})
        self.assertEqual(h.get("content-encoding"), "gzip")
        self.assertIn("script-src 'self'", h["content-security-policy"])
        self.assertEqual(h["cache-control"], "no-store")
        st, h, body = self.web.get("/static/threadsync.js")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-type"], "text/javascript; charset=utf-8")
        st, h, body = self.web.get("/static/threadsync.css")
        self.assertEqual(h["content-type"], "text/css; charset=utf-8")
        self.assertEqual(self.web.get("/static/threadsync.css", {"If-None-Match": h["etag"]})[0],
                         304)
        st, _, body = self.web.get("/counts?t=news/first&t=nope&t=news%2Fpremod")
        counts = json.loads(body)
        self.assertEqual(counts["news/first"], sum(
            c["status"] == "VISIBLE" for c in self.web.thread_json(key)["comments"]))
        self.assertNotIn("nope", counts)
        st, h, body = self.web.get("/t/news%2Ffirst.atom")
        self.assertEqual(st, 200)
        self.assertIn(b"changes the etag", body)
        atom = os.path.join(self.web.dir, "threads", "news%2Ffirst.atom")
        wait_for(lambda: os.path.exists(atom) and b"changes the etag" in tsweb.read(atom),
                 what="the Atom file")
        st, _, body = self.web.get("/t/news%2Ffirst/embed")
        self.assertEqual(st, 200)
        self.assertNotIn(b"<html", body)
        self.assertIn(b"threadsync.css", body)
        self.assertEqual(self.web.get("/t/no-such-thread")[0], 404)
        self.assertEqual(self.web.request("POST", "/t/news%2Ffirst.json")[0], 405)

    def test_sse_live_and_exact_resume(self):
        key = "news/live"
        self.node.post(key, "seed")
        self.web.wait_thread(key)
        sse = SSE(self.web.port, "/t/%s/events" % quote(key))
        self.assertEqual(sse.status, 200)
        self.assertIn("text/event-stream", sse.head)
        _, s1 = self.node.post(key, "live one")
        ev = sse.next_event()
        self.assertEqual(int(ev["id"]), s1)
        self.assertEqual(json.loads(ev["data"])["comment"]["body"], "live one")
        sse.close()
        _, s2 = self.node.post(key, "missed two")
        self.node.post("news/elsewhere", "other thread")
        _, s3 = self.node.post(key, "missed three")
        self.web.wait_thread(key, lambda j: comments(j, "missed three"))
        sse = SSE(self.web.port, "/t/%s/events" % quote(key), last_event_id=s1)
        got = [sse.next_event(), sse.next_event()]
        self.assertEqual([int(e["id"]) for e in got], [s2, s3])
        self.assertEqual([json.loads(e["data"])["comment"]["body"] for e in got],
                         ["missed two", "missed three"])
        _, s4 = self.node.post(key, "after resume")
        self.assertEqual(int(sse.next_event()["id"]), s4)
        sse.close()

    def test_shutdown_with_a_stream_open(self):
        node = Node(BINS)
        try:
            node.post("t/x", "one")
            web = Web(node)
            web.wait_thread("t/x")
            sse = SSE(web.port, "/t/t%2Fx/events")
            self.assertEqual(web.stop(), 0, web.proc.output())
            with self.assertRaises(EOFError):
                sse.next_event()
            sse.close()
        finally:
            node.cleanup()


class WebConfigTest(unittest.TestCase):
    """The [web] file: every key, --check-config, flags over the file."""

    def run_web(self, *args):
        import subprocess
        return subprocess.run([BINS["threadsync"], "web", *args], capture_output=True, text=True,
                              timeout=60)

    def test_check_config(self):
        here = os.path.dirname(os.path.abspath(__file__))
        sample = os.path.join(here, "..", "..", "deploy", "threadsync-web.conf")
        r = self.run_web("--config", sample, "--check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("config ok: listen=127.0.0.1:7480 dir=/var/lib/threadsync-web", r.stdout)
        d = self.tmp = __import__("tempfile").mkdtemp(prefix="ts_web_conf.")
        bad = os.path.join(d, "bad.conf")
        with open(bad, "w") as f:
            f.write("[web]\nlisten = 127.0.0.1:1\nno_such_key = 1\n")
        r = self.run_web("--config", bad, "--check-config")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no_such_key: unknown key", r.stderr)
        with open(bad, "w") as f:
            f.write("[web]\nmax_body = lots\n")
        self.assertEqual(self.run_web("--config", bad, "--check-config").returncode, 2)
        r = self.run_web("--config", sample, "--listen", "localhost:80", "--check-config")
        self.assertEqual(r.returncode, 2)  # the flag wins, and a name is not numeric
        r = self.run_web("--config", sample, "--listen", "127.0.0.1:9", "--check-config")
        self.assertIn("listen=127.0.0.1:9", r.stdout)
        __import__("shutil").rmtree(d)

    def test_file_values_apply_and_flags_win(self):
        node = Node(BINS)
        try:
            node.post("conf/a", "seed")
            conf = os.path.join(node.dir, "web.conf")
            with open(conf, "w") as f:
                f.write("[web]\nmax_body = 500\nbase = /comments\nheartbeat_ms = 5000\n")
            web = Web(node, ["--config", conf, "--heartbeat-ms", "200"])
            st, _, page = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
                web.get("/comments/t/conf%2Fa")), what="the thread under the base")
            self.assertIn(b'action="/comments/t/conf%2Fa/post"', page)
            self.assertEqual(web.get("/t/conf%2Fa")[0], 404)
            html = page.decode()
            fields = {"nonce": re.search(r'name="nonce" value="([^"]+)"', html).group(1),
                      "csrf": re.search(r'name="csrf" value="([^"]+)"', html).group(1),
                      "name": "Big", "body": "x" * 600}
            st, _, _ = web.request("POST", "/comments/t/conf%2Fa/post",
                                   body=__import__("urllib.parse").parse.urlencode(fields),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
            self.assertEqual(st, 413)  # max_body from the file
            sse = SSE(web.port, "/comments/t/conf%2Fa/events")
            sse.s.settimeout(20)
            while b": hb" not in sse.raw:  # the flag's 200 ms, not the file's 5 s
                sse._recv()
            sse.close()
            self.assertEqual(web.stop(), 0)
        finally:
            node.cleanup()


class WebLimitsTest(unittest.TestCase):
    """An edge with small limits: ring, request deadline, connection cap."""

    @classmethod
    def setUpClass(cls):
        cls.node = Node(BINS)
        cls.node.post("lim/a", "seed")
        cls.web = Web(cls.node, ["--ring-events", "4", "--req-timeout-ms", "1000",
                                 "--max-conns-per-addr", "3"])
        cls.web.wait_thread("lim/a")

    @classmethod
    def tearDownClass(cls):
        tsweb.stop_web_and_node(cls.web, cls.node)

    def test_reload_when_too_far_behind(self):
        key = "lim/a"
        _, s0 = self.node.post(key, "start")
        for i in range(6):
            self.node.post(key, "burst %d" % i)
        self.web.wait_thread(key, lambda j: comments(j, "burst 5"))
        sse = SSE(self.web.port, "/t/%s/events" % quote(key), last_event_id=s0)
        self.assertEqual(sse.next_event()["event"], "reload")
        sse.close()

    def test_slow_client_is_closed(self):
        s = socket.create_connection(("127.0.0.1", self.web.port), timeout=30)
        s.sendall(b"GET /t/lim%2Fa HTTP/1.1\r\nHost: t\r\n")  # and nothing more
        self.assertEqual(s.recv(100), b"")  # closed by the edge's deadline, not by us
        s.close()

    def test_connection_cap_per_address(self):
        held = [socket.create_connection(("127.0.0.1", self.web.port), timeout=30)
                for _ in range(3)]
        extra = socket.create_connection(("127.0.0.1", self.web.port), timeout=30)
        extra.sendall(b"GET /t/lim%2Fa HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            self.assertEqual(extra.recv(100), b"")
        except ConnectionResetError:
            pass
        extra.close()
        for s in held:
            s.close()
        # Once the edge has seen them go, a new one is served.

        def served():
            try:
                return self.web.get("/t/lim%2Fa")[0] == 200
            except ConnectionError:
                return False
        wait_for(served, what="a served request")

    def test_browsers_that_leave_are_released(self):
        # h2o reads nothing from a connection while its response streams, so
        # a browser that closed its event stream used to hold its connection
        # (and descriptor) until a write to it failed: the second heartbeat
        # or event after it left (30 s here). The edge now takes HTTP/1.1
        # streams from h2o (ts_web_stream) and reads them for EOF. With hundreds of browsers
        # coming and going that ran the edge out of descriptors (the
        # benchmark's 20,000 connections). Each stream here fills the
        # per-address cap; the next ones must be served as soon as the
        # previous ones are gone, with nothing written to them meanwhile.
        key = "lim/leave"
        self.node.post(key, "seed")
        self.web.wait_thread(key)
        path = "/t/%s/events" % quote(key)

        def open_all():
            got = []
            try:
                for _ in range(3):
                    got.append(SSE(self.web.port, path))
                    if got[-1].status != 200:
                        raise ConnectionError(got[-1].status)
                return got
            except (ConnectionError, EOFError):
                for s in got:
                    s.close()
                return None
        for _ in range(3):
            streams = wait_for(open_all, timeout=10, what="3 streams served after 3 left")
            for s in streams:
                s.close()

    def test_resume_across_an_edge_restart(self):
        key = "lim/restart"
        self.node.post(key, "seed")
        self.web.wait_thread(key)
        sse = SSE(self.web.port, "/t/%s/events" % quote(key))
        _, s1 = self.node.post(key, "before restart")
        self.assertEqual(int(sse.next_event()["id"]), s1)
        self.assertEqual(self.web.stop(), 0)
        sse.close()
        _, s2 = self.node.post(key, "while the edge was down")
        self.web.start()
        sse = SSE(self.web.port, "/t/%s/events" % quote(key), last_event_id=s1)
        ev = sse.next_event()
        self.assertEqual(ev.get("event"), "comment")
        self.assertEqual(int(ev["id"]), s2)
        self.assertEqual(json.loads(ev["data"])["comment"]["body"], "while the edge was down")
        sse.close()


if __name__ == "__main__":
    BINS["threadsyncd"], BINS["threadsync"] = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[3:])
