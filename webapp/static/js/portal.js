// Applicant form enhancements. Without JavaScript the "add row" / "remove row" buttons
// post the form and the server re-renders it; with it, rows are added and removed here.
(function () {
  "use strict";

  function renumber(container) {
    container.querySelectorAll("[data-row]").forEach(function (row, i) {
      row.querySelectorAll("[data-format]").forEach(function (el) {
        el.textContent = el.dataset.format.replace("{n}", String(i + 1));
      });
    });
    var empty = container.querySelector("[data-empty]");
    if (empty) { empty.hidden = container.querySelectorAll("[data-row]").length > 0; }
  }

  function nextIndex(container, key) {
    var max = -1;
    var pattern = new RegExp("^" + key + "-(\\d+)-");
    container.querySelectorAll("[name]").forEach(function (el) {
      var m = pattern.exec(el.name);
      if (m) { max = Math.max(max, parseInt(m[1], 10)); }
    });
    return max + 1;
  }

  function valueOf(name) {
    var els = document.getElementsByName(name);
    if (!els.length) { return null; }
    var el = els[0];
    if (el.type === "checkbox") { return el.checked ? "true" : "false"; }
    return el.value;
  }

  // visible_if conditions simple enough to check here (data-show-*); others are decided
  // by the server when the page is rendered.
  function refreshConditions() {
    document.querySelectorAll("[data-show-name]").forEach(function (el) {
      var value = valueOf(el.dataset.showName);
      if (value === null) { return; }
      var equal = value === el.dataset.showValue;
      el.hidden = el.dataset.showOp === "==" ? !equal : equal;
    });
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-add-row]");
    if (add) {
      event.preventDefault();
      var key = add.dataset.addRow;
      var container = document.querySelector('[data-rows="' + key + '"]');
      var template = document.getElementById("tpl-" + key);
      if (!container || !template) { return; }
      if (container.querySelectorAll("[data-row]").length >= parseInt(add.dataset.maxRows, 10)) { return; }
      var index = String(nextIndex(container, key));
      var holder = document.createElement("div");
      holder.innerHTML = template.innerHTML.replace(/__index__/g, index);
      var row = holder.firstElementChild;
      container.appendChild(row);
      renumber(container);
      refreshConditions();
      var first = row.querySelector("input, select, textarea");
      if (first) { first.focus(); }
      return;
    }
    var remove = event.target.closest("[data-remove-row]");
    if (remove) {
      event.preventDefault();
      var rowEl = remove.closest("[data-row]");
      var parent = rowEl.parentNode;
      rowEl.remove();
      renumber(parent);
    }
  });

  document.addEventListener("change", refreshConditions);
  document.addEventListener("DOMContentLoaded", refreshConditions);
  refreshConditions();
})();
