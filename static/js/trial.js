// The doctors' result page shown for a version tried before activation: its map and its "another photo"
// form go to that version's trial routes.
(function () {
  "use strict";
  var trial = document.getElementById("trial");
  if (!trial) { return; }
  var explanation = document.getElementById("explanation");
  if (explanation) { explanation.dataset.url = trial.dataset.explainUrl; }
  var form = document.getElementById("predict-form");
  if (form) { form.action = trial.dataset.photoUrl; }
})();
