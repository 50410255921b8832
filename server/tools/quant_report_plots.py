#!/usr/bin/env python3
"""Plots for `qrag-quant report`: reads the CSV files the report wrote into DATA_DIR and writes PNGs there.

usage: quant_report_plots.py DATA_DIR
Needs matplotlib (Debian: python3-matplotlib, in deploy/install-deps.sh). Run with /usr/bin/python3.
"""
import csv
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(data_dir, name):
    with open(os.path.join(data_dir, name), newline="") as f:
        return list(csv.DictReader(f))


def save(fig, data_dir, name):
    fig.tight_layout()
    fig.savefig(os.path.join(data_dir, name), dpi=80)
    plt.close(fig)


def item1(data_dir):
    by_format = defaultdict(list)
    for r in rows(data_dir, "item1_sweep.csv"):
        by_format[r["format"]].append((float(r["bin_log2"]), float(r["worst_rel_error"]), float(r["mean_rel_error"])))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for name, pts in by_format.items():
        pts.sort()
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [max(p[1], 1e-4) for p in pts], label=name)
        axes[1].plot(xs, [max(p[2], 1e-4) for p in pts], label=name)
    for ax, title in zip(axes, ["worst relative error per bin", "mean relative error per bin"]):
        ax.set_yscale("log")
        ax.set_xlabel("log2(|x| / max|x|)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("relative error")
    axes[1].legend(fontsize=7, loc="upper right")
    save(fig, data_dir, "item1_relative_error.png")


def item2(data_dir):
    data = defaultdict(lambda: defaultdict(list))
    for r in rows(data_dir, "item2_sqnr.csv"):
        data[r["source"]][r["clip"]].append((int(r["bits"]), float(r["sqnr_db"])))
    sources = list(data)
    fig, axes = plt.subplots(1, len(sources), figsize=(3.3 * len(sources), 3.4), sharey=True)
    if len(sources) == 1:
        axes = [axes]
    for ax, src in zip(axes, sources):
        for clip, style in (("max", "o-"), ("octav", "s-"), ("mse", "x--")):
            pts = sorted(data[src][clip])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=clip, markersize=4)
        ax.set_title(src, fontsize=9)
        ax.set_xlabel("bits")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("SQNR (dB)")
    axes[0].legend(fontsize=8)
    save(fig, data_dir, "item2_sqnr_vs_bits.png")


def item3(data_dir):
    data = defaultdict(dict)
    for r in rows(data_dir, "item3_vector.csv"):
        if r["granularity"].startswith("channel-int"):
            continue
        data[r["source"]][(r["granularity"], r["scale"], r["clip"])] = float(r["sqnr_db"])
    sources = list(data)
    grans = ["channel", "vector64", "vector32", "vector16"]
    fig, axes = plt.subplots(1, len(sources), figsize=(3.8 * len(sources), 3.4), sharey=True)
    if len(sources) == 1:
        axes = [axes]
    for ax, src in zip(axes, sources):
        for scale, clip, style in (("fp32", "max", "o-"), ("8-bit", "max", "s-"), ("6-bit", "max", "^-"),
                                   ("4-bit", "max", "v-"), ("fp32", "octav", "x--")):
            xs, ys = [], []
            for i, g in enumerate(grans):
                v = data[src].get((g, scale, clip))
                if v is not None:
                    xs.append(i)
                    ys.append(v)
            ax.plot(xs, ys, style, label=f"{scale} scales, {clip}", markersize=4)
        ax.set_xticks(range(len(grans)))
        ax.set_xticklabels(grans, fontsize=8)
        ax.set_title(src, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("INT4 SQNR (dB)")
    axes[0].legend(fontsize=7)
    save(fig, data_dir, "item3_vector_size.png")


def item4(data_dir):
    rs = [r for r in rows(data_dir, "item4_end_model.csv") if r["model"] == "stories260K"]
    names = [r["scheme"] for r in rs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    kl = [max(float(r["mean_kl"]), 1e-9) for r in rs]
    colors = ["tab:blue" if r["served"] == "1" else "tab:orange" for r in rs]
    axes[0].bar(names, kl, color=colors)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("mean KL vs fp32 (nats)")
    axes[0].set_title("stories260K (blue: served, orange: emulated)", fontsize=9)
    axes[1].bar(names, [float(r["top1"]) for r in rs], color=colors)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("top-1 agreement with fp32")
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
    save(fig, data_dir, "item4_end_model.png")


def item4_scifact(data_dir):
    """all-MiniLM-L6-v2 SciFact nDCG@10 per scheme; written only when the report had SciFact figures."""
    rs = rows(data_dir, "item4_scifact.csv")
    if not rs:
        return
    names = [r["scheme"] for r in rs]
    colors = ["tab:blue" if r["served"] == "1" else "tab:orange" for r in rs]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(names, [float(r["ndcg_at_10"]) for r in rs], color=colors)
    ax.axhline(0.645, color="gray", linestyle="--", linewidth=1, label="published fp32 (0.645)")
    ax.set_ylim(0, 0.75)
    ax.set_ylabel("SciFact nDCG@10")
    ax.set_title("all-MiniLM-L6-v2 (blue: served, orange: emulated)", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, data_dir, "item4_scifact.png")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data_dir = sys.argv[1]
    item1(data_dir)
    item2(data_dir)
    item3(data_dir)
    item4(data_dir)
    item4_scifact(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
