#!/usr/bin/env python3
"""Renders ops/grafana-dashboard.json as a static HTML page from a Prometheus server:
every panel's queries run over [start, end] through Prometheus' HTTP API and are
drawn as SVG line charts, laid out on Grafana's 24-column grid. It is what the
dashboard shows, without a Grafana server (which Debian does not package).

    render-dashboard.py DASHBOARD.json PROMETHEUS_URL START END OUT.html
"""
import html
import json
import math
import sys
import urllib.parse
import urllib.request

COLORS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1",
          "#ba43a9", "#705da0", "#508642", "#cca300"]


def query_range(prom, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{q}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    out = fmt or "{{__name__}}"
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:
        a = out.index("{{")
        b = out.index("}}", a)
        out = out[:a] + out[b + 2:]
    return out.strip() or "value"


def human(v, unit):
    if unit in ("Bps", "bytes"):
        for u in ["B", "KiB", "MiB", "GiB", "TiB"]:
            if abs(v) < 1024 or u == "TiB":
                return f"{v:.3g} {u}{'/s' if unit == 'Bps' else ''}"
            v /= 1024
    if unit == "s":
        if v < 1e-3:
            return f"{v * 1e6:.3g} µs"
        if v < 1:
            return f"{v * 1e3:.3g} ms"
        return f"{v:.3g} s"
    if unit == "iops":
        return f"{v:.3g} io/s"
    return f"{v:.3g}"


def chart(panel, series, start, end, width, height):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    pad_l, pad_r, pad_t, pad_b = 70, 10, 10, 22
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    ymax = max([v for _, pts in series for _, v in pts] + [0])
    ymax = ymax * 1.1 if ymax > 0 else 1
    x = lambda t: pad_l + (t - start) / (end - start) * w
    y = lambda v: pad_t + h - v / ymax * h
    out = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        v = ymax * i / 4
        out.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#2c3235"/>')
        out.append(f'<text x="{pad_l - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{html.escape(human(v, unit))}</text>')
    for i in range(6):
        t = start + (end - start) * i / 5
        secs = int(t - start)
        out.append(f'<text x="{x(t):.1f}" y="{height - 6}" text-anchor="middle">{secs // 60}:{secs % 60:02d}</text>')
    for n, (_, pts) in enumerate(series):
        if not pts:
            continue
        path = " ".join(f"{'M' if k == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for k, (t, v) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{COLORS[n % len(COLORS)]}" stroke-width="1.5"/>')
    out.append("</svg>")
    return "".join(out)


def main():
    dash_path, prom, start, end, out_path = sys.argv[1:6]
    start, end = float(start), float(end)
    step = max(2, int((end - start) / 300))
    dash = json.load(open(dash_path))
    cells = []
    for p in dash["panels"]:
        g = p["gridPos"]
        width, height = g["w"] * 62, g["h"] * 34
        series = []
        for t in p["targets"]:
            expr = t["expr"].replace("$__rate_interval", f"{4 * step}s")
            for r in query_range(prom, expr, start, end, step):
                pts = [(float(a), float(b)) for a, b in r["values"] if not math.isnan(float(b))]
                series.append((legend(t.get("legendFormat"), r["metric"]), pts))
        series.sort(key=lambda s: s[0])
        legend_html = " ".join(
            f'<span><i style="background:{COLORS[n % len(COLORS)]}"></i>{html.escape(name)}</span>'
            for n, (name, _) in enumerate(series))
        cells.append(
            f'<div class="panel" style="grid-column:{g["x"] + 1} / span {g["w"]};grid-row:{g["y"] // 8 + 1}">'
            f'<h2>{html.escape(p["title"])}</h2>{chart(p, series, start, end, width - 16, height - 80)}'
            f'<div class="legend">{legend_html}</div></div>')
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(dash['title'])}</title>
<style>
body{{background:#111217;color:#ccccdc;font:13px sans-serif;margin:12px}}
h1{{font-size:18px;margin:4px 0 10px}} h2{{font-size:14px;margin:2px 0 6px}}
.grid{{display:grid;grid-template-columns:repeat(24,62px);gap:8px}}
.panel{{background:#181b1f;border:1px solid #2c3235;border-radius:3px;padding:8px}}
svg text{{fill:#8e8e8e;font-size:11px}} .legend span{{margin-right:12px;white-space:nowrap}}
.legend i{{display:inline-block;width:12px;height:3px;margin:0 4px 3px 0;vertical-align:middle}}
</style>
<h1>{html.escape(dash['title'])} — {html.escape(dash.get('description', ''))}</h1>
<div class="grid">{''.join(cells)}</div>"""
    open(out_path, "w").write(page)


if __name__ == "__main__":
    main()
