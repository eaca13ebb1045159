"""Speed regression gates over pytest-benchmark's ``--benchmark-json`` output.

Two kinds of gated figure, because a shared CI machine is noisy:

* **Paired same-run ratios** (always gated). Each benchmark times the parts a
  ratio compares in alternation, in several rounds inside one process
  (``measure.rounds``), and stores one value per round under
  ``extra_info["paired"][figure]``. The gate reads the **median of those
  per-round ratios**; their quartiles and min/max are printed beside it and
  stored in ``extra_info["figures"]``. A burst of load lands on both sides of
  a round's ratio, so it cancels instead of failing the gate. The pipeline's
  figures (dyn/large, dyn's share of its ideal mixture, the share outside the
  nets, the decode's share of the small net) are derived here from the
  per-round seconds that bench/test_bench_pipeline.py stores
  (:func:`pipeline_paired`: shares on the process CPU clock, dyn/large on the
  wall clock; see that module for why), the bench then stores them too.
* **Absolute crops/s and FPS**, only against a baseline recorded on the same
  machine kind (``bench.conditions.machine_kind``: CPU model, GPU model, and
  on a Jetson the nvpmodel mode and jetson_clocks). Another kind of machine
  prints "no baseline for this machine kind" for them and is not gated.

Limits live in ``bench/baseline.json``: a ratio has either a recorded
``baseline`` and a relative ``tolerance`` (fail below baseline x (1 - tol), or
above baseline x (1 + tol) with ``"better": "lower"``), or a hard
``min``/``max`` (a physical target). Each has a ``why``: what it protects and
which clock it reads. Exit 1 when any gated figure fails, with the whole table.

CLI: ``python -m bench.gates RUN.json [--baseline bench/baseline.json] [--partial]``
     ``python -m bench.gates RUN.json --record [--record-ratios]``  (make bench-baseline)
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.conditions import machine_kind
from measure.rounds import Spread, ratio_rounds
from runtime.cli.args import OneLineParser, number
from runtime.errors import InputError, guarded
from runtime.io.safe_io import atomic_write_text

DEFAULT_BASELINE = Path(__file__).with_name("baseline.json")
PIPELINE_NAMES = ("small", "large", "dyn-p25", "dyn-p50")


@dataclass
class Row:
    figure: str
    value: float | None
    reference: str
    status: str  # PASS | FAIL | INFO
    spread: Spread | None = None

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


# -- reading a run ---------------------------------------------------------------------
def load_run(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputError(
            "benchmark JSON not found",
            str(p),
            "produce it with pytest -m bench --benchmark-json=PATH (or run make bench)",
        )
    try:
        run = json.loads(p.read_text())
    except ValueError as e:
        raise InputError(f"benchmark JSON unreadable ({e})", str(p), "rerun the benchmarks") from None
    if not isinstance(run, dict) or "benchmarks" not in run:
        raise InputError(
            "not pytest-benchmark JSON (no 'benchmarks' list)",
            str(p),
            "pass the file written by --benchmark-json",
        )
    return run


def run_conditions(run: dict[str, Any]) -> dict[str, Any]:
    """The conditions stored by the benchmarks (the first record that has them)."""
    for b in run["benchmarks"]:
        c = b.get("extra_info", {}).get("conditions")
        if c:
            return c
    return {}


def round_records(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """backend -> extra_info of its interleaved pipeline rounds (bench/test_bench_pipeline.py)."""
    out = {}
    for b in run["benchmarks"]:
        info = b.get("extra_info", {})
        if info.get("stage") == "rounds":
            out[(info.get("conditions") or {}).get("backend") or "?"] = info
    return out


def ideal_seconds(f: float, t_small: float, t_large: float, t_router: float | None) -> float:
    """Routing can only be as fast as its mixture: (1-f) T_small + f T_large + router, for the same crops."""
    return (1.0 - f) * t_small + f * t_large + (t_router or 0.0)


def _shares(s: dict[str, list[float]], f: dict[str, float], suffix: str) -> dict[str, list[float]]:
    """share_of_ideal / outside_nets_share per round for every policy, on one clock's seconds."""
    ts, tl, tr = s["net:small"], s["net:large"], s.get("router")
    out: dict[str, list[float]] = {}
    for name in PIPELINE_NAMES:
        tp = s.get(f"pipeline:{name}")
        if tp is None:
            continue
        frac = {"small": 0.0, "large": 1.0}.get(name, f.get(name, float("nan")))
        router = tr if name.startswith("dyn") and tr else [0.0] * len(tp)
        share = [ideal_seconds(frac, a, b, c) / t for a, b, c, t in zip(ts, tl, router, tp)]
        out[f"{name}_share_of_ideal{suffix}"] = share
        out[f"{name}_outside_nets_share{suffix}"] = [1.0 - x for x in share]
    return out


