// One-click actions: ask in a dialog before one that cannot be undone (a form with data-confirm: the question;
// data-confirm-button: the word on the button that goes ahead), and come back to the same place on the page
// after a change made from it (a form of class keep-place), instead of the top.
(function () {
  "use strict";
  var PLACE = "facedx.place:" + window.location.pathname;

  function button(text, className) {
    var made = document.createElement("button");
    made.type = "button";
    made.className = className;
    made.textContent = text;
    return made;
  }

  function ask(form, goAhead) {
    var dialog = document.createElement("dialog");
    dialog.className = "confirm-dialog";
    dialog.setAttribute("aria-label", "Confirm");
    var question = document.createElement("p");
    question.textContent = form.dataset.confirm;
    var yes = button(form.dataset.confirmButton || "Yes, go ahead", "danger");
    var no = button(form.dataset.keepButton || "No", "secondary");
    var buttons = document.createElement("div");
    buttons.className = "actions";
    buttons.appendChild(yes);
    buttons.appendChild(no);
    dialog.appendChild(question);
    dialog.appendChild(buttons);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", function () { dialog.remove(); });
    no.addEventListener("click", function () { dialog.close(); });
    yes.addEventListener("click", function () {
      dialog.close();
      goAhead();
    });
    dialog.showModal();
    no.focus();                 // Enter on a dialog just opened keeps things as they are
  }

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.confirmed === "yes") { return; }
      event.preventDefault();
      var submitter = event.submitter;
      ask(form, function () {
        form.dataset.confirmed = "yes";
        if (submitter) { form.requestSubmit(submitter); } else { form.requestSubmit(); }
        form.dataset.confirmed = "";
      });
    });
  });

  document.querySelectorAll("form.keep-place").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!event.defaultPrevented) { window.sessionStorage.setItem(PLACE, String(window.scrollY)); }
    });
  });
  var place = window.sessionStorage.getItem(PLACE);
  window.sessionStorage.removeItem(PLACE);
  if (place !== null && !document.querySelector(".flash.error")) {    // a refusal is read at the top
    window.scrollTo(0, Number(place));
  }
})();
