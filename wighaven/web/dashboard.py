"""The dashboard page: one self-contained HTML document (no CDN, no external
fonts, scripts or images: inline CSS, inline JS, inline SVG), so it renders
offline, on a phone, and under the strict Content-Security-Policy the site
serves it with (C{default-src 'none'}, inline style and script, C{connect-src
'self'}).

Rule: the page is a pure function of a stats snapshot and public facts
(backend host, version), optionally enriched with one message of the live
feed (C{live}, the shape of its "hello"). It never receives the token, so it
cannot show it. Every value is HTML-escaped here; the page's script only
ever sets C{textContent} and SVG path data, never markup, because paths
in the recent-requests list are chosen by whoever sends a request.

The recent-requests list shows each request's path only to a viewer who
may see paths (C{show_paths}; a path can carry another visitor's OAuth
code or Gradio C{file=} path); otherwise its route, and no path at all,
even one the message would carry.

Two paints of the same figures:
  - the first, here, from the snapshot (and C{live} when given), so the
    page is useful without JavaScript;
  - then live, by the script: it opens a WebSocket to C{live_path} on the
    page's own host (ws: or wss: matching the page), repaints everything
    from each "hello", updates from each "stats" message, and reconnects by
    itself with exponential backoff (250 ms doubling, capped at 5 s) when
    the gateway goes away, showing "reconnecting..." meanwhile.

Each figure is an element with a C{data-stat} name (and a C{data-unit}
sibling for its unit); the formatters below and their twins in the script
produce the same text, so both paints agree.
"""

from __future__ import annotations

import json
import math
import time
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from typing import Any, Mapping, Optional, Sequence, Tuple

from ..observe.stats import StatsSnapshot

__all__ = [
    "HISTORY_SECONDS",
    "LIVE_PATH",
    "RECENT_ON_PAGE",
    "chart",
    "format_bytes",
    "format_count",
    "format_ms",
    "format_percent",
    "format_rate",
    "format_uptime",
    "render_dashboard",
]

#: Where the live feed is served, on the page's own host.
LIVE_PATH = "/_gateway/live"
#: Seconds of requests-per-second history the chart shows.
HISTORY_SECONDS = 300
#: How many recent requests the page lists.
RECENT_ON_PAGE = 20

DASH = "\u2014"  # shown for "no value yet"

Figure = Tuple[str, str]  # (number, unit)


# -- formatters (mirrored by the script: keep both in step) -----------------