def pipeline_paired(info: dict[str, Any]) -> dict[str, list[float]]:
    """Per-round figures of one backend's rounds: every ratio compares parts of the same round.

    Shares of the ideal mixture and the decode's share of the small net read the process
    CPU clock (``cpu_seconds``: the work added, blind to other load); the same shares on the
    wall clock are kept with a ``_wall`` suffix (INFO). dyn/large reads the wall clock (what
    a user waits for). A record with wall seconds only gets its shares from the wall clock.
    """
    wall, f = info["seconds"], info.get("large_fraction", {})
    cpu = info.get("cpu_seconds")
    out = _shares(cpu if cpu else wall, f, "")
    if cpu:
        out.update(_shares(wall, f, "_wall"))
    for name in PIPELINE_NAMES:
        if name.startswith("dyn") and f"pipeline:{name}" in wall and "pipeline:large" in wall:
            out[f"{name}_over_large"] = ratio_rounds(wall["pipeline:large"], wall[f"pipeline:{name}"])
    base = cpu if cpu else wall
    if "decode" in base:
        out["decode_share_of_small"] = ratio_rounds(base["decode"], base["net:small"])
    return out


def extract_paired(run: dict[str, Any]) -> dict[str, list[float]]:
    """Every paired figure of a run, one value per round (names as in baseline.json 'ratios').

    Pipeline figures carry their backend (``ort:dyn-p50_over_large``); a parametrised
    benchmark's figures carry its parameter (``int8_over_fp32[small]``).
    """
    figs: dict[str, list[float]] = {}
    for backend, info in round_records(run).items():
        figs.update({f"{backend}:{k}": v for k, v in pipeline_paired(info).items()})
    for b in run["benchmarks"]:
        info = b.get("extra_info", {})
        if info.get("stage") == "rounds":
            continue
        param = b.get("param")
        for k, v in (info.get("paired") or {}).items():
            figs[f"{k}[{param}]" if param else k] = [float(x) for x in v]
    return figs


def extract_figures(run: dict[str, Any]) -> dict[str, Spread]:
    return {k: Spread.of(v) for k, v in extract_paired(run).items() if v}


def absolute_figures(run: dict[str, Any]) -> dict[str, float]:
    """Crops/s (median over rounds) of every timed part, and every benchmark's own crops/s or FPS."""
    out: dict[str, float] = {}
    for b in run["benchmarks"]:
        info = b.get("extra_info", {})
        if info.get("stage") == "rounds":
            backend = (info.get("conditions") or {}).get("backend") or "?"
            for part, secs in info["seconds"].items():
                out[f"{backend}:{part}"] = info["crops"] / statistics.median(secs)
        elif "crops_per_s" in info:
            out[b["name"]] = float(info["crops_per_s"])
        elif "fps" in info:
            out[b["name"]] = float(info["fps"])
    return out


# -- gating ----------------------------------------------------------------------------
def _ratio_limit(spec: dict[str, Any]) -> tuple[str, float, str]:
    """(direction, limit, text): direction 'min' fails below the limit, 'max' above it."""
    target = f" (target {spec['target']})" if "target" in spec else ""
    if "min" in spec:
        return "min", float(spec["min"]), f">= {spec['min']}{target}"
    if "max" in spec:
        return "max", float(spec["max"]), f"<= {spec['max']}{target}"
    base, tol = float(spec["baseline"]), float(spec.get("tolerance", 0.2))
    if spec.get("better", "higher") == "lower":
        return "max", base * (1 + tol), f"<= {base:.3g} x {1 + tol:.2f}"
    return "min", base * (1 - tol), f">= {base:.3g} x {1 - tol:.2f}"


def generic_name(fig: str) -> str:
    """'ort:dyn-p50_over_large' -> 'dyn-p50_over_large'; 'int8_over_fp32[small]' -> 'int8_over_fp32'."""
    return fig.split(":", 1)[-1].split("[", 1)[0]


