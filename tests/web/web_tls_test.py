"""TLS on the web edge's own listener (issue 14 item 1: "TLS on its own
listener when given a certificate"): with --cert and --key the edge speaks
HTTPS only (TLS 1.2 exactly: see ts_web_http.h; ALPN h2 and http/1.1), pages, forms and the event
stream work over it, plain HTTP on that port gets nothing, and a bad or
half-given certificate stops it at start with a message.

The certificate is the node's own (threadsync-data/server.{pem,key}, made on
first start for 127.0.0.1 and signed by threadsync-data/ca.pem).

Usage: web_tls_test.py THREADSYNCD THREADSYNC"""
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
from tsweb import Node, Web  # noqa: E402

BINS = {}
KEY = "tls/thread"


class TlsWeb(Web):
    """The harness's edge, spoken to over TLS."""

    def ctx(self, alpn=("http/1.1",)):
        c = ssl.create_default_context(cafile=self.node.ca)
        c.set_alpn_protocols(list(alpn))
        return c

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.ctx())
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


class TlsSSE(tsweb.SSE):
    def __init__(self, web, path):
        raw = socket.create_connection(("127.0.0.1", web.port), timeout=30)
        self.s = web.ctx().wrap_socket(raw, server_hostname="127.0.0.1")
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n"
                        % path).encode())
        self.raw, self.body, self.eof = b"", b"", False
        while b"\r\n\r\n" not in self.raw:
            self._recv()
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(BINS)
        cls.node.post(KEY, "Over TLS")
        data = cls.node.data
        cls.cert = os.path.join(data, "server.pem")
        cls.key = os.path.join(data, "server.key")
        cls.web = TlsWeb(cls.node, ["--cert", cls.cert, "--key", cls.key])
        cls.web.wait_thread(KEY)

    @classmethod
    def tearDownClass(cls):
        tsweb.stop_web_and_node(cls.web, cls.node)

    def test_https_page_form_and_events(self):
        self.assertIn("web edge on https://127.0.0.1:%d/" % self.web.port,
                      self.web.proc.output())
        st, h, page = self.web.get("/t/" + tsweb.quote(KEY))
        self.assertEqual(st, 200)
        self.assertIn("Over TLS", page.decode())
        sse = TlsSSE(self.web, "/t/%s/events" % tsweb.quote(KEY))
        self.assertEqual(sse.status, 200)
        fields = dict(self.web.form(KEY), name="Tia", email="", body="posted over https",
                      parent="0", website="")
        st, h, _ = self.web.post_form(KEY, fields)
        self.assertEqual(st, 303)
        self.assertRegex(h["location"], r"#c\d+$")
        ev = sse.next_event()
        while ev.get("event") != "comment":
            ev = sse.next_event()
        self.assertEqual(json.loads(ev["data"])["comment"]["body"], "posted over https")
        sse.close()

    def test_alpn_and_versions(self):
        raw = socket.create_connection(("127.0.0.1", self.web.port), timeout=30)
        s = self.web.ctx(alpn=("h2", "http/1.1")).wrap_socket(raw, server_hostname="127.0.0.1")
        self.assertEqual(s.selected_alpn_protocol(), "h2")
        self.assertEqual(s.version(), "TLSv1.2")
        s.close()
        for v in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_3):
            c = self.web.ctx()
            c.minimum_version = c.maximum_version = v
            raw = socket.create_connection(("127.0.0.1", self.web.port), timeout=30)
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                c.wrap_socket(raw, server_hostname="127.0.0.1")
            raw.close()

    def test_clients_closing_after_handshake_leave_nothing(self):
        # Under TLS 1.3 h2o 2.2 never closed these: the edge then held
        # their descriptors and could not stop (tearDownClass checks it
        # exits, cleanly, on SIGTERM).
        for _ in range(10):
            raw = socket.create_connection(("127.0.0.1", self.web.port), timeout=30)
            self.web.ctx().wrap_socket(raw, server_hostname="127.0.0.1").close()
        st, _, _ = self.web.get("/t/" + tsweb.quote(KEY))
        self.assertEqual(st, 200)

    def test_plain_http_gets_nothing(self):
        s = socket.create_connection(("127.0.0.1", self.web.port), timeout=30)
        s.sendall(b"GET /t/x HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            data = s.recv(1000)
        except ConnectionResetError:
            data = b""
        self.assertNotIn(b"HTTP/1.1 200", data)
        self.assertNotIn(b"Over TLS", data)
        s.close()

    def test_bad_certificate_refused_at_start(self):
        def run(*extra):
            return subprocess.run(
                [BINS["threadsync"], "web", "--server", self.node.addr, "--ca", self.node.ca,
                 "--token-file", self.node.token_file, "--dir",
                 os.path.join(self.node.dir, "mirror-bad"), "--listen", "127.0.0.1:0",
                 *extra], capture_output=True, text=True, timeout=60)
        r = run("--cert", self.cert)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--cert and --key go together", r.stderr)
        r = run("--cert", self.cert, "--key", self.node.ca)  # not a key
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("cannot use --cert", r.stderr)


if __name__ == "__main__":
    BINS["threadsyncd"], BINS["threadsync"] = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1] + sys.argv[3:], verbosity=2)
