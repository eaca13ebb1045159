"""Routing costs as ratios between the nets, and re-measuring them on the device that runs them.

Why ratios: budget routing needs what the large net costs next to the small one, and the
build used to store absolute ms/crop timed once. On a loaded build machine that predicted
3.1 crops/s for dyn-r50-h32 int8_cpu against 18.1 measured afterwards (issue #29): a load
slows every net, so absolute figures from another moment (or another machine) are wrong by
the load factor. Nets timed side by side in the same rounds see the same load, so
large/small and router/small survive it. The manifest keeps the ratios (what budget routing
reads: runtime.pose.routing.cost_ratios) and, only as information, the absolute figures of
the moment they were taken. The pipeline turns the ratios into milliseconds by timing one
small-net batch where it runs (and keeps learning from each frame's own timings).

How: every net runs ``batch`` crops per call, in ``rounds`` interleaved rounds after one
discarded warm-up round; the order reverses every round (ABC, CBA), so a load ramp does not
always hit the same net. Each ratio is the median of its per-round ratios on the wall clock
(what a frame waits for); its min/max over rounds is stored beside it, and process CPU time
too (INFO). The same timing serves the build (build/costs.py, ORT sessions of every
precision) and the device (``dynpose costs ARTIFACTS``, ``PipelineOptions.refresh_costs``).
The round machinery (``interleaved_clocks``) is defined here, not in measure.rounds, because
runtime imports nothing outside itself; measure.rounds re-exports it for the bench gates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import guarded
from runtime.safe_io import atomic_write_text

ROLES = ("router", "small", "large")
COST_BATCH = 8
COST_ROUNDS = 7
CLOCK = "wall"
HOW = (
    "median of per-round ratios (wall clock) over {rounds} interleaved rounds (order reversed every "
    "round, one warm-up round discarded), {batch} crops per call"
)


#: Clocks a part can be timed with. ``wall`` (perf_counter): what a user waits for, but
#: it also runs while other processes hold the cores. ``process`` (CPU time of all our
#: threads: the ORT workers too): the work done, nearly blind to other load, but blind
#: to waiting as well. ``thread`` (the calling thread's CPU time): for single-threaded
#: numpy work, where it does not advance while another process holds the core.
CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    "process": time.process_time,
    "thread": time.thread_time,
}


def interleaved_clocks(
    parts: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    clocks: Sequence[str] = ("wall", "process"),
    on_result: Callable[[str, object], None] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Clock -> part -> seconds per round: every part once per round after ``warmup`` discarded
    rounds, order reversed every round (ABC, CBA), each part read on every clock in ``clocks``.
    The one round machinery: the bench gates use it through measure.rounds."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = list(parts)
    ticks = [(c, CLOCKS[c]) for c in clocks]
    times: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in clocks}
    for r in range(warmup + rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t0 = [tick() for _, tick in ticks]
            out = parts[n]()
            t1 = [tick() for _, tick in ticks]
            if r >= warmup:
                for (c, _), a, b in zip(ticks, t0, t1):
                    times[c][n].append(b - a)
                if on_result is not None:
                    on_result(n, out)
    return times


def cost_entry(
    wall: Mapping[str, Sequence[float]], cpu: Mapping[str, Sequence[float]], batch: int, rounds: int
) -> dict[str, Any]:
    """One manifest entry from per-round seconds per role (same rounds): ratios to the small
    net with their spread, and the absolute ms/crop of this measurement (INFO)."""
    ratios, spread = {}, {}
    for role in ("router", "large"):
        per_round = [a / b for a, b in zip(wall[role], wall["small"]) if b > 0]
        ratios[role] = round(statistics.median(per_round), 4)
        spread[role] = [round(min(per_round), 4), round(max(per_round), 4)]
    return {
        "ratios": {"small": 1.0, **ratios},
        "ratio_spread": spread,
        "how": HOW.format(rounds=rounds, batch=batch),
        "batch": batch,
        "rounds": rounds,
        "clock": CLOCK,
        "ms_per_crop": {r: statistics.median(wall[r]) * 1e3 / batch for r in ROLES},
        "cpu_ms_per_crop": {r: statistics.median(cpu[r]) * 1e3 / batch for r in ROLES},
        "absolute": "informative only: the load of the moment; budget routing reads the ratios",
    }


def measure_runner_costs(
    runners: Mapping[str, Any],
    streams: Mapping[str, Any],
    backend: str,
    precision: str | None,
    batch: int = COST_BATCH,
    rounds: int = COST_ROUNDS,
    input_hw: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The entry for one backend and precision, timed on opened runners and their streams
    (a pipeline's own: ``PosePipeline.runners`` / ``.streams``), each net at its own input
    (H, W) (``input_hw`` per role, as preprocess.net_input_hw reads it; INPUT_HW where not given)."""
    from runtime.pose.preprocess import INPUT_HW

    rng = np.random.default_rng(0)
    sizes = {r: (input_hw or {}).get(r, INPUT_HW) for r in ROLES}
    xs = {r: rng.standard_normal((batch, 3, *sizes[r])).astype(np.float32) for r in ROLES}
    parts = {r: (lambda r=r: runners[r].infer(xs[r], streams[r])) for r in ROLES}
    t = interleaved_clocks(parts, rounds)
    entry = cost_entry(t["wall"], t["process"], batch, rounds)
    entry.update(backend=backend, precision=precision or "fp32")
    return entry


