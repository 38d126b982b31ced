
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("dashboard-config").textContent);
  var WINDOW = cfg.window, MAX_RECENT = cfg.recent, SHOW_PATHS = cfg.paths === true;
  var FIRST_DELAY = 250, MAX_DELAY = 5000, STALL_MS = 6000, SUMMARY_EVERY_MS = 60000;
  var DASH = "\u2014";
  var body = document.body;

  var stat = {}, unit = {};
  Array.prototype.forEach.call(document.querySelectorAll("[data-stat]"), function (el) {
    stat[el.getAttribute("data-stat")] = el;
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-unit]"), function (el) {
    unit[el.getAttribute("data-unit")] = el;
  });
  function text(el, value) { if (el && el.textContent !== value) el.textContent = value; }
  function set(name, value) { text(stat[name], value); }
  function fig(name, pair) { set(name, pair[0]); text(unit[name], pair[1]); }
  function cls(name, value) { var el = stat[name]; if (el && el.className !== value) el.className = value; }

  // Formatters: twins of the ones in wighaven/dashboard.py.
  function number(x) { return typeof x === "number" && isFinite(x) ? x : null; }
  function str(x) { return x === null || x === undefined ? "" : String(x); }
  function fixed(x, d) { var t = x.toFixed(d); return /^-[0.]+$/.test(t) ? t.slice(1) : t; }
  function grouped(x, d) {
    var t = fixed(x, d), sign = t.charAt(0) === "-" ? "-" : "", parts = t.replace("-", "").split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return sign + parts.join(".");
  }
  function count(x) { x = number(x); return x === null ? DASH : grouped(Math.trunc(x), 0); }
  function rate(x) {
    x = number(x);
    if (x === null) return DASH;
    if (x === 0) return "0";
    if (x < 10) return fixed(x, 2);
    if (x < 100) return fixed(x, 1);
    return grouped(x, 0);
  }
  function ms(x) {
    x = number(x);
    if (x === null) return [DASH, ""];
    if (x < 1) return [fixed(x, 2), "ms"];
    if (x < 10) return [fixed(x, 1), "ms"];
    if (x < 1000) return [fixed(x, 0), "ms"];
    if (x < 10000) return [fixed(x / 1000, 2), "s"];
    return [grouped(x / 1000, 1), "s"];
  }
  function percent(x) {
    x = number(x);
    if (x === null) return [DASH, ""];
    var p = x * 100;
    if (p === 0) return ["0", "%"];
    if (p < 1) return [fixed(p, 2), "%"];
    if (p < 10) return [fixed(p, 1), "%"];
    return [fixed(p, 0), "%"];
  }
  var BYTE_UNITS = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  function bytes(x) {
    x = number(x);
    if (x === null) return [DASH, ""];
    if (x < 1024) return [String(Math.trunc(x)), "B"];
    var u = -1;
    while (x >= 1024 && u < BYTE_UNITS.length - 1) { x /= 1024; u++; }
    return [x < 100 ? fixed(x, 1) : fixed(x, 0), BYTE_UNITS[u]];
  }
  function uptime(s) {
    s = Math.floor(number(s) || 0);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
    return d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m ? m + "m " + r + "s" : r + "s";
  }
  function axis(x) { var t = grouped(x, 2); return t.indexOf(".") < 0 ? t : t.replace(/0+$/, "").replace(/\.$/, ""); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(t) {
    t = number(t);
    if (t === null) return DASH;
    var d = new Date(t * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function iso(t) { t = number(t); return t === null ? "" : new Date(Math.floor(t) * 1000).toISOString().replace(".000Z", "Z"); }

  // The chart: the twin of chart() in wighaven/dashboard.py.
  var series = new Map(), lastT = null;
  var svgPaths = {};
  Array.prototype.forEach.call(document.querySelectorAll("[data-path]"), function (el) {
    svgPaths[el.getAttribute("data-path")] = el;
  });
  var chartEls = {
    scale: document.querySelector('[data-chart="scale"]'),
    half: document.querySelector('[data-chart="half"]'),
    alt: document.getElementById("chart-alt")
  };
  function addPoint(p) {
    if (!p || typeof p !== "object") return;
    var t = number(p.t);
    if (t === null) return;
    t = Math.trunc(t);
    series.set(t, [number(p.requests) || 0, number(p.errors) || 0]);
    if (lastT === null || t > lastT) lastT = t;
  }
  function trimSeries() {
    if (lastT === null) return;
    series.forEach(function (v, t) { if (t <= lastT - WINDOW) series.delete(t); });
  }
  function niceCeiling(v) {
    if (v <= 1) return 1;
    var power = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (v <= steps[i] * power * (1 + 1e-9)) return steps[i] * power;
    return 10 * power;
  }
  function counted(n, word) { return count(n) + " " + word + (n === 1 ? "" : "s"); }
  function y(v, scale) { return fixed(100 - v / scale * 96, 2).replace(/0+$/, "").replace(/\.$/, ""); }
  function drawChart() {
    var end = lastT === null ? 0 : lastT, start = end - WINDOW + 1;
    var req = [], err = [], peak = 0, total = 0, failed = 0;
    for (var i = 0; i < WINDOW; i++) {
      var p = series.get(start + i) || [0, 0];
      req.push(p[0]); err.push(Math.min(p[1], p[0]));
      if (p[0] > peak) peak = p[0];
      total += p[0]; failed += Math.min(p[1], p[0]);
    }
    var scale = niceCeiling(peak);
    function line(values) {
      var parts = [];
      for (var i = 0; i < values.length; i++) parts.push(i + " " + y(values[i], scale));
      return "M" + parts.join(" L");
    }
    function area(values) { return line(values) + " L" + (WINDOW - 1) + " 100 L0 100 Z"; }
    svgPaths.requests_area.setAttribute("d", area(req));
    svgPaths.requests_line.setAttribute("d", line(req));
    svgPaths.errors_area.setAttribute("d", area(err));
    svgPaths.errors_line.setAttribute("d", line(err));
    text(chartEls.scale, axis(scale));
    text(chartEls.half, axis(scale / 2));
    var minutes = Math.floor(WINDOW / 60);
    text(chartEls.alt, total === 0 ? "No requests in the last " + minutes + " minutes." :
      "Requests per second over the last " + minutes + " minutes: " + counted(total, "request") + ", " +
      counted(failed, "error") + "; peak " + axis(peak) + " per second, latest " + axis(req[req.length - 1]) +
      " per second.");
  }

  // Recent requests, newest first.
  var recent = [];
  var rows = document.getElementById("recent-rows");
  function cell(tr, className, child) {
    var td = document.createElement("td");
    td.className = className;
    if (typeof child === "string") td.textContent = child; else td.appendChild(child);
    tr.appendChild(td);
    return td;
  }
  function span(className, value) {
    var s = document.createElement("span");
    s.className = className;
    s.textContent = value;
    return s;
  }
  function row(r) {
    var tr = document.createElement("tr");
    if (r.fresh) tr.className = "new";
    var when = document.createElement("time");
    when.textContent = clock(r.time);
    when.setAttribute("datetime", iso(r.time));
    cell(tr, "c-time", when);
    cell(tr, "c-method", span("method mono", str(r.method)));
    if (SHOW_PATHS) {
      var path = document.createElement("code");
      path.textContent = str(r.path);
      cell(tr, "c-path", path).title = str(r.path);
    } else {
      cell(tr, "c-route", str(r.route));
    }
    var code = number(r.status), st;
    if (code === null) {
      st = span("st none", DASH);
      st.setAttribute("aria-hidden", "true");
      var wrap = document.createElement("span");
      wrap.appendChild(st);
      wrap.appendChild(span("sr-only", "no status (aborted)"));
      st = wrap;
    } else {
      st = span("st s" + String(Math.floor(code / 100)), String(Math.trunc(code)));
    }
    cell(tr, "c-status", st);
    var d = ms(r.ms);
    cell(tr, "c-ms", d[1] ? d[0] + " " + d[1] : d[0]);
    return tr;
  }
  function drawRecent() {
    var list = recent.map(row);
    if (!list.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = 5; td.className = "empty"; td.textContent = "No requests yet.";
      tr.appendChild(td); list = [tr];
    }
    rows.replaceChildren.apply(rows, list);
    recent.forEach(function (r) { r.fresh = false; });
  }
  function takeRecent(list, fresh) {
    if (!Array.isArray(list)) return;
    list.forEach(function (r) {
      if (!r || typeof r !== "object") return;
      recent.unshift({ time: r.time, method: r.method, route: r.route, path: SHOW_PATHS ? r.path : null,
                       status: r.status, ms: r.ms, fresh: fresh });
    });
    // Newest first by the time each ended: with several workers, the other
    // workers' requests arrive a second or so after this one's own.
    recent.sort(function (a, b) { return (number(b.time) || 0) - (number(a.time) || 0); });
    if (recent.length > MAX_RECENT) recent.length = MAX_RECENT;
  }

  // Routes: a row per route, each upstream's health; the twin of
  // _route_rows() in wighaven/web/dashboard.py. Rows and upstreams are
  // updated in place, so a title being read stays put.
  var routeRows = document.getElementById("route-rows"), routeEls = new Map();
  function ejectedNote(until, now) {
    until = number(until); now = number(now);
    var left = until === null || now === null ? null : until - now;
    return left === null || left <= 0 ? "back any moment" : "back in " + uptime(Math.ceil(left));
  }
  function upCount(ups) {
    if (!ups.length) return ["", "r-sub"];
    var up = ups.filter(function (u) { return u.state === "up"; }).length;
    return [up + " of " + ups.length + " up",
            up === ups.length ? "r-sub" : up ? "r-sub warn" : "r-sub bad"];
  }
  function rateClass(ratio, base) { return ratio ? base + (ratio >= 0.05 ? " bad" : " warn") : base; }
  function sameChildren(parent, list) {
    var kids = parent.children;
    if (kids.length !== list.length) return false;
    for (var i = 0; i < list.length; i++) if (kids[i] !== list[i]) return false;
    return true;
  }
  function numCell(tr, label) {
    var td = document.createElement("td");
    td.className = "r-num";
    td.setAttribute("data-label", label);
    tr.appendChild(td);
    return td;
  }
  function makeRoute(name) {
    var tr = document.createElement("tr"), th = document.createElement("th");
    tr.setAttribute("data-route", name);
    th.scope = "row";
    th.className = "r-name";
    var el = { tr: tr, name: span("route-name", name), count: span("r-sub", ""), ups: new Map(),
               list: null, none: null };
    th.appendChild(el.name); th.appendChild(el.count); tr.appendChild(th);
    el.rps = numCell(tr, "Req/s");
    el.p95 = numCell(tr, "p95");
    var errors = numCell(tr, "Errors");
    el.rate = span("num", ""); el.total = span("r-sub", "");
    errors.appendChild(el.rate); errors.appendChild(el.total);
    el.inFlight = numCell(tr, "In flight");
    el.upsCell = document.createElement("td");
    el.upsCell.className = "r-ups";
    tr.appendChild(el.upsCell);
    return el;
  }
  function fillUpstream(item, u, now) {
    var state = u.state === "up" || u.state === "ejected" || u.state === "down" ? u.state : "unknown";
    var stage = str(u.stage), error = str(u.last_error), label = str(u.label);
    var note = state !== "up" && error && error !== "stage " + stage ? error : "";
    var sig = [state, label, stage, note].join("\n");
    if (item.sig !== sig) {
      item.sig = sig;
      var name = document.createElement("code");
      name.className = "ups-label";
      name.textContent = label;
      var body = span("ups-body", "");
      body.appendChild(name);
      if (stage) {
        var tag = span("ups-stage", stage);
        tag.insertBefore(span("sr-only", "Space stage "), tag.firstChild);
        body.appendChild(tag);
      }
      item.when = null;
      if (state === "ejected") {
        item.when = document.createElement("time");
        item.when.className = "ups-when";
        body.appendChild(item.when);
      }
      if (note) body.appendChild(span("ups-note", note));
      item.li.replaceChildren(span("ups-st s-" + state, state), body);
    }
    if (item.when) {
      text(item.when, ejectedNote(u.ejected_until, now));
      var at = iso(u.ejected_until);
      if (item.when.getAttribute("datetime") !== at) item.when.setAttribute("datetime", at);
    }
    if (error) {
      if (item.li.title !== "Last error: " + error) item.li.title = "Last error: " + error;
    } else if (item.li.hasAttribute("title")) {
      item.li.removeAttribute("title");
    }
  }
  function paintUpstreams(el, ups, now) {
    if (!ups.length) {
      el.ups = new Map();
      if (!el.none) el.none = span("r-none", "no upstreams");
      if (!sameChildren(el.upsCell, [el.none])) el.upsCell.replaceChildren(el.none);
      return;
    }
    if (!el.list) { el.list = document.createElement("ul"); el.list.className = "ups"; }
    var seen = new Map(), items = [];
    ups.forEach(function (u) {
      var label = str(u.label), item = seen.has(label) ? null : el.ups.get(label);
      if (!item) {
        item = { li: document.createElement("li"), sig: null, when: null };
        item.li.className = "ups-item";
      }
      if (!seen.has(label)) seen.set(label, item);
      fillUpstream(item, u, now);
      items.push(item.li);
    });
    el.ups = seen;
    if (!sameChildren(el.list, items)) el.list.replaceChildren.apply(el.list, items);
    if (!sameChildren(el.upsCell, [el.list])) el.upsCell.replaceChildren(el.list);
  }
  function fillRoute(el, r, now) {
    var ups = Array.isArray(r.upstreams) ?
      r.upstreams.filter(function (u) { return u !== null && typeof u === "object"; }) : [];
    var upc = upCount(ups);
    text(el.count, upc[0]);
    if (el.count.className !== upc[1]) el.count.className = upc[1];
    text(el.rps, rate(r.requests_per_second));
    var p = ms(r.p95_ms);
    text(el.p95, p[1] ? p[0] + " " + p[1] : p[0]);
    var er = number(r.error_rate), pc = percent(er), c = rateClass(er, "num");
    text(el.rate, pc[0] + pc[1]);
    if (el.rate.className !== c) el.rate.className = c;
    text(el.total, count(r.errors) + " total");
    text(el.inFlight, count(r.in_flight));
    paintUpstreams(el, ups, now);
  }
  function paintRoutes(list, now) {
    var seen = new Map(), rowsNow = [];
    (Array.isArray(list) ? list : []).forEach(function (r) {
      if (!r || typeof r !== "object") return;
      var name = str(r.name), el = seen.has(name) ? null : routeEls.get(name);
      if (!el) el = makeRoute(name);
      if (!seen.has(name)) seen.set(name, el);
      fillRoute(el, r, now);
      rowsNow.push(el.tr);
    });
    routeEls = seen;
    if (!rowsNow.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = 6; td.className = "empty"; td.textContent = "No routes yet.";
      tr.appendChild(td); rowsNow = [tr];
      if (routeRows.children.length === 1 && routeRows.textContent === "No routes yet.") return;
    }
    if (!sameChildren(routeRows, rowsNow)) routeRows.replaceChildren.apply(routeRows, rowsNow);
  }

  // Connection state, status and the spoken summary.
  var status = body.getAttribute("data-status") || "ok", conn = "connecting", last = null;
  var summaryEl = document.getElementById("summary"), spokenKey = null, spokenAt = 0;
  function reachWords(r) { return r === true ? "reachable" : r === false ? "unreachable" : "not checked yet"; }
  function summarise() {
    var key, words;
    if (conn === "down") {
      key = "down";
      words = "Connection to the gateway lost; reconnecting.";
    } else if (last) {
      var reach = last.backend_status && typeof last.backend_status === "object" ? last.backend_status.reachable : null;
      key = [conn, status, reach].join("/");
      var p95 = ms(last.latency_ms && last.latency_ms.p95), err = percent(last.error_rate);
      words = "Gateway " + status + ", live. Backend " + reachWords(reach) + ". " +
        rate(last.requests_per_second) + " requests per second, p95 latency " +
        (p95[1] ? p95[0] + " " + p95[1] : "not measured yet") + ", error rate " + err[0] + err[1] + ".";
    } else {
      return;
    }
    var now = Date.now();
    if (key !== spokenKey || now - spokenAt >= SUMMARY_EVERY_MS) {
      spokenKey = key; spokenAt = now;
      text(summaryEl, words);
    }
  }
  function setConn(state) {
    conn = state;
    body.setAttribute("data-conn", state);
    if (state === "down") {
      set("status", "reconnecting\u2026");
      set("connection", last ? "offline since " + clock(Date.now() / 1000) : "cannot reach the live feed");
    } else if (state === "live") {
      set("connection", "live");
    }
    summarise();
  }

  function paint(m) {
    status = m.status === "draining" ? "draining" : "ok";
    body.setAttribute("data-status", status);
    set("status", status);
    if (typeof m.version === "string") set("version", m.version);
    if (typeof m.backend === "string") set("backend", m.backend);
    set("uptime", uptime(m.uptime_seconds));
    set("requests_per_second", rate(m.requests_per_second));
    var lat = m.latency_ms && typeof m.latency_ms === "object" ? m.latency_ms : {};
    fig("latency_p50", ms(lat.p50)); fig("latency_p95", ms(lat.p95)); fig("latency_p99", ms(lat.p99));
    var er = number(m.error_rate);
    fig("error_rate", percent(er));
    cls("error_rate", er ? (er >= 0.05 ? "v bad" : "v warn") : "v");
    set("in_flight", count(m.in_flight));
    set("open_websockets", count(m.open_websockets));
    set("open_streams", count(m.open_streams));
    fig("bytes_in", bytes(m.bytes_in));
    fig("bytes_out", bytes(m.bytes_out));
    set("requests", count(m.requests));
    set("errors", count(m.errors));
    cls("errors", number(m.errors) ? "num bad" : "num");
    var b = m.backend_status && typeof m.backend_status === "object" ? m.backend_status : {};
    set("reachable", reachWords(b.reachable));
    cls("reachable", b.reachable === true ? "badge ok" : b.reachable === false ? "badge bad" : "badge");
    var box = document.getElementById("last-error");
    if (typeof b.last_error === "string" && b.last_error) {
      set("last_error", b.last_error);
      set("last_error_at", clock(b.last_error_at));
      box.hidden = false;
    } else {
      box.hidden = true;
    }
    paintRoutes(m.routes, m.time);
    last = m;
  }

  function hello(m) {
    series = new Map(); lastT = null;
    if (Array.isArray(m.history)) m.history.forEach(addPoint);
    if (lastT === null && number(m.time) !== null) lastT = Math.floor(m.time) - 1;
    trimSeries();
    recent = [];
    takeRecent(m.recent, false);
    paint(m); drawChart(); drawRecent();
    setConn("live");
  }
  function stats(m) {
    addPoint(m.point); trimSeries();
    takeRecent(m.recent, true);
    paint(m); drawChart();
    if (Array.isArray(m.recent) && m.recent.length) drawRecent();
    if (conn !== "live") setConn("live"); else summarise();
  }

  // The socket: reconnects by itself, 250 ms doubling to 5 s (with jitter).
  var ws = null, attempt = 0, retry = null, stall = null;
  function liveUrl() {
    var u = new URL(cfg.live, location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.hash = "";
    return u.href;
  }
  function schedule() {
    if (retry !== null) return;
    var delay = Math.min(MAX_DELAY, FIRST_DELAY * Math.pow(2, attempt));
    attempt = Math.min(attempt + 1, 10);
    delay = Math.min(MAX_DELAY, delay * (0.8 + Math.random() * 0.4));
    retry = setTimeout(function () { retry = null; connect(); }, delay);
  }
  function lost(sock) {
    if (sock !== ws) return;
    ws = null;
    clearTimeout(stall);
    try { sock.close(); } catch (e) { /* already closing */ }
    setConn("down");
    schedule();
  }
  function watch(sock) {
    clearTimeout(stall);
    stall = setTimeout(function () { lost(sock); }, STALL_MS);
  }
  function connect() {
    var sock;
    try { sock = new WebSocket(liveUrl()); } catch (e) { setConn("down"); schedule(); return; }
    ws = sock;
    watch(sock);
    sock.onmessage = function (event) {
      if (sock !== ws) return;
      var m;
      try { m = JSON.parse(event.data); } catch (e) { return; }
      if (!m || typeof m !== "object") return;
      watch(sock);
      if (m.type === "hello") { attempt = 0; hello(m); }
      else if (m.type === "stats") stats(m);
    };
    sock.onclose = function () { lost(sock); };
    sock.onerror = function () { lost(sock); };
  }
  window.addEventListener("online", function () {
    if (ws === null && retry !== null) { clearTimeout(retry); retry = null; attempt = 0; connect(); }
  });
  if (cfg.live) {
    body.setAttribute("data-conn", "connecting");
    set("connection", "connecting\u2026");
    connect();
  } else {
    set("connection", "live updates off");
  }
})();
