// The Mirror Monitor kept live (docs/monitor-pages.md). The server renders the page from
// mirror_status(); this file listens on /ws/mirrors/<name>/ (live.js) and brings every
// [data-section] up to date from each {"type": "status"} message, the member table cell by
// cell, the other sections only when their content changed (so focus stays where it was).
// New {"type": "event"} messages go on top of the recent events. The same file adds live
// events to the timeline page when it follows one mirror.
//
// What each value means and where it comes from mirrors monitor/views.py (present()); the
// templates under templates/monitor/ are the HTML this file rebuilds.
(function () {
  "use strict";
  var OK = ["Primary", "Backup", "Connected"];
  var WARN = ["Synchronizing", "Transition", "Waiting"];
  var BAD = ["Down", "Error", "Crashed", "Stopped", "In Trouble"];
  var PRIMARY = ["Primary", "In Trouble"];
  var RECENT_EVENTS = 20;

  function esc(value) {
    return String(value === null || value === undefined ? "" : value)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#x27;");
  }
  function orDash(value) { return value === null || value === undefined || value === "" ? "—" : value; }
  function when(iso) { return String(iso || "").slice(0, 19).replace("T", " "); }
  function capfirst(s) { return s ? s.charAt(0).toUpperCase() + s.slice(1) : s; }
  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function statusLevel(status, reachable) {
    if (reachable === false) { return "bad"; }
    if (OK.indexOf(status) >= 0) { return "ok"; }
    if (WARN.indexOf(status) >= 0) { return "warn"; }
    if (BAD.indexOf(status) >= 0) { return "bad"; }
    return "unknown";
  }

  function nextRecord(position, onPrimary) {
    if (onPrimary) { return "N/A"; }
    if (Array.isArray(position) && position.length === 2) { return position[0] + ":" + position[1]; }
    return position ? String(position) : "—";
  }

  // The same derived view as monitor/views.py present().
  function present(status, config) {
    var primaryRecord = null;
    var members = status.members.map(function (m) {
      var record = m.record || {};
      var onPrimary = PRIMARY.indexOf(m.status) >= 0;
      if (onPrimary && !primaryRecord) { primaryRecord = record; }
      return {
        m: m,
        level: statusLevel(m.status, m.agent_reachable),
        onPrimary: onPrimary,
        rate: onPrimary ? null : record.incoming_journal_rate,
        missing: record.missing_mirrored_databases || [],
        waiting: record.waiting_reason || "",
        databases: (record.databases || []).map(function (db) {
          return { name: db.name || "", status: db.status || "", next: nextRecord(db.applied, onPrimary) };
        }),
      };
    });
    primaryRecord = primaryRecord || {};
    var pending = (primaryRecord.pending_members || []).map(function (p) {
      return { name: p.name || "", type: config.typeLabels[p.type] || p.type || "", dn: p.dn || "", cert: certText(p) };
    });
    var named = pending.map(function (p) { return p.name; });
    status.members.forEach(function (m) {
      if (m.authorization === "pending" && named.indexOf(m.name) < 0) {
        pending.push({ name: m.name, type: m.type, dn: m.x509_dn, cert: "" });
      }
    });
    return {
      members: members,
      pending: pending,
      dnUpdates: primaryRecord.dn_updates || [],
    };
  }

  // --- section renderers: the HTML of templates/monitor/_*.html --------------------------
  function alertsHTML(status) {
    if (!status.alerts.length) { return '<ul class="alerts"><li class="empty">No open alerts.</li></ul>'; }
    return '<ul class="alerts">' + status.alerts.map(function (a) {
      return '<li data-alert="' + esc(a.id) + '"><time datetime="' + esc(a.opened_at) + '">' + esc(when(a.opened_at)) + "</time> " +
        (a.member_name ? "<strong>" + esc(a.member_name) + "</strong> " : "") + esc(a.text) +
        (a.acknowledged_by ? ' <span class="detail">(acknowledged by ' + esc(a.acknowledged_by) + ")</span>" : "") + "</li>";
    }).join("") + "</ul>";
  }

  function waitingHTML(view) {
    return "<ul>" + view.members.filter(function (v) { return v.waiting; }).map(function (v) {
      return '<li data-member="' + esc(v.m.name) + '"><strong>' + esc(v.m.name) + '</strong>: <span data-field="waiting_reason">' + esc(v.waiting) + "</span></li>";
    }).join("") + "</ul>";
  }

  function failoverHTML(status) {
    var rows = status.failover_members.map(function (f) {
      return '<tr data-member="' + esc(f.name) + '"><th scope="row">' + esc(f.name) + '</th><td data-field="superserver">' + esc(f.superserver) +
        '</td><td data-field="private">' + esc(orDash(f.private)) + "</td></tr>";
    }).join("") || '<tr><td colspan="3" class="empty">No failover members.</td></tr>';
    return '<table><thead><tr><th scope="col">Member Name</th><th scope="col">Superserver Address</th><th scope="col">Mirror Private Address</th></tr></thead><tbody>' + rows + "</tbody></table>";
  }

  function memberCells(v, tls) {
    var m = v.m;
    return '<th scope="row">' + esc(m.name) + '</th><td data-field="type">' + esc(m.type) + "</td>" +
      '<td><span class="dot" aria-hidden="true"></span><span data-field="status">' + esc(orDash(m.status)) + "</span> " +
      '<span class="unreachable" data-field="agent"' + (m.agent_reachable === false ? "" : " hidden") + ">agent unreachable</span></td>" +
      '<td data-field="journal_transfer">' + esc(orDash(m.journal_transfer)) + "</td>" +
      '<td data-field="dejournaling">' + esc(orDash(m.dejournaling)) + "</td>" +
      (tls ? '<td><code data-field="x509_dn">' + esc(orDash(m.x509_dn)) + "</code></td>" : "");
  }

  function membersHTML(status, view) {
    var tls = !!status.requires_tls;
    var rows = view.members.map(function (v) {
      return '<tr data-member="' + esc(v.m.name) + '" data-level="' + v.level + '" class="level-' + v.level + '">' + memberCells(v, tls) + "</tr>";
    }).join("") || '<tr><td colspan="6" class="empty">No members.</td></tr>';
    return '<table class="member-status" data-tls="' + (tls ? 1 : 0) + '"><thead><tr><th scope="col">Member Name</th><th scope="col">Type</th>' +
      '<th scope="col">Status</th><th scope="col">Journal Transfer</th><th scope="col">Dejournaling</th>' +
      (tls ? '<th scope="col">X.509 DN</th>' : "") + "</tr></thead><tbody>" + rows + "</tbody></table>";
  }

  function ratesHTML(view) {
    return '<dl class="settings">' + view.members.filter(function (v) { return !v.onPrimary; }).map(function (v) {
      return "<dt>" + esc(v.m.name) + '</dt><dd data-member="' + esc(v.m.name) + '" data-field="rate">' + esc(orDash(v.rate)) + "</dd>";
    }).join("") + "</dl>";
  }

  function missingHTML(view) {
    return "<ul>" + view.members.filter(function (v) { return v.missing.length; }).map(function (v) {
      return '<li data-member="' + esc(v.m.name) + '"><strong>' + esc(v.m.name) + '</strong> lacks <span data-field="missing">' + esc(v.missing.join(", ")) + "</span></li>";
    }).join("") + "</ul>";
  }

  // an operator's form per member (monitor/views.py copy_forms): where it posts, and the copy
  // behind each database name; the CSRF token is the one the page was served with
  function csrfInput() {
    var token = document.querySelector('input[name="csrfmiddlewaretoken"]');
    return token ? '<input type="hidden" name="csrfmiddlewaretoken" value="' + esc(token.value) + '">' : "";
  }

  function databasesHTML(view, config) {
    if (!view.members.length) { return '<p class="empty">No members.</p>'; }
    return view.members.map(function (v) {
      var name = v.m.name;
      var form = (config.copyForms || {})[name];
      if (!v.databases.length) {
        return '<div class="member-databases" data-member="' + esc(name) + '"><h3>' + esc(name) + ' <small class="detail">' + esc(v.m.type) +
          '</small></h3><p class="empty">No mirrored databases reported.</p></div>';
      }
      var pick = form ? '<th scope="col" class="pick"><input type="checkbox" data-select-all hidden aria-label="Select all databases on ' + esc(name) + '"></th>' : "";
      var rows = v.databases.map(function (db) {
        var copy = form && form.copies[db.name];
        var box = form ? '<td class="pick">' + (copy ? '<input type="checkbox" name="copies" value="' + esc(copy) + '" aria-label="Select ' + esc(db.name) + " on " + esc(name) + '">' : "") + "</td>" : "";
        return '<tr data-database="' + esc(db.name) + '">' + box + '<th scope="row">' + esc(db.name) + '</th><td data-field="status">' + esc(orDash(db.status)) +
          '</td><td data-field="next">' + esc(db.next) + "</td></tr>";
      }).join("");
      var table = '<div class="scroll"><table><thead><tr>' + pick + '<th scope="col">Name</th><th scope="col">Status</th><th scope="col">Next Record to Dejournal</th></tr></thead><tbody>' + rows + "</tbody></table></div>";
      if (form) {
        var id = "copy-action-" + name;
        table = '<form method="post" action="' + esc(form.action) + '" data-select-copies>' + csrfInput() + '<input type="hidden" name="back" value="monitor">' + table +
          '<div class="apply"><label for="' + esc(id) + '">Action for the selected databases on ' + esc(name) + '</label><select name="action" id="' + esc(id) + '">' +
          config.copyActions.map(function (a) { return '<option value="' + esc(a[0]) + '">' + esc(a[1]) + "</option>"; }).join("") +
          '</select><button type="submit">Apply to selected</button></div></form>';
      }
      return '<div class="member-databases" data-member="' + esc(name) + '"><h3>' + esc(name) + ' <small class="detail">' + esc(v.m.type) + "</small></h3>" + table + "</div>";
    }).join("");
  }

  // The same databases as shown: change only their cells, so a selection (and the focus) stays.
  // Otherwise draw the section again, with the same boxes ticked and actions chosen.
  function updateDatabases(view, config) {
    var holder = body("databases");
    if (!holder) { return; }
    var blocks = Array.prototype.slice.call(holder.querySelectorAll(".member-databases"));
    var same = blocks.length === view.members.length && blocks.every(function (block, i) {
      var names = Array.prototype.map.call(block.querySelectorAll("tr[data-database]"), function (tr) { return tr.dataset.database; });
      var v = view.members[i];
      var type = block.querySelector("h3 small");
      return block.dataset.member === v.m.name && type && type.textContent === v.m.type &&
        names.join("\n") === v.databases.map(function (db) { return db.name; }).join("\n") &&
        !block.querySelector("p.empty") === v.databases.length > 0;
    });
    if (same) {
      view.members.forEach(function (v, i) {
        v.databases.forEach(function (db) {
          var tr = blocks[i].querySelector('tr[data-database="' + CSS.escape(db.name) + '"]');
          setText(field(tr, "status"), orDash(db.status));
          setText(field(tr, "next"), db.next);
        });
      });
      return;
    }
    var ticked = Array.prototype.map.call(holder.querySelectorAll('input[name="copies"]:checked'), function (box) { return box.value; });
    var chosen = Array.prototype.map.call(holder.querySelectorAll('select[name="action"]'), function (sel) { return [sel.id, sel.value]; });
    holder.innerHTML = databasesHTML(view, config);
    holder.querySelectorAll('input[name="copies"]').forEach(function (box) { box.checked = ticked.indexOf(box.value) >= 0; });
    chosen.forEach(function (c) { var sel = document.getElementById(c[0]); if (sel) { sel.value = c[1]; } });
    if (window.SelectCopies) { window.SelectCopies.refresh(holder); }
  }

  // the certificate the primary saw asking (issue 12): compare it with the member's real one
  function certText(row) {
    return row.fingerprint ? (row.issuer || "?") + " · SHA-256 " + row.fingerprint : "";
  }

  function pendingHTML(view, config) {
    var html = "";
    if (view.pending.length) {
      html += '<h3>Members waiting for authorization</h3><table><thead><tr><th scope="col">Member Name</th><th scope="col">Type</th><th scope="col">X.509 DN</th><th scope="col">Certificate</th></tr></thead><tbody>' +
        view.pending.map(function (p) {
          return '<tr data-pending="' + esc(p.name) + '"><th scope="row">' + esc(p.name) + "</th><td>" + esc(p.type) + "</td><td><code>" + esc(orDash(p.dn)) + '</code></td><td><code data-field="certificate">' + esc(orDash(p.cert)) + "</code></td></tr>";
        }).join("") + "</tbody></table>";
    }
    if (view.dnUpdates.length) {
      html += '<h3>DN updates waiting for authorization</h3><table><thead><tr><th scope="col">Member Name</th><th scope="col">New X.509 DN</th><th scope="col">Certificate</th></tr></thead><tbody>' +
        view.dnUpdates.map(function (u) {
          return '<tr data-dn-update="' + esc(u.member) + '"><th scope="row">' + esc(u.member) + "</th><td><code>" + esc(u.dn) + '</code></td><td><code data-field="certificate">' + esc(orDash(certText(u))) + "</code></td></tr>";
        }).join("") + "</tbody></table>";
    }
    return html + '<p class="hint"><a href="' + esc(config.copies) + '">Decide on the mirror page</a> (admins).</p>';
  }

  // --- applying a status ---------------------------------------------------------------
  function setText(el, text) { if (el && el.textContent !== text) { el.textContent = text; } }
  function setHTML(el, html) {
    // compare with what we wrote last, not with innerHTML (the browser normalises that)
    if (el && el.dataset.rendered !== html) { el.innerHTML = html; el.dataset.rendered = html; }
  }
  function section(name) { return document.querySelector('[data-section="' + name + '"]'); }
  function body(name) { var s = section(name); return s && s.querySelector("[data-body]"); }
  function field(root, name) { return root && root.querySelector('[data-field="' + name + '"]'); }

  function updateMembers(status, view) {
    var holder = body("members");
    if (!holder) { return; }
    var tls = !!status.requires_tls;
    var table = holder.querySelector("table.member-status");
    var rows = table ? Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-member]")) : [];
    var same = table && table.dataset.tls === (tls ? "1" : "0") && rows.length === view.members.length &&
      rows.every(function (tr, i) { return tr.dataset.member === view.members[i].m.name; });
    if (!same) { holder.innerHTML = membersHTML(status, view); return; }
    // the same members in the same order: change only the cells that changed
    view.members.forEach(function (v, i) {
      var tr = rows[i], m = v.m;
      if (tr.dataset.level !== v.level) { tr.dataset.level = v.level; tr.className = "level-" + v.level; }
      setText(field(tr, "type"), m.type);
      setText(field(tr, "status"), orDash(m.status));
      field(tr, "agent").hidden = m.agent_reachable !== false;
      setText(field(tr, "journal_transfer"), orDash(m.journal_transfer));
      setText(field(tr, "dejournaling"), orDash(m.dejournaling));
      if (tls) { setText(field(tr, "x509_dn"), orDash(m.x509_dn)); }
    });
  }

  function apply(status, config) {
    var view = present(status, config);
    var health = section("health");
    var badge = field(health, "health-level");
    if (badge) { badge.className = "badge " + status.health.level; setText(badge, capfirst(status.health.level)); }
    setText(field(health, "health-text"), status.health.text);
    var c = status.collector || {};
    setText(field(health, "collector"), c.live ? "Collector running" + (c.holder ? " (" + c.holder + ")" : "") : "Collector not running: statuses may be stale");
    var generated = field(health, "generated");
    if (generated) { generated.setAttribute("datetime", status.generated_at); setText(generated, when(status.generated_at)); }

    setHTML(body("alerts"), alertsHTML(status));
    var waiting = view.members.some(function (v) { return v.waiting; });
    section("waiting").hidden = !waiting;
    setHTML(body("waiting"), waitingHTML(view));
    setHTML(body("failover"), failoverHTML(status));
    var arbiter = section("arbiter");
    setText(field(arbiter, "arbiter-address"), status.arbiter.address || "none configured");
    setText(field(arbiter, "failover-mode"), orDash(status.failover_mode));
    setText(field(arbiter, "arbiter-connection"), orDash(status.arbiter.connection));
    var noFailover = status.no_failover || [];
    setText(field(arbiter, "no-failover"), noFailover.length ? "set on " + noFailover.join(", ") : "not set");
    updateMembers(status, view);
    setHTML(body("rates"), ratesHTML(view));
    section("missing").hidden = !view.members.some(function (v) { return v.missing.length; });
    setHTML(body("missing"), missingHTML(view));
    updateDatabases(view, config);
    section("pending").hidden = !(view.pending.length || view.dnUpdates.length);
    setHTML(body("pending"), pendingHTML(view, config));

    if (window.Topology) { window.Topology.update(status); }
    if (window.Charts) { window.Charts.add(status); }
  }

  // --- events --------------------------------------------------------------------------
  function eventItem(e) {
    var li = document.createElement("li");
    li.dataset.event = e.id;
    li.dataset.kind = e.kind;
    li.className = "fresh";
    li.innerHTML = '<time datetime="' + esc(e.at) + '">' + esc(when(e.at)) + "</time>" +
      (e.member_name ? " <strong>" + esc(e.member_name) + "</strong>" : "") + " " + esc(e.text) +
      (e.job_url ? ' <a href="' + esc(e.job_url) + '">job #' + esc(e.job) + "</a>" : "");
    return li;
  }

  function addEvent(e) {
    var list = document.querySelector("[data-events]");
    if (!list || list.querySelector('[data-event="' + e.id + '"]')) { return; }
    var none = list.querySelector("[data-no-events]");
    if (none) { none.remove(); }
    list.insertBefore(eventItem(e), list.firstChild);
    while (list.children.length > RECENT_EVENTS) { list.removeChild(list.lastChild); }
  }

  function startMonitor(root) {
    var config = readJSON("monitor-config");
    var status = readJSON("monitor-status");
    if (window.Topology) { window.Topology.init(document.querySelector("[data-topology]")); }
    if (window.Charts) { window.Charts.init(document.querySelector("[data-charts]"), config.samples); }
    if (status) { apply(status, config); }
    window.Live.connect(config.socket, {
      onMessage: function (message) {
        if (message.type === "status") { apply(message.status, config); }
        else if (message.type === "event") { addEvent(message.event); }
      },
    });
  }

  // The timeline following one mirror: a new event that passes its filters goes on top.
  function timelineRow(e, live) {
    var tr = document.createElement("tr");
    tr.dataset.event = e.id;
    tr.dataset.kind = e.kind;
    tr.className = "fresh";
    var day = String(e.at).slice(0, 10);
    var audit = live.audit + "?" + (e.job ? "object_type=job&" : "") + "date_from=" + day + "&date_to=" + day;
    var change = e.before || e.after ? ' <span class="detail">(' + esc(orDash(e.before)) + " → " + esc(orDash(e.after)) + ")</span>" : "";
    tr.innerHTML = '<td><time datetime="' + esc(e.at) + '">' + esc(when(e.at)) + "</time></td>" +
      '<td><a href="' + esc(live.monitor) + '">' + esc(e.mirror_name) + "</a></td>" +
      "<td>" + esc(orDash(e.member_name)) + "</td><td>" + esc(live.kinds[e.kind] || e.kind) + "</td>" +
      "<td>" + esc(e.text) + change + "</td>" +
      "<td>" + (e.job_url ? '<a href="' + esc(e.job_url) + '">job #' + esc(e.job) + "</a>" : "—") + "</td>" +
      '<td><a href="' + esc(audit) + '">that day</a></td>';
    return tr;
  }

  function startTimeline(tbody) {
    var live = readJSON("timeline-live");
    window.Live.connect(live.socket, {
      onMessage: function (message) {
        if (message.type !== "event") { return; }
        var e = message.event;
        if (live.member && String(e.member_name).toLowerCase() !== live.member.toLowerCase()) { return; }
        if (live.kind && e.kind !== live.kind) { return; }
        if (tbody.querySelector('[data-event="' + e.id + '"]')) { return; }
        tbody.insertBefore(timelineRow(e, live), tbody.firstChild);
      },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var monitor = document.querySelector("[data-monitor]");
    if (monitor) { startMonitor(monitor); }
    var timeline = document.querySelector("[data-timeline]");
    if (timeline && document.getElementById("timeline-live")) { startTimeline(timeline); }
  });

  window.Monitor = { statusLevel: statusLevel, present: present };
})();
