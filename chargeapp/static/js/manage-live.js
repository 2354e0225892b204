/* The manager's live station view: every data-interval seconds, fetch the live fragment
   (same origin, the session cookie) and swap it in. While the tab is hidden nothing is
   fetched; a failed fetch, or an answer that is not the fragment (a login page after the
   session ended), leaves the last view up and marks it stale. No HTML is written here: the
   server renders the fragment (in the manager's language), this only moves its nodes in. */
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.fetch || !window.DOMParser) { return; }
  var url = root.getAttribute("data-src");
  var every = Math.max(2, parseFloat(root.getAttribute("data-interval")) || 5) * 1000;
  var staleText = root.getAttribute("data-stale-text") || "";
  var busy = false;

  function markStale() {
    root.classList.add("stale");
    var state = root.querySelector(".live-state");
    if (state) { state.textContent = staleText; }
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.querySelector("[data-live-fragment]");
    var old = root.querySelector("[data-live-fragment]");
    if (!fresh || !old || fresh.getAttribute("data-live-fragment") !== old.getAttribute("data-live-fragment")) {
      markStale();
      return;
    }
    root.replaceChild(document.importNode(fresh, true), old);
    root.classList.remove("stale");
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
