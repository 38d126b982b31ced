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

The routes table has a row per route of the live message (its rate,
p95, errors and in-flight requests, and each upstream's health: a pill
saying up, ejected or down, with when an ejected one is back, relative to
the message's time, and its last error); on a phone each row is a block.

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
from importlib.resources import files
from typing import Any, Mapping, Optional, Sequence, Tuple

from ..observe.stats import StatsSnapshot


def _asset(name: str) -> str:
    """One of the page's parts, a file beside this module (package data)."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


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

_STYLE = _asset("dashboard.css")

_SCRIPT = _asset("dashboard.js")

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


_STATES = ("up", "ejected", "down")


def _ejected_note(until, now) -> str:
    """How long an ejected upstream stays out: back in 8s, back in 2m 5s."""
    left = None if _number(until) is None or _number(now) is None else until - now
    if left is None or left <= 0:
        return "back any moment"
    return "back in " + format_uptime(math.ceil(left))


def _upstream_item(u: Mapping[str, Any], now) -> str:
    """
    One upstream of a route: a pill saying its state (its colour says it
    too), its host, the Space's stage, when an ejected one is back, and
    why it is not up (the last error is its title as well).
    """
    state = u.get("state") if u.get("state") in _STATES else "unknown"
    stage = _text(u.get("stage"))
    error = _text(u.get("last_error"))
    title = ' title="Last error: %s"' % escape(error) if error else ""
    parts = ['<li class="ups-item"%s><span class="ups-st s-%s">%s</span><span class="ups-body">'
             '<code class="ups-label">%s</code>' % (title, state, state, escape(_text(u.get("label"))))]
    if stage:
        parts.append('<span class="ups-stage"><span class="sr-only">Space stage </span>%s</span>'
                     % escape(stage))
    if state == "ejected":
        parts.append('<time class="ups-when" datetime="%s">%s</time>'
                     % (_iso(u.get("ejected_until")), escape(_ejected_note(u.get("ejected_until"), now))))
    if state != "up" and error and error != "stage " + stage:
        parts.append('<span class="ups-note">%s</span>' % escape(error))
    parts.append("</span></li>")
    return "".join(parts)


def _up_count(upstreams) -> Tuple[str, str]:
    """(1 of 2 up, its class: warn when some are not up, bad when none is)."""
    if not upstreams:
        return ("", "r-sub")
    up = sum(1 for u in upstreams if u.get("state") == "up")
    cls = "r-sub" if up == len(upstreams) else "r-sub warn" if up else "r-sub bad"
    return ("%d of %d up" % (up, len(upstreams)), cls)


def _rate_class(ratio, base: str) -> str:
    """The class of an error rate: warn above 0, bad from 5%."""
    if not ratio:
        return base
    return base + (" bad" if ratio >= 0.05 else " warn")


def _route_rows(routes, now) -> str:
    """The routes table's rows (the script's twin: paintRoutes)."""
    if routes is None:
        return '<tr><td colspan="6" class="empty">Routes appear here with the live figures.</td></tr>'
    entries = [r for r in routes if isinstance(r, Mapping)] if isinstance(routes, (list, tuple)) else []
    if not entries:
        return '<tr><td colspan="6" class="empty">No routes yet.</td></tr>'
    out = []
    for r in entries:
        upstreams = r.get("upstreams")
        upstreams = [u for u in upstreams if isinstance(u, Mapping)] \
            if isinstance(upstreams, (list, tuple)) else []
        p95 = format_ms(r.get("p95_ms"))
        rate = format_percent(r.get("error_rate"))
        items = "".join(_upstream_item(u, now) for u in upstreams)
        up_count, up_class = _up_count(upstreams)
        out.append(
            '<tr data-route="%s"><th scope="row" class="r-name"><span class="route-name">%s</span>'
            '<span class="%s">%s</span></th>'
            '<td class="r-num" data-label="Req/s">%s</td>'
            '<td class="r-num" data-label="p95">%s</td>'
            '<td class="r-num" data-label="Errors"><span class="%s">%s</span>'
            '<span class="r-sub">%s total</span></td>'
            '<td class="r-num" data-label="In flight">%s</td>'
            '<td class="r-ups">%s</td></tr>'
            % (escape(_text(r.get("name"))), escape(_text(r.get("name"))),
               up_class, escape(up_count),
               escape(format_rate(r.get("requests_per_second"))),
               escape(p95[0] + (" " + p95[1] if p95[1] else "")),
               _rate_class(_number(r.get("error_rate")), "num"), escape(rate[0] + rate[1]),
               escape(format_count(r.get("errors"))),
               escape(format_count(r.get("in_flight"))),
               '<ul class="ups">%s</ul>' % items if items
               else '<span class="r-none">no upstreams</span>')
        )
    return "".join(out)


def _reach_words(reachable) -> str:
    return {True: "reachable", False: "unreachable"}.get(reachable, "not checked yet")


def _account(account) -> str:
    """Who is signed in, and a sign-out form (POST with the CSRF token) for a session."""
    if not account:
        return ""
    user, csrf = account
    # Only administrators see the dashboard with AUTH on: the panel is theirs too.
    out = ('<span class="who">Signed in as <b>%s</b></span>'
           '<a class="admin-link" id="admin-panel" href="/_gateway/admin/">Admin panel</a>'
           % escape(user))
    if csrf:
        out = ('<form class="account" method="post" action="/_gateway/logout">%s'
               '<input type="hidden" name="csrf" value="%s">'
               '<button type="submit" id="sign-out">Sign out</button></form>'
               % (out, escape(csrf)))
    return out


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
    account: Optional[tuple] = None,
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
    @param account: with AUTH on, (the viewer's name, its session's CSRF
        token or None): the header says who is signed in, with a sign-out
        button for a browser session.
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
        account=_account(account),
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
        route_rows=_route_rows(
            (pick("routes") if isinstance(pick("routes"), (list, tuple)) else []) if live else None,
            pick("time"),
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


# A str.format template: render_dashboard fills in its {name} fields.
_PAGE = _asset("dashboard.html")