def _lookup(ratios: dict[str, Any], fig: str) -> dict[str, Any] | None:
    """A figure's own entry if the baseline has one (per backend or per net), else the generic one."""
    return ratios.get(fig) or ratios.get(generic_name(fig))


def check(run: dict[str, Any], baseline: dict[str, Any], partial: bool = False) -> list[Row]:
    """Every gated figure of the run against the baseline (its median over paired rounds);
    ``partial``: a required figure the run lacks is NOT MEASURED instead of FAIL (a run of some
    benchmark files only), still listed so nobody reads it as passed."""
    rows: list[Row] = []
    ratios = {k: v for k, v in baseline.get("ratios", {}).items() if isinstance(v, dict)}
    seen = set()
    for fig, sp in sorted(extract_figures(run).items()):
        spec = _lookup(ratios, fig)
        if spec is None or spec.get("info"):
            rows.append(Row(fig, sp.median, "info, not gated", "INFO", sp))
            continue
        seen.update((fig, generic_name(fig)))
        direction, limit, text = _ratio_limit(spec)
        v = sp.median
        ok = math.isfinite(v) and (v >= limit if direction == "min" else v <= limit)
        rows.append(Row(fig, v, text, "PASS" if ok else "FAIL", sp))
    for name, spec in ratios.items():
        if spec.get("required") and name not in seen:
            rows.append(
                Row(name, None, "required but not in this run", "NOT MEASURED" if partial else "FAIL")
            )
    rows += check_absolute(run, baseline)
    return rows


def check_absolute(run: dict[str, Any], baseline: dict[str, Any]) -> list[Row]:
    kind = machine_kind(run_conditions(run))
    match = next((m for m in baseline.get("machines", []) if m.get("kind") == kind), None)
    absolute = absolute_figures(run)
    if match is None:
        return [
            Row(f"absolute: {name}", v, "no baseline for this machine kind", "INFO")
            for name, v in sorted(absolute.items())
        ]
    tol = float(match.get("tolerance", 0.3))
    rows = []
    for name, v in sorted(absolute.items()):
        base = match.get("fps", {}).get(name)
        if base is None:
            rows.append(Row(f"absolute: {name}", v, "not in this machine's baseline", "INFO"))
            continue
        limit = base * (1 - tol)
        rows.append(
            Row(f"absolute: {name}", v, f">= {base:.3g} x {1 - tol:.2f}", "PASS" if v >= limit else "FAIL")
        )
    return rows


def format_rows(rows: list[Row]) -> str:
    w = max([len(r.figure) for r in rows] + [6])
    lines = [
        f"{'figure':<{w}}  {'median':>9}  {'spread of paired rounds':<42}  {'limit':<28}  status",
        "-" * (w + 96),
    ]
    for r in rows:
        v = "-" if r.value is None else f"{r.value:9.4g}"
        sp = "" if r.spread is None else r.spread.text(".4g")
        lines.append(f"{r.figure:<{w}}  {v:>9}  {sp:<42}  {r.reference:<28}  {r.status}")
    return "\n".join(lines)


def format_mixture(run: dict[str, Any]) -> str:
    """Issue 4's table per backend, from medians over the rounds (shares: medians of paired ratios)."""
    out = []
    for backend, info in round_records(run).items():
        n, s = info["crops"], info["seconds"]
        paired = pipeline_paired(info)
        rate = {k: n / statistics.median(v) for k, v in s.items()}
        alone = ", ".join(
            f"{k} {rate[k]:.2f}"
            for k in ("net:small", "net:large", "router", "preprocess", "decode")
            if k in rate
        )
        out.append(
            f"[{backend}] {n} crops x {info['rounds']} paired rounds (+{info.get('warmup_rounds', 0)} warm-up)"
            f"; alone, median crops/s: {alone}"
        )
        clock = "CPU" if info.get("cpu_seconds") else "wall"
        out.append(
            f"{'pipeline':<9} {'f':>6} {'crops/s':>8} {'share of ideal, ' + clock + ' (IQR)':>27} "
            f"{'outside nets':>13} {'share, wall (IQR)':>24}"
        )
        for name in PIPELINE_NAMES:
            if f"{name}_share_of_ideal" not in paired:
                continue
            f = {"small": 0.0, "large": 1.0}.get(name, info.get("large_fraction", {}).get(name, float("nan")))
            sh = Spread.of(paired[f"{name}_share_of_ideal"])
            w = Spread.of(paired.get(f"{name}_share_of_ideal_wall", paired[f"{name}_share_of_ideal"]))
            out.append(
                f"{name:<9} {f:6.3f} {rate[f'pipeline:{name}']:8.2f} "
                f"{sh.median:14.1%} ({sh.q1:.1%}-{sh.q3:.1%}) {1 - sh.median:13.1%} "
                f"{w.median:10.1%} ({w.q1:.1%}-{w.q3:.1%})"
            )
    return "\n".join(out)