def format_uptime(seconds: float) -> str:
    """3d 4h, 2h 5m, 7m 3s, 12s: the two largest units."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return "%dd %dh" % (days, hours)
    if hours:
        return "%dh %dm" % (hours, minutes)
    if minutes:
        return "%dm %ds" % (minutes, secs)
    return "%ds" % secs


def _fixed(value: float, digits: int, group: bool = False) -> str:
    """
    C{value} with C{digits} decimals, rounded like JavaScript's toFixed
    (the exact binary value, ties away from zero), with thousands commas
    when C{group}: the script's twin gives the same text.
    """
    text = str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
    if text.startswith("-") and not text.strip("-0."):
        text = text[1:]
    if group:
        sign = "-" if text.startswith("-") else ""
        whole, dot, fraction = text.lstrip("-").partition(".")
        text = sign + "{:,}".format(int(whole)) + dot + fraction
    return text


def _text(value) -> str:
    return "" if value is None else str(value)


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def format_count(value) -> str:
    """1,234,567; a dash for no value."""
    n = _number(value)
    return DASH if n is None else "{:,}".format(int(n))


def format_rate(value) -> str:
    """Requests per second: 0, 0.35, 3.40, 12.5, 1,234."""
    r = _number(value)
    if r is None:
        return DASH
    if r == 0:
        return "0"
    if r < 10:
        return _fixed(r, 2)
    if r < 100:
        return _fixed(r, 1)
    return _fixed(r, 0, group=True)


def format_ms(value) -> Figure:
    """A duration in milliseconds: (0.42, ms), (4.2, ms), (42, ms), (1.25, s)."""
    ms = _number(value)
    if ms is None:
        return (DASH, "")
    if ms < 1:
        return (_fixed(ms, 2), "ms")
    if ms < 10:
        return (_fixed(ms, 1), "ms")
    if ms < 1000:
        return (_fixed(ms, 0), "ms")
    if ms < 10000:
        return (_fixed(ms / 1000.0, 2), "s")
    return (_fixed(ms / 1000.0, 1, group=True), "s")


def format_percent(value) -> Figure:
    """A ratio 0..1 as a percentage: (0, %), (0.25, %), (2.5, %), (40, %)."""
    ratio = _number(value)
    if ratio is None:
        return (DASH, "")
    pct = ratio * 100.0
    if pct == 0:
        return ("0", "%")
    if pct < 1:
        return (_fixed(pct, 2), "%")
    if pct < 10:
        return (_fixed(pct, 1), "%")
    return (_fixed(pct, 0), "%")


_BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(value) -> Figure:
    """Bytes in binary units: (512, B), (1.5, KiB), (20.0, MiB), (512, GiB)."""
    n = _number(value)
    if n is None:
        return (DASH, "")
    if n < 1024:
        return ("%d" % n, "B")
    unit = -1
    while n >= 1024 and unit < len(_BYTE_UNITS) - 1:
        n /= 1024.0
        unit += 1
    return (_fixed(n, 1) if n < 100 else _fixed(n, 0), _BYTE_UNITS[unit])


def _format_axis(value: float) -> str:
    """1, 2.5, 0.33, 1,000: up to two decimals, no trailing zeros."""
    text = _fixed(value, 2, group=True)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _clock(epoch) -> str:
    """HH:MM:SS (UTC here; the script repaints in the browser's time zone)."""
    t = _number(epoch)
    if t is None:
        return DASH
    return time.strftime("%H:%M:%S", time.gmtime(t))


def _iso(epoch) -> str:
    t = _number(epoch)
    if t is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- the chart -----------------------------------------------------------------


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above C{value} (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def _counted(n: float, word: str) -> str:
    """1 request, 2 requests, 1,000 errors."""
    return "%s %s%s" % (format_count(n), word, "" if n == 1 else "s")


def _y(value: float, scale: float) -> str:
    text = _fixed(100.0 - value / scale * 96.0, 2)
    return text.rstrip("0").rstrip(".")


def chart(history: Sequence[Mapping[str, Any]], end: Optional[int] = None,
          window: int = HISTORY_SECONDS) -> dict:
    """
    The chart of C{history} ([{t, requests, errors}], one per second; missing
    seconds count as zero) over the C{window} seconds ending at C{end} (the
    newest point's second by default): SVG path data in a viewBox of
    C{0 0 window-1 100}, the y-axis scale, and a sentence saying what it shows.
    """
    points = {}
    for p in history or ():
        if not isinstance(p, Mapping):
            continue
        t = _number(p.get("t"))
        if t is not None:
            points[int(t)] = (_number(p.get("requests")) or 0.0, _number(p.get("errors")) or 0.0)
    if end is None:
        end = max(points) if points else 0
    start = end - window + 1
    requests = [points.get(start + i, (0.0, 0.0))[0] for i in range(window)]
    errors = [min(points.get(start + i, (0.0, 0.0))[1], requests[i]) for i in range(window)]
    peak = max(requests)
    scale = _nice_ceiling(peak)

    def line(values):
        return "M" + " L".join("%d %s" % (i, _y(v, scale)) for i, v in enumerate(values))

    def area(values):
        return line(values) + " L%d 100 L0 100 Z" % (window - 1)

    total, failed = sum(requests), sum(errors)
    minutes = window // 60
    if total == 0:
        alt = "No requests in the last %d minutes." % minutes
    else:
        alt = "Requests per second over the last %d minutes: %s, %s; " \
              "peak %s per second, latest %s per second." % (
                  minutes, _counted(total, "request"), _counted(failed, "error"),
                  _format_axis(peak), _format_axis(requests[-1]))
    return {
        "requests_line": line(requests),
        "requests_area": area(requests),
        "errors_line": line(errors),
        "errors_area": area(errors),
        "scale": _format_axis(scale),
        "half": _format_axis(scale / 2.0),
        "alt": alt,
    }


# -- the page ------------------------------------------------------------------

_STYLE = """
:root { color-scheme: dark;
  --bg:#0a0e18; --panel:#111827; --card:#151d2f; --line:#243049; --ink:#e8ecf4;
  --mute:#a3adc2; --faint:#3a4763; --ok:#3ecf8e; --warn:#f5b94a; --bad:#ff8a80;
  --accent:#86abff; --accent-fill:rgba(134,171,255,.16); --bad-fill:rgba(255,138,128,.38);
  --ok-soft:rgba(62,207,142,.14); --warn-soft:rgba(245,185,74,.14); --bad-soft:rgba(255,138,128,.14);
  --mute-soft:rgba(163,173,194,.12); --row:#172036; --focus:#ffd166; }
@media (prefers-color-scheme: light) { :root { color-scheme: light;
  --bg:#f3f5fa; --panel:#ffffff; --card:#ffffff; --line:#dbe1ec; --ink:#121a2b;
  --mute:#4d586d; --faint:#c5cddc; --ok:#08784f; --warn:#8a5a00; --bad:#b42318;
  --accent:#2453c9; --accent-fill:rgba(36,83,201,.12); --bad-fill:rgba(180,35,24,.32);
  --ok-soft:rgba(8,120,79,.10); --warn-soft:rgba(138,90,0,.10); --bad-soft:rgba(180,35,24,.09);
  --mute-soft:rgba(77,88,109,.10); --row:#f1f4f9; --focus:#9a5b00; } }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0 0 0 0); clip-path: inset(50%); white-space: nowrap; border: 0; }
:focus-visible { outline: 2px solid var(--focus); outline-offset: 2px; border-radius: 4px; }
.skip { position: absolute; left: .75rem; top: -3rem; background: var(--panel); color: var(--ink);
  padding: .5rem .75rem; border-radius: .5rem; z-index: 2; }
.skip:focus { top: .75rem; }
.top { border-bottom: 1px solid var(--line); background: var(--panel); }
.top-in { max-width: 76rem; margin: 0 auto; padding: .9rem 1.25rem; display: flex; flex-wrap: wrap;
  align-items: center; gap: .6rem 1rem; }
.brand { display: flex; align-items: center; gap: .65rem; margin-right: auto; min-width: 0; }
.brand svg { flex: none; }
.brand h1 { margin: 0; font-size: 1.1rem; font-weight: 650; letter-spacing: .005em; }
.brand .ver { color: var(--mute); font-size: .85rem; font-variant-numeric: tabular-nums; }
.state { display: flex; align-items: center; gap: .6rem; flex-wrap: wrap; }
.pill { display: inline-flex; align-items: center; gap: .45rem; padding: .28rem .75rem .28rem .6rem;
  border-radius: 999px; font-weight: 600; font-size: .9rem; background: var(--ok-soft); color: var(--ok);
  border: 1px solid transparent; }
.pill .dot { width: .55rem; height: .55rem; border-radius: 50%; background: currentColor; }
body[data-status="draining"] .pill { background: var(--warn-soft); color: var(--warn); }
body[data-conn="down"] .pill { background: var(--mute-soft); color: var(--mute); border-color: var(--faint); }
body[data-conn="live"] .pill .dot { animation: pulse 2s ease-out infinite; }
@keyframes pulse { 0% { box-shadow: 0 0 0 0 currentColor; } 70%, 100% { box-shadow: 0 0 0 .4rem transparent; } }
body[data-conn="down"] .pill .dot { animation: blink 1.2s ease-in-out infinite; }
@keyframes blink { 50% { opacity: .25; } }
.conn { color: var(--mute); font-size: .85rem; }
main { max-width: 76rem; margin: 0 auto; padding: 1.25rem; display: grid; gap: 1.25rem; }
.note { margin: 0; padding: .6rem .9rem; border-radius: .6rem; background: var(--warn-soft);
  color: var(--ink); border: 1px solid var(--line); font-size: .9rem; }
h2 { margin: 0; font-size: .95rem; font-weight: 650; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: .9rem; padding: 1rem 1.15rem; min-width: 0; }
.panel-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1rem; margin-bottom: .75rem; }
.panel-head .hint { color: var(--mute); font-size: .85rem; }
.cards { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 1rem; margin: 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .9rem; padding: .9rem 1.1rem 1rem;
  min-width: 0; }
.card dt { color: var(--mute); font-size: .78rem; font-weight: 600; text-transform: uppercase; letter-spacing: .07em; }
.card dd { margin: 0; }
.card .big { display: block; margin-top: .2rem; line-height: 1.15; overflow-wrap: anywhere; }
.card .v { font-size: 2rem; font-weight: 700; font-variant-numeric: tabular-nums; letter-spacing: -.01em; }
.unit { font-size: .95rem; font-weight: 600; color: var(--mute); margin-left: .2rem; letter-spacing: 0; }
.sub { display: block; margin-top: .3rem; color: var(--mute); font-size: .85rem; font-variant-numeric: tabular-nums; }
.sub b { color: var(--ink); font-weight: 600; }
.sub .q { white-space: nowrap; margin-right: .5rem; }
.v.warn, .num.warn { color: var(--warn); }
.v.bad, .num.bad { color: var(--bad); }
body[data-conn="down"] .live-fig :is(.v, .num, dd, .sub b, .unit, .backend-host) { color: var(--mute); }
body[data-conn="down"] .live-fig .badge { background: var(--mute-soft); color: var(--mute); }
body[data-conn="down"] .live-fig svg { opacity: .4; }
.layout { display: grid; grid-template-columns: minmax(0, 2fr) minmax(17rem, 1fr);
  grid-template-areas: "chart side" "recent side"; gap: 1.25rem; align-items: start; }
.area-chart { grid-area: chart; }
.area-recent { grid-area: recent; }
.side { grid-area: side; }
.side { display: grid; gap: 1.25rem; min-width: 0; }
.legend { display: flex; gap: 1rem; margin: 0 0 0 auto; padding: 0; list-style: none; color: var(--mute); font-size: .85rem; }
.legend li { display: flex; align-items: center; gap: .4rem; }
.swatch { width: .8rem; height: .3rem; border-radius: 2px; background: var(--accent); }
.swatch.err { background: var(--bad); }
figure { margin: 0; }
.plot { position: relative; height: 12.5rem; border-left: 1px solid var(--line); border-bottom: 1px solid var(--line);
  margin-left: 2.6rem; }
.plot svg { position: absolute; inset: 0; width: 100%; height: 100%; display: block; overflow: visible; }
.grid-line { stroke: var(--faint); stroke-width: 1; stroke-dasharray: 3 4; fill: none; }
.req-area { fill: var(--accent-fill); }
.req-line { fill: none; stroke: var(--accent); stroke-width: 1.75; stroke-linejoin: round; }
.err-area { fill: var(--bad-fill); }
.err-line { fill: none; stroke: var(--bad); stroke-width: 1.5; stroke-linejoin: round; }
.yl { position: absolute; right: calc(100% + .45rem); transform: translateY(-50%); color: var(--mute);
  font-size: .75rem; font-variant-numeric: tabular-nums; white-space: nowrap; }
.xaxis { position: relative; height: 1.2rem; margin: .35rem 0 0 2.6rem; color: var(--mute); font-size: .75rem; }
.xaxis span { position: absolute; top: 0; transform: translateX(-50%); white-space: nowrap; }
.xaxis .first { transform: none; }
.xaxis .last { transform: translateX(-100%); }
figcaption { margin-top: .6rem; color: var(--mute); font-size: .85rem; }
.facts { margin: 0; display: grid; gap: .1rem; }
.facts > div { display: flex; justify-content: space-between; align-items: baseline; gap: 1rem; padding: .42rem 0;
  border-bottom: 1px solid var(--line); }
.facts > div:last-child { border-bottom: 0; }
.facts dt { color: var(--mute); font-size: .9rem; }
.facts dd { margin: 0; text-align: right; font-weight: 600; font-variant-numeric: tabular-nums; min-width: 0;
  overflow-wrap: anywhere; }
.facts .unit { font-size: .85rem; }
.backend-host { font-size: .95rem; color: var(--accent); font-weight: 600; }
.badge { display: inline-flex; align-items: center; gap: .35rem; padding: .1rem .55rem; border-radius: 999px;
  font-size: .85rem; font-weight: 600; background: var(--mute-soft); color: var(--mute); }
.badge::before { content: ""; width: .45rem; height: .45rem; border-radius: 50%; background: currentColor; }
.badge.ok { background: var(--ok-soft); color: var(--ok); }
.badge.bad { background: var(--bad-soft); color: var(--bad); }
.last-error { margin: .6rem 0 0; padding: .55rem .7rem; border-radius: .55rem; background: var(--bad-soft);
  font-size: .85rem; overflow-wrap: anywhere; }
.last-error[hidden] { display: none; }
.last-error b { color: var(--bad); }
.table-wrap { overflow-x: auto; border-radius: .6rem; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; font-variant-numeric: tabular-nums; }
th, td { padding: .5rem .6rem; text-align: left; border-bottom: 1px solid var(--line); font-size: .9rem; }
th { color: var(--mute); font-size: .75rem; font-weight: 600; text-transform: uppercase; letter-spacing: .07em; }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:hover { background: var(--row); }
.c-time { width: 6.5rem; color: var(--mute); }
.c-method { width: 5.5rem; }
.c-status { width: 5rem; }
.c-ms { width: 6rem; text-align: right; }
td.c-path, td.c-route { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
td.c-path code { font-size: .85rem; }
td.c-route { color: var(--mute); }
.method { font-size: .78rem; font-weight: 700; letter-spacing: .04em; }
.st { display: inline-block; min-width: 2.6rem; text-align: center; padding: .05rem .4rem; border-radius: .4rem;
  font-weight: 700; font-size: .82rem; background: var(--mute-soft); color: var(--mute); }
.st.s2, .st.s1 { background: var(--ok-soft); color: var(--ok); }
.st.s3 { background: var(--accent-fill); color: var(--accent); }
.st.s4 { background: var(--warn-soft); color: var(--warn); }
.st.s5, .st.none { background: var(--bad-soft); color: var(--bad); }
td.empty { color: var(--mute); text-align: center; padding: 1.5rem .6rem; }
tbody tr.new { animation: flash 1.6s ease-out; }
@keyframes flash { from { background: var(--accent-fill); } to { background: transparent; } }
footer { max-width: 76rem; margin: 0 auto; padding: .5rem 1.25rem 2rem; color: var(--mute); font-size: .82rem; }
footer code { color: var(--ink); }
@media (max-width: 60rem) {
  .layout { grid-template-columns: minmax(0, 1fr); grid-template-areas: "chart" "side" "recent"; }
  .side { grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); }
}
@media (max-width: 44rem) {
  .cards { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: .75rem; }
  .card { padding: .75rem .85rem .85rem; }
  .card .v { font-size: 1.6rem; }
  main { padding: 1rem .75rem; gap: 1rem; }
  .top-in { padding: .75rem; }
  .panel { padding: .85rem .8rem; }
  .plot { height: 10rem; margin-left: 2.2rem; }
  .xaxis { margin-left: 2.2rem; }
  .xaxis .mid { display: none; }
  .c-time { display: none; }
  .c-method { width: 4.4rem; }
  .c-status { width: 3.7rem; }
  .c-ms { width: 5rem; }
  th, td { padding: .5rem .35rem; }
  th { text-transform: none; letter-spacing: 0; font-size: .8rem; }
  td.c-path { white-space: normal; text-overflow: clip; }
  td.c-path code { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 3;
    overflow: hidden; word-break: break-all; }
  footer { padding: .5rem .75rem 1.5rem; }
}
@media (prefers-reduced-motion: reduce) {
  *, *::before, *::after { animation: none !important; transition: none !important; scroll-behavior: auto !important; }
}
"""

_SCRIPT = r"""
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

  // Formatters: twins of the ones in wighaven/web/dashboard.py.
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

  // The chart: the twin of chart() in wighaven/web/dashboard.py.
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
"""

_LOGO = (
    '<svg width="30" height="30" viewBox="0 0 32 32" aria-hidden="true" focusable="false">'
    '<rect width="32" height="32" rx="8" fill="#2453c9"/>'
    '<path d="M7 10l3.6 12L16 12l5.4 10L25 10" fill="none" stroke="#fff" stroke-width="2.6" '
    'stroke-linecap="round" stroke-linejoin="round"/></svg>'
)


def _json_for_script(value) -> str:
    """JSON that is safe inside a <script> element."""
    return (
        json.dumps(value, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _fig(name: str, pair: Figure, cls: str = "v") -> str:
    return '%s<span class="unit" data-unit="%s">%s</span>' % (
        _stat(name, pair[0], cls=cls), name, escape(pair[1]))


def _big(name: str, pair: Figure, cls: str = "v") -> str:
    return '<span class="big">%s</span>' % _fig(name, pair, cls)


def _stat(name: str, value: str, tag: str = "span", cls: str = "") -> str:
    attr = ' class="%s"' % cls if cls else ""
    return '<%s%s data-stat="%s">%s</%s>' % (tag, attr, name, escape(value), tag)


def _recent_rows(recent, show_paths: bool) -> str:
    if recent is None:
        return '<tr><td colspan="5" class="empty">Recent requests appear here as they finish.</td></tr>'
    entries = [r for r in recent if isinstance(r, Mapping)][-RECENT_ON_PAGE:]
    if not entries:
        return '<tr><td colspan="5" class="empty">No requests yet.</td></tr>'
    out = []
    for r in reversed(entries):
        code = _number(r.get("status"))
        if code is None:
            status = ('<span><span class="st none" aria-hidden="true">%s</span>'
                      '<span class="sr-only">no status (aborted)</span></span>' % DASH)
        else:
            status = '<span class="st s%d">%d</span>' % (int(code) // 100, int(code))
        duration = format_ms(r.get("ms"))
        if show_paths:
            path = escape(_text(r.get("path")))
            what = '<td class="c-path" title="%s"><code>%s</code></td>' % (path, path)
        else:
            what = '<td class="c-route">%s</td>' % escape(_text(r.get("route")))
        out.append(
            '<tr><td class="c-time"><time datetime="%s">%s</time></td>'
            '<td class="c-method"><span class="method mono">%s</span></td>%s'
            '<td class="c-status">%s</td><td class="c-ms">%s</td></tr>'
            % (_iso(r.get("time")), _clock(r.get("time")), escape(_text(r.get("method"))),
               what, status, escape(duration[0] + (" " + duration[1] if duration[1] else "")))
        )
    return "".join(out)


def _reach_words(reachable) -> str:
    return {True: "reachable", False: "unreachable"}.get(reachable, "not checked yet")


def render_dashboard(
    snapshot: StatsSnapshot,
    backend_host: str,
    version: str,
    health_path: str,
    status: str = "ok",
    *,
    live: Optional[Mapping[str, Any]] = None,
    live_path: Optional[str] = LIVE_PATH,
    show_paths: bool = False,
) -> bytes:
    """
    The dashboard HTML for C{snapshot}.

    @param live: optionally, a message of the live feed in the shape of its
        "hello" (figures, history, recent): the first paint then shows
        everything the live page shows. Without it, the figures the snapshot
        lacks (rates, percentiles, bytes) show a dash until the feed speaks.
    @param live_path: the path of the live feed on the page's host; None
        when there is no feed (the page then stays as first painted).
    @param show_paths: may this viewer see the paths of recent requests?
        Without, the list shows their routes instead.
    """
    live = live if isinstance(live, Mapping) else None
    src = live or {}

    def pick(key, default=None):
        return src.get(key, default)

    latency = pick("latency_ms") if isinstance(pick("latency_ms"), Mapping) else {}
    backend_status = pick("backend_status") if isinstance(pick("backend_status"), Mapping) else {}
    requests = pick("requests", snapshot.requests)
    errors = pick("errors", snapshot.errors)
    uptime_seconds = pick("uptime_seconds", snapshot.uptime_seconds)
    error_rate = _number(pick("error_rate"))
    reachable = backend_status.get("reachable") if live else None
    last_error = backend_status.get("last_error")
    has_error = isinstance(last_error, str) and bool(last_error)
    draining = status == "draining"

    history = pick("history") if isinstance(pick("history"), list) else []
    end = None
    if not history and _number(pick("time")) is not None:
        end = int(math.floor(pick("time"))) - 1
    drawn = chart(history, end)

    if error_rate:
        rate_cls = "v bad" if error_rate >= 0.05 else "v warn"
    else:
        rate_cls = "v"
    reach_cls = {True: "badge ok", False: "badge bad"}.get(reachable, "badge")
    p95 = format_ms(latency.get("p95"))
    err_pct = format_percent(error_rate)
    if live:
        summary = "Gateway %s. Backend %s. %s requests per second, p95 latency %s, error rate %s." % (
            status, _reach_words(reachable), format_rate(pick("requests_per_second")),
            (p95[0] + " " + p95[1]) if p95[1] else "not measured yet", err_pct[0] + err_pct[1])
    else:
        summary = "Gateway %s. %s requests served, %s errors, %s in flight." % (
            status, format_count(requests), format_count(errors), format_count(snapshot.in_flight))

    config = {"live": live_path, "window": HISTORY_SECONDS, "recent": RECENT_ON_PAGE,
              "paths": show_paths}

    values = dict(
        style=_STYLE,
        script=_SCRIPT,
        config=_json_for_script(config),
        logo=_LOGO,
        body_status="draining" if draining else "ok",
        status=_stat("status", status),
        connection=_stat("connection", "figures as of page load" if live_path else "live updates off"),
        version=_stat("version", version),
        version_text=escape(version),
        backend=_stat("backend", backend_host, "code", "backend-host"),
        reachable=_stat("reachable", _reach_words(reachable), cls=reach_cls),
        last_error_hidden="" if has_error else " hidden",
        last_error=_stat("last_error", last_error if has_error else ""),
        last_error_at=_stat("last_error_at", _clock(backend_status.get("last_error_at"))
                            if has_error else ""),
        uptime=_stat("uptime", format_uptime(_number(uptime_seconds) or 0)),
        requests_per_second='<span class="big">%s</span>' % _stat(
            "requests_per_second", format_rate(pick("requests_per_second")), cls="v"),
        latency_p95=_big("latency_p95", p95),
        latency_p50=_fig("latency_p50", format_ms(latency.get("p50")), cls=""),
        latency_p99=_fig("latency_p99", format_ms(latency.get("p99")), cls=""),
        error_rate=_big("error_rate", err_pct, cls=rate_cls),
        in_flight='<span class="big">%s</span>' % _stat(
            "in_flight", format_count(pick("in_flight", snapshot.in_flight)), cls="v"),
        open_websockets=_stat("open_websockets", format_count(pick("open_websockets"))),
        open_streams=_stat("open_streams", format_count(pick("open_streams"))),
        bytes_in=_fig("bytes_in", format_bytes(pick("bytes_in")), cls=""),
        bytes_out=_fig("bytes_out", format_bytes(pick("bytes_out")), cls=""),
        requests=_stat("requests", format_count(requests), cls="num"),
        errors=_stat("errors", format_count(errors), cls="num bad" if _number(errors) else "num"),
        summary=escape(summary),
        recent_rows=_recent_rows(
            (pick("recent") if isinstance(pick("recent"), (list, tuple)) else []) if live else None,
            show_paths,
        ),
        recent_hint="newest first, the last 20" if show_paths
        else "newest first, the last 20; paths are not shown",
        recent_column='<th scope="col" class="c-path">Path</th>' if show_paths
        else '<th scope="col" class="c-route">Route</th>',
        health_path=escape(health_path),
        feed_note=("Figures update live over a WebSocket at <code>%s</code>" % escape(live_path))
        if live_path else "Live updates are off",
        **{k: escape(v) for k, v in drawn.items()},
    )
    return _PAGE.format(**values).encode("utf-8")


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<meta name="referrer" content="no-referrer">
<title>WigHaven Gateway</title>
<style>{style}</style>
</head>
<body data-status="{body_status}" data-conn="static">
<a class="skip" href="#recent-h">Skip to recent requests</a>
<header class="top">
  <div class="top-in">
    <div class="brand">{logo}<h1>WigHaven Gateway</h1><span class="ver">v{version}</span></div>
    <div class="state">
      <span class="pill"><span class="dot" aria-hidden="true"></span><span class="sr-only">Status:</span> {status}</span>
      <span class="conn">{connection}</span>
    </div>
  </div>
</header>
<main>
  <noscript><p class="note">Live updates need JavaScript: these figures are from when the page was loaded.</p></noscript>
  <section aria-labelledby="figures-h">
    <h2 id="figures-h" class="sr-only">Figures</h2>
    <p id="summary" class="sr-only" aria-live="polite" aria-atomic="true">{summary}</p>
    <dl class="cards">
      <div class="card live-fig"><dt>Requests / s</dt><dd>{requests_per_second}<span class="sub">average of the last 10 s</span></dd></div>
      <div class="card live-fig"><dt>Latency p95</dt><dd>{latency_p95}<span class="sub"><span class="q">p50 <b>{latency_p50}</b></span> <span class="q">p99 <b>{latency_p99}</b></span></span></dd></div>
      <div class="card live-fig"><dt>Error rate</dt><dd>{error_rate}<span class="sub">of requests in the last minute</span></dd></div>
      <div class="card live-fig"><dt>In flight</dt><dd>{in_flight}<span class="sub">requests being answered now</span></dd></div>
    </dl>
  </section>
  <div class="layout">
    <section class="panel live-fig area-chart" aria-labelledby="traffic-h">
      <div class="panel-head">
        <h2 id="traffic-h">Traffic</h2><span class="hint">requests per second, last 5 minutes</span>
        <ul class="legend" aria-hidden="true"><li><span class="swatch"></span>requests</li><li><span class="swatch err"></span>errors</li></ul>
      </div>
      <figure>
        <div class="plot">
          <span class="yl" style="top:4%" aria-hidden="true" data-chart="scale">{scale}</span>
          <span class="yl" style="top:52%" aria-hidden="true" data-chart="half">{half}</span>
          <svg viewBox="0 0 299 100" preserveAspectRatio="none" role="img" aria-labelledby="chart-alt">
            <path class="grid-line" d="M0 4 L299 4 M0 52 L299 52" vector-effect="non-scaling-stroke"/>
            <path class="req-area" data-path="requests_area" d="{requests_area}"/>
            <path class="req-line" data-path="requests_line" d="{requests_line}" vector-effect="non-scaling-stroke"/>
            <path class="err-area" data-path="errors_area" d="{errors_area}"/>
            <path class="err-line" data-path="errors_line" d="{errors_line}" vector-effect="non-scaling-stroke"/>
          </svg>
        </div>
        <div class="xaxis" aria-hidden="true"><span class="first" style="left:0">5 min ago</span><span class="mid" style="left:20%">4 min</span><span class="mid" style="left:40%">3 min</span><span class="mid" style="left:60%">2 min</span><span class="mid" style="left:80%">1 min</span><span class="last" style="left:100%">now</span></div>
        <figcaption id="chart-alt">{alt}</figcaption>
      </figure>
    </section>
    <div class="side">
      <section class="panel live-fig" aria-labelledby="backend-h">
        <div class="panel-head"><h2 id="backend-h">Backend</h2></div>
        <dl class="facts">
          <div><dt>Host</dt><dd>{backend}</dd></div>
          <div><dt>Reachability</dt><dd>{reachable}</dd></div>
          <div><dt>Gateway uptime</dt><dd>{uptime}</dd></div>
        </dl>
        <p class="last-error" id="last-error"{last_error_hidden}><b>Last error</b> at {last_error_at}: {last_error}</p>
      </section>
      <section class="panel live-fig" aria-labelledby="totals-h">
        <div class="panel-head"><h2 id="totals-h">Connections and totals</h2></div>
        <dl class="facts">
          <div><dt>WebSockets open</dt><dd>{open_websockets}</dd></div>
          <div><dt>Event streams open</dt><dd>{open_streams}</dd></div>
          <div><dt>Bytes in</dt><dd>{bytes_in}</dd></div>
          <div><dt>Bytes out</dt><dd>{bytes_out}</dd></div>
          <div><dt>Requests</dt><dd>{requests}</dd></div>
          <div><dt>Errors</dt><dd>{errors}</dd></div>
        </dl>
      </section>
    </div>
  <section class="panel area-recent" aria-labelledby="recent-h">
    <div class="panel-head"><h2 id="recent-h" tabindex="-1">Recent requests</h2><span class="hint">{recent_hint}</span></div>
    <div class="table-wrap">
      <table>
        <caption class="sr-only">The most recent requests through the gateway, newest first</caption>
        <thead><tr><th scope="col" class="c-time">Time</th><th scope="col" class="c-method">Method</th>{recent_column}<th scope="col" class="c-status">Status</th><th scope="col" class="c-ms">Duration</th></tr></thead>
        <tbody id="recent-rows">{recent_rows}</tbody>
      </table>
    </div>
  </section>
  </div>
</main>
<footer>WigHaven Gateway v{version_text} &middot; {feed_note} &middot; Health as JSON at <code>{health_path}</code></footer>
<script type="application/json" id="dashboard-config">{config}</script>
<script>{script}</script>
</body>
</html>
"""
