// The Mirror Monitor's charts over the last hour, drawn with the vendored uPlot
// (static/vendor/uplot-1.6.32): each member's lag (transfer and dejournal, seconds) and its
// incoming journal rate (journal and network KB/s, from the member's own figures).
//
// The first points come from GET /api/v1/mirrors/<name>/samples/ (what the collector kept;
// a portal without that endpoint answers 404 and the charts simply start empty); then every
// live status message adds one point per member. Points older than an hour are dropped.
(function () {
  "use strict";
  var WINDOW_S = 3600;
  var HEIGHT = 220;
  var REDRAW_MS = 1000;
  var COLOURS = ["#1f5fbf", "#b3261e", "#1d7a3a", "#8a5a00", "#6b3fa0", "#00707a", "#c2185b", "#455a64"];
  var CHARTS = {
    lag: [["transfer_lag_s", "transfer lag"], ["dejournal_lag_s", "dejournal lag"]],
    rate: [["journal_kb_s", "journal KB/s"], ["network_kb_s", "network KB/s"]],
  };
  var points = []; // [{t: epoch seconds, v: {"B|transfer_lag_s": 1.2, ...}}], oldest first
  var plots = {}; // chart name -> {plot, keys}
  var root = null;
  var timer = null;

  function number(x) { return typeof x === "number" && isFinite(x) ? x : null; }

  function trim() {
    var newest = points.length ? points[points.length - 1].t : 0;
    while (points.length && points[0].t < newest - WINDOW_S) { points.shift(); }
  }

  function addPoint(t, values) {
    if (!Object.keys(values).length) { return; }
    points.push({ t: t, v: values });
    if (points.length > 1 && points[points.length - 2].t > t) { points.sort(function (a, b) { return a.t - b.t; }); }
  }

  // {"members": {"A": {"at": [...], "transfer_lag_s": [...], ...}}}
  function addSamples(body) {
    var members = (body && body.members) || {};
    Object.keys(members).forEach(function (name) {
      var s = members[name];
      (s.at || []).forEach(function (t, i) {
        var values = {};
        ["transfer_lag_s", "dejournal_lag_s", "journal_kb_s", "network_kb_s"].forEach(function (metric) {
          var x = number((s[metric] || [])[i]);
          if (x !== null) { values[name + "|" + metric] = x; }
        });
        addPoint(t, values);
      });
    });
    points.sort(function (a, b) { return a.t - b.t; });
  }

  function addStatus(status) {
    var t = Date.parse(status.generated_at) / 1000 || Date.now() / 1000;
    var values = {};
    (status.members || []).forEach(function (m) {
      var figures = (m.record || {}).incoming_journal_figures || {};
      var metrics = {
        transfer_lag_s: number(m.transfer_lag_s),
        dejournal_lag_s: number(m.dejournal_lag_s),
        journal_kb_s: number(figures.journal_kb_s),
        network_kb_s: number(figures.network_kb_s),
      };
      Object.keys(metrics).forEach(function (metric) {
        if (metrics[metric] !== null) { values[m.name + "|" + metric] = metrics[metric]; }
      });
    });
    addPoint(t, values);
  }

  function keysFor(chart) {
    var metrics = CHARTS[chart].map(function (pair) { return pair[0]; });
    var seen = {};
    points.forEach(function (p) {
      Object.keys(p.v).forEach(function (key) {
        if (metrics.indexOf(key.split("|")[1]) >= 0) { seen[key] = true; }
      });
    });
    return Object.keys(seen).sort();
  }

  function seriesFor(chart, keys) {
    var names = [];
    keys.forEach(function (key) { var n = key.split("|")[0]; if (names.indexOf(n) < 0) { names.push(n); } });
    return [{}].concat(keys.map(function (key) {
      var parts = key.split("|");
      var second = CHARTS[chart][1][0] === parts[1];
      var label = CHARTS[chart].filter(function (pair) { return pair[0] === parts[1]; })[0][1];
      return {
        label: parts[0] + " " + label,
        stroke: COLOURS[names.indexOf(parts[0]) % COLOURS.length],
        dash: second ? [6, 4] : undefined, // the second metric of a member dashed
        width: 2,
        spanGaps: true,
      };
    }));
  }

  function draw() {
    timer = null;
    trim();
    Object.keys(CHARTS).forEach(function (chart) {
      var el = root.querySelector('[data-chart="' + chart + '"]');
      if (!el) { return; }
      var keys = keysFor(chart);
      var data = [points.map(function (p) { return p.t; })].concat(keys.map(function (key) {
        return points.map(function (p) { return key in p.v ? p.v[key] : null; });
      }));
      var current = plots[chart];
      if (current && current.keys.join() === keys.join()) { current.plot.setData(data); return; }
      if (current) { current.plot.destroy(); }
      el.textContent = "";
      if (!keys.length) { el.textContent = "No figures yet."; delete plots[chart]; return; }
      var opts = {
        width: Math.max(280, el.clientWidth || 600),
        height: HEIGHT,
        series: seriesFor(chart, keys),
        scales: { x: { time: true } },
        axes: [{}, { size: 60 }],
      };
      plots[chart] = { plot: new window.uPlot(opts, data, el), keys: keys };
    });
  }

  function redrawSoon() { if (root && !timer) { timer = setTimeout(draw, REDRAW_MS); } }

  window.Charts = {
    init: function (el, samplesUrl) {
      if (!el || !window.uPlot) { return; } // without uPlot the page is complete without charts
      root = el;
      if (samplesUrl) {
        fetch(samplesUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then(function (r) { return r.ok ? r.json() : null; }) // 404: no samples endpoint yet
          .then(function (body) { if (body) { addSamples(body); redrawSoon(); } })
          .catch(function () { /* the live points still come */ });
      }
      window.addEventListener("resize", function () {
        Object.keys(plots).forEach(function (chart) {
          var el2 = root.querySelector('[data-chart="' + chart + '"]');
          plots[chart].plot.setSize({ width: Math.max(280, el2.clientWidth), height: HEIGHT });
        });
      });
    },
    add: function (status) { if (root) { addStatus(status); redrawSoon(); } },
    points: function () { return points; },
  };
})();
