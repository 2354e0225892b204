/* The booking countdown: counts down from the server's figure (the server's clock decides,
   not the phone's, which may be wrong; data-speed is the demo clock's acceleration). */
(function () {
  "use strict";
  var els = document.querySelectorAll(".countdown[data-seconds]");
  if (!els.length) { return; }
  var started = Date.now();
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function show(el) {
    var total = parseFloat(el.getAttribute("data-seconds")) || 0;
    var speed = parseFloat(el.getAttribute("data-speed")) || 1;
    var left = Math.max(0, Math.round(total - (Date.now() - started) / 1000 * speed));
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    el.textContent = (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s);
    el.classList.toggle("soon", left > 0 && left <= 300);
    el.classList.toggle("done", left === 0);
  }
  function tick() { els.forEach(show); }
  tick();
  window.setInterval(tick, 1000);
})();
