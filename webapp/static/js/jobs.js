// Progress of a background job: polls the JSON progress URL and updates the Bootstrap
// progress bar, the counters and the download link. The page works without it (a
// refresh link shows the same figures).
(function () {
  "use strict";
  var box = document.getElementById("job-progress");
  if (!box) { return; }
  var url = box.getAttribute("data-progress-url");
  var bar = box.querySelector("[data-role=bar]");
  var meter = box.querySelector("[role=progressbar]");
  var statusText = box.querySelector("[data-role=status]");
  var count = box.querySelector("[data-role=count]");
  var error = box.querySelector("[data-role=error]");
  var download = box.querySelector("[data-role=download]");
  var delay = 1000;

  function show(p) {
    // Setting a style property through the CSSOM is allowed by a CSP without
    // 'unsafe-inline' (only style attributes and <style> elements are refused).
    bar.style.width = p.percent + "%";
    meter.setAttribute("aria-valuenow", String(p.percent));
    box.setAttribute("data-status", p.status);
    statusText.textContent = p.status_label;
    count.textContent = p.done + " / " + p.total;
    if (p.status === "done" || p.status === "failed") {
      bar.classList.remove("progress-bar-striped", "progress-bar-animated");
    }
    bar.classList.toggle("bg-danger", p.status === "failed");
    bar.classList.toggle("bg-success", p.status === "done");
    if (p.error) {
      error.textContent = p.error;
      error.classList.remove("d-none");
    } else {
      error.classList.add("d-none");
    }
    if (p.download_url) {
      download.querySelector("a").setAttribute("href", p.download_url);
      download.classList.remove("d-none");
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (p) {
        show(p);
        // A failed job may still be retried by the queue: keep looking, less often.
        delay = p.status === "failed" ? 5000 : 1000;
        if (p.status !== "done") { window.setTimeout(poll, delay); }
      })
      .catch(function () {
        delay = Math.min(delay * 2, 15000); // back off while the server is unreachable
        window.setTimeout(poll, delay);
      });
  }

  bar.style.width = (box.getAttribute("data-percent") || "0") + "%";
  if (box.getAttribute("data-status") !== "done") { window.setTimeout(poll, 300); }
})();
