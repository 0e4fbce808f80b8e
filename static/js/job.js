// Live training job page (polls the job's JSON every second while it runs) and the model page's curves.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("job-data").textContent);
  FaceDxCharts.drawHistory(data.history || []);

  var section = document.getElementById("job");
  if (!section) { return; }

  function show(job) {
    var status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = "status " + job.status;
    var progress = job.progress || {};
    document.getElementById("job-phase").textContent = progress.phase || "";
    var epoch = progress.epoch ? "epoch " + progress.epoch + " of " + progress.epochs : "";
    if (progress.phase === "features") { epoch = "photo " + progress.done + " of " + progress.total; }
    if (progress.phase === "cross-validation" || progress.phase === "nested selection") {
      epoch = "fold " + progress.fold + " of " + progress.folds;
    }
    document.getElementById("job-epoch").textContent = epoch;
    document.getElementById("job-progress").value = progress.fraction || 0;
    var waiting = document.getElementById("job-waiting");
    waiting.textContent = job.waiting || "";
    waiting.hidden = !job.waiting;
    if (job.error) {
      var error = document.getElementById("job-error");
      error.textContent = job.error;
      error.hidden = false;
    }
    if (job.model_version) {
      var link = document.getElementById("job-version");
      link.textContent = job.model_version;
      link.href = section.dataset.modelUrl + "/" + encodeURIComponent(job.model_version);
      document.getElementById("job-result").hidden = false;
    }
    var cancel = document.getElementById("cancel-form");
    if (cancel && job.status !== "queued" && job.status !== "running") { cancel.hidden = true; }
    FaceDxCharts.drawHistory(job.history || []);
  }

  function poll() {
    fetch(section.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (job) {
        show(job);
        if (job.status === "queued" || job.status === "running") { window.setTimeout(poll, 1000); }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  show(data);
  if (data.status === "queued" || data.status === "running") { window.setTimeout(poll, 1000); }
})();
