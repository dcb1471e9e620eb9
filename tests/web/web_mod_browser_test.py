"""The moderation console in a real browser (Debian's chromium, chromedriver,
python3-selenium), in front of a real threadsyncd: sign in, a pending
comment arrives in the queue live and, approved there, appears live on a
reader's page in a second browser; two consoles on one thread, one hides a
comment and the other shows it hidden without a reload; bulk approve; the
queue's keyboard shortcuts; sign-out and a revoked token end the session; a
reader's browser gets 403 from every /mod/ URL; one console's hide appears
in another's open audit trail without a reload. Every wait is on a DOM
condition with a deadline, never a timing assertion. Screenshots of the
queue and a thread view go to ARTIFACTS.

Usage: web_mod_browser_test.py THREADSYNCD THREADSYNC ARTIFACTS"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
import web_browser_test as wb  # noqa: E402  (its browser helpers)
from tsmod import make_token, post_as, poster  # noqa: E402
from tsweb import Node, Web, quote  # noqa: E402
from web_browser_test import browser, quit_browser, shot, wait  # noqa: E402

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

KEY = "news/moderated"
MOD_URLS = ["/mod", "/mod/", "/mod/recent", "/mod/recent?author=Pat", "/mod/t/news%2Fmoderated",
            "/mod/events", "/mod/other", "/mod/audit"]


class ModBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(wb.BINS)
        cls.node.post(KEY, "An article's first comment")
        cls.node.cli("moderate", "premoderate", "--thread", KEY)
        cls.web = Web(cls.node)
        cls.web.wait_thread(KEY)
        cls.base = "http://127.0.0.1:%d" % cls.web.port
        cls.poster = poster(cls.node)
        cls.tokens = {n: make_token(cls.node, n) for n in ("alice", "bob")}
        cls.a = browser()
        cls.b = browser()
        cls.reader = browser()
        cls.sign_in(cls.a, cls.tokens["alice"])
        cls.sign_in(cls.b, cls.tokens["bob"])

    @classmethod
    def tearDownClass(cls):
        for d in (cls.a, cls.b, cls.reader):
            quit_browser(d)
        tsweb.stop_web_and_node(cls.web, cls.node)

    @classmethod
    def sign_in(cls, d, token):
        d.get(cls.base + "/mod/signin")
        d.find_element(By.NAME, "token").send_keys(token)
        d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait(d, lambda: d.find_elements(By.ID, "mod-live"), "the console after sign-in")

    def open_console(self, d, path):
        d.get(self.base + path)
        wait(d, lambda: d.find_element(By.ID, "mod-live").get_attribute("data-live") == "open",
             "the console's event stream to open")

    def pending(self, body):
        return post_as(self.node, self.poster, KEY, body)

    def status(self, d, cid):
        return d.execute_script(
            "var r = document.getElementById('m' + arguments[0]); return r && r.dataset.status;",
            cid)

    def wait_status(self, d, cid, st):
        wait(d, lambda: self.status(d, cid) == st, "comment %d to show %s" % (cid, st))

    def click(self, d, cid, op):
        d.find_element(By.CSS_SELECTOR, "#m%d form.mod-act button[value=%s]" % (cid, op)).click()

    def fetch_status(self, d, url):
        return d.execute_async_script(
            "var done = arguments[1]; fetch(arguments[0], {credentials: 'same-origin'})"
            ".then(function (r) { return r.text().then(function (t) { done([r.status, t]); }); })"
            ".catch(function (e) { done([0, String(e)]); });", url)

    def test_1_approve_in_queue_appears_live_for_a_reader(self):
        self.open_console(self.a, "/mod/")
        r = self.reader
        r.get(self.base + "/t/" + quote(KEY))
        wait(r, lambda: r.find_element(By.CSS_SELECTOR, "section.ts-thread")
             .get_attribute("data-live") == "open", "the reader's event stream to open")
        cid = self.pending("Please approve me")
        # The queue shows it without a reload.
        self.wait_status(self.a, cid, "PENDING")
        self.assertIn("Please approve me",
                      self.a.find_element(By.CSS_SELECTOR, "#m%d .mod-body" % cid).text)
        self.assertFalse(r.find_elements(By.ID, "c%d" % cid))
        wait(self.a, lambda: self.a.find_element(By.CSS_SELECTOR, ".mod-n").text == "1",
             "the queue's count to follow")
        shot(self.a, "mod-queue")
        self.click(self.a, cid, "approve")
        self.wait_status(self.a, cid, "VISIBLE")
        wait(self.a, lambda: self.a.find_element(By.CSS_SELECTOR, ".mod-n").text == "0",
             "the queue's count to follow the approval")
        wait(r, lambda: r.find_elements(By.ID, "c%d" % cid), "the approved comment on the reader page")
        self.assertIn("Please approve me", r.find_element(By.ID, "c%d" % cid).text)

    def test_2_two_consoles_see_each_others_decision(self):
        cid = self.pending("Two consoles watch me")
        self.node.cli("moderate", "approve", str(cid))
        path = "/mod/t/" + quote(KEY)
        self.open_console(self.a, path)
        self.open_console(self.b, path)
        self.wait_status(self.a, cid, "VISIBLE")
        self.wait_status(self.b, cid, "VISIBLE")
        self.click(self.a, cid, "hide")
        self.wait_status(self.a, cid, "HIDDEN")
        self.wait_status(self.b, cid, "HIDDEN")
        wait(self.b, lambda: self.b.find_element(By.CSS_SELECTOR, "#m%d .mod-by" % cid).text
             == "by alice", "who hid it, on the other console")
        shot(self.b, "mod-thread")
        # Undo from the other console: unhide.
        self.click(self.b, cid, "unhide")
        self.wait_status(self.a, cid, "VISIBLE")

    def test_3_bulk_approve(self):
        ids = [self.pending("Bulk %d" % i) for i in range(3)]
        self.open_console(self.a, "/mod/")
        for cid in ids:
            self.wait_status(self.a, cid, "PENDING")
            self.a.find_element(By.CSS_SELECTOR, "#m%d .mod-pick" % cid).click()
        self.a.find_element(By.CSS_SELECTOR, "#mod-bulk button[value=approve]").click()
        for cid in ids:
            self.wait_status(self.a, cid, "VISIBLE")
        j = self.web.wait_thread(KEY, lambda j: all(
            any(c["id"] == cid and c["status"] == "VISIBLE" for c in j["comments"]) for cid in ids),
            what="the bulk-approved comments in the mirror")
        self.assertTrue(j)

    def test_4_keyboard_shortcuts(self):
        first, second = self.pending("Key A"), self.pending("Key H")
        self.open_console(self.a, "/mod/")
        self.wait_status(self.a, second, "PENDING")
        rows = self.a.execute_script(
            "return Array.from(document.querySelectorAll('#mod-list .mod-row')).map(r => +r.dataset.id)")
        keys = ActionChains(self.a)
        for _ in range(rows.index(first) + 1):
            keys.send_keys("j")
        keys.send_keys("a").perform()
        self.wait_status(self.a, first, "VISIBLE")
        keys = ActionChains(self.a)
        for _ in range(rows.index(second) - rows.index(first)):
            keys.send_keys("j")
        keys.send_keys("h").perform()
        self.wait_status(self.a, second, "HIDDEN")
        keys = ActionChains(self.a)
        keys.send_keys("k").send_keys("d").perform()
        self.wait_status(self.a, first, "DELETED")

    def test_5_reader_gets_403_everywhere(self):
        r = self.reader
        r.get(self.base + "/t/" + quote(KEY))
        for u in MOD_URLS:
            st, text = self.fetch_status(r, u)
            self.assertEqual(st, 403, u)
            self.assertNotIn("data-csrf", text)
        r.get(self.base + "/mod/")
        self.assertIn("Moderators only", r.find_element(By.TAG_NAME, "h1").text)

    def test_6_signout_and_revoked_token_end_the_session(self):
        d = browser()
        try:
            self.sign_in(d, make_token(self.node, "carol"))
            self.open_console(d, "/mod/")
            d.find_element(By.CSS_SELECTOR, "form.mod-signout button").click()
            wait(d, lambda: d.find_elements(By.NAME, "token"), "the sign-in page after sign-out")
            self.assertEqual(self.fetch_status(d, "/mod/")[0], 403)
            self.sign_in(d, make_token(self.node, "dan"))
            self.open_console(d, "/mod/")
            self.node.cli("admin", "token", "revoke", "dan")
            # The open console is sent to the sign-in page; nothing is served after.
            wait(d, lambda: d.find_elements(By.NAME, "token"), "the revoked console to sign out")
            self.assertEqual(self.fetch_status(d, "/mod/")[0], 403)
        finally:
            quit_browser(d)

    def test_7_without_javascript(self):
        d = browser(javascript=False)
        try:
            self.sign_in(d, make_token(self.node, "gina"))
            cid = self.pending("Approve me without a script")
            d.get(self.base + "/mod/")
            self.assertEqual(self.status(d, cid), "PENDING")
            self.click(d, cid, "approve")
            # 303 back to the queue, the outcome above it; the comment is public.
            wait(d, lambda: "#%d now VISIBLE." % cid in d.find_element(By.ID, "mod-msg").text,
                 "the action's outcome after the redirect")
            self.web.wait_thread(KEY, lambda j: any(c["id"] == cid and c["status"] == "VISIBLE"
                                                    for c in j["comments"]),
                                 what="the approved comment in the mirror")
        finally:
            quit_browser(d)

    def test_8_action_appears_in_the_audit_trail(self):
        cid = self.pending("Audit me")
        self.node.cli("moderate", "approve", str(cid))
        self.open_console(self.a, "/mod/audit")
        path = "/mod/t/" + quote(KEY)
        self.open_console(self.b, path)
        self.wait_status(self.b, cid, "VISIBLE")
        self.click(self.b, cid, "hide")
        self.wait_status(self.b, cid, "HIDDEN")
        # alice's open trail shows bob's hide, newest first, without a reload.
        def newest():
            items = self.a.find_elements(By.CSS_SELECTOR, "#mod-list li.mod-audit")
            return items[0].text if items else ""
        wait(self.a, lambda: "bob hid comment #%d" % cid in newest(),
             "bob's hide at the top of alice's audit trail")
        shot(self.a, "mod-audit")

if __name__ == "__main__":
    wb.BINS["threadsyncd"], wb.BINS["threadsync"], wb.ARTIFACTS = sys.argv[1:4]
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[4:])
