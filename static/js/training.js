// The training form: show only the options that make a difference to the chosen backbone and head
// (each option's label says where it applies); an option with an error stays in sight.
(function () {
  "use strict";
  var backbone = document.getElementById("backbone");
  var head = document.getElementById("head");
  if (!backbone || !head) { return; }

  function applies(label, key, value) {
    var values = label.dataset[key];
    return !values || values.split(" ").indexOf(value) >= 0;
  }

  function update() {
    document.querySelectorAll("#training-form label.option").forEach(function (label) {
      var wrong = label.querySelector(".flash.error") !== null;
      label.hidden = !wrong && !(applies(label, "backbones", backbone.value) && applies(label, "heads", head.value));
    });
  }
  backbone.addEventListener("change", update);
  head.addEventListener("change", update);
  update();         // a choice made while the page was still loading counts too
})();
