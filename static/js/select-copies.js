// A member's "act on the selected databases" form (the mirror page and the Mirror Monitor): a
// "select all" box, and the Apply button enabled only once a database is selected. The events
// are caught on the document, so a form the Mirror Monitor draws again (static/js/monitor.js)
// works the same; it calls SelectCopies.refresh on what it drew. Without this file the form
// works the same (the server answers "Select at least one database." to an empty selection).
(function () {
  "use strict";

  function boxes(form) { return Array.prototype.slice.call(form.querySelectorAll('input[name="copies"]')); }

  function update(form) {
    var all = form.querySelector("input[data-select-all]");
    var apply = form.querySelector('button[type="submit"]');
    var list = boxes(form);
    var picked = list.filter(function (box) { return box.checked; }).length;
    if (apply) { apply.disabled = picked === 0; }
    if (all) {
      all.hidden = false;
      all.checked = list.length > 0 && picked === list.length;
      all.indeterminate = picked > 0 && picked < list.length;
    }
  }

  function refresh(root) { root.querySelectorAll("form[data-select-copies]").forEach(update); }

  document.addEventListener("change", function (event) {
    var form = event.target.closest && event.target.closest("form[data-select-copies]");
    if (!form) { return; }
    if (event.target.matches("input[data-select-all]")) {
      boxes(form).forEach(function (box) { box.checked = event.target.checked; });
    }
    if (event.target.matches("input[data-select-all], input[name='copies']")) { update(form); }
  });

  window.SelectCopies = { refresh: refresh };
  refresh(document);
})();
