// The doctors' result page shown for a version tried before activation: its map and its "another photo"
// form go to that version's trial routes, and it offers no clinical assessment (the photo is nobody's case).
(function () {
  "use strict";
  var trial = document.getElementById("trial");
  if (!trial) { return; }
  var explanation = document.getElementById("explanation");
  if (explanation) { explanation.dataset.url = trial.dataset.explainUrl; }
  var form = document.getElementById("predict-form");
  if (form) { form.action = trial.dataset.photoUrl; }
  var feedback = document.getElementById("feedback");
  if (feedback) { feedback.parentNode.removeChild(feedback); }
})();
