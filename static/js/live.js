// A small websocket client shared by the live pages (monitor.js, fleet.js): connect to one of
// the portal's /ws/ paths, hand every JSON message to the page, reconnect with a growing delay
// when the connection drops, and show its state in the page's [data-live] element.
//
// Resync: the server sends a fresh snapshot on every connect, so a reconnect resyncs by
// itself; should no snapshot come shortly after opening, the client asks for one
// ({"type": "resync"}). Close codes 4403 (not allowed) and 4404 (no such mirror) are final.
(function () {
  "use strict";
  var FIRST_DELAY_MS = 1000;
  var MAX_DELAY_MS = 30000;
  var SNAPSHOT_WAIT_MS = 3000;
  var FINAL = { 4403: "not allowed: sign in again", 4404: "no such mirror" };
  var TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" };

  function showState(indicator, state, text) {
    if (!indicator) { return; }
    indicator.dataset.state = state;
    var label = indicator.querySelector("[data-live-text]") || indicator;
    label.textContent = text || TEXT[state] || state;
  }

  // connect(path, {onMessage(message), indicator}) -> {resync(), close()}
  function connect(path, options) {
    var indicator = options.indicator || document.querySelector("[data-live]");
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + path;
    var socket = null;
    var delay = FIRST_DELAY_MS;
    var stopped = false;
    var gotMessage = false;
    var retryTimer = null;
    var snapshotTimer = null;

    function open() {
      showState(indicator, socket ? "reconnecting" : "connecting");
      gotMessage = false;
      socket = new WebSocket(url);
      socket.onopen = function () {
        delay = FIRST_DELAY_MS;
        showState(indicator, "live");
        snapshotTimer = setTimeout(function () { if (!gotMessage) { resync(); } }, SNAPSHOT_WAIT_MS);
      };
      socket.onmessage = function (event) {
        gotMessage = true;
        var message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        try { options.onMessage(message); } catch (e) {
          // a page that fails on one message must keep listening for the next
          if (window.console) { window.console.error("live page update failed", e); }
        }
      };
      socket.onclose = function (event) {
        clearTimeout(snapshotTimer);
        if (stopped) { return; }
        if (FINAL[event.code]) {
          stopped = true;
          showState(indicator, "closed", FINAL[event.code]);
          return;
        }
        showState(indicator, "reconnecting");
        // jitter keeps many pages from reconnecting to a restarted server all at once
        var wait = delay * (0.75 + Math.random() * 0.5);
        delay = Math.min(delay * 2, MAX_DELAY_MS);
        retryTimer = setTimeout(open, wait);
      };
    }

    function resync() {
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "resync" }));
      }
    }

    // Back from a sleeping laptop or a hidden tab: try at once rather than after the backoff.
    window.addEventListener("online", function () {
      if (!stopped && socket && socket.readyState === WebSocket.CLOSED) {
        clearTimeout(retryTimer);
        delay = FIRST_DELAY_MS;
        open();
      }
    });

    open();
    return {
      resync: resync,
      close: function () { stopped = true; clearTimeout(retryTimer); if (socket) { socket.close(); } },
    };
  }

  window.Live = { connect: connect, showState: showState };
})();
