// Workbench enhancements; every page works without JavaScript.
(function () {
  "use strict";
  var selectAll = document.getElementById("select-all");
  var counter = document.getElementById("selected-count");
  function rows() { return Array.prototype.slice.call(document.querySelectorAll(".row-select")); }
  function update() {
    if (!counter) { return; }
    var n = rows().filter(function (b) { return b.checked; }).length;
    counter.textContent = n ? (document.documentElement.lang === "en" ? n + " selected" : "已选 " + n + " 件") : "";
  }
  if (selectAll) {
    selectAll.addEventListener("change", function () {
      rows().forEach(function (b) { b.checked = selectAll.checked; });
      update();
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.classList && event.target.classList.contains("row-select")) { update(); }
  });
  update();
})();
