// The fleet overview (the Mirrors page) kept live over /ws/fleet/ (live.js): each
// {"type": "fleet_row"} message updates that mirror's row and the rows are sorted again,
// worst first, as the server sorts them (monitor.api.serializers.fleet()): by health rank,
// then most open alerts, then name. {"type": "fleet"} (on every (re)connect) updates them all.
// With more mirrors than one page holds the rows are only updated, never moved or added.
(function () {
  "use strict";

  function esc(value) {
    return String(value === null || value === undefined ? "" : value)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function capfirst(s) { return s ? s.charAt(0).toUpperCase() + s.slice(1) : s; }

  // as monitor.views.lag_text
  function lagText(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    var s = Math.max(0, Math.round(seconds));
    return s < 120 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s";
  }

  function cell(tr, name) { return tr.querySelector('[data-field="' + name + '"]'); }
  function setHTML(el, html) { if (el && el.dataset.rendered !== html) { el.innerHTML = html; el.dataset.rendered = html; } }

  function newRow(table, row) {
    var tr = document.createElement("tr");
    var name = esc(row.mirror);
    var detail = table.dataset.detailUrl.replace("__NAME__", encodeURIComponent(row.mirror));
    // counts the fleet row does not carry show as "—" until the page is loaded again
    tr.innerHTML = '<th scope="row" id="mirror-' + name + '"><a href="' + esc(detail) + '">' + name + "</a> <small><a href=\"" + esc(row.url) +
      '" aria-describedby="mirror-' + name + '">Monitor</a></small></th>' +
      '<td><span class="badge" data-field="health"></span> <small class="detail" data-field="health-text"></small></td>' +
      '<td data-field="primary"></td><td data-field="backup"></td><td class="num" data-field="lag"></td><td class="num" data-field="alerts"></td>' +
      "<td>—</td>" + '<td class="num">—</td>'.repeat(6);
    tr.dataset.mirror = row.mirror;
    return tr;
  }

  function update(tr, row) {
    var level = row.health.level;
    tr.dataset.level = level;
    tr.dataset.rank = row.rank;
    tr.dataset.alerts = row.open_alerts;
    tr.className = "level-" + level;
    var badge = cell(tr, "health");
    badge.className = "badge " + level;
    badge.textContent = capfirst(level);
    cell(tr, "health-text").textContent = row.health.text;
    cell(tr, "primary").textContent = row.primary || "—";
    setHTML(cell(tr, "backup"), row.backup
      ? esc(row.backup) + ' <span class="badge ' + (row.backup_active ? "ok" : "warn") + '">' + (row.backup_active ? "Active" : "Not active") + "</span>"
      : "—");
    cell(tr, "lag").textContent = lagText(row.worst_async_lag_s);
    setHTML(cell(tr, "alerts"), row.open_alerts ? '<strong class="badge bad">' + esc(row.open_alerts) + "</strong>" : "0");
  }

  function sortKey(tr) { return [Number(tr.dataset.rank), -Number(tr.dataset.alerts), tr.dataset.mirror]; }
  function compare(a, b) {
    var x = sortKey(a), y = sortKey(b);
    for (var i = 0; i < 3; i++) {
      if (x[i] < y[i]) { return -1; }
      if (x[i] > y[i]) { return 1; }
    }
    return 0;
  }

  function resort(tbody) {
    var rows = Array.prototype.slice.call(tbody.querySelectorAll("tr[data-mirror]"));
    var sorted = rows.slice().sort(compare);
    if (sorted.every(function (tr, i) { return tr === rows[i]; })) { return; }
    // moving a row takes focus away from a link in it: give it back
    var focused = document.activeElement;
    sorted.forEach(function (tr) { tbody.appendChild(tr); });
    if (focused && tbody.contains(focused) && document.activeElement !== focused) { focused.focus(); }
  }

  function start(table) {
    var tbody = table.tBodies[0];
    var sorting = table.dataset.sort === "1";

    function apply(row) {
      var tr = tbody.querySelector('tr[data-mirror="' + CSS.escape(row.mirror) + '"]');
      if (!tr) {
        if (!sorting) { return; } // on another page
        tr = newRow(table, row);
        tbody.appendChild(tr);
      }
      update(tr, row);
    }

    window.Live.connect(table.dataset.socket, {
      onMessage: function (message) {
        if (message.type === "fleet") {
          message.rows.forEach(apply);
          if (sorting) {
            var known = message.rows.map(function (r) { return r.mirror; });
            tbody.querySelectorAll("tr[data-mirror]").forEach(function (tr) {
              if (known.indexOf(tr.dataset.mirror) < 0) { tr.remove(); } // forgotten meanwhile
            });
          }
        } else if (message.type === "fleet_row") {
          apply(message.row);
        } else {
          return;
        }
        if (sorting) { resort(tbody); }
      },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var table = document.querySelector("table[data-fleet]");
    if (table) { start(table); }
    else if (document.querySelector("[data-fleet-empty]")) {
      // no table yet: the first mirror to appear is worth a fresh page (with its counts)
      window.Live.connect("/ws/fleet/", {
        onMessage: function (message) {
          if (message.type === "fleet_row" || (message.type === "fleet" && message.rows.length)) { window.location.reload(); }
        },
      });
    }
  });
})();
