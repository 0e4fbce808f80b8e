// A small SVG line chart for training curves (no third-party library: hospitals run offline).
var FaceDxCharts = (function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 480, H = 240, LEFT = 44, RIGHT = 10, TOP = 10, BOTTOM = 28;

  function element(name, attributes, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function text(content, attributes, parent) {
    element("text", attributes, parent).textContent = content;
  }

  // Draw series {name: [values or null]} over epochs 1..n; `phaseStarts` marks where fine-tuning begins.
  function draw(svg, series, options) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var values = [];
    Object.keys(series).forEach(function (k) {
      series[k].forEach(function (v) { if (v !== null && isFinite(v)) { values.push(v); } });
    });
    var n = Math.max.apply(null, Object.keys(series).map(function (k) { return series[k].length; }).concat([1]));
    var low = options.min !== undefined ? options.min : Math.min.apply(null, values.concat([0]));
    var high = options.max !== undefined ? options.max : Math.max.apply(null, values.concat([1e-6]));
    if (high <= low) { high = low + 1; }
    var x = function (i) { return LEFT + (n > 1 ? i / (n - 1) : 0.5) * (W - LEFT - RIGHT); };
    var y = function (v) { return TOP + (1 - (v - low) / (high - low)) * (H - TOP - BOTTOM); };
    for (var t = 0; t <= 4; t++) {
      var v = low + (high - low) * t / 4;
      element("line", {x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), "class": "grid"}, svg);
      text(v.toFixed(high - low < 2 ? 2 : 1), {x: LEFT - 6, y: y(v) + 4, "text-anchor": "end"}, svg);
    }
    element("line", {x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM, "class": "axis"}, svg);
    element("line", {x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM, "class": "axis"}, svg);
    text("epoch", {x: W - RIGHT, y: H - 4, "text-anchor": "end"}, svg);
    text("1", {x: LEFT, y: H - BOTTOM + 14, "text-anchor": "middle"}, svg);
    if (n > 1) { text(String(n), {x: x(n - 1), y: H - BOTTOM + 14, "text-anchor": "middle"}, svg); }
    (options.phaseStarts || []).forEach(function (i) {
      element("line", {x1: x(i), x2: x(i), y1: TOP, y2: H - BOTTOM, "class": "phase"}, svg);
      text("fine-tune", {x: x(i) + 4, y: TOP + 10}, svg);
    });
    Object.keys(series).forEach(function (name) {
      var points = [];
      series[name].forEach(function (v, i) {
        if (v !== null && isFinite(v)) { points.push(x(i).toFixed(1) + "," + y(v).toFixed(1)); }
      });
      if (points.length) {
        element("polyline", {points: points.join(" "), "class": name}, svg);
      }
    });
  }

  // Draw loss and accuracy charts from a training history (a list of epoch events).
  function drawHistory(history) {
    var pick = function (key) { return history.map(function (e) { return e[key] === undefined ? null : e[key]; }); };
    var starts = [];
    history.forEach(function (e, i) { if (i > 0 && e.phase !== history[i - 1].phase) { starts.push(i); } });
    var loss = document.getElementById("loss-chart");
    var accuracy = document.getElementById("accuracy-chart");
    if (loss) { draw(loss, {train: pick("loss"), val: pick("val_loss")}, {min: 0, phaseStarts: starts}); }
    if (accuracy) {
      draw(accuracy, {train: pick("accuracy"), val: pick("val_accuracy")}, {min: 0, max: 1, phaseStarts: starts});
    }
  }

  return {draw: draw, drawHistory: drawHistory};
})();
