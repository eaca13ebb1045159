"""Write a trade-off sweep as a markdown table, a CSV and a PNG plot (AP vs crops/s).

Kept apart from bench/sweep.py so the numbers and their presentation change
independently; the conditions of the run go under the table because a
crops/s column without them cannot be compared with anything.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.conditions import collect_conditions, format_conditions
from runtime.safe_io import atomic_write_bytes, atomic_write_text


def _label(r: Any) -> str:
    if r.p is None:
        return f"{r.policy} only"
    return f"{r.policy} p={r.p:g}%"


def markdown_table(rows: Sequence[Any]) -> str:
    lines = [
        "| pipeline | large fraction | AP | AP50 | AR | GMACs / crop | crops/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {_label(r)} | {r.large_fraction:.3f} | {r.AP:.3f} | {r.AP50:.3f} | {r.AR:.3f} | "
            f"{r.gmacs_per_crop:.3f} | {r.crops_per_s:.2f} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[Any], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for policy, style in (("dyn", "o-"), ("random", "s--")):
        pts = sorted((r for r in rows if r.policy == policy), key=lambda r: r.p)
        if not pts:
            continue
        ax.plot([r.crops_per_s for r in pts], [r.AP for r in pts], style, label=f"{policy} (p = 0..100 %)")
        for r in pts:
            ax.annotate(
                f"{r.p:g}", (r.crops_per_s, r.AP), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
    for r in rows:
        if r.p is None:
            ax.plot([r.crops_per_s], [r.AP], "k^", ms=8)
            ax.annotate(
                f"{r.policy} only",
                (r.crops_per_s, r.AP),
                textcoords="offset points",
                xytext=(5, -10),
                fontsize=8,
            )
    ax.set_xlabel("crops/s (higher is faster)")
    ax.set_ylabel("COCO keypoint AP")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_report(
    rows: Sequence[Any],
    nets: Any,
    manifest: dict,
    out: Path,
    *,
    backend: str,
    precision: str,
    timing: str,
    data: Path,
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    weights = manifest.get("weights", "unknown")
    config = manifest.get("config", "?")
    cond = collect_conditions(
        backend=backend, precision=precision, batch=32, config=config, weights=weights, timing=timing
    )
    csv_path, md_path, png_path = out / "tradeoff.csv", out / "tradeoff.md", out / "tradeoff.png"
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=list(asdict(rows[0])))
    w.writeheader()
    for r in rows:
        w.writerow(asdict(r))
    atomic_write_text(csv_path, text.getvalue())
    n = len(nets.router_scores)
    alone = ", ".join(
        f"{k} {n / v:.2f}" for k, v in nets.seconds.items() if k in ("router", "small", "large")
    )
    warn = ""
    if weights != "checkpoint":
        warn = (
            f"\n> **Weights: {weights}.** "
            + (
                "Random weights: the AP column is meaningless (near 0) and only the speed "
                "columns say anything. "
                if weights == "random"
                else "Fixture nets trained on synthetic figures, not real people: AP on real photos is low. "
            )
            + "Rebuild with real checkpoints (`--small-ckpt/--large-ckpt/--router-ckpt`) for real accuracy.\n"
        )
    timing_note = (
        "crops/s = this run's measured per-crop costs combined as preprocessing + router (dyn only) + "
        "(1-f)/T_small + f/T_large + decode: the ideal mixture, which the scheduler reaches within "
        "its gated share (bench/test_bench_pipeline.py)"
        if timing == "model"
        else "crops/s = the real PosePipeline timed once per row (run_many)"
    )
    md = f"""# Accuracy / speed trade-off: {config}

`python -m bench.sweep --config {config}` on {data.name} ({n} detector boxes), backend {backend}, {precision}.
{warn}
{markdown_table(rows)}

- p = percent of calibration crops in the band (k1, k2 refitted per p on this run's router scores, theta
  {
        manifest.get("routing", {}).get("theta", 0.1)
    }); `random` sends the same fraction, chosen at random, and runs no router.
- GMACs / crop = router (dyn only) + (1-f) x small + f x large, from the manifest ({
        ", ".join(f"{r} {manifest['models'][r]['gmacs']:.3f}" for r in ("router", "small", "large"))
    }).
- {timing_note}. Each net alone here (crops/s): {alone}.

![AP vs crops/s](tradeoff.png)

## Conditions

{format_conditions(cond)}
"""
    atomic_write_text(md_path, md)
    plot(rows, png_path, f"{config} on {data.name} ({backend}, {precision}, weights {weights})")
    return [md_path, csv_path, png_path]
