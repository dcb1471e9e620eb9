/* threadsync web edge: live comments and inline posting.
 *
 * The page works without this script (plain forms, redirects). With it:
 * the reply form posts with fetch and shows the answer in place, Reply
 * links move the form under a comment without a reload, and the thread
 * follows the edge's server-sent events: new comments appear nested under
 * their parent, edits and removals apply in place, the count follows.
 * Every text goes through textContent; nothing is parsed as HTML.
 */
(function () {
  'use strict';

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function init(section) {
    var form = section.querySelector('form.ts-form');
    var errorBox = section.querySelector('.ts-error');
    var replying = section.querySelector('.ts-replying');
    var pageUrl = form ? form.getAttribute('action').replace(/\/(post|edit)$/, '') : '';

    function setCount(n) {
      var h = section.querySelector('.ts-count');
      if (!h) return;
      h.textContent = '';
      h.appendChild(el('span', 'ts-n', String(n)));
      h.appendChild(document.createTextNode(n === 1 ? ' comment' : ' comments'));
    }

    function countVisible() {
      return section.querySelectorAll('li.ts-comment:not(.ts-deleted):not(.ts-removed):not(.ts-own-pending)').length;
    }

    function actions(id) {
      var p = el('p', 'ts-actions');
      var a = el('a', 'ts-reply-link', 'Reply');
      a.href = pageUrl + '?parent=' + id + '#reply';
      a.setAttribute('data-parent', String(id));
      p.appendChild(a);
      return p;
    }

    function head(c, pending) {
      var art = el('article');
      var h = el('header');
      h.appendChild(el('span', 'ts-author', c.author_name));
      h.appendChild(document.createTextNode(' '));
      var iso = new Date(c.created_at_ms).toISOString();
      /* As the page writes it: 2024-05-01 12:00 UTC. */
      var t = el('time', null, iso.slice(0, 10) + ' ' + iso.slice(11, 16) + ' UTC');
      t.setAttribute('datetime', iso);
      h.appendChild(t);
      if (c.edited_at_ms) h.appendChild(el('span', 'ts-edited', ' (edited)'));
      if (pending) h.appendChild(el('span', 'ts-pending', ' awaiting moderation'));
      art.appendChild(h);
      art.appendChild(el('div', 'ts-body', c.body));
      return [art, actions(c.id)];
    }

    function replies(li) {
      for (var i = 0; i < li.children.length; i++)
        if (li.children[i].classList.contains('ts-replies')) return li.children[i];
      return null;
    }

    function setHead(li, nodes) {
      var keep = replies(li);
      while (li.firstChild) li.removeChild(li.firstChild);
      nodes.forEach(function (n) { li.appendChild(n); });
      if (keep) li.appendChild(keep);
    }

    function topList() {
      var ol = section.querySelector('ol.ts-comments');
      if (!ol) {
        ol = el('ol', 'ts-comments');
        section.insertBefore(ol, section.querySelector('.ts-reply'));
      }
      return ol;
    }

    function insert(li, parentId) {
      var parent = parentId ? document.getElementById('c' + parentId) : null;
      var list;
      if (parent && section.contains(parent)) {
        list = replies(parent);
        if (!list) {
          list = el('ol', 'ts-replies');
          parent.appendChild(list);
        }
      } else {
        list = topList();
      }
      list.appendChild(li);
    }

    /* Removes li, and then any placeholder ancestor left without replies. */
    function prune(li) {
      while (li && section.contains(li)) {
        var list = li.parentNode;
        list.removeChild(li);
        if (list.children.length) return;
        var owner = list.parentNode;
        if (owner && owner.tagName === 'LI') {
          owner.removeChild(list);
          if (owner.classList.contains('ts-deleted') || owner.classList.contains('ts-removed')) {
            li = owner;
            continue;
          }
        }
        return;
      }
    }

    function apply(c, own) {
      var li = document.getElementById('c' + c.id);
      var ver = li ? Number(li.getAttribute('data-version') || 0) : 0;
      if (li && ver >= c.version && !own) return;
      if (c.status === 'VISIBLE' || own) {
        var pending = own && c.status !== 'VISIBLE';
        if (!li) {
          li = el('li', 'ts-comment');
          li.id = 'c' + c.id;
          insert(li, c.parent_id);
          li.classList.add('ts-new');
        }
        li.className = 'ts-comment' + (pending ? ' ts-own-pending' : '') + (li.classList.contains('ts-new') ? ' ts-new' : '');
        setHead(li, head(c, pending));
      } else if (li) {
        if (li.classList.contains('ts-own-pending') && c.status === 'PENDING') return;
        var r = replies(li);
        if (r && r.children.length) {
          var deleted = c.status === 'DELETED';
          li.className = 'ts-comment ' + (deleted ? 'ts-deleted' : 'ts-removed');
          setHead(li, [el('p', 'ts-placeholder', deleted ? '[deleted]' : '[removed]')]);
        } else {
          prune(li);
          return;
        }
      } else {
        return;
      }
      if (!own) li.setAttribute('data-version', String(c.version));
    }

    function showError(msg) {
      if (!errorBox) return;
      errorBox.textContent = msg || '';
      errorBox.hidden = !msg;
    }

    function setParent(id) {
      if (!form) return;
      form.elements.parent.value = String(id || 0);
      if (replying) replying.hidden = !id;
      var target = id ? document.getElementById('c' + id) : null;
      var box = section.querySelector('.ts-reply');
      if (target) {
        var after = target.querySelector('.ts-actions');
        target.insertBefore(box, after ? after.nextSibling : null);
      } else {
        section.appendChild(box);
      }
      form.elements.body.focus();
    }

    section.addEventListener('click', function (ev) {
      var a = ev.target.closest && ev.target.closest('.ts-reply-link, .ts-cancel');
      if (!a) return;
      ev.preventDefault();
      setParent(a.classList.contains('ts-cancel') ? 0 : Number(a.getAttribute('data-parent')));
    });

    if (form && !form.action.match(/\/edit$/)) {
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var button = form.querySelector('button[type=submit]');
        if (button) button.disabled = true;
        var data = new URLSearchParams(new FormData(form));
        fetch(form.action, {
          method: 'POST', body: data, credentials: 'same-origin',
          headers: { 'Accept': 'application/json' }
        }).then(function (res) {
          return res.json();
        }).then(function (j) {
          if (j.nonce) form.elements.nonce.value = j.nonce;
          if (j.csrf) form.elements.csrf.value = j.csrf;
          if (!j.ok) {
            showError(j.error);
            return;
          }
          showError('');
          if (j.comment) {
            j.comment.status = j.pending ? 'PENDING' : 'VISIBLE';
            apply(j.comment, j.pending);
            if (!j.pending) {
              document.getElementById('c' + j.comment.id).setAttribute('data-version', '1');
              setCount(countVisible());
            }
          }
          form.elements.body.value = '';
          setParent(0);
        }).catch(function () {
          showError('The comment could not be sent. Please try again.');
        }).then(function () {
          if (button) button.disabled = false;
        });
      });
    }

    var events = section.getAttribute('data-events');
    if (events && window.EventSource) {
      var src = new EventSource(events + '?since=' + section.getAttribute('data-seq'));
      src.addEventListener('comment', function (ev) {
        var d = JSON.parse(ev.data);
        apply(d.comment, false);
        setCount(d.count);
      });
      src.addEventListener('thread', function (ev) {
        setCount(JSON.parse(ev.data).count);
      });
      src.addEventListener('reload', function () {
        src.close();
        window.location.reload();
      });
      section.setAttribute('data-live', '1');
      src.addEventListener('open', function () { section.setAttribute('data-live', 'open'); });
    }
  }

  function start() {
    var s = document.querySelectorAll('section.ts-thread');
    for (var i = 0; i < s.length; i++) init(s[i]);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
