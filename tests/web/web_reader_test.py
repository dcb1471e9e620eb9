"""Readers told apart without accounts (issue 14, item 6), against a real
threadsyncd: a web edge with a gateway token sends each reader's key (an
HMAC of the address from X-Forwarded-For, believed from a trusted proxy
only), so the per-author rate limit and bans apply per reader, not per
edge; moderators see the key, readers never; an edge whose token is not a
gateway has its reader keys refused and posts without them.

Usage: web_reader_test.py THREADSYNCD THREADSYNC"""
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
from tsweb import Node, Web, wait_for  # noqa: E402

BINS = {}
KEY = "news/readers"


def post(web, reader, body, name="Same Name"):
    """Posts the form as the reader behind the trusted proxy at 127.0.0.1."""
    fields = dict(web.form(KEY), name=name, email="", body=body, parent="0", website="")
    h = {"X-Forwarded-For": reader} if reader else {}
    st, hdrs, data = web.post_form(KEY, fields, headers=h)
    return st, hdrs, data.decode("utf-8", "replace")


class ReaderKeyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Two posts per author (here: per reader) per hour; the token's own
        # limit stays off, so only the per-reader bucket can refuse.
        cls.node = Node(BINS, ["--rate-author", "2/60m"])
        cls.node.post(KEY, "Opening comment", name="Editor")
        cls.web = Web(cls.node, ["--trusted-proxy", "127.0.0.1"], token_args=["--gateway"])
        cls.web.wait_thread(KEY)

    @classmethod
    def tearDownClass(cls):
        tsweb.stop_web_and_node(cls.web, cls.node)

    def full_view(self):
        """The thread as a moderator sees it (the node's admin token)."""
        out = self.node.cli("get", "--thread", KEY, "--json")
        return json.loads(out)

    def keys_of(self, body):
        j = self.full_view()
        return [c.get("reader_key", "") for c in j["comments"] if c["body"] == body]

    def test_readers_limited_and_banned_separately(self):
        # Reader A: two posts pass, the third is over A's limit.
        for i in range(2):
            st, _, page = post(self.web, "198.51.100.7, 203.0.113.1", "A says %d" % i)
            self.assertEqual(st, 303, page)
        st, _, page = post(self.web, "203.0.113.1", "A says 2")
        self.assertEqual(st, 429, page)
        self.assertIn("A says 2", page)  # the text stays on the form
        # Reader B, same name, through the same edge: its own bucket.
        st, _, page = post(self.web, "203.0.113.2", "B says 0")
        self.assertEqual(st, 303, page)

        # Moderators see one key per reader (the entry the trusted proxy
        # appended, not what the client put left of it), never the address.
        ka = self.keys_of("A says 0") + self.keys_of("A says 1")
        kb = self.keys_of("B says 0")
        self.assertEqual(len(ka), 2)
        self.assertEqual(len(kb), 1)
        self.assertRegex(ka[0], r"^[0-9a-f]{64}$")
        self.assertEqual(ka[0], ka[1])
        self.assertNotEqual(ka[0], kb[0])
        full = self.node.cli("get", "--thread", KEY, "--json")
        self.assertNotIn("203.0.113", full)
        # Readers never see it: not in the edge's JSON nor in its page.
        self.web.wait_thread(KEY, lambda j: any(c["body"] == "B says 0" for c in j["comments"]))
        st, _, data = self.web.get("/t/news%2Freaders.json")
        self.assertNotIn(kb[0], data.decode())
        st, _, data = self.web.get("/t/news%2Freaders")
        self.assertNotIn(kb[0], data.decode())

        # A ban on B's reader key stops B only.
        out = self.node.cli("moderate", "ban", "--author", "reader:" + kb[0], "--duration", "3600")
        self.assertIn("reader:" + kb[0], out)
        st, _, page = post(self.web, "203.0.113.2", "B again")
        self.assertEqual(st, 403, (page, self.keys_of("B again"), kb))
        self.assertIn("B again", page)
        st, _, page = post(self.web, "203.0.113.3", "C says 0")
        self.assertEqual(st, 303, page)
        self.assertEqual(self.keys_of("B again"), [])
        self.assertEqual(len(self.keys_of("C says 0")), 1)

    def test_untrusted_peer_cannot_choose_its_key(self):
        # An edge that trusts no proxy ignores X-Forwarded-For: two claimed
        # addresses from one peer are one reader.
        web = Web(self.node, mirror_dir=os.path.join(self.node.dir, "mirror-untrusted"),
                  token_args=["--gateway"])
        try:
            web.wait_thread(KEY)
            st, _, page = post(web, "192.0.2.10", "U says 0", name="U")
            self.assertEqual(st, 303, page)
            st, _, page = post(web, "192.0.2.11", "U says 1", name="V")
            self.assertEqual(st, 303, page)
            k0, k1 = self.keys_of("U says 0"), self.keys_of("U says 1")
            self.assertEqual(len(k0), 1)
            self.assertEqual(k0, k1)
        finally:
            self.assertEqual(web.stop(), 0, web.proc.output())


class NonGatewayTest(unittest.TestCase):
    """A plain poster token's reader keys are refused (INVALID_ARGUMENT, field
    reader_key, before anything is proposed); the edge then posts without
    them, and the per-author limit applies as before."""

    @classmethod
    def setUpClass(cls):
        cls.node = Node(BINS, ["--rate-author", "2/60m"])
        cls.node.post(KEY, "Opening comment", name="Editor")
        cls.web = Web(cls.node, ["--trusted-proxy", "127.0.0.1"])
        cls.web.wait_thread(KEY)

    @classmethod
    def tearDownClass(cls):
        tsweb.stop_web_and_node(cls.web, cls.node)

    def test_reader_key_not_honoured(self):
        for i, reader in enumerate(["203.0.113.1", "203.0.113.2"]):
            st, _, page = post(self.web, reader, "N says %d" % i)
            self.assertEqual(st, 303, page)
        self.assertIn("not a gateway token", self.web.proc.output())
        j = json.loads(self.node.cli("get", "--thread", KEY, "--json"))
        mine = [c for c in j["comments"] if c["body"].startswith("N says")]
        self.assertEqual(len(mine), 2)
        self.assertTrue(all(not c.get("reader_key") for c in mine))
        # Limited by author, whatever the reader: a third reader with the
        # same name is over the same bucket.
        st, _, page = post(self.web, "203.0.113.3", "N says 2")
        self.assertEqual(st, 429, page)


if __name__ == "__main__":
    BINS["threadsyncd"], BINS["threadsync"] = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1], verbosity=2)
