// The result page: load the map of the analysed face once it is computed, record the doctor's assessment
// without leaving the page, and print.
(function () {
  "use strict";

  var METHODS = {"grad-cam": "Grad-CAM", "occlusion": "occlusion sensitivity", "attribution": "feature attribution"};

  function pngBlob(dataUrl) {
    // The page's Content-Security-Policy lets scripts fetch from this site only, not data: URLs.
    var bytes = window.atob(dataUrl.split(",")[1]);
    var array = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) { array[i] = bytes.charCodeAt(i); }
    return new Blob([array], {type: "image/png"});
  }

  function postForJson(url, body) {
    return fetch(url, {method: "POST", body: body, credentials: "same-origin",
                       headers: {"Accept": "application/json"}})
      .then(function (response) {
        return response.json().catch(function () {
          return {error: "not_json", message: "the session may have ended: log in again."};
        }).then(function (data) {
          if (!response.ok || data.error) { throw new Error(data.message || "The server answered " + response.status + "."); }
          return data;
        });
      });
  }

  function mapWait(status) {
    // Say every second how long the map has been computed, against the time maps took on this server.
    var expected = Number(status.dataset.expected) || 0;
    var started = Date.now();
    function say() {
      var seconds = Math.round((Date.now() - started) / 1000);
      if (!expected) {
        status.textContent = "Computing the map… " + seconds + " s (the first map here: no time measured yet).";
      } else if (seconds <= expected) {
        status.textContent = "Computing the map… " + seconds + " s of about " + expected + " s.";
      } else {
        status.textContent = "Computing the map… " + seconds + " s, longer than the about " + expected +
          " s that maps took here lately.";
      }
    }
    say();
    return window.setInterval(say, 1000);
  }

  var explanation = document.getElementById("explanation");
  if (explanation) {
    var status = document.getElementById("map-status");
    var map = document.getElementById("heatmap");
    var body = new FormData();
    body.append("csrf_token", explanation.dataset.csrf);
    body.append("model_version", explanation.dataset.version);
    body.append("crop", pngBlob(document.getElementById("face").src), "face.png");
    var waited = mapWait(status);
    postForJson(explanation.dataset.url, body).then(function (data) {
      window.clearInterval(waited);
      map.src = "data:image/png;base64," + data.overlay_png_base64;
      map.hidden = false;
      status.hidden = true;
      document.getElementById("map-method").textContent = " (" + (METHODS[data.method] || data.method) + ")" +
        (data.coloured ? "" : ". No region weighed more than the rest: nothing is coloured");
    }).catch(function (error) {
      window.clearInterval(waited);
      status.textContent = "The map could not be computed: " + error.message;
      status.classList.add("error");
    });
  }

  var feedback = document.getElementById("feedback-form");
  if (feedback) {
    feedback.addEventListener("submit", function (event) {
      event.preventDefault();
      var said = document.getElementById("feedback-status");
      postForJson(feedback.action, new FormData(feedback)).then(function (data) {
        said.textContent = data.message;
        said.classList.remove("error");
      }).catch(function (error) {
        said.textContent = "Not recorded: " + error.message;
        said.classList.add("error");
      });
    });
  }

  var printButton = document.getElementById("print-result");
  if (printButton) {
    printButton.addEventListener("click", function () {
      var reference = document.getElementById("patient-reference").value;
      document.querySelectorAll(".reference-line").forEach(function (line) { line.textContent = reference; });
      window.print();
    });
  }
})();