# -- recording a baseline ----------------------------------------------------------------
def record(
    run: dict[str, Any], baseline: dict[str, Any], tolerance: float, ratios_too: bool
) -> dict[str, Any]:
    """Put this run's absolute figures in as the baseline of its machine kind (replacing an
    older one of the same kind); with ``ratios_too`` also re-base the relative ratio gates
    on this run's medians (the worst of the figures sharing a generic name)."""
    cond = run_conditions(run)
    if not cond:
        raise ValueError("the run stores no conditions (extra_info['conditions']); run the bench/ tests")
    kind = machine_kind(cond)
    machines = [m for m in baseline.get("machines", []) if m.get("kind") != kind]
    machines.append(
        {
            "kind": kind,
            "recorded": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "tolerance": tolerance,
            "conditions": cond,
            "fps": {k: round(v, 3) for k, v in sorted(absolute_figures(run).items())},
        }
    )
    new = dict(baseline, machines=machines)
    if ratios_too:
        figs = extract_figures(run)
        for name, spec in new.get("ratios", {}).items():
            if isinstance(spec, dict) and "baseline" in spec:
                hits = [sp.median for f, sp in figs.items() if f == name or generic_name(f) == name]
                if hits:
                    worst = max(hits) if spec.get("better") == "lower" else min(hits)
                    spec["baseline"] = round(worst, 4)
    return new


def _main(argv: Sequence[str]) -> int:
    ap = OneLineParser(prog="python -m bench.gates", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="pytest-benchmark --benchmark-json output")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    ap.add_argument(
        "--partial",
        action="store_true",
        help="gate only what this run measured (required figures may be missing)",
    )
    ap.add_argument(
        "--record",
        action="store_true",
        help="store this run's absolute figures as the baseline of this machine kind",
    )
    ap.add_argument(
        "--record-ratios", action="store_true", help="with --record: also re-base the ratio gates"
    )
    ap.add_argument(
        "--tolerance",
        type=number(float, lo=0, hi=1, hi_open=True),
        default=0.3,
        help="with --record: allowed relative drop of absolute figures on this machine kind",
    )
    a = ap.parse_args(argv)
    run = load_run(a.run)
    baseline = json.loads(a.baseline.read_text()) if a.baseline.is_file() else {"schema_version": 2}
    mix = format_mixture(run)
    if mix:
        print(mix + "\n")
    if a.record:
        new = record(run, baseline, a.tolerance, a.record_ratios)
        atomic_write_text(a.baseline, json.dumps(new, indent=2) + "\n")
        print(f"recorded the baseline for {machine_kind(run_conditions(run))} in {a.baseline}")
        return 0
    rows = check(run, baseline, a.partial)
    print(format_rows(rows))
    failed = [r for r in rows if r.failed]
    print(f"\nmachine kind: {machine_kind(run_conditions(run))}")
    if failed:
        print(f"\nGATE FAILED: {len(failed)} figure(s) regressed: " + ", ".join(r.figure for r in failed))
        return 1
    if not any(r.status == "PASS" for r in rows):
        raise InputError(
            "the run holds no gated figure, so nothing passed",
            f"RUN {a.run}",
            "run the bench/ tests with --benchmark-json (make bench) and gate that file",
        )
    unmeasured = [r.figure for r in rows if r.status == "NOT MEASURED"]
    print(
        "\nall gates pass"
        if not unmeasured
        else f"\nall measured gates pass; NOT MEASURED (--partial): {', '.join(unmeasured)}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0: all gates pass; 1: a gate failed (the table says which); 2: bad input (one line)."""
    return guarded(_main, argv, prog="bench.gates")


if __name__ == "__main__":
    sys.exit(main())
