#!/usr/bin/python3
# tools/bench-charts.py — draws side-by-side PNG charts from two or more BENCH_JSON files of
# tools/bench.sh (e.g. Warren and RabbitMQ, or Warren before and after a change):
#   PREFIX-throughput.png  sent and received msg/s per scenario (grouped bars, log scale)
#   PREFIX-latency.png     end-to-end latency p50 / p95 / p99 per scenario (log scale)
#   PREFIX-memory.png      the broker's peak RSS per scenario, when bench.sh had BENCH_PID
# Scenarios are matched by name; one missing or failed in a file is marked, not dropped.
# Needs Debian's python3-matplotlib (tools/dev.sh deps installs it), hence /usr/bin/python3.
#
# Usage: tools/bench-charts.py [-o PREFIX] A.json B.json [...]   (PREFIX default: bench)
import argparse
import json
import math
import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
from matplotlib.ticker import FuncFormatter  # noqa: E402

COLORS = ["#1f6fb4", "#e8731a", "#2ca02c", "#9467bd", "#8c564b", "#d62728"]


def load(paths):
    runs = []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        if d.get("tool") != "bench.sh" or "scenarios" not in d:
            sys.exit(f"bench-charts.py: {p} is not a BENCH_JSON file from tools/bench.sh.")
        runs.append(d)
    labels = [d["label"] for d in runs]
    for i, d in enumerate(runs):  # two runs with one label: tell them apart by file name
        if labels.count(d["label"]) > 1:
            labels[i] = f"{d['label']} ({os.path.basename(paths[i])})"
    names = []
    for d in runs:
        names += [s["name"] for s in d["scenarios"] if s["name"] not in names]
    return runs, labels, names


def scenario(run, name):
    """The run's entry for scenario `name`, {} when it has none."""
    return next((s for s in run["scenarios"] if s["name"] == name), {})


def figures(run, name):
    """warren-perf's --json result for scenario `name`, {} when it is missing or failed."""
    return scenario(run, name).get("result") or {}


def rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e3:.0f}k" if v >= 1e4 else f"{v:,.0f}"


def tick(v):
    return f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}"


def ms(v):
    return f"{v:.3g} ms" if v < 100 else f"{v:,.0f} ms"


def frame(names, labels, runs, title, xlabel):
    """A figure with one row per scenario and a bar slot per run, scenario names on the left."""
    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.85 * len(names) * max(1, len(runs) / 2)))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([textwrap.fill(n, 30) for n in names], fontsize=9)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    dates = ", ".join(f"{lab}: {r['date'][:10]}, {r['seconds_per_scenario']} s per scenario"
                      for lab, r in zip(labels, runs))
    ax.set_title(f"{title}\n{textwrap.fill(dates, 110)}", fontsize=11)
    ax.grid(axis="x", which="major", alpha=0.3)
    for y in range(len(names) - 1):
        ax.axhline(y + 0.5, color="#cccccc", linewidth=0.6)
    return fig, ax


def finish(fig, ax, path, handles):
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(path)


def throughput(runs, labels, names, path):
    fig, ax = frame(names, labels, runs, "Throughput per scenario", "messages per second (log)")
    slot = 0.8 / (2 * len(runs))
    handles = []
    for i, (run, lab) in enumerate(zip(runs, labels)):
        c = COLORS[i % len(COLORS)]
        for k, (key, what) in enumerate((("sent_rate", "sent"), ("recv_rate", "received"))):
            ys = [y - 0.4 + slot * (2 * i + k + 0.5) for y in range(len(names))]
            vals = [figures(run, n).get(key, 0) for n in names]
            h = ax.barh(ys, [max(v, 1) for v in vals], height=slot * 0.95, color=c,
                        alpha=1.0 if k == 0 else 0.45, hatch=None if k == 0 else "//",
                        edgecolor=c, label=f"{lab} {what}")
            handles.append(h)
            for y, v in zip(ys, vals):
                ax.text(max(v, 100) * 1.08, y, rate(v) if v else "failed", va="center",
                        fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(left=100, right=ax.get_xlim()[1] * 3)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: tick(v)))
    finish(fig, ax, path, handles)


