// Photo drop zone and busy state, and dataset upload progress (static/js/actions.js asks before dangerous buttons). No inline
// script: the pages' Content-Security-Policy allows scripts from this site only.
(function () {
  "use strict";

  // This page may be the answer to a POST (a result, or the form with its error): turn its history entry
  // into a plain GET of the same address, so that Back or reload never offers to send the photo again.
  window.history.replaceState(null, "", window.location.href);

  var drop = document.getElementById("drop-zone");
  var photo = document.getElementById("photo");
  var chosen = document.getElementById("chosen-file");
  if (drop && photo) {
    var showChosen = function () {
      chosen.textContent = photo.files.length ? "Chosen: " + photo.files[0].name : "";
    };
    photo.addEventListener("change", showChosen);
    ["dragenter", "dragover"].forEach(function (name) {
      drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      drop.addEventListener(name, function () { drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer.files.length) {
        photo.files = event.dataTransfer.files;
        showChosen();
      }
    });
  }

  var predictForm = document.getElementById("predict-form");
  if (predictForm) {
    predictForm.addEventListener("submit", function () {
      var button = document.getElementById("analyse");
      button.disabled = true;
      button.textContent = "Analysing…";
      document.getElementById("busy").textContent = predictForm.dataset.expected;
    });
  }

  var form = document.getElementById("dataset-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var bar = document.getElementById("upload-progress");
      var status = document.getElementById("upload-status");
      var button = form.querySelector("button[type=submit]");
      var request = new XMLHttpRequest();
      bar.hidden = false;
      button.disabled = true;
      request.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          bar.value = e.loaded / e.total;
          status.textContent = "Uploading: " + Math.round(100 * e.loaded / e.total) + "%";
        }
      });
      request.upload.addEventListener("load", function () {
        bar.removeAttribute("value");
        status.textContent = "Uploaded. Finding and cropping faces, this takes a while for large datasets…";
      });
      request.addEventListener("load", function () {
        if (request.status < 400 && request.responseURL && request.responseURL !== window.location.href) {
          window.location.assign(request.responseURL);   // imported: go to the dataset's page
        } else {                                          // refused: show the form with its message
          document.open();
          document.write(request.responseText);
          document.close();
        }
      });
      request.addEventListener("error", function () {
        status.textContent = "The upload failed: the connection was lost. Try again.";
        button.disabled = false;
      });
      request.open("POST", form.getAttribute("action") || window.location.href);
      request.send(new FormData(form));
    });
  }
})();
