// The Mirror Monitor's topology: an inline SVG of the members and the arbiter, with a link
// from the primary to the backup and to each async, and from each failover member to the
// arbiter. Each link is coloured by its state (data-state ok / warn / bad / unknown) and named
// data-link="<from>-><to>", e.g. "A->B" or "A->ARBITER". Redrawn from every status message;
// the tables above carry the same facts for a reader without the picture.
(function () {
  "use strict";
  var SVG_W = 760;
  var NODE_W = 150, NODE_H = 48;
  var LABEL_MAX = 20;
  var COL = { arbiter: 110, failover: 360, async: 640 };
  var PRIMARY = ["Primary", "In Trouble"];
  var DOWN = ["Down", "Error", "Crashed", "Stopped"];
  var ARBITER_BOTH = "Both failover members are connected to the arbiter";
  var ARBITER_ONLY_THIS = "Only this member is connected to the arbiter";
  var ARBITER_NONE = "This member is not connected to the arbiter";
  var container = null;
  var drawn = "";

  function esc(value) {
    return String(value === null || value === undefined ? "" : value)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  function isDown(m) { return DOWN.indexOf(m.status) >= 0 || m.agent_reachable === false; }
  function disconnected(text) { return /^Disconnected/.test(text || ""); }
  function behind(text) { return / behind$/.test(text || ""); }

  // primary -> backup: only "Active" is a protected mirror (guide §5.1.1.1)
  function backupState(primary, m) {
    var jt = m.journal_transfer || "";
    if (isDown(primary) || isDown(m) || disconnected(jt)) { return "bad"; }
    if (jt === "Active") { return "ok"; }
    if (jt === "Caught up" || behind(jt) || m.status === "Synchronizing" || m.status === "Waiting") { return "warn"; }
    return "unknown";
  }

  // primary -> async: an async is as good as caught up
  function asyncState(primary, m) {
    var jt = m.journal_transfer || "";
    if (isDown(primary) || isDown(m) || disconnected(jt)) { return "bad"; }
    if (jt === "Caught up" || jt === "Active") { return "ok"; }
    if (behind(jt) || m.status === "Synchronizing" || m.status === "Waiting") { return "warn"; }
    return m.status === "Connected" ? "ok" : "unknown";
  }

  // failover member -> arbiter: its own report first, else what the other failover member
  // says, else the mirror's (the primary's) connection string
  function arbiterState(m, other, mirrorConnection) {
    if (isDown(m)) { return "bad"; }
    var own = (m.record || {}).arbiter_connection;
    if (own === ARBITER_BOTH || own === ARBITER_ONLY_THIS) { return "ok"; }
    if (own === ARBITER_NONE) { return "bad"; }
    var theirs = other && !isDown(other) ? (other.record || {}).arbiter_connection : mirrorConnection;
    if (theirs === ARBITER_BOTH) { return "ok"; }
    if (theirs === ARBITER_ONLY_THIS) { return other ? "bad" : "ok"; }
    return "unknown";
  }

  function level(m) {
    if (m.agent_reachable === false || DOWN.indexOf(m.status) >= 0 || m.status === "In Trouble") { return "bad"; }
    if (["Primary", "Backup", "Connected"].indexOf(m.status) >= 0) { return "ok"; }
    if (["Synchronizing", "Transition", "Waiting"].indexOf(m.status) >= 0) { return "warn"; }
    return "unknown";
  }

  function node(id, x, y, title, sub, lvl) {
    return '<g class="node" data-node="' + esc(id) + '" data-level="' + lvl + '" transform="translate(' + (x - NODE_W / 2) + "," + (y - NODE_H / 2) + ')">' +
      "<title>" + esc(title + ": " + sub) + "</title>" +
      '<rect width="' + NODE_W + '" height="' + NODE_H + '" rx="8"></rect>' +
      '<text x="10" y="20">' + esc(title) + "</text>" +
      '<text class="sub" x="10" y="37">' + esc(sub) + "</text></g>";
  }

  function link(from, to, a, b, state, label) {
    // the label sits on the line's middle, short: the full value is in the tooltip and tables
    var mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2;
    var short = label && label.length > LABEL_MAX ? label.slice(0, LABEL_MAX - 1) + "…" : label;
    return '<g><line class="link" data-link="' + esc(from + "->" + to) + '" data-state="' + state + '" x1="' + a.x + '" y1="' + a.y +
      '" x2="' + b.x + '" y2="' + b.y + '"><title>' + esc(from + " → " + to + ": " + (label || state)) + "</title></line>" +
      (short ? '<text class="link-label" text-anchor="middle" x="' + mx + '" y="' + (my - 8) + '">' + esc(short) + "</text>" : "") + "</g>";
  }

  function draw(status) {
    var members = status.members || [];
    var failover = members.filter(function (m) { return m.member_type === "failover"; });
    var asyncs = members.filter(function (m) { return m.member_type !== "failover"; });
    var primary = members.filter(function (m) { return PRIMARY.indexOf(m.status) >= 0; })[0] || failover[0] || members[0];
    if (!primary) { return '<p class="empty">No members.</p>'; }
    var backup = failover.filter(function (m) { return m !== primary; })[0];
    var hasArbiter = !!(status.arbiter && status.arbiter.address);
    var height = Math.max(240, asyncs.length * 70 + 40);
    var at = {};
    at[primary.name] = { x: primary.member_type === "failover" ? COL.failover : COL.async, y: backup ? height / 2 - 65 : height / 2 };
    if (backup) { at[backup.name] = { x: COL.failover, y: height / 2 + 65 }; }
    asyncs.filter(function (m) { return m !== primary; }).forEach(function (m, i, all) {
      at[m.name] = { x: COL.async, y: (height / (all.length + 1)) * (i + 1) };
    });
    var arbiterAt = { x: COL.arbiter, y: height / 2 };

    var links = [], nodes = [];
    if (backup) {
      links.push(link(primary.name, backup.name, at[primary.name], at[backup.name], backupState(primary, backup), backup.journal_transfer));
    }
    asyncs.forEach(function (m) {
      if (m === primary) { return; }
      links.push(link(primary.name, m.name, at[primary.name], at[m.name], asyncState(primary, m), m.journal_transfer));
    });
    if (hasArbiter) {
      [primary, backup].forEach(function (m) {
        if (!m || m.member_type !== "failover") { return; }
        var other = m === primary ? backup : primary;
        links.push(link(m.name, "ARBITER", at[m.name], arbiterAt, arbiterState(m, other, status.arbiter.connection), ""));
      });
      nodes.push(node("ARBITER", arbiterAt.x, arbiterAt.y, "Arbiter", status.arbiter.address, "unknown"));
    }
    members.forEach(function (m) {
      if (!at[m.name]) { return; }
      var sub = (m.status || "not read") + (m.agent_reachable === false ? " · agent unreachable" : "");
      nodes.push(node(m.name, at[m.name].x, at[m.name].y, m.name, sub, level(m)));
    });
    return '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + SVG_W + " " + height + '" role="img" aria-label="Topology of mirror ' + esc(status.mirror) + '">' +
      links.join("") + nodes.join("") + "</svg>";
  }

  window.Topology = {
    init: function (el) { container = el; },
    update: function (status) {
      if (!container) { return; }
      var svg = draw(status);
      if (svg !== drawn) { container.innerHTML = svg; drawn = svg; }
    },
    draw: draw,
  };
})();
