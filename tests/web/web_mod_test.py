"""The moderation console over real HTTP, in front of a real threadsyncd:
sign-in with a moderator token (cookie attributes, a poster's token refused,
the token never echoed), sign-out, a revoked token ending the session and
its event stream, 403 for everyone without a session on every /mod/ URL and
no moderator data on reader routes, Cache-Control private, no-store and the
CSP on every /mod/ answer, CSRF refusal, actions with the version check
("already moderated by X"), the no-script path (303 back with a message),
and the sign-in rate limit.

Usage: web_mod_test.py THREADSYNCD THREADSYNC"""
import concurrent.futures
import copy
import os
import re
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
from tsmod import (Console, make_token, mod_events, post_as, poster, signin,  # noqa: E402
                   signin_form, version_of)
from tsweb import Node, Web, wait_for  # noqa: E402

BINS = {}
MOD_GETS = ["/mod", "/mod/", "/mod/recent", "/mod/recent?author=Ann", "/mod/t/news%2Fmod",
            "/mod/events", "/mod/nothing", "/mod/audit", "/mod/audit?before=9"]
MOD_POSTS = ["/mod/act", "/mod/signout"]


class ModHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(BINS)
        cls.node.post("news/mod", "Opening comment")
        cls.node.cli("moderate", "premoderate", "--thread", "news/mod")
        cls.web = Web(cls.node, ["--heartbeat-ms", "300"])
        cls.web.wait_thread("news/mod")
        cls.token = make_token(cls.node, "alice")
        cls.token2 = make_token(cls.node, "bob")
        cls.poster = poster(cls.node)

    @classmethod
    def tearDownClass(cls):
        tsweb.stop_web_and_node(cls.web, cls.node)

    def pending(self, body, email="secret@example.org"):
        return post_as(self.node, self.poster, "news/mod", body, email=email)

    def assert_private(self, h):
        self.assertEqual(h.get("cache-control"), "private, no-store")
        self.assertIn("script-src 'self'", h.get("content-security-policy", ""))
        self.assertNotIn("unsafe-inline", h.get("content-security-policy", ""))

    def test_reader_gets_403_everywhere(self):
        for cookie in (None, "ts_mod=" + "0" * 32, "ts_mod=junk"):
            hdr = {"Cookie": cookie} if cookie else {}
            for p in MOD_GETS:
                st, h, body = self.web.get(p, headers=hdr)
                self.assertEqual(st, 403, (p, cookie, body))
                self.assert_private(h)
            for p in MOD_POSTS:
                st, h, _ = self.web.request("POST", p, body="op=approve&c=1.1", headers=dict(
                    hdr, **{"Content-Type": "application/x-www-form-urlencoded"}))
                self.assertEqual(st, 403, p)
                self.assert_private(h)

    def test_reader_routes_show_no_moderator_data(self):
        c = Console(self.web, self.token)
        cid = self.pending("Held for review, reader must not see this")
        st, _, body = c.get("/mod/")
        self.assertIn(b"Held for review", body)
        self.assertIn(b"m%d" % cid, body)
        self.assertIn(b"secret@example.org", body)
        for p in ("/t/news%2Fmod", "/t/news%2Fmod.json", "/t/news%2Fmod/embed",
                  "/t/news%2Fmod.atom"):
            st, _, body = self.web.get(p)
            self.assertEqual(st, 200, p)
            self.assertNotIn(b"Held for review", body, p)
            self.assertNotIn(b"secret@example.org", body, p)
            self.assertNotIn(b"data-csrf", body, p)

    def test_signin_cookie_and_headers(self):
        st, h, body = signin(self.web, self.token)
        self.assertEqual(st, 303)
        self.assertEqual(h["location"], "/mod/")
        self.assert_private(h)
        ck = h["set-cookie"][0]
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/mod/", "Max-Age=43200"):
            self.assertIn(attr, ck)
        self.assertNotIn("Secure", ck)  # plain HTTP here
        self.assertNotIn(self.token.encode(), body)
        sid = re.match(r"ts_mod=([0-9a-f]{32});", ck).group(1)
        for p in ("/mod/", "/mod/recent", "/mod/t/news%2Fmod", "/mod/signin"):
            st, h, body = self.web.get(p, headers={"Cookie": "ts_mod=" + sid})
            self.assertEqual(st, 200, p)
            self.assert_private(h)
            self.assertNotIn(self.token.encode(), body)

    def test_signin_refusals(self):
        poster = make_token(self.node, "poster1", role="poster")
        st, h, body = signin(self.web, poster)
        self.assertEqual(st, 403)
        self.assertIn(b"not a moderator", body)
        self.assertNotIn("set-cookie", h)
        st, h, body = signin(self.web, "no-such-token")
        self.assertEqual(st, 403)
        self.assertNotIn("set-cookie", h)
        # A forged sign-in form (no valid nonce): refused before the cluster.
        st, _, _ = self.web.request("POST", "/mod/signin",
                                    body=urllib.parse.urlencode({"token": self.token,
                                                                 "nonce": "1.00", "csrf": "00"}),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 403)

    def test_csrf_refused(self):
        c = Console(self.web, self.token)
        cid = self.pending("CSRF target")
        v, status = version_of(c, "news/mod", cid)
        self.assertEqual(status, "PENDING")
        for bad in ("", "0" * 32, c.csrf[:-1] + ("0" if c.csrf[-1] != "0" else "1")):
            st, _ = c.act("hide", [(cid, v)], csrf=bad)
            self.assertEqual(st, 403)
        # Another moderator's session token is not this session's.
        other = Console(self.web, self.token2)
        st, _ = c.act("hide", [(cid, v)], csrf=other.csrf)
        self.assertEqual(st, 403)
        self.assertEqual(version_of(c, "news/mod", cid), (v, "PENDING"))

    def test_actions_conflict_and_no_script_path(self):
        a = Console(self.web, self.token)
        b = Console(self.web, self.token2)
        cid = self.pending("Two moderators on one comment")
        v, _ = version_of(a, "news/mod", cid)
        version_of(b, "news/mod", cid)
        st, j = a.act("approve", [(cid, v)])
        self.assertEqual(st, 200, j)
        self.assertIsInstance(j, dict, j)
        self.assertEqual(j["results"][0]["comment"]["status"], "VISIBLE")
        self.assertEqual(j["results"][0]["comment"]["by"], "alice")
        # b still shows version v: told, not overwritten.
        st, j = b.act("hide", [(cid, v)])
        self.assertEqual(st, 409, j)
        self.assertIn("already moderated by alice: now VISIBLE", j["message"])
        self.assertEqual(version_of(a, "news/mod", cid)[1], "VISIBLE")
        # No script: a form POST answers 303 back, the message on the next page.
        v2, _ = version_of(b, "news/mod", cid)
        st, h, _ = b.post("/mod/act", {"csrf": b.csrf, "op": "hide", "c": "%d.%d" % (cid, v2),
                                       "back": "/mod/t/news%2Fmod"})
        self.assertEqual(st, 303)
        self.assertEqual(h["location"], "/mod/t/news%2Fmod")
        st, _, body = b.get("/mod/t/news%2Fmod")
        self.assertIn(b"#%d now HIDDEN." % cid, body)
        self.assertEqual(version_of(b, "news/mod", cid)[1], "HIDDEN")
        # A foreign "back" is not followed.
        st, h, _ = b.post("/mod/act", {"csrf": b.csrf, "op": "unhide",
                                       "c": "%d.%d" % (cid, v2 + 1), "back": "//evil.example/"})
        self.assertEqual((st, h["location"]), (303, "/mod/"))
        # Thread flags, a bulk action, an edit and a ban.
        st, j = a.act("lock", t="news/mod")
        self.assertEqual(st, 200, j)
        st, j = a.act("unlock", t="news/mod")
        self.assertEqual(st, 200, j)
        ids = [self.pending("Bulk %d" % i) for i in range(3)]
        cs = [(i, version_of(a, "news/mod", i)[0]) for i in ids]
        st, j = a.act("approve", cs)
        self.assertEqual(st, 200, j)
        self.assertEqual(sorted(r["id"] for r in j["results"] if r["ok"]), sorted(ids))
        st, j = a.act("edit", [(ids[0], version_of(a, "news/mod", ids[0])[0])],
                      body="Edited by a moderator", reason="typo <b>")
        self.assertEqual(st, 200, j)
        self.assertEqual(j["results"][0]["comment"]["body"], "Edited by a moderator")
        st, j = a.act("ban", author="Pat", hours="24")
        self.assertEqual(st, 200, j)
        self.assertIn("banned until", j["message"])
        st, j = a.act("unban", author="Pat")
        self.assertEqual(st, 200, j)
        # The audit trail, newest first: the lift, the ban, the edit with its
        # reason (escaped) and the words it replaced; private like every view.
        st, h, body = a.get("/mod/audit")
        self.assertEqual(st, 200, body)
        self.assert_private(h)
        text = body.decode()
        items = re.findall(r'<li class="mod-audit" data-seq="(\d+)" data-action="(\d+)">(.*?)</li>',
                           text, re.S)
        self.assertEqual([int(x[1]) for x in items[:3]], [21, 20, 5], text)
        self.assertIn("alice", items[2][2])
        self.assertIn("(typo &lt;b&gt;)", items[2][2])
        self.assertIn("Bulk 0", items[2][2])
        self.assertIn("#%d" % ids[0], items[2][2])
        self.assertGreater(int(items[0][0]), int(items[2][0]))

    def test_signout_and_revoked_token_end_the_session(self):
        c = Console(self.web, self.token)
        st, h, _ = c.post("/mod/signout", {"csrf": c.csrf})
        self.assertEqual(st, 303)
        self.assertIn("Max-Age=0", h["set-cookie"][0])
        self.assertEqual(c.get("/mod/")[0], 403)
        tok = make_token(self.node, "carol")
        c = Console(self.web, tok)
        s = mod_events(c)
        self.assertEqual(s.status, 200)
        self.assertIn("cache-control: private, no-store", s.head.lower())
        self.assertEqual(s.next_event()["event"], "hello")
        self.node.cli("admin", "token", "revoke", "carol")
        while True:
            e = s.next_event()
            if e.get("event") == "signedout":
                break
        s.close()
        wait_for(lambda: c.get("/mod/")[0] == 403, what="the revoked session to end")


    def test_views_queue_parent_thread_and_recent(self):
        c0 = Console(self.web, self.token)
        parent = self.pending("The parent, to be approved")
        st, j = c0.act("approve", [(parent, version_of(c0, "news/mod", parent)[0])])
        self.assertEqual(st, 200, j)
        reply = post_as(self.node, self.poster, "news/mod", "A reply held for review",
                        name="Quinn", email="quinn@example.org", parent=parent)
        hidden = self.pending("To be hidden")
        st, j = c0.act("hide", [(hidden, version_of(c0, "news/mod", hidden)[0])])
        self.assertEqual(st, 200, j)
        # The queue: oldest first, the thread and the parent's text as context.
        post_as(self.node, self.poster, "news/mod", "A later pending one", name="Quinn")
        st, _, body = c0.get("/mod/")
        html = body.decode()
        i = html.index('id="m%d"' % reply)
        row = html[i:html.index("</article>", i)]
        self.assertIn("The parent, to be approved", row)
        self.assertIn("quinn@example.org", row)
        self.assertIn('href="/mod/t/news%2Fmod"', row)
        self.assertLess(i, html.index("A later pending one"))
        # The thread view: every status, with who moderated it.
        st, _, body = c0.get("/mod/t/news%2Fmod")
        html = body.decode()
        self.assertRegex(html, r'id="m%d"[^>]*data-status="HIDDEN"' % hidden)
        self.assertRegex(html, r'id="m%d"[^>]*data-status="PENDING"' % reply)
        i = html.index('id="m%d"' % hidden)
        self.assertIn("by alice", html[i:html.index("</article>", i)])
        # "Recent" holds what any console has seen, filtered.
        c = Console(self.web, self.token2)
        tsweb.wait_for(lambda: b"A reply held for review" in c.get("/mod/recent")[2],
                       what="recent to hold the history")
        st, _, body = c.get("/mod/recent?author=quinn%40example.org")
        self.assertEqual(st, 200)
        self.assertIn(b"A reply held for review", body)
        self.assertNotIn(b"To be hidden", body)
        self.assertIn(b'value="ban"', body)  # the author's history has a ban button
        st, _, body = c.get("/mod/recent?status=hidden")
        self.assertIn(b"To be hidden", body)
        self.assertNotIn(b"A reply held for review", body)
        st, _, body = c.get("/mod/recent?thread=other%2Fthread")
        self.assertNotIn(b"To be hidden", body)