def latency(runs, labels, names, path):
    fig, ax = frame(names, labels, runs, "End-to-end latency per scenario (p50 dark, p95, "
                    "p99 light)", "milliseconds (log); unlimited-rate rows measure the backlog")
    slot = 0.8 / len(runs)
    lats = [[figures(r, n).get("latency_ms") or {} for n in names] for r in runs]
    lows = [d["p50"] for row in lats for d in row if d.get("samples") and d["p50"] > 0]
    left = 10 ** math.floor(math.log10(min(lows))) if lows else 0.001  # bars start here
    handles = []
    for i, lab in enumerate(labels):
        c = COLORS[i % len(COLORS)]
        ys = [y - 0.4 + slot * (i + 0.5) for y in range(len(names))]
        for pct, alpha in (("p99", 0.3), ("p95", 0.55), ("p50", 1.0)):  # longest first
            vals = [d.get(pct, 0) if d.get("samples") else 0 for d in lats[i]]
            h = ax.barh(ys, [max(v - left, 0) for v in vals], left=left, height=slot * 0.9,
                        color=c, alpha=alpha, label=f"{lab} {pct}")
            handles.insert(3 * i, h)
        for y, d in zip(ys, lats[i]):
            text = f"p50 {ms(d['p50'])}, p99 {ms(d['p99'])}" if d.get("samples") else "no data"
            ax.text(max(d.get("p99", 0), left) * 1.15, y, text, va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(left=left, right=ax.get_xlim()[1] * 20)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    finish(fig, ax, path, handles)


def memory(runs, labels, names, path):
    have = [any("broker_memory_kb" in s for s in r["scenarios"]) for r in runs]
    if not any(have):
        print("bench-charts.py: no file has memory samples (bench.sh without BENCH_PID); "
              "no memory chart.", file=sys.stderr)
        return
    fig, ax = frame(names, labels, runs, "Broker memory per scenario (peak RSS light, of which "
                    "anonymous dark)", "MiB")
    slot = 0.8 / len(runs)
    handles = []
    for i, (run, lab) in enumerate(zip(runs, labels)):
        c = COLORS[i % len(COLORS)]
        ys = [y - 0.4 + slot * (i + 0.5) for y in range(len(names))]
        mems = [scenario(run, n).get("broker_memory_kb") or {} for n in names]
        for key, alpha, what in (("rss_peak", 0.4, "RSS"), ("anon_peak", 1.0, "anonymous")):
            vals = [(m.get(key) or 0) / 1024 for m in mems]
            h = ax.barh(ys, vals, height=slot * 0.9, color=c, alpha=alpha,
                        label=f"{lab} {what}")
            handles.append(h)
        for y, m in zip(ys, mems):
            text = f"{m['rss_peak'] / 1024:,.0f} MiB" if m.get("rss_peak") else \
                "not sampled" if not have[i] else "no data"
            ax.text((m.get("rss_peak") or 0) / 1024 + 2, y, text, va="center", fontsize=7)
    ax.set_xlim(left=0, right=ax.get_xlim()[1] * 1.15)
    finish(fig, ax, path, handles)


def main():
    ap = argparse.ArgumentParser(description="Charts from tools/bench.sh BENCH_JSON files.")
    ap.add_argument("-o", "--out", default="bench", help="output prefix (default: bench)")
    ap.add_argument("json", nargs="+", help="BENCH_JSON files, drawn side by side in order")
    a = ap.parse_args()
    runs, labels, names = load(a.json)
    throughput(runs, labels, names, f"{a.out}-throughput.png")
    latency(runs, labels, names, f"{a.out}-latency.png")
    memory(runs, labels, names, f"{a.out}-memory.png")


if __name__ == "__main__":
    main()
