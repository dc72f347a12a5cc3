// omops dashboard: the few things a page does in the browser. Every call goes to this
// server's REST API with the page's bucket and CSRF token; nothing is loaded from elsewhere.
(function () {
  "use strict";

  function meta(name) {
    var found = document.querySelector('meta[name="' + name + '"]');
    return found ? found.content : "";
  }
  var csrf = meta("csrf-token");
  var bucket = meta("omops-bucket");
  var COLORS = ["#0b57d0", "#b42318", "#116329", "#7a4d00", "#6f42c1", "#0e7490", "#be185d", "#4b5563"];

  function quotePath(name) {
    return name.split("/").map(encodeURIComponent).join("/");
  }

  async function api(method, url, body, extraHeaders) {
    // The native answers, also from a server started with --compat omegaml.
    var headers = { Accept: "application/json", "Omops-Profile": "native" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (bucket) headers["Omops-Bucket"] = bucket;
    Object.assign(headers, extraHeaders || {});
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var response = await fetch(url, init);
    var text = await response.text();
    var data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = { message: text };
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  function describeError(answer) {
    var data = answer.data || {};
    return answer.status + " " + (data.error || "error") + ": " + (data.message || "");
  }

  function notice(text, bad) {
    var box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.className = bad ? "notice bad" : "notice";
    box.hidden = false;
  }

  // -- log in and out ------------------------------------------------------------------

  function setupLogin() {
    var form = document.getElementById("login");
    if (!form) return;
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      var key = document.getElementById("key").value.trim();
      var answer = await api("POST", "/ui/login", { key: key }, { "X-CSRF-Token": meta("login-csrf") });
      if (answer.ok) {
        window.location.assign(form.dataset.next || "/ui");
        return;
      }
      var box = document.getElementById("login-error");
      box.textContent = describeError(answer);
      box.hidden = false;
    });
  }

  function setupLogout() {
    var button = document.getElementById("logout");
    if (!button) return;
    button.addEventListener("click", async function () {
      await api("POST", "/ui/logout");
      window.location.assign("/ui/login");
    });
  }

  // -- the "try it" form of a model ------------------------------------------------------

  function cellValue(text) {
    var trimmed = text.trim();
    if (trimmed === "") return null;
    if (trimmed === "true" || trimmed === "false") return trimmed === "true";
    var number = Number(trimmed);
    return Number.isFinite(number) ? number : trimmed;
  }

  function setupTryIt() {
    var form = document.getElementById("try-it");
    if (!form) return;
    var output = document.getElementById("try-result");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      var inputs = Array.prototype.slice.call(form.querySelectorAll("[data-column]"));
      var body = {
        columns: inputs.map(function (i) { return i.dataset.column; }),
        data: [inputs.map(function (i) { return cellValue(i.value); })],
      };
      var action = document.getElementById("action").value;
      output.textContent = "calling…";
      var answer = await api("POST", "/api/v1/model/" + quotePath(form.dataset.model) + "/" + action, body);
      if (answer.ok) {
        output.textContent = JSON.stringify(answer.data.result) + "\n(revision " +
          String(answer.data.revision).slice(0, 12) + ")";
      } else {
        output.textContent = describeError(answer);
      }
    });
  }

  // -- buttons that change something -------------------------------------------------------

  var ACTIONS = {
    "delete-dataset": async function (button) {
      if (!window.confirm("Delete dataset " + button.dataset.name + " with all its revisions?")) return;
      var answer = await api("DELETE", "/api/v1/dataset/" + quotePath(button.dataset.name));
      if (answer.ok) {
        notice("Deleted " + button.dataset.name + ".");
        button.disabled = true;
      } else {
        notice(describeError(answer), true);
      }
    },
    "run-job": async function (button) {
      var answer = await api("POST", "/api/v1/job/" + quotePath(button.dataset.name) + "/run", {});
      if (answer.ok) {
        notice("Started: task " + answer.data.task + " (see Tasks).");
      } else {
        notice(describeError(answer), true);
      }
    },
  };

  function setupActions() {
    document.querySelectorAll("[data-action]").forEach(function (button) {
      button.addEventListener("click", function () {
        ACTIONS[button.dataset.action](button);
      });
    });
  }

  // -- charts ------------------------------------------------------------------------------

  function pairsSorted(xs, ys) {
    var pairs = xs.map(function (x, i) { return [x, ys[i]]; });
    pairs.sort(function (a, b) { return a[0] - b[0]; });
    return [pairs.map(function (p) { return p[0]; }), pairs.map(function (p) { return p[1]; })];
  }

  function compact(value) {
    // Axis numbers that fit: 300M, 1.5k, 0.25.
    if (value === null || value === undefined) return "";
    var size = Math.abs(value);
    var units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < units.length; i++) {
      if (size >= units[i][0]) return +(value / units[i][0]).toPrecision(3) + units[i][1];
    }
    return String(+value.toPrecision(3));
  }

  function plot(figure, lines, options) {
    // lines: [{label, x: [...], y: [...]}]; x in seconds when options.time.
    if (!window.uPlot || lines.length === 0) return;
    var tables = lines.map(function (line) { return pairsSorted(line.x, line.y); });
    var data = tables.length === 1 ? tables[0] : window.uPlot.join(tables);
    var width = Math.max(figure.clientWidth - 18, 280);
    var series = [{ label: options.xlabel }].concat(lines.map(function (line, i) {
      // Points where a line has few values: a lone value (one busy minute) draws no line.
      var values = line.y.filter(function (v) { return v !== null && v !== undefined; }).length;
      return { label: line.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
               points: { show: values < 60 } };
    }));
    var x = { time: !!options.time };
    // A fixed x range (a monitoring window): one point alone would stretch the axis over years.
    if (options.range) x.range = function () { return options.range; };
    var shown = series.filter(function (s) { return s.points && s.points.show; }).length;
    var chart = new window.uPlot({
      width: width, height: 220, series: series,
      scales: { x: x },
      hooks: { draw: [function (u) {
        // What was drawn, for tests and the curious: the x span and the lines with points.
        figure.dataset.span = String(Math.round(u.scales.x.max - u.scales.x.min));
        figure.dataset.points = String(shown);
      }] },
      axes: [{ label: options.xlabel }, { size: 64, values: function (u, values) { return values.map(compact); } }],
    }, data, figure);
    figure.dataset.rendered = String(lines.length);
    return chart;
  }

  function jsonData(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function setupMetricCharts() {
    var metrics = jsonData("metrics");
    document.querySelectorAll('figure[data-chart="metrics"]').forEach(function (figure) {
      var byRun = metrics[figure.dataset.key] || {};
      var runs = Object.keys(byRun);
      var steps = runs.every(function (run) { return byRun[run].steps; });
      var lines = runs.map(function (run) {
        var line = byRun[run];
        return { label: "run " + run, x: line.x, y: line.y };
      });
      plot(figure, lines, { xlabel: steps ? "step" : "time", time: !steps });
    });
    var profile = jsonData("profile");
    document.querySelectorAll('figure[data-chart="profile"]').forEach(function (figure) {
      var line = profile[figure.dataset.key];
      plot(figure, [{ label: figure.dataset.key, x: line.x, y: line.y }], { xlabel: "time", time: true });
    });
  }

  // -- production monitoring -----------------------------------------------------------------

  function seconds(t) {
    if (typeof t === "number") return t > 1e12 ? t / 1000 : t;
    return Date.parse(t) / 1000;
  }

  var BUCKETS = { "15m": "1m", "1h": "1m", "6h": "5m", "1d": "15m", "7d": "1h" };
  var WINDOWS = { "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400, "7d": 604800 };

  function windowRange(since) {
    // [start, now] in seconds of the window shown, so every chart spans the same time.
    var now = Date.now() / 1000;
    return [now - (WINDOWS[since] || 3600), now];
  }

  function setText(id, text) {
    var node = document.getElementById(id);
    if (node) node.textContent = text;
  }

  async function loadMonitor(section) {
    var model = quotePath(section.dataset.model);
    var since = section.dataset.since;
    var step = BUCKETS[since] || "1m";
    var range = windowRange(since);
    var answer = await api("GET", "/api/v1/model/" + model + "/monitor?since=" + since + "&bucket=" + step);
    if (answer.status === 404) {
      setText("monitor-state", "No monitoring data for this model: " + ((answer.data || {}).message || "not found") + ".");
      return;
    }
    if (!answer.ok) {
      setText("monitor-state", describeError(answer));
      return;
    }
    var rows = answer.data.series || [];
    if (rows.length === 0) {
      setText("monitor-state", "No predictions were tracked in the last " + since + ".");
    } else {
      setText("monitor-state", rows.length + " time buckets of " + step + " in the last " + since + ".");
      var xs = rows.map(function (r) { return seconds(r.t); });
      var column = function (name) { return rows.map(function (r) { return r[name]; }); };
      plot(document.getElementById("chart-predictions"), [{ label: "predictions", x: xs, y: column("predictions") }], { xlabel: "time", time: true, range: range });
      plot(document.getElementById("chart-latency"), ["p50_ms", "p95_ms", "p99_ms"].map(function (name) {
        return { label: name.replace("_ms", ""), x: xs, y: column(name) };
      }), { xlabel: "time", time: true, range: range });
      plot(document.getElementById("chart-errors"), [{ label: "errors", x: xs, y: column("errors") }], { xlabel: "time", time: true, range: range });
    }
    var byFeature = {};
    (answer.data.drift_series || []).forEach(function (point) {
      var line = byFeature[point.feature] || (byFeature[point.feature] = { label: point.feature, x: [], y: [] });
      line.x.push(seconds(point.t));
      line.y.push(point.psi);
    });
    var driftLines = Object.keys(byFeature).sort().map(function (k) { return byFeature[k]; });
    plot(document.getElementById("chart-drift"), driftLines, { xlabel: "time", time: true, range: range });
  }

  async function loadDrift(section) {
    var model = quotePath(section.dataset.model);
    var answer = await api("GET", "/api/v1/model/" + model + "/drift?since=" + section.dataset.since);
    if (answer.status === 404) {
      setText("drift-state", "No drift report: " + ((answer.data || {}).message || "not found") + ".");
      return;
    }
    if (!answer.ok) {
      setText("drift-state", describeError(answer));
      return;
    }
    var report = answer.data;
    setText("drift-state", (report.drifted ? "Drift detected" : "No drift") + " over " + report.rows +
      " tracked rows since " + report.since + ".");
    var table = document.getElementById("drift");
    var body = table.querySelector("tbody");
    (report.features || []).forEach(function (f) {
      var row = document.createElement("tr");
      [f.name, f.kind, f.test, f.statistic, f.p_value, f.psi, f.drifted ? "yes" : "no"].forEach(function (value, i) {
        var cell = document.createElement("td");
        if (i >= 3 && i <= 5) cell.className = "num";
        cell.textContent = typeof value === "number" ? value.toPrecision(3) : (value === null || value === undefined ? "" : String(value));
        row.appendChild(cell);
      });
      body.appendChild(row);
    });
    table.hidden = false;
  }

  function setupMonitor() {
    var section = document.getElementById("monitor");
    if (!section) return;
    loadMonitor(section);
    loadDrift(section);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupLogin();
    setupLogout();
    setupTryIt();
    setupActions();
    setupMetricCharts();
    setupMonitor();
  });
})();
