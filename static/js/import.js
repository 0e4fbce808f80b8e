// Live dataset import page: polls the import's JSON every second while it runs and shows what the server
// says (photo n of N, rate, time left); once the import succeeded, the page itself leads to the dataset.
(function () {
  "use strict";
  var section = document.getElementById("import");
  if (!section) { return; }

  function active(job) { return job.status === "queued" || job.status === "running"; }

  function show(job) {
    var status = document.getElementById("import-status");
    status.textContent = job.status;
    status.className = "status " + job.status;
    var bar = document.getElementById("import-progress");
    if (job.status === "queued" || (job.progress || {}).phase === "starting") {
      bar.removeAttribute("value");           // starting: moving, without a share, while the networks load
    } else {
      bar.value = (job.progress || {}).fraction || 0;
    }
    document.getElementById("import-summary").textContent = job.summary || "";
    var waiting = document.getElementById("import-waiting");
    waiting.textContent = job.waiting || "";
    waiting.hidden = !job.waiting;
    var error = document.getElementById("import-error");
    error.textContent = job.error || "";
    error.hidden = !job.error;
    document.getElementById("import-cancelled").hidden = job.status !== "cancelled";
    var cancel = document.getElementById("cancel-form");
    if (cancel && !active(job)) { cancel.hidden = true; }
  }

  function poll() {
    fetch(section.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (job) {
        show(job);
        if (job.status === "succeeded") {
          window.location.assign(section.dataset.pageUrl);
        } else if (active(job)) {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  var data = JSON.parse(document.getElementById("import-data").textContent);
  show(data);
  if (active(data)) { window.setTimeout(poll, 1000); }
})();
