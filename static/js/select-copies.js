// The mirror page's "act on one member's databases" list: a "select all" box, and the Apply
// button enabled only once a database is selected. Without this file the form works the same
// (the server answers "Select at least one database." to an empty selection).
(function () {
  "use strict";
  document.querySelectorAll("form[data-select-copies]").forEach(function (form) {
    var boxes = Array.prototype.slice.call(form.querySelectorAll('input[name="copies"]'));
    var all = form.querySelector("input[data-select-all]");
    var apply = form.querySelector('button[type="submit"]');

    function update() {
      var picked = boxes.filter(function (box) { return box.checked; }).length;
      apply.disabled = picked === 0;
      if (all) {
        all.checked = picked === boxes.length;
        all.indeterminate = picked > 0 && picked < boxes.length;
      }
    }

    if (all) {
      all.hidden = false;
      all.addEventListener("change", function () {
        boxes.forEach(function (box) { box.checked = all.checked; });
        update();
      });
    }
    boxes.forEach(function (box) { box.addEventListener("change", update); });
    update();
  });
})();
