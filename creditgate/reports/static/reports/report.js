/* The usage and margin report's charts, drawn with the vendored Chart.js from the report's JSON
   (the same filters as the page: its data-url carries them). The table beside them is rendered by
   the server; this script only draws. When it is done, #report gets data-charts="drawn" (or
   "failed"), which the browser tests wait for. */
(function () {
  "use strict";

  var root = document.getElementById("report");
  if (!root || !root.dataset.url) return;

  var COLORS = ["#0a5bd3", "#b35c00", "#1a7f37", "#5b3cc4", "#ba2121", "#8c959f"];
  var charts = [];

  function usd(value) {
    return value === null || value === undefined ? "—" : "$" + Number(value).toFixed(2);
  }

  function periodLabel(iso, group) {
    var label = new Date(iso + "T00:00:00Z").toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" });
    return group === "week" ? "Week of " + label : label;
  }

  function baseOptions() {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    };
  }

  function creditsAndCost(data) {
    var s = data.series;
    var datasets = [
      { type: "bar", label: "Credits charged", data: s.credits, backgroundColor: "#8ab4f0", yAxisID: "credits", order: 2 },
      { type: "line", label: "Provider cost (USD)", data: s.cost_usd, borderColor: "#b35c00", backgroundColor: "#b35c00",
        yAxisID: "usd", tension: 0.2, pointRadius: 2, order: 1 },
    ];
    if (s.revenue_usd) {
      datasets.push({ type: "line", label: "Revenue (USD)", data: s.revenue_usd, borderColor: "#1a7f37",
                      backgroundColor: "#1a7f37", yAxisID: "usd", tension: 0.2, pointRadius: 2, order: 0 });
    }
    var options = baseOptions();
    options.scales = {
      x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8 } },
      credits: { position: "left", beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "credits" } },
      usd: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "USD" } },
    };
    options.plugins.tooltip = { callbacks: { label: function (ctx) {
      return ctx.dataset.yAxisID === "usd" ? ctx.dataset.label + ": " + usd(ctx.parsed.y) : ctx.dataset.label + ": " + ctx.parsed.y;
    } } };
    return { type: "bar", data: { labels: s.periods.map(function (p) { return periodLabel(p, data.group); }), datasets: datasets },
             options: options };
  }

  function marginPerTier(data) {
    var rows = data.series.margin_by_usage;
    var withRevenue = true;  // drawn only with a USD value per credit (draw)
    var options = baseOptions();
    options.indexAxis = "y";
    options.plugins.legend = { display: false };
    options.scales = { x: { beginAtZero: true, title: { display: true, text: withRevenue ? "margin (USD)" : "provider cost (USD)" } } };
    options.plugins.tooltip = { callbacks: { label: function (ctx) {
      var row = rows[ctx.dataIndex];
      return withRevenue ? usd(row.margin_usd) + (row.margin_pct === null ? "" : " (" + row.margin_pct + "%)") : usd(row.cost_usd);
    } } };
    return { type: "bar", options: options, data: {
      labels: rows.map(function (r) { return r.label; }),
      datasets: [{
        label: withRevenue ? "Margin (USD)" : "Provider cost (USD)",
        data: rows.map(function (r) { return withRevenue ? r.margin_usd : r.cost_usd; }),
        backgroundColor: rows.map(function (r) { return withRevenue && r.margin_usd < 0 ? "#ba2121" : "#1a7f37"; }),
      }],
    } };
  }

  function failureRates(data) {
    var byProvider = data.series.failure_rate_by_provider;
    var providers = Object.keys(byProvider);
    var options = baseOptions();
    options.spanGaps = true;
    options.scales = {
      x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 16, maxTicksLimit: 5 } },
      y: { beginAtZero: true, suggestedMax: 0.1, ticks: { callback: function (v) { return Math.round(v * 100) + "%"; } } },
    };
    options.plugins.tooltip = { callbacks: { label: function (ctx) {
      return ctx.dataset.label + ": " + (ctx.parsed.y * 100).toFixed(1) + "% of calls failed";
    } } };
    return { type: "line", options: options, data: {
      labels: data.series.periods.map(function (p) { return periodLabel(p, data.group); }),
      datasets: providers.map(function (provider, i) {
        return { label: provider, data: byProvider[provider], borderColor: COLORS[i % COLORS.length],
                 backgroundColor: COLORS[i % COLORS.length], tension: 0.2, pointRadius: 3 };
      }),
    } };
  }

  function draw(data) {
    var style = getComputedStyle(document.body);
    window.Chart.defaults.font.family = style.fontFamily;
    charts.forEach(function (chart) { chart.destroy(); });
    charts = [
      new window.Chart(document.getElementById("chart-credits-cost"), creditsAndCost(data)),
      new window.Chart(document.getElementById("chart-failures"), failureRates(data)),
    ];
    // No margin without a USD value per credit: the page explains that instead of a chart.
    var margin = document.getElementById("chart-margin");
    if (margin && data.series.revenue_usd !== null) charts.push(new window.Chart(margin, marginPerTier(data)));
    root.dataset.charts = "drawn";
  }

  function load() {
    if (typeof window.Chart !== "function") {
      root.dataset.charts = "failed";
      return;
    }
    fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(draw)
      .catch(function (err) {
        root.dataset.charts = "failed";
        var note = document.createElement("p");
        note.className = "errornote";
        note.textContent = "The charts could not be loaded (" + err.message + "). The table below is complete.";
        document.querySelector(".report-charts").before(note);
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", load);
  else load();
})();
