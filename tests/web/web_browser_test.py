"""The web edge in a real browser (Debian's chromium, chromedriver,
python3-selenium), in front of a real threadsyncd: two sessions on one
thread, one posts through the form, the other shows the comment nested under
its parent without a reload, and the count follows; JavaScript off: the form
posts and redirects to the comment's anchor; a refused post keeps the text;
pre-moderation: the poster sees "awaiting moderation", the other session
only once a moderator approves, then live; a page shaped like the seed
(five levels, a removed parent with replies, curly quotes, an emoji) is the
same tree with and without the script. Screenshots go to ARTIFACTS.

Usage: web_browser_test.py THREADSYNCD THREADSYNC ARTIFACTS"""
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tsweb  # noqa: E402
from tsweb import Node, Web, quote  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (NoSuchElementException,  # noqa: E402
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BINS = {}
ARTIFACTS = "."
WAIT_S = 10  # a deadline for DOM conditions, never a timing assertion


def browser(javascript=True):
    profile = tempfile.mkdtemp(prefix="ts_web_chromium.")
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1000,1400",
              "--user-data-dir=" + profile):
        o.add_argument(a)
    if not javascript:
        o.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.ts_profile = profile
    return d


def quit_browser(d):
    d.quit()
    shutil.rmtree(d.ts_profile, ignore_errors=True)


