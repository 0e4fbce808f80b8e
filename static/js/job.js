// The training job page, live: its step, each fold's accuracy against the baselines as folds finish, the
// candidate pipelines as they are scored, and loss and accuracy curves where the head has epochs. It polls
// the job's JSON every second and reloads once the job ends, to show what it made. A model page uses
// the curves only.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("job-data").textContent);
  var ACTIVE = ["queued", "running"];

  function curves(history) {
    var section = document.getElementById("curves");
    if (!history || !history.length) { return; }
    if (section) { section.hidden = false; }
    FaceDxCharts.drawHistory(history);
  }

  var section = document.getElementById("job");
  if (!section) {
    curves(data.history);
    return;
  }
  var names = JSON.parse(document.getElementById("baseline-names").textContent);
  var seen = {};              // the latest scores of each kind: kept when a later record leaves them out

  function step(progress) {             // the server puts every step into words (ml/progress.py)
    return progress.step ? "· " + progress.step : "";
  }

  function showFraction(bar, status, progress) {    // moving, without a share, while the networks load
    if (status === "queued" || progress.phase === "starting") {
      bar.removeAttribute("value");
    } else {
      bar.value = progress.fraction || 0;
    }
  }

  function showFolds(scores) {
    if (!scores.fold_accuracies || !scores.fold_accuracies.length) { return; }
    var baselines = {};
    Object.keys(scores.baselines || {}).forEach(function (name) {
      baselines[name] = [names[name] || name, scores.baselines[name]];
    });
    document.getElementById("folds").hidden = false;
    FaceDxCharts.folds(document.getElementById("folds-chart"), scores.fold_accuracies, baselines);
  }

  function showCandidates(candidates) {
    if (!candidates || candidates.length < 2) { return; }
    var body = document.querySelector("#candidate-scores tbody");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    candidates.forEach(function (candidate) {
      var row = body.insertRow();
      var name = row.insertCell();
      name.textContent = candidate.pipeline;
      name.dataset.label = "Pipeline";
      var score = row.insertCell();
      score.className = "bar-cell";
      score.dataset.label = "Accuracy";
      var meter = document.createElement("meter");
      meter.min = 0;
      meter.max = 1;
      meter.value = candidate.accuracy;
      score.appendChild(meter);
      score.appendChild(document.createTextNode(" " + (candidate.accuracy * 100).toFixed(1) + "%"));
    });
    document.getElementById("candidates-live").hidden = false;
  }

  function show(job) {
    var progress = job.progress || {};
    ["fold_accuracies", "baselines", "candidates"].forEach(function (key) {
      if (progress[key]) { seen[key] = progress[key]; }
    });
    var status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = "status " + job.status;
    document.getElementById("job-step").textContent = ACTIVE.indexOf(job.status) >= 0 ? step(progress) : "";
    showFraction(document.getElementById("job-progress"), job.status, progress);
    var waiting = document.getElementById("job-waiting");
    waiting.textContent = job.waiting || "";
    waiting.hidden = !job.waiting;
    showFolds(job.result || seen);
    showCandidates(seen.candidates);
    curves(job.history);
  }

  function poll() {
    fetch(section.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (job) {
        if (ACTIVE.indexOf(job.status) < 0) {
          window.location.reload();          // the page shows how it ended and what it made
          return;
        }
        show(job);
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  show(data);
  if (ACTIVE.indexOf(data.status) >= 0) { window.setTimeout(poll, 1000); }
})();