def measure_folder_costs(
    root: str | Path,
    backend: str = "auto",
    precision: str | None = "fp32",
    batch: int = COST_BATCH,
    rounds: int = COST_ROUNDS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open the artifacts' nets on ``backend`` as the pipeline would and time them: (manifest, entry)."""
    from runtime.artifacts.manifest import load_manifest
    from runtime.backends import open_backend
    from runtime.pose.preprocess import net_input_hw

    manifest = load_manifest(root)
    be = open_backend(backend, Path(root), manifest, {}, precision=precision)
    runners = {r: be.open_runner(r).activate() for r in ROLES}
    streams = {r: be.new_stream(r) for r in ROLES}
    try:
        sizes = {r: net_input_hw(manifest, r) for r in ROLES}
        return manifest, measure_runner_costs(runners, streams, be.name, precision, batch, rounds, sizes)
    finally:
        for s in streams.values():
            s.close()
        for r in runners.values():
            r.deactivate()
        be.close()


def store_entry(root: str | Path, manifest: dict[str, Any], entry: dict[str, Any]) -> Path:
    """Replace the entry of the same backend (and precision, for ONNX Runtime) in
    ``manifest["routing"]["costs"]``, stamped with where and when, and rewrite manifest.json
    atomically (a crash leaves the old file whole)."""
    from runtime.artifacts.manifest import manifest_path

    entry = {**entry, "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    routing = manifest.setdefault("routing", {})
    costs = dict(routing.get("costs") or {})

    def same(e: Any) -> bool:
        if not isinstance(e, dict) or e.get("backend") != entry["backend"]:
            return False
        return bool(entry["backend"] != "ort" or e.get("precision") == entry["precision"])

    costs["entries"] = [e for e in costs.get("entries") or [] if not same(e)] + [entry]
    costs["measured"] = True
    routing["costs"] = costs
    path = manifest_path(root)
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def format_entry(entry: Mapping[str, Any]) -> str:
    r, s, ms = entry["ratios"], entry["ratio_spread"], entry["ms_per_crop"]
    return (
        f"routing costs ({entry['backend']}, {entry['precision']}): large/small {r['large']:.3f} "
        f"(rounds {s['large'][0]:.3f}-{s['large'][1]:.3f}), router/small {r['router']:.3f} "
        f"(rounds {s['router'][0]:.3f}-{s['router'][1]:.3f}); {entry['how']}; now: small "
        f"{ms['small']:.2f}, large {ms['large']:.2f}, router {ms['router']:.2f} ms/crop (info)"
    )


def _parser() -> argparse.ArgumentParser:
    from runtime.cli.args import OneLineParser

    p = OneLineParser(
        prog="dynpose costs",
        description="Re-measure the nets' routing cost ratios (large/small, router/small) on this "
        "device and write them into the artifacts' manifest.json (atomically).",
    )
    p.add_argument("artifacts", help="artifacts folder (with manifest.json)")
    p.add_argument("--backend", default="auto", help="auto | ort | trt (default auto)")
    p.add_argument("--precision", default="fp32", help="ORT variant: fp32 | int8_cpu | fp16 (default fp32)")
    p.add_argument(
        "--rounds", type=int, default=COST_ROUNDS, help=f"interleaved rounds (default {COST_ROUNDS})"
    )
    p.add_argument("--batch", type=int, default=COST_BATCH, help=f"crops per call (default {COST_BATCH})")
    return p


def _run(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    manifest, entry = measure_folder_costs(
        a.artifacts, a.backend, a.precision, max(1, a.batch), max(1, a.rounds)
    )
    path = store_entry(a.artifacts, manifest, entry)
    print(format_entry(entry))
    print(f"written: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``dynpose costs ARTIFACTS`` / ``python -m runtime.pose.costs ARTIFACTS``."""
    return guarded(_run, argv, "dynpose costs")


if __name__ == "__main__":
    raise SystemExit(main())
