// Every <time data-local> in the page: written in UTC by the server (readable without scripts), shown here in
// the reader's own time with its zone, e.g. "2026-12-07 15:42 CET". The full UTC time stays in its tooltip.
(function () {
  "use strict";
  var pad = function (n) { return (n < 10 ? "0" : "") + n; };

  function zoneName(date) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, {timeZoneName: "short"}).formatToParts(date);
      var zone = parts.filter(function (part) { return part.type === "timeZoneName"; })[0];
      if (zone) { return zone.value; }
    } catch (error) { /* an old browser: the offset below */ }
    var offset = -date.getTimezoneOffset();
    return "UTC" + (offset < 0 ? "-" : "+") + pad(Math.floor(Math.abs(offset) / 60)) + ":" + pad(Math.abs(offset) % 60);
  }

  function shown(date, withSeconds) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + (withSeconds ? ":" + pad(date.getSeconds()) : "") +
      " " + zoneName(date);
  }

  document.querySelectorAll("time[data-local]").forEach(function (node) {
    var date = new Date(node.getAttribute("datetime"));
    if (isNaN(date.getTime())) { return; }
    node.title = node.textContent;
    node.textContent = shown(date, node.getAttribute("data-local") === "second");
  });
})();