def shot(d, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    d.save_screenshot(os.path.join(ARTIFACTS, name + ".png"))


def wait(d, cond, what):
    try:
        # A condition may look at a page that is being replaced (a form POST
        # and its redirect): an element found on the old one is then stale;
        # poll again rather than fail.
        return WebDriverWait(d, WAIT_S, poll_frequency=0.05,
                             ignored_exceptions=(NoSuchElementException,
                                                 StaleElementReferenceException)).until(
            lambda _: cond())
    except TimeoutException:
        shot(d, "timeout-" + what.replace(" ", "_"))
        raise AssertionError("timed out waiting for " + what)


def parent_li_id(d, cid):
    """The id of the <li> the comment's <li> is nested in, or None."""
    return d.execute_script(
        "var li = document.getElementById('c' + arguments[0]);"
        "if (!li) return undefined;"
        "var p = li.parentNode.closest('li'); return p ? p.id : null;", cid)


def tree(d):
    """Every shown comment as (id, parent li id, class, text of its body)."""
    return d.execute_script(
        "return Array.from(document.querySelectorAll('li.ts-comment')).map(function (li) {"
        "  var p = li.parentNode.closest('li'); var b = li.querySelector(':scope > article .ts-body');"
        "  var ph = li.querySelector(':scope > .ts-placeholder');"
        "  return [li.id, p ? p.id : null, b ? b.textContent : (ph ? ph.textContent : '')]; });")


class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(BINS)
        cls.root, _ = cls.node.post("news/story", "The first comment")
        cls.web = Web(cls.node)
        cls.web.wait_thread("news/story")
        cls.base = "http://127.0.0.1:%d" % cls.web.port
        cls.a = browser()
        cls.b = browser()

    @classmethod
    def tearDownClass(cls):
        quit_browser(cls.a)
        quit_browser(cls.b)
        tsweb.stop_web_and_node(cls.web, cls.node)

    def open_live(self, d, key):
        d.get(self.base + "/t/" + quote(key))
        wait(d, lambda: d.find_element(By.CSS_SELECTOR, "section.ts-thread")
             .get_attribute("data-live") == "open", "the event stream to open")

    def count(self, d):
        return int(d.find_element(By.CSS_SELECTOR, ".ts-count .ts-n").text)

    def test_live_reply_nested_in_the_other_tab(self):
        key = "news/story"
        self.open_live(self.a, key)
        self.open_live(self.b, key)
        n0 = self.count(self.b)
        a = self.a
        a.find_element(By.CSS_SELECTOR, "#c%d .ts-reply-link" % self.root).click()
        wait(a, lambda: a.find_element(By.NAME, "parent").get_attribute("value") == str(self.root),
             "the form to reply to the root")
        a.find_element(By.NAME, "name").send_keys("Tab A")
        a.find_element(By.NAME, "body").send_keys("A live reply")
        a.find_element(By.CSS_SELECTOR, "form.ts-form button[type=submit]").click()
        # The poster's tab shows it inline, without a reload.
        wait(a, lambda: a.execute_script(
            "return Array.from(document.querySelectorAll('.ts-body')).some("
            "function (b) { return b.textContent === 'A live reply'; })"), "the inline comment")
        b = self.b
        b.execute_script("window.tsNoReload = 1;")
        cid = wait(b, lambda: b.execute_script(
            "var x = Array.from(document.querySelectorAll('li.ts-comment')).filter(function (li) {"
            " var body = li.querySelector(':scope > article .ts-body');"
            " return body && body.textContent === 'A live reply'; });"
            "return x.length ? x[0].id.slice(1) : null;"), "the comment in the other tab")
        self.assertEqual(parent_li_id(b, int(cid)), "c%d" % self.root)
        wait(b, lambda: self.count(b) == n0 + 1, "the count to follow")
        self.assertEqual(b.execute_script("return window.tsNoReload;"), 1)  # same document
        # The stylesheet applies (CSP allows it): the honeypot is out of sight.
        self.assertEqual(b.execute_script(
            "return getComputedStyle(document.querySelector('.ts-hp')).position;"), "absolute")
        self.assertEqual(b.find_element(By.CSS_SELECTOR, "#c%s time" % cid).text[-3:], "UTC")
        shot(a, "live-poster")
        shot(b, "live-watcher")

    def test_refused_post_keeps_the_text(self):
        key = "news/story"
        self.open_live(self.a, key)
        a = self.a
        a.find_element(By.NAME, "name").send_keys("Long")
        a.execute_script("document.querySelector('textarea[name=body]').removeAttribute('maxlength');"
                         "document.querySelector('textarea[name=body]').value = 'x'.repeat(16385);")
        a.find_element(By.CSS_SELECTOR, "form.ts-form button[type=submit]").click()
        wait(a, lambda: a.find_element(By.CSS_SELECTOR, ".ts-error").is_displayed(),
             "the error message")
        self.assertTrue(a.find_element(By.CSS_SELECTOR, ".ts-error").text)
        self.assertEqual(len(a.find_element(By.NAME, "body").get_attribute("value")), 16385)
        shot(a, "refused-inline")

    def test_premoderation_live_after_approval(self):
        key = "news/premod"
        self.node.post(key, "Visible seed")
        self.node.cli("moderate", "premoderate", "--thread", key)
        self.web.wait_thread(key)
        self.open_live(self.a, key)
        self.open_live(self.b, key)
        a, b = self.a, self.b
        a.find_element(By.NAME, "name").send_keys("Pat")
        a.find_element(By.NAME, "body").send_keys("Held for review")
        a.find_element(By.CSS_SELECTOR, "form.ts-form button[type=submit]").click()
        wait(a, lambda: "awaiting moderation" in a.find_element(By.CSS_SELECTOR,
                                                                "section.ts-thread").text,
             "awaiting moderation for the poster")
        shot(a, "premod-poster")
        # The poster still sees it after a reload (the edit-key cookie).
        a.refresh()
        wait(a, lambda: "Held for review" in a.find_element(By.CSS_SELECTOR,
                                                            "section.ts-thread").text,
             "the own pending comment after a reload")
        self.assertNotIn("Held for review", b.find_element(By.CSS_SELECTOR, "section.ts-thread").text)
        q = self.node.cli("moderate", "queue", "--thread", key)
        cid = int(q.split("#")[1].split()[0])
        self.node.cli("moderate", "approve", str(cid))
        wait(b, lambda: b.execute_script("var li = document.getElementById('c' + arguments[0]);"
                                         "return li && li.textContent.indexOf('Held for review') >= 0;",
                                         cid), "the approved comment, live")
        shot(b, "premod-approved-watcher")


class NoScriptTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node(BINS)
        cls.web = Web(cls.node)
        cls.base = "http://127.0.0.1:%d" % cls.web.port
        cls.d = browser(javascript=False)

    @classmethod
    def tearDownClass(cls):
        quit_browser(cls.d)
        tsweb.stop_web_and_node(cls.web, cls.node)

    def test_post_redirects_to_the_anchor_and_refusal_keeps_text(self):
        key = "news/nojs"
        root, _ = self.node.post(key, "Root")
        self.web.wait_thread(key)
        d = self.d
        d.get(self.base + "/t/" + quote(key))
        self.assertEqual(d.find_element(By.CSS_SELECTOR, "section.ts-thread")
                         .get_attribute("data-live"), None)  # the script did not run
        d.find_element(By.CSS_SELECTOR, "#c%d .ts-reply-link" % root).click()
        d.find_element(By.NAME, "name").send_keys("NoJS")
        d.find_element(By.NAME, "body").send_keys("Posted without script")
        d.find_element(By.CSS_SELECTOR, "form.ts-form button[type=submit]").click()
        wait(d, lambda: "#c" in d.current_url, "the redirect to the anchor")
        cid = int(d.current_url.split("#c")[1])
        self.assertEqual(parent_li_id(d, cid), "c%d" % root)
        self.assertIn("Posted without script", d.find_element(By.ID, "c%d" % cid).text)
        shot(d, "nojs-posted")
        # Refused (no name given, required bypassed): text kept, message shown.
        d.execute_script("document.querySelector('input[name=name]').removeAttribute('required');")
        d.find_element(By.NAME, "body").send_keys("Keep these words")
        d.find_element(By.CSS_SELECTOR, "form.ts-form button[type=submit]").click()
        wait(d, lambda: d.find_element(By.CSS_SELECTOR, ".ts-error").is_displayed(),
             "the refusal message")
        self.assertEqual(d.find_element(By.NAME, "body").get_attribute("value"),
                         "Keep these words")
        shot(d, "nojs-refused")

    def test_seed_shape_same_tree_with_and_without_script(self):
        key = "news/seed"
        c1, _ = self.node.post(key, "Level one \u201ccurly\u201d")
        c2, _ = self.node.post(key, "Level two \U0001F600", parent=c1)
        c3, _ = self.node.post(key, "Level three", parent=c2)
        c4, _ = self.node.post(key, "Level four", parent=c3)
        self.node.post(key, "Level five", parent=c4)
        gone, _ = self.node.post(key, "removed parent")
        self.node.post(key, "reply kept", parent=gone)
        leaf, _ = self.node.post(key, "removed leaf")
        self.node.cli("moderate", "delete", str(gone))
        self.node.cli("moderate", "delete", str(leaf))
        self.web.wait_thread(key, lambda j: sum(c["status"] == "DELETED" for c in j["comments"]) == 2)
        d = self.d
        d.get(self.base + "/t/" + quote(key))
        plain = tree(d)
        shot(d, "seed-nojs")
        js = browser()
        try:
            js.get(self.base + "/t/" + quote(key))
            wait(js, lambda: js.find_element(By.CSS_SELECTOR, "section.ts-thread")
                 .get_attribute("data-live") == "open", "the script")
            self.assertEqual(tree(js), plain)
            shot(js, "seed-js")
        finally:
            quit_browser(js)
        ids = [t[0] for t in plain]
        self.assertNotIn("c%d" % leaf, ids)
        self.assertIn(["c%d" % gone, None, "[deleted]"], plain)
        depth5 = [t for t in plain if t[2] == "Level five"][0]
        self.assertEqual(depth5[1], "c%d" % c4)
        self.assertIn(["c%d" % c2, "c%d" % c1, "Level two \U0001F600"], plain)


if __name__ == "__main__":
    BINS["threadsyncd"], BINS["threadsync"], ARTIFACTS = sys.argv[1], sys.argv[2], sys.argv[3]
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[4:])
