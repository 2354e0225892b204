/* The lounge board: live through Server-Sent Events. A "snapshot" event redraws what
   changed, a "heartbeat" says the stream is alive; with neither for data-stale-after
   seconds the board says it is stale and opens a new stream. EventSource reconnects
   by itself when the server ends a stream (each lasts a bounded time). */
(function () {
  "use strict";
  var root = document.getElementById("board");
  if (!root || typeof window.EventSource === "undefined") { return; }
  var url = root.getAttribute("data-events");
  var staleAfter = (parseFloat(root.getAttribute("data-stale-after")) || 17) * 1000;
  var live = document.getElementById("live");
  var lastEvent = Date.now();
  var source = null;

  function setText(id, value) {
    var el = document.getElementById(id);
    if (el && el.textContent !== String(value)) { el.textContent = String(value); }
  }

  function markLive() {
    lastEvent = Date.now();
    root.classList.remove("stale");
    live.className = "live";
    live.textContent = root.getAttribute("data-live-text");
  }

  function markStale() {
    root.classList.add("stale");
    live.className = "stale";
    live.textContent = root.getAttribute("data-stale-text");
  }

  function tileClass(el, css) {
    el.className = el.className.replace(/\bst-[a-z]+\b/g, "").trim() + " st-" + css;
  }

  function applySnapshot(s) {
    setText("board-name", s.name);
    setText("fast-free", s.fast_free);
    setText("fast-total", s.fast_total);
    setText("slow-free", s.slow_free);
    setText("slow-total", s.slow_total);
    setText("next-slot", s.next_free_slot || "\u2014");
    setText("next-slot-day", s.next_free_day || "");
    var day = document.getElementById("next-slot-day");
    if (day) { day.hidden = !s.next_free_day; }
    setText("lounge-free", s.lounge_free);
    if (s.as_of) { setText("as-of", s.as_of); }
    var tiles = root.querySelectorAll(".btile[data-code]");
    if (tiles.length !== s.chargers.length) { window.location.reload(); return; }
    s.chargers.forEach(function (c) {
      var el = root.querySelector('.btile[data-code="' + CSS.escape(c.code) + '"]');
      if (!el) { window.location.reload(); return; }
      tileClass(el, c.css);
      el.title = c.label;
      var state = el.querySelector(".btile-state");
      if (state.textContent !== c.label) { state.textContent = c.label; }
    });
    s.zones.forEach(function (z) {
      var el = root.querySelector('.bzone[data-code="' + CSS.escape(z.code) + '"]');
      if (!el) { return; }
      el.classList.toggle("full", z.full);
      var meter = el.querySelector("meter");
      meter.max = Math.max(1, z.capacity);
      meter.value = z.count;
      meter.textContent = z.count + "/" + z.capacity;
      el.querySelector(".bzone-count .n").textContent = String(z.count);
      el.querySelector(".bzone-uncertain").hidden = !z.uncertain;
    });
  }

  function connect() {
    if (source) { source.close(); }
    source = new EventSource(url);
    source.addEventListener("snapshot", function (e) {
      markLive();
      try { applySnapshot(JSON.parse(e.data)); } catch (err) { /* a bad event: wait for the next */ }
    });
    source.addEventListener("heartbeat", function (e) {
      markLive();
      try { var d = JSON.parse(e.data); if (d.as_of) { setText("as-of", d.as_of); } } catch (err) { /* ignore */ }
    });
    // Not "open": a connection that sends nothing is no evidence of fresh data.
    source.addEventListener("error", function () {
      // CLOSED: the browser gave up (an HTTP error); CONNECTING: it retries by itself.
      if (source.readyState === EventSource.CLOSED) { window.setTimeout(connect, 5000); }
    });
  }

  window.setInterval(function () {
    if (Date.now() - lastEvent > staleAfter) {
      markStale();
      lastEvent = Date.now();  // one fresh connection per stale period, not one a second
      connect();
    }
  }, 1000);
  connect();
})();
