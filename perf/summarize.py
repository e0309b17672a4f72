#!/usr/bin/env python3
"""Summarise a perf/run.sh CSV: medians over rounds, the ratios the goals are stated in, and an SVG bar chart.

    python3 perf/summarize.py perf/results/<date>.csv perf/results/whole-stack.svg
"""
import csv
import statistics
import sys
from collections import defaultdict

SCENARIOS = [
    ("bare", "/bare/hello (no layer)"),
    ("msec_cached", "msec /v1/hello, token reused"),
    ("peer_cached", "peer /v1/hello, token reused"),
    ("msec_new_token", "msec /v1/hello, new token each request"),
    ("peer_new_token", "peer /v1/hello, new token each request"),
]


def main(csv_path, svg_path):
    rows = defaultdict(list)
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            rows[(r["alg"], r["scenario"])].append((float(r["requests_per_second"]), float(r["p99_ms"])))
    algs = sorted({a for a, _ in rows}, key=lambda a: (a != "rs256", a))
    med = {k: (statistics.median(x for x, _ in v), statistics.median(p for _, p in v), len(v)) for k, v in rows.items()}

    print(f"Whole stack, medians of {max(n for *_, n in med.values())} interleaved rounds ({csv_path})\n")
    print("| token alg | scenario | requests/s | p99 (ms) |")
    print("|---|---|---:|---:|")
    for a in algs:
        for s, label in SCENARIOS:
            if (a, s) in med:
                rps, p99, _ = med[(a, s)]
                print(f"| {a.upper()} | {label} | {rps:,.0f} | {p99:.2f} |")
    print("\n| token alg | msec ÷ bare (goal ≥ 0.75) | peer ÷ bare | msec ÷ peer, token reused (goal ≥ 3) | msec ÷ peer, new token (goal ≥ 1) |")
    print("|---|---:|---:|---:|---:|")
    for a in algs:
        g = lambda s: med.get((a, s), (float("nan"),))[0]
        print(
            f"| {a.upper()} | {g('msec_cached') / g('bare'):.2f} | {g('peer_cached') / g('bare'):.2f} "
            f"| {g('msec_cached') / g('peer_cached'):.2f} | {g('msec_new_token') / g('peer_new_token'):.2f} |"
        )
    write_svg(svg_path, algs, med)


def write_svg(path, algs, med):
    colors = {"bare": "#9e9e9e", "msec_cached": "#1565c0", "peer_cached": "#ef6c00",
              "msec_new_token": "#64b5f6", "peer_new_token": "#ffb74d"}
    w, h, left, top, bottom, legend = 1000, 360, 70, 40, 40, 270
    plot_h = h - top - bottom
    vmax = max(v[0] for v in med.values()) * 1.1
    group_w = (w - legend - left - 20) / len(algs)
    bar_w = group_w / (len(SCENARIOS) + 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">Whole-stack throughput, requests/s (higher is better)</text>']
    for i in range(5):
        v = vmax * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" x2="{w - legend - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v / 1000:.0f}k</text>')
    for gi, a in enumerate(algs):
        x0 = left + gi * group_w + bar_w / 2
        for si, (s, _) in enumerate(SCENARIOS):
            if (a, s) not in med:
                continue
            v = med[(a, s)][0]
            bh = plot_h * v / vmax
            x = x0 + si * bar_w
            out.append(f'<rect x="{x:.1f}" y="{top + plot_h - bh:.1f}" width="{bar_w * 0.9:.1f}" height="{bh:.1f}" fill="{colors[s]}"/>')
            out.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{top + plot_h - bh - 4:.1f}" text-anchor="middle" font-size="10">{v / 1000:.1f}k</text>')
        out.append(f'<text x="{x0 + bar_w * len(SCENARIOS) / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{a.upper()} tokens</text>')
    lx = w - legend
    for i, (s, label) in enumerate(SCENARIOS):
        y = top + 10 + i * 20
        out.append(f'<rect x="{lx}" y="{y}" width="12" height="12" fill="{colors[s]}"/>')
        out.append(f'<text x="{lx + 18}" y="{y + 10}" font-size="11">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
