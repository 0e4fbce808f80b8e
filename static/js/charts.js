// Small SVG charts: training curves and accuracy per fold (no third-party library: hospitals run offline).
// Each chart is drawn in its own pixels, so its labels keep their CSS size on a phone as on a desktop.
var FaceDxCharts = (function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var LEFT = 44, RIGHT = 12, TOP = 12, BOTTOM = 34;
  var drawn = [];            // [svg, draw function]: drawn again when the window is resized

  function element(name, attributes, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function text(content, attributes, parent) {
    element("text", attributes, parent).textContent = content;
  }

  // Empty `svg` and size its coordinates to its width on the page; return {width, height}.
  function frame(svg) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var width = Math.round(svg.getBoundingClientRect().width) || 480;
    var height = Math.round(Math.min(260, Math.max(190, width * 0.55)));
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    return {width: width, height: height};
  }

  function remember(svg, draw) {
    drawn = drawn.filter(function (entry) { return entry[0] !== svg; });
    drawn.push([svg, draw]);
    draw();
  }

  // Round tick values between low and high: steps of 1, 2 or 5 times a power of ten, with the decimals they need.
  function ticks(low, high) {
    var raw = (high - low) / 4;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * power; }).filter(function (s) { return s >= raw; })[0];
    var decimals = Math.max(0, -Math.floor(Math.log10(step)));
    var values = [];
    for (var v = Math.ceil(low / step) * step; v <= high + step / 1e6; v += step) { values.push(v); }
    return values.map(function (value) { return {value: value, label: value.toFixed(decimals)}; });
  }

  function percentTicks() {
    return [0, 0.25, 0.5, 0.75, 1].map(function (v) { return {value: v, label: Math.round(v * 100) + "%"}; });
  }

  // Draw the y axis with its ticks and grid lines; return the function placing a value.
  function yAxis(svg, size, low, high, marks) {
    var y = function (v) { return TOP + (1 - (v - low) / (high - low)) * (size.height - TOP - BOTTOM); };
    marks.forEach(function (mark) {
      element("line", {x1: LEFT, x2: size.width - RIGHT, y1: y(mark.value), y2: y(mark.value), "class": "grid"}, svg);
      text(mark.label, {x: LEFT - 6, y: y(mark.value) + 4, "text-anchor": "end"}, svg);
    });
    element("line", {x1: LEFT, x2: LEFT, y1: TOP, y2: size.height - BOTTOM, "class": "axis"}, svg);
    element("line", {x1: LEFT, x2: size.width - RIGHT, y1: size.height - BOTTOM, y2: size.height - BOTTOM,
                     "class": "axis"}, svg);
    return y;
  }

  // Draw series {name: [values or null]} over epochs 1..n; `options.percent` for shares, `phaseStarts`
  // where fine-tuning begins. Draws nothing (and returns false) without a single value.
  function draw(svg, series, options) {
    var values = [];
    Object.keys(series).forEach(function (k) {
      series[k].forEach(function (v) { if (v !== null && isFinite(v)) { values.push(v); } });
    });
    if (!values.length) { return false; }
    remember(svg, function () {
      var size = frame(svg);
      var n = Math.max.apply(null, Object.keys(series).map(function (k) { return series[k].length; }));
      var low = options.percent ? 0 : Math.min(0, Math.min.apply(null, values));
      var high = options.percent ? 1 : Math.max.apply(null, values);
      if (high <= low) { high = low + 1; }
      var marks = options.percent ? percentTicks() : ticks(low, high);
      high = Math.max(high, marks[marks.length - 1].value);
      var y = yAxis(svg, size, low, high, marks);
      var x = function (i) { return LEFT + (n > 1 ? i / (n - 1) : 0.5) * (size.width - LEFT - RIGHT); };
      text("epoch", {x: size.width - RIGHT, y: size.height - 4, "text-anchor": "end"}, svg);
      text("1", {x: x(0), y: size.height - BOTTOM + 16, "text-anchor": "middle"}, svg);
      if (n > 1) { text(String(n), {x: x(n - 1), y: size.height - BOTTOM + 16, "text-anchor": "middle"}, svg); }
      (options.phaseStarts || []).forEach(function (i) {
        element("line", {x1: x(i), x2: x(i), y1: TOP, y2: size.height - BOTTOM, "class": "phase"}, svg);
        text("fine-tune", {x: x(i) + 4, y: TOP + 12}, svg);
      });
      Object.keys(series).forEach(function (name) {
        var points = [];
        series[name].forEach(function (v, i) {
          if (v !== null && isFinite(v)) { points.push(x(i).toFixed(1) + "," + y(v).toFixed(1)); }
        });
        if (points.length) { element("polyline", {points: points.join(" "), "class": name}, svg); }
      });
    });
    return true;
  }

  // Name each baseline, in its line's colour, in the legend beside the chart (the element `<svg id>-legend`): a name
  // drawn on the chart would cover the folds' bars and values on a narrow screen.
  function baselineLegend(svg, baselines, names) {
    var legend = document.getElementById(svg.id + "-legend");
    if (!legend) { return; }
    legend.querySelectorAll(".baseline").forEach(function (entry) { legend.removeChild(entry); });
    names.forEach(function (name, i) {
      var entry = document.createElement("span");
      entry.className = "baseline baseline-" + i;
      entry.textContent = baselines[name][0] + " " + Math.round(baselines[name][1] * 100) + "% on the same folds";
      legend.appendChild(entry);
    });
  }

  // Draw one bar per fold (its accuracy) and each baseline as a dashed line across: {name: [label, accuracy]}.
  function folds(svg, accuracies, baselines) {
    if (!accuracies || !accuracies.length) { return false; }
    baselines = baselines || {};
    var names = Object.keys(baselines).sort(function (a, b) { return baselines[b][1] - baselines[a][1]; });
    remember(svg, function () {
      var size = frame(svg);
      var y = yAxis(svg, size, 0, 1, percentTicks());
      var slot = (size.width - LEFT - RIGHT) / accuracies.length;
      var bar = Math.min(64, slot * 0.6);
      accuracies.forEach(function (accuracy, i) {
        var middle = LEFT + slot * (i + 0.5);
        element("rect", {x: middle - bar / 2, y: y(accuracy), width: bar, height: y(0) - y(accuracy),
                         "class": "fold"}, svg);
        text(Math.round(accuracy * 100) + "%", {x: middle, y: y(accuracy) - 4, "text-anchor": "middle", "class": "value"},
             svg);
        text(String(i + 1), {x: middle, y: size.height - BOTTOM + 16, "text-anchor": "middle"}, svg);
      });
      text("fold", {x: size.width - RIGHT, y: size.height - 4, "text-anchor": "end"}, svg);
      names.forEach(function (name, i) {
        element("line", {x1: LEFT, x2: size.width - RIGHT, y1: y(baselines[name][1]), y2: y(baselines[name][1]),
                         "class": "baseline baseline-" + i}, svg);
      });
    });
    baselineLegend(svg, baselines, names);
    return true;
  }

  // Draw the loss and accuracy charts from a training history (a list of epoch events); false when it is empty.
  function drawHistory(history) {
    var pick = function (key) { return history.map(function (e) { return e[key] === undefined ? null : e[key]; }); };
    var starts = [];
    history.forEach(function (e, i) { if (i > 0 && e.phase !== history[i - 1].phase) { starts.push(i); } });
    var loss = document.getElementById("loss-chart");
    var accuracy = document.getElementById("accuracy-chart");
    var any = false;
    if (loss) { any = draw(loss, {train: pick("loss"), val: pick("val_loss")}, {phaseStarts: starts}) || any; }
    if (accuracy) {
      any = draw(accuracy, {train: pick("accuracy"), val: pick("val_accuracy")},
                 {percent: true, phaseStarts: starts}) || any;
    }
    return any;
  }

  var pending = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(pending);
    pending = window.setTimeout(function () { drawn.forEach(function (entry) { entry[1](); }); }, 150);
  });

  return {draw: draw, folds: folds, drawHistory: drawHistory};
})();
