// The new-mirror wizard follows its jobs without reloading the page: each [data-job] element is
// updated from the job's JSON (/api/v1/jobs/<id>/) until the job ends. The step's Next button
// waits for the jobs of the steps before; the review reads the members and shows the checklist.
// Without JavaScript the page still works: the server refuses a step whose jobs are not done.
(function () {
  "use strict";
  var FINAL = ["succeeded", "failed", "cancelled"];
  var BADGE = { succeeded: "ok", failed: "bad", cancelled: "bad" };
  var POLL_MS = 600;

  function isFinal(state) { return FINAL.indexOf(state) >= 0; }

  function csrf() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function follow(id, onChange) {
    function poll() {
      fetch("/api/v1/jobs/" + id + "/", { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (job) {
          onChange(job);
          if (!isFinal(job.state)) { setTimeout(poll, POLL_MS); }
        })
        .catch(function () { setTimeout(poll, POLL_MS * 5); });
    }
    poll();
  }

  function show(li, job) {
    li.dataset.state = job.state;
    var badge = li.querySelector(".badge");
    if (badge) {
      badge.textContent = job.state.charAt(0).toUpperCase() + job.state.slice(1);
      badge.className = "badge " + (BADGE[job.state] || "busy");
    }
    var bar = li.querySelector("progress");
    if (bar) { bar.value = job.progress; bar.textContent = job.progress + "%"; }
    var last = li.querySelector(".last");
    if (last) {
      var line = job.log.length ? job.log[job.log.length - 1].message : "";
      last.textContent = job.error || line;
    }
  }

  function waitingJobs() {
    var box = document.querySelector("[data-waiting]");
    return box ? Array.prototype.slice.call(box.querySelectorAll("[data-job]")) : [];
  }

  function settleNext() {
    var next = document.querySelector("[data-next]");
    var jobs = waitingJobs();
    var open = jobs.filter(function (li) { return !isFinal(li.dataset.state); });
    var failed = jobs.filter(function (li) { return isFinal(li.dataset.state) && li.dataset.state !== "succeeded"; });
    if (next) {
      next.disabled = open.length > 0;
      next.title = open.length ? "Waiting for " + open.length + " job(s) to finish" : "";
    }
    var note = document.querySelector("[data-waiting] .detail");
    if (note && !open.length) {
      note.textContent = failed.length
        ? "A job failed: its step can be tried again (Back)."
        : "Done: you can go on.";
    }
    return open.length === 0 && failed.length === 0;
  }

  // -- the review ----------------------------------------------------------------------------
  var checklist = document.getElementById("checklist");

  function loadLines() {
    fetch(checklist.dataset.lines, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { checklist.innerHTML = html; });
  }

  function followReview(id) {
    checklist.dataset.job = id;
    follow(id, function (job) {
      if (isFinal(job.state)) { loadLines(); }
      else { checklist.innerHTML = '<p class="detail">Reading the members (job ' + id + "): " + job.progress + "%</p>"; }
    });
  }

  function readAgain() {
    fetch(checklist.dataset.review, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrf() },
    })
      .then(function (r) { return r.json(); })
      .then(function (answer) { if (answer.job) { followReview(answer.job); } });
  }

  function startReviewWhenReady() {
    if (!checklist || (checklist.dataset.job && !isFinal(checklist.dataset.state || ""))) { return; }
    if (!checklist.dataset.job && settleNext()) { readAgain(); }
  }

  // Some forms' choices come from what the jobs found (instances, pending members, copies):
  // once the jobs end, such a form ([data-refresh]) is fetched again and swapped in.
  function refreshForm() {
    if (!document.querySelector(".wizard-form[data-refresh]")) { return; }
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector(".wizard-form");
        var form = document.querySelector(".wizard-form");
        if (fresh && form) { form.replaceWith(fresh); settleNext(); }
      });
  }

  function allFinal(selector) {
    return Array.prototype.every.call(document.querySelectorAll(selector + " [data-job]"), function (li) {
      return isFinal(li.dataset.state);
    });
  }

  document.querySelectorAll("[data-job]").forEach(function (el) {
    if (el === checklist || isFinal(el.dataset.state)) { return; }
    follow(el.dataset.job, function (job) {
      var was = el.dataset.state;
      show(el, job);
      settleNext();
      if (!isFinal(job.state) || isFinal(was)) { return; }
      if ((el.closest("[data-waiting]") && allFinal("[data-waiting]")) ||
          (el.closest("[data-hosts]") && allFinal("[data-hosts]"))) { refreshForm(); }
      startReviewWhenReady();
    });
  });
  settleNext();

  if (checklist) {
    if (checklist.dataset.job && !isFinal(checklist.dataset.state)) { followReview(checklist.dataset.job); }
    else { startReviewWhenReady(); }
    var again = document.querySelector("[data-review-button]");
    if (again) {
      again.form.addEventListener("submit", function (event) { event.preventDefault(); readAgain(); });
    }
  }
})();
