/* The moderation console's script (ts_web_mod.c serves the pages; they
 * work without it). It follows /mod/events: a comment's new state updates
 * its row in place (status, version, who moderated it), a new comment that
 * belongs to this view is added from the page's <template>; actions are sent
 * with fetch and the answer updates the row; j/k/x/a/h/d drive the queue.
 * Text only ever goes in through textContent. */
(function () {
  "use strict";
  var body = document.body;
  if (!body || !body.dataset.csrf) return;
  var base = body.dataset.base || "";
  var view = body.dataset.view;
  var list = document.getElementById("mod-list");
  var msg = document.getElementById("mod-msg");
  var live = document.getElementById("mod-live");

  function say(t) { if (msg) msg.textContent = t; }
  function rows() { return list ? Array.prototype.slice.call(list.querySelectorAll(".mod-row")) : []; }

  function fill(row, c) {
    row.id = "m" + c.id;
    row.dataset.id = c.id;
    row.dataset.version = c.version;
    row.dataset.status = c.status;
    row.dataset.key = c.key;
    var set = function (sel, t) { var e = row.querySelector(sel); if (e) e.textContent = t; };
    set(".mod-status", c.status);
    set(".mod-by", c.by ? "by " + c.by : "");
    set(".mod-author", c.author);
    set(".mod-email", c.email);
    set(".mod-time", c.time);
    set(".mod-id", "#" + c.id);
    set(".mod-body", c.body);
    var th = row.querySelector(".mod-thread");
    if (th) { th.textContent = c.key; th.href = base + "/mod/t/" + encodeURIComponent(c.key); }
    var au = row.querySelector(".mod-author");
    if (au) au.href = base + "/mod/recent?author=" + encodeURIComponent(c.email || c.author);
    row.querySelectorAll("input[name=c]").forEach(function (i) { i.value = c.id + "." + c.version; });
    var ta = row.querySelector("textarea[name=body]");
    if (ta && c.status !== "DELETED" && document.activeElement !== ta) ta.value = c.body;
  }

  function belongs(c) {
    if (view === "queue") return c.status === "PENDING";
    if (view === "thread") return c.key === body.dataset.key;
    if (view === "recent") return !location.search;
    return false;
  }

  /* The queue's heading counts the rows still pending. */
  function recount() {
    var n = document.querySelector(".mod-n");
    if (n && view === "queue" && list)
      n.textContent = list.querySelectorAll('.mod-row[data-status="PENDING"]').length;
  }

  function onComment(c) {
    placeRow(c);
    recount();
  }

  function placeRow(c) {
    var row = document.getElementById("m" + c.id);
    if (row) {
      if (+row.dataset.version <= c.version) fill(row, c);
      return;
    }
    var tpl = document.getElementById("mod-row");
    if (!list || !tpl || !belongs(c)) return;
    var empty = list.querySelector(".mod-empty");
    if (empty) empty.remove();
    var r = tpl.content.firstElementChild.cloneNode(true);
    fill(r, c);
    if (view === "recent") list.insertBefore(r, list.firstChild); else list.appendChild(r);
  }

  function onThread(t) {
    var info = document.querySelector(".mod-threadinfo");
    if (!info || t.key !== body.dataset.key) return;
    info.dataset.locked = t.locked ? "1" : "0";
    info.dataset.premod = t.premoderated ? "1" : "0";
    var f = info.querySelector(".mod-flags");
    if (f) f.textContent = (t.locked ? "locked " : "") + (t.premoderated ? "pre-moderated" : "");
  }

  /* The audit view (first page only) asks for itself again after a change
   * to a comment or a thread, the actions that make an event: the node that
   * sent the event has applied the entry, so its trail holds the action.
   * Bans and tokens make no event: they show on the next load. */
  var auditTimer = null;
  function refreshAudit() {
    if (view !== "audit" || location.search || !list) return;
    clearTimeout(auditTimer);
    auditTimer = setTimeout(function () {
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (h) {
          var fresh = new DOMParser().parseFromString(h, "text/html").getElementById("mod-list");
          if (fresh) list.innerHTML = fresh.innerHTML;
        })
        .catch(function () { say("The audit trail could not be refreshed."); });
    }, 200);
  }

  function connect() {
    var es = new EventSource(base + "/mod/events");
    es.addEventListener("hello", function () { live.dataset.live = "open"; live.textContent = "live"; });
    es.addEventListener("comment", function (e) { onComment(JSON.parse(e.data)); refreshAudit(); });
    es.addEventListener("thread", function (e) { onThread(JSON.parse(e.data)); refreshAudit(); });
    es.addEventListener("signedout", function () { es.close(); location.href = base + "/mod/signin"; });
    es.addEventListener("reload", function () { es.close(); location.reload(); });
    es.onerror = function () { live.dataset.live = "off"; live.textContent = "reconnecting"; };
  }

  function send(form, op, extra) {
    var data = new URLSearchParams(new FormData(form));
    data.set("op", op);
    (extra || []).forEach(function (v) { data.append("c", v); });
    return fetch(form.action, { method: "POST", body: data, credentials: "same-origin",
                                headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 403) { location.href = base + "/mod/signin"; return null; }
        return r.json();
      })
      .then(function (j) {
        if (!j) return;
        (j.results || []).forEach(function (x) { if (x.comment) onComment(x.comment); });
        say(j.message || "");
        if (j.ok && (op === "lock" || op === "unlock" || op === "premod" || op === "postmod"))
          onThread({ key: body.dataset.key, locked: op === "lock" ? 1 : op === "unlock" ? 0 : +document.querySelector(".mod-threadinfo").dataset.locked,
                     premoderated: op === "premod" ? 1 : op === "postmod" ? 0 : +document.querySelector(".mod-threadinfo").dataset.premod });
      })
      .catch(function () { say("The action could not be sent."); });
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList.contains("mod-act")) return;
    var op = e.submitter && e.submitter.name === "op" ? e.submitter.value : null;
    if (!op) return;
    e.preventDefault();
    var extra = [];
    if (form.id === "mod-bulk") {
      document.querySelectorAll("input.mod-pick:checked").forEach(function (i) { extra.push(i.value); i.checked = false; });
      if (!extra.length) { say("Nothing selected."); return; }
    }
    send(form, op, extra);
  });

  var sel = -1;
  function select(i) {
    var r = rows();
    if (!r.length) return;
    sel = Math.max(0, Math.min(r.length - 1, i));
    r.forEach(function (x, k) { x.classList.toggle("mod-sel", k === sel); });
    r[sel].scrollIntoView({ block: "nearest" });
  }
  function act(op) {
    var r = rows()[sel];
    if (!r) return;
    var b = r.querySelector("form.mod-act button[value=" + op + "]");
    if (b && getComputedStyle(b).display !== "none") send(b.form, op);
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target.tagName;
    if (t === "INPUT" || t === "TEXTAREA" || t === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j") select(sel + 1);
    else if (e.key === "k") select(sel - 1);
    else if (e.key === "x") { var r = rows()[sel]; if (r) { var c = r.querySelector(".mod-pick"); c.checked = !c.checked; } }
    else if (e.key === "a") act("approve");
    else if (e.key === "h") act("hide");
    else if (e.key === "d") act("delete");
    else return;
    e.preventDefault();
  });

  connect();
})();
