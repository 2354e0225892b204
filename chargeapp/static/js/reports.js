/* The manager's reports: draws each <canvas data-chart='{json}'> with Chart.js, wires the
   Print button and shows that a report is being worked out while the next page loads.
   The page works without this file (tables, CSV links and the range form are plain HTML). */
(function () {
  "use strict";

  var PALETTE = ["#0b6e4f", "#1d4ed8", "#b54708", "#b42318", "#6d28d9", "#0e7490", "#4d7c0f", "#be185d"];
  var SOFT = ["#7cc4a6", "#93b4f5", "#f5b96b", "#f09a92", "#c2a8f5", "#7fd3e6", "#b5d67a", "#f3a3c8"];
  var charts = [];

  // -- progress while a long range is worked out -------------------------------------------
  var form = document.getElementById("range-form");
  var submit = document.getElementById("show-report");
  var working = document.getElementById("report-working");

  function busy() {
    document.body.classList.add("is-working");
    document.body.setAttribute("aria-busy", "true");
    if (working) { working.hidden = false; }
    if (submit) {
      submit.textContent = submit.getAttribute("data-working");
      submit.disabled = true;
    }
  }
  if (form) {
    form.addEventListener("submit", function () {
      // Disabled after the browser has taken the form's values.
      window.setTimeout(busy, 0);
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("a[data-busy]"), function (a) {
    a.addEventListener("click", function (e) {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) { return; }
      busy();
    });
  });
  // Back from the next page (bfcache): not working any more.
  window.addEventListener("pageshow", function () {
    document.body.classList.remove("is-working");
    document.body.removeAttribute("aria-busy");
    if (working) { working.hidden = true; }
    if (submit && submit.disabled) {
      submit.disabled = false;
      submit.textContent = submit.getAttribute("data-label") || submit.textContent;
    }
  });
  if (submit) { submit.setAttribute("data-label", submit.textContent); }

  // -- print ----------------------------------------------------------------------------------
  var print = document.getElementById("print-report");
  if (print && typeof window.print === "function") {
    print.hidden = false;
    print.addEventListener("click", function () { window.print(); });
  }
  window.addEventListener("beforeprint", function () {
    charts.forEach(function (c) { c.resize(); });
  });
  window.addEventListener("afterprint", function () {
    charts.forEach(function (c) { c.resize(); });
  });

  // -- charts ---------------------------------------------------------------------------------
  if (typeof window.Chart === "undefined") { return; }
  var Chart = window.Chart;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#344054";
  Chart.defaults.animation = false; // a report is read and printed, not watched

  var lang = document.documentElement.getAttribute("lang") || "zh-Hans";
  var number = new Intl.NumberFormat(lang, { maximumFractionDigits: 2 });
  var yuan = new Intl.NumberFormat(lang, { style: "currency", currency: "CNY" });

  Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart]"), function (canvas) {
    var spec;
    try {
      spec = JSON.parse(canvas.getAttribute("data-chart"));
    } catch (err) {
      return;
    }
    charts.push(new Chart(canvas, config(spec)));
  });

  function config(spec) {
    var round = spec.type === "doughnut";
    var datasets = spec.datasets.map(function (d, i) {
      var color = PALETTE[i % PALETTE.length];
      var ds = {
        label: d.label,
        data: d.data,
        borderColor: round ? "#fff" : color,
        backgroundColor: round ? PALETTE.slice(0, d.data.length) : (d.type === "line" || spec.type === "line" ? color : SOFT[i % SOFT.length]),
        borderWidth: round ? 2 : (d.type === "line" || spec.type === "line" ? 2 : 1),
        spanGaps: true,
        pointRadius: 2
      };
      if (d.type) { ds.type = d.type; }
      if (d.axis) { ds.yAxisID = d.axis; }
      if (d.dashed) { ds.borderDash = [5, 4]; ds.pointRadius = 0; }
      if (d.type === "line") { ds.order = -1; }
      return ds;
    });
    var options = {
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: round ? "nearest" : "index", intersect: round },
      plugins: {
        legend: { position: round ? "right" : "bottom",
                  labels: { usePointStyle: spec.type === "line", pointStyle: "line", boxHeight: 10 } },
        tooltip: {
          callbacks: {
            label: function (ctx) {
              var v = round ? ctx.parsed : ctx.parsed.y;
              if (v === null || v === undefined) { return ctx.dataset.label + ": —"; }
              var text = spec.money ? yuan.format(v) : number.format(v);
              var onY2 = ctx.dataset.yAxisID === "y2";
              if (onY2 && spec.y2_money) { text = yuan.format(v); }
              if (spec.percent || (onY2 && spec.y2_percent)) { text += "%"; }
              return (round ? ctx.label : ctx.dataset.label) + ": " + text;
            }
          }
        }
      }
    };
    if (!round) {
      options.scales = {
        x: { stacked: !!spec.stacked, grid: { display: false } },
        y: { stacked: !!spec.stacked, beginAtZero: true, ticks: { precision: 0 } }
      };
      if (spec.percent) {
        options.scales.y.suggestedMax = 10;
        options.scales.y.ticks = { callback: function (v) { return v + "%"; } };
      }
      if (spec.y2) {
        options.scales.y2 = { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } };
        if (spec.y2_money) {
          options.scales.y2.ticks = { callback: function (v) { return yuan.format(v); } };
        }
        if (spec.y2_percent) {
          options.scales.y2.suggestedMax = 10;
          options.scales.y2.ticks = { callback: function (v) { return v + "%"; } };
        }
      }
    }
    return { type: spec.type, data: { labels: spec.labels, datasets: datasets }, options: options };
  }
}());
