"""The dashboard page: one self-contained HTML document (no CDN, no external
fonts or scripts), so it renders offline and on a phone.

Rule: the page is a pure function of a stats snapshot and public facts
(backend host, version). It never receives the token, so it cannot show it.
Its script refreshes the figures from the health endpoint every few
seconds; a later live feed can replace that fetch without changing the
layout: each figure is an element with a C{data-stat} name.
"""

from __future__ import annotations

from html import escape

from .stats import StatsSnapshot

__all__ = ["render_dashboard", "format_uptime"]


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


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>WigHaven Gateway</title>
<style>
:root {{ --bg:#0f1420; --card:#182033; --ink:#e8ecf4; --mute:#8d97ad; --ok:#3ecf8e;
        --warn:#f5a524; --bad:#f25f5c; --accent:#7aa2ff; }}
* {{ box-sizing: border-box; }}
body {{ margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       background:var(--bg); color:var(--ink); }}
header {{ display:flex; align-items:center; gap:.75rem; padding:1.25rem 1.5rem;
         border-bottom:1px solid #232c44; }}
header h1 {{ font-size:1.15rem; margin:0; font-weight:600; letter-spacing:.01em; }}
.dot {{ width:.7rem; height:.7rem; border-radius:50%; background:var(--ok);
       box-shadow:0 0 0 4px rgba(62,207,142,.18); }}
.dot.down {{ background:var(--bad); box-shadow:0 0 0 4px rgba(242,95,92,.18); }}
.version {{ margin-left:auto; color:var(--mute); font-size:.85rem; }}
main {{ max-width:60rem; margin:0 auto; padding:1.5rem; }}
.backend {{ background:var(--card); border-radius:.75rem; padding:1rem 1.25rem;
           margin-bottom:1.25rem; display:flex; flex-wrap:wrap; gap:.5rem 1.5rem; }}
.backend span {{ color:var(--mute); }}
.backend code {{ color:var(--accent); font-size:1rem; word-break:break-all; }}
.grid {{ display:grid; grid-template-columns:repeat(auto-fit,minmax(10.5rem,1fr)); gap:1rem; }}
.card {{ background:var(--card); border-radius:.75rem; padding:1rem 1.25rem; }}
.card h2 {{ margin:0 0 .35rem; font-size:.8rem; font-weight:500; color:var(--mute);
           text-transform:uppercase; letter-spacing:.06em; }}
.card .v {{ font-size:1.75rem; font-weight:650; font-variant-numeric:tabular-nums; }}
.card .v.bad {{ color:var(--bad); }}
footer {{ color:var(--mute); font-size:.8rem; text-align:center; padding:2rem 1rem; }}
</style>
</head>
<body>
<header>
  <div class="dot" id="status-dot" role="img" aria-label="status: {status}"></div>
  <h1>WigHaven Gateway</h1>
  <div class="version">v<span data-stat="version">{version}</span></div>
</header>
<main>
  <section class="backend" aria-label="backend">
    <div><span>Status</span> <strong data-stat="status">{status}</strong></div>
    <div><span>Backend</span> <code data-stat="backend">{backend}</code></div>
    <div><span>Uptime</span> <strong data-stat="uptime">{uptime}</strong></div>
  </section>
  <section class="grid" aria-label="figures">
    <div class="card"><h2>Requests served</h2><div class="v" data-stat="requests">{requests}</div></div>
    <div class="card"><h2>Errors</h2><div class="v{errors_class}" data-stat="errors">{errors}</div></div>
    <div class="card"><h2>Mean latency</h2><div class="v"><span data-stat="mean_latency_ms">{latency}</span> ms</div></div>
    <div class="card"><h2>In flight</h2><div class="v" data-stat="in_flight">{in_flight}</div></div>
  </section>
</main>
<footer>Figures refresh every 2 seconds from <code>{health_path}</code>.</footer>
<script>
(function () {{
  function uptime(s) {{
    s = Math.floor(s); var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60), r = s % 60;
    return d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m ? m + "m " + r + "s" : r + "s";
  }}
  function set(name, value) {{
    var el = document.querySelector('[data-stat="' + name + '"]');
    if (el) el.textContent = value;
  }}
  function refresh() {{
    fetch({health_json}, {{ cache: "no-store" }}).then(function (r) {{ return r.json(); }})
      .then(function (h) {{
        set("status", h.status); set("uptime", uptime(h.uptime_seconds));
        set("requests", h.requests); set("errors", h.errors);
        set("in_flight", h.in_flight); set("mean_latency_ms", h.mean_latency_ms.toFixed(1));
        document.getElementById("status-dot").className = h.status === "ok" ? "dot" : "dot down";
      }}).catch(function () {{
        set("status", "unreachable");
        document.getElementById("status-dot").className = "dot down";
      }});
  }}
  setInterval(refresh, 2000);
}})();
</script>
</body>
</html>
"""


def render_dashboard(
    snapshot: StatsSnapshot, backend_host: str, version: str, health_path: str, status: str = "ok"
) -> bytes:
    """The dashboard HTML for C{snapshot}."""
    return _PAGE.format(
        status=escape(status),
        version=escape(version),
        backend=escape(backend_host),
        uptime=escape(format_uptime(snapshot.uptime_seconds)),
        requests=snapshot.requests,
        errors=snapshot.errors,
        errors_class=" bad" if snapshot.errors else "",
        latency="%.1f" % snapshot.mean_latency_ms,
        in_flight=snapshot.in_flight,
        health_path=escape(health_path),
        health_json='"%s"' % escape(health_path).replace('"', ""),
    ).encode("utf-8")