class FreshEdgeTest(unittest.TestCase):
    def test_recent_reads_the_history_at_sign_in(self):
        node = Node(BINS)
        ids = [node.post("t%d" % i, "Before any console %d" % i)[0] for i in range(3)]
        web = Web(node, mirror_dir=os.path.join(node.dir, "mirror-fresh"))
        try:
            c = Console(web, make_token(node, "erin"))
            body = tsweb.wait_for(lambda: (lambda b: b if all(
                b"m%d" % i in b for i in ids) else None)(c.get("/mod/recent")[2]),
                what="recent to read the history")
            self.assertIn(b"Before any console 2", body)
            # Newest first.
            self.assertLess(body.index(b'id="m%d"' % ids[2]), body.index(b'id="m%d"' % ids[0]))
        finally:
            tsweb.stop_web_and_node(web, node)

    def test_mod_listen_serves_the_console_alone(self):
        node = Node(BINS)
        web = Web(node, ["--mod-listen", "127.0.0.1:0"],
                  mirror_dir=os.path.join(node.dir, "mirror-modlisten"))
        try:
            port = int(wait_for(lambda: re.search(
                r"moderation console on http://127\.0\.0\.1:(\d+)/mod/",
                web.proc.output()[web.mark:]), what="the console's listener").group(1))
            self.assertNotEqual(port, web.port)
            self.assertEqual(web.get("/mod/signin")[0], 404)
            self.assertEqual(web.get("/mod/")[0], 404)
            mod = copy.copy(web)
            mod.port = port
            for p, st in (("/mod/signin", 200), ("/static/mod.js", 200), ("/static/mod.css", 200),
                          ("/mod/", 403), ("/t/x", 404), ("/static/threadsync.js", 404),
                          ("/counts?t=x", 404)):
                self.assertEqual(mod.get(p)[0], st, p)
            c = Console(mod, make_token(node, "frank"))
            self.assertEqual(c.get("/mod/recent")[0], 200)
        finally:
            tsweb.stop_web_and_node(web, node)

    def test_signin_rate_limit_counts_attempts_in_flight(self):
        node = Node(BINS)
        web = Web(node, mirror_dir=os.path.join(node.dir, "mirror-burst"))
        try:
            forms = [signin_form(web) for _ in range(15)]
            for f in forms:
                f["token"] = "wrong"
            with concurrent.futures.ThreadPoolExecutor(15) as ex:
                statuses = list(ex.map(lambda f: web.request(
                    "POST", "/mod/signin", body=urllib.parse.urlencode(f),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})[0], forms))
            self.assertEqual(sorted(statuses), [403] * 10 + [429] * 5)
        finally:
            tsweb.stop_web_and_node(web, node)

    def test_signin_rate_limit(self):
        node = Node(BINS)
        web = Web(node, mirror_dir=os.path.join(node.dir, "mirror-rate"))
        try:
            # Successful sign-ins do not count; failures do.
            tok = make_token(node, "dave")
            for _ in range(12):
                self.assertEqual(signin(web, tok)[0], 303)
            statuses = [signin(web, "wrong-%d" % i)[0] for i in range(12)]
            self.assertEqual(statuses[:10], [403] * 10)
            self.assertEqual(statuses[10:], [429, 429])
            st, h, body = signin(web, tok)
            self.assertEqual(st, 429)  # even a good token, until the minute is over
            self.assertEqual(h.get("retry-after"), "60")
            self.assertNotIn("set-cookie", h)
        finally:
            tsweb.stop_web_and_node(web, node)


if __name__ == "__main__":
    BINS["threadsyncd"], BINS["threadsync"] = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[3:])
