/* The manager's live station view: every data-interval seconds, fetch the live fragment
   (same origin, the session cookie) and swap it in. While the tab is hidden nothing is
   fetched; a failed fetch, or an answer that is not the fragment (a login page after the
   session ended), leaves the last view up and marks it stale. No HTML is written here: the
   server renders the fragment (in the manager's language), this only moves its nodes in.

   Keyboard and screen-reader users: the element that had the focus inside the fragment gets
   it back in the new one (found by id, by its label, or by link and text; else the fragment
   itself), with its sideways scroll; and only changes are announced, in #live-said (a
   role=status outside the fragment): the "needs attention" heading when that list changes,
   the stale text when the view goes stale, the "as of" line when it recovers. */
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.fetch || !window.DOMParser) { return; }
  var said = document.getElementById("live-said");
  var url = root.getAttribute("data-src");
  var every = Math.max(2, parseFloat(root.getAttribute("data-interval")) || 5) * 1000;
  var staleText = root.getAttribute("data-stale-text") || "";
  var busy = false;
  var attention = attentionDigest(root);

  function say(text) {
    if (!said || !text) { return; }
    // Emptied first, so the same words said twice in a row are announced twice.
    said.textContent = "";
    window.setTimeout(function () { said.textContent = text; }, 100);
  }

  function squash(text) { return (text || "").replace(/\s+/g, " ").trim(); }

  // What needs attention, without the "since"/"for" times that change on every fetch.
  function attentionDigest(scope) {
    var items = scope.querySelectorAll(".attention-item");
    var parts = [];
    for (var i = 0; i < items.length; i++) {
      var target = items[i].querySelector(".target");
      parts.push(items[i].className + "|" + (target ? squash(target.textContent) : ""));
    }
    return parts.join("\n");
  }

  function markStale() {
    var state = root.querySelector(".live-state");
    if (!root.classList.contains("stale")) { say(staleText); }
    root.classList.add("stale");
    if (state) { state.textContent = staleText; }
  }

  function focusables(scope) {
    return Array.prototype.slice.call(scope.querySelectorAll("a[href], button, [tabindex]:not([tabindex='-1'])"));
  }

  // A way to find the same element in the next fragment.
  function keyOf(el, scope) {
    return { id: el.id, labelledby: el.getAttribute("aria-labelledby"), href: el.getAttribute("href"),
             text: squash(el.textContent), index: focusables(scope).indexOf(el), scrollLeft: el.scrollLeft };
  }

  function find(key, scope) {
    if (key.id) { return scope.querySelector("#" + CSS.escape(key.id)); }
    var all = focusables(scope);
    var i;
    for (i = 0; i < all.length; i++) {
      var el = all[i];
      if (key.labelledby && el.getAttribute("aria-labelledby") === key.labelledby) { return el; }
      if (key.href && el.getAttribute("href") === key.href && squash(el.textContent) === key.text) { return el; }
    }
    return null;
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.querySelector("[data-live-fragment]");
    var old = root.querySelector("[data-live-fragment]");
    if (!fresh || !old || fresh.getAttribute("data-live-fragment") !== old.getAttribute("data-live-fragment")) {
      markStale();
      return;
    }
    var active = document.activeElement;
    var key = active && old.contains(active) ? keyOf(active, old) : null;
    var node = document.importNode(fresh, true);
    root.replaceChild(node, old);
    if (key) {
      // The same element, else whatever is now at its place in the tab order, else the fragment.
      var back = find(key, node) || focusables(node)[key.index] || node;
      back.focus({ preventScroll: true });
      if (key.scrollLeft) { back.scrollLeft = key.scrollLeft; }
    }
    var wasStale = root.classList.contains("stale");
    root.classList.remove("stale");
    var digest = attentionDigest(node);
    if (digest !== attention) {
      attention = digest;
      var heading = node.querySelector("#attention-h");
      say(heading ? squash(heading.textContent) : "");
    } else if (wasStale) {
      var asOf = node.querySelector(".as-of");
      say(asOf ? squash(asOf.textContent) : "");
    }
  }

  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    window.fetch(url, { credentials: "same-origin", cache: "no-store", redirect: "manual",
                        headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(swap)
      .catch(markStale)
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
})();
