"""Helpers for the moderation console's tests (client/web/ts_web_mod.c):
moderator tokens made on a real node, and a console session over plain HTTP
(sign-in, the session cookie, the CSRF token of the pages, actions)."""
import json
import os
import re
import subprocess
import urllib.parse

from tsweb import SSE


def make_token(node, name, role="moderator"):
    out = node.cli("admin", "token", "add", "--role", role, "--name", name)
    return re.search(r"token=(\S+)", out).group(1)


def poster(node, name="poster"):
    """A POSTER token's file (an admin's posts skip pre-moderation)."""
    path = os.path.join(node.dir, name + ".token")
    with open(path, "w") as f:
        f.write(make_token(node, name, role="poster") + "\n")
    return path


def post_as(node, token_file, key, body, name="Pat", email="", parent=0):
    """Posts through the CLI with token_file: the comment's id."""
    r = subprocess.run([node.bins["threadsync"], "post", "--thread", key, "--name", name,
                        "--body", body, *(["--email", email] if email else []),
                        *(["--parent", str(parent)] if parent else []),
                        "--server", node.addr, "--ca", node.ca, "--token-file", token_file],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(re.search(r"id=(\d+)", r.stdout).group(1))


def signin_form(web):
    st, h, body = web.get("/mod/signin")
    assert st == 200, (st, body)
    html = body.decode()
    return {"nonce": re.search(r'name="nonce" value="([^"]+)"', html).group(1),
            "csrf": re.search(r'name="csrf" value="([^"]+)"', html).group(1)}


def signin(web, token):
    """POSTs the sign-in form: (status, headers, body)."""
    f = signin_form(web)
    f["token"] = token
    return web.request("POST", "/mod/signin", body=urllib.parse.urlencode(f),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})


class Console:
    """A signed-in moderator over HTTP."""

    def __init__(self, web, token):
        self.web = web
        st, h, body = signin(web, token)
        assert st == 303, (st, body)
        self.set_cookie = h["set-cookie"][0]
        self.sid = re.match(r"ts_mod=([0-9a-f]+);", self.set_cookie).group(1)
        st, _, body = self.get("/mod/")
        assert st == 200, (st, body)
        self.csrf = re.search(r'data-csrf="([0-9a-f]+)"', body.decode()).group(1)

    def headers(self, extra=None):
        h = {"Cookie": "ts_mod=" + self.sid}
        h.update(extra or {})
        return h

    def get(self, path):
        return self.web.get(path, headers=self.headers())

    def post(self, path, fields, json_answer=False):
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        if json_answer:
            h["Accept"] = "application/json"
        return self.web.request("POST", path, body=urllib.parse.urlencode(fields, doseq=True),
                                headers=self.headers(h))

    def act(self, op, cs=(), csrf=None, **kw):
        """An action as the script sends it: (status, JSON answer)."""
        f = dict(kw, op=op, csrf=self.csrf if csrf is None else csrf, back="/mod/")
        f["c"] = ["%d.%d" % c for c in cs]
        st, _, body = self.post("/mod/act", f, json_answer=True)
        try:
            return st, json.loads(body)
        except ValueError:
            return st, body


def version_of(console, key, cid):
    """The comment's version as the console's thread view shows it."""
    st, _, body = console.get("/mod/t/" + urllib.parse.quote(key, safe=""))
    assert st == 200, (st, body)
    m = re.search(r'id="m%d" data-id="%d" data-version="(\d+)" data-status="(\w+)"' % (cid, cid),
                  body.decode())
    return int(m.group(1)), m.group(2)


def mod_events(console):
    """/mod/events of a console's session."""
    return SSE(console.web.port, "/mod/events", headers={"Cookie": "ts_mod=" + console.sid})
