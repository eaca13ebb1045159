"""FPS regression gates over pytest-benchmark's ``--benchmark-json`` output.

Two kinds of gated figure, because a shared CI machine is noisy:

* **Same-run ratios** (always gated): dyn/large pipeline throughput, dyn's
  share of its ideal mixture, the share of wall time outside the networks,
  the numpy decode's speed-up over the naive loop (bench/bench_decode.py) and
  INT8/fp32 throughput (bench/bench_int8.py) when those benchmarks ran. Both
  sides of a ratio are measured minutes apart on the same machine, so a busy
  neighbour slows both.
* **Absolute crops/s and FPS**, only against a baseline recorded on the same
  machine kind (``bench.conditions.machine_kind``: CPU model, GPU model, and
  on a Jetson the nvpmodel mode and jetson_clocks). Another kind of machine
  prints "no baseline for this machine kind" for them and is not gated.

Limits live in ``bench/baseline.json``: a ratio has either a recorded
``baseline`` and a relative ``tolerance`` (fail below baseline x (1 - tol)),
or a hard ``min``/``max`` (a target from the issue). Exit 1 when any gated
figure fails, with the whole table printed.

CLI: ``python -m bench.gates RUN.json [--baseline bench/baseline.json]``
     ``python -m bench.gates RUN.json --record [--record-ratios]``  (make bench-baseline)
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.conditions import machine_kind

DEFAULT_BASELINE = Path(__file__).with_name("baseline.json")
DEFAULT_SOURCES = {
    # figure -> where another benchmark module stores it (test name substring, extra_info key)
    "decode_numpy_over_naive": {"test": "test_vectorised_decode_beats_loop", "key": "speedup"},
    "int8_over_fp32": {"test": "test_int8_cpu_speedup", "key": "speedup"},
}


@dataclass
class Row:
    figure: str
    value: float | None
    reference: str
    status: str  # PASS | FAIL | INFO | ABSENT

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


# -- reading a run ---------------------------------------------------------------------
def load_run(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"benchmark JSON {p} not found; produce it with "
                                "pytest -m bench --benchmark-json=PATH (or run make bench)")
    run = json.loads(p.read_text())
    if not isinstance(run, dict) or "benchmarks" not in run:
        raise ValueError(f"{p} is not pytest-benchmark JSON (no 'benchmarks' list)")
    return run


def run_conditions(run: dict[str, Any]) -> dict[str, Any]:
    """The conditions stored by the benchmarks (the first record that has them)."""
    for b in run["benchmarks"]:
        c = b.get("extra_info", {}).get("conditions")
        if c:
            return c
    return {}


def _rate(b: dict[str, Any]) -> float | None:
    info = b.get("extra_info", {})
    if "crops_per_s" in info:
        return float(info["crops_per_s"])
    if "fps" in info:
        return float(info["fps"])
    return None


def pipeline_rates(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """backend -> {'net:small': T, 'net:large': T, 'router': T, 'preprocess': T,
    'pipeline:<name>': T, 'f:<name>': achieved large fraction} from test_bench_pipeline records."""
    out: dict[str, dict[str, Any]] = {}
    for b in run["benchmarks"]:
        info = b.get("extra_info", {})
        stage, rate = info.get("stage"), _rate(b)
        if stage is None or rate is None:
            continue
        backend = (info.get("conditions") or {}).get("backend") or "?"
        d = out.setdefault(backend, {})
        if stage == "net":
            d[f"net:{info['role']}"] = rate
        elif stage == "pipeline":
            name = info["policy"] if info.get("p") is None else f"{info['policy']}-p{int(info['p'])}"
            d[f"pipeline:{name}"] = rate
            d[f"f:{name}"] = float(info.get("large_fraction", float("nan")))
        else:
            d[stage] = rate
    return out


def ideal_rate(f: float, t_small: float, t_large: float, t_router: float | None) -> float:
    """Routing can only be as fast as its mixture: 1 / ((1-f)/T_s + f/T_l + router cost)."""
    per_crop = (1.0 - f) / t_small + f / t_large + (1.0 / t_router if t_router else 0.0)
    return 1.0 / per_crop


def mixture_table(rates: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 4's figures for one backend: crops/s, ideal, share of ideal, share outside the nets."""
    rows = []
    ts, tl, tr = rates.get("net:small"), rates.get("net:large"), rates.get("router")
    for name in ("small", "large", "dyn-p25", "dyn-p50"):
        r = rates.get(f"pipeline:{name}")
        if r is None or not ts or not tl:
            continue
        f = {"small": 0.0, "large": 1.0}.get(name, rates.get(f"f:{name}", float("nan")))
        ideal = ideal_rate(f, ts, tl, tr if name.startswith("dyn") else None)
        rows.append({"pipeline": name, "large_fraction": f, "crops_per_s": r, "ideal": ideal,
                     "share_of_ideal": r / ideal, "outside_nets_share": 1.0 - r / ideal})
    return rows


def extract_figures(run: dict[str, Any], sources: dict[str, dict[str, str]] | None = None) -> dict[str, float]:
    """All same-run ratio figures of a run (names as in baseline.json 'ratios')."""
    figs: dict[str, float] = {}
    for backend, rates in pipeline_rates(run).items():
        rows = {r["pipeline"]: r for r in mixture_table(rates)}
        large = rates.get("pipeline:large")
        for name in ("dyn-p25", "dyn-p50"):
            if name in rows and large:
                figs[f"{backend}:{name}_over_large"] = rows[name]["crops_per_s"] / large
                figs[f"{backend}:{name}_share_of_ideal"] = rows[name]["share_of_ideal"]
                figs[f"{backend}:{name}_outside_nets_share"] = rows[name]["outside_nets_share"]
        if "large" in rows:
            figs[f"{backend}:large_outside_nets_share"] = rows["large"]["outside_nets_share"]
    for name, src in (sources or DEFAULT_SOURCES).items():
        for b in run["benchmarks"]:
            if src["test"] in b.get("fullname", b.get("name", "")) and src["key"] in b.get("extra_info", {}):
                param = b.get("param")   # parametrised benchmarks (int8 small/large) give one figure each
                figs[f"{name}[{param}]" if param else name] = float(b["extra_info"][src["key"]])
    return figs


def absolute_figures(run: dict[str, Any]) -> dict[str, float]:
    """Every benchmark that reports crops/s or FPS, by its pytest name."""
    return {b["name"]: r for b in run["benchmarks"] if (r := _rate(b)) is not None}


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
    """Every gated figure of the run against the baseline; ``partial`` drops the
    'required' check (a run of a single benchmark file)."""
    rows: list[Row] = []
    ratios = baseline.get("ratios", {})
    figs = extract_figures(run, baseline.get("sources"))
    seen = set()
    for fig, value in sorted(figs.items()):
        spec = _lookup(ratios, fig)
        if spec is None:
            rows.append(Row(fig, value, "not gated", "INFO"))
            continue
        seen.update((fig, generic_name(fig)))
        direction, limit, text = _ratio_limit(spec)
        ok = math.isfinite(value) and (value >= limit if direction == "min" else value <= limit)
        rows.append(Row(fig, value, text, "PASS" if ok else "FAIL"))
    for name, spec in ratios.items():
        if spec.get("required") and name not in seen and not partial:
            rows.append(Row(name, None, "required but not in this run", "FAIL"))
    rows += check_absolute(run, baseline)
    return rows


def check_absolute(run: dict[str, Any], baseline: dict[str, Any]) -> list[Row]:
    kind = machine_kind(run_conditions(run))
    match = next((m for m in baseline.get("machines", []) if m.get("kind") == kind), None)
    absolute = absolute_figures(run)
    if match is None:
        return [Row(f"absolute: {name}", v, "no baseline for this machine kind", "INFO")
                for name, v in sorted(absolute.items())]
    tol = float(match.get("tolerance", 0.3))
    rows = []
    for name, v in sorted(absolute.items()):
        base = match.get("fps", {}).get(name)
        if base is None:
            rows.append(Row(f"absolute: {name}", v, "not in this machine's baseline", "INFO"))
            continue
        limit = base * (1 - tol)
        rows.append(Row(f"absolute: {name}", v, f">= {base:.3g} x {1 - tol:.2f}", "PASS" if v >= limit else "FAIL"))
    return rows


def format_rows(rows: list[Row]) -> str:
    w = max([len(r.figure) for r in rows] + [6])
    lines = [f"{'figure':<{w}}  {'value':>9}  {'limit':<34}  status", "-" * (w + 58)]
    for r in rows:
        v = "-" if r.value is None else f"{r.value:9.3f}"
        lines.append(f"{r.figure:<{w}}  {v:>9}  {r.reference:<34}  {r.status}")
    return "\n".join(lines)


def format_mixture(run: dict[str, Any]) -> str:
    out = []
    for backend, rates in pipeline_rates(run).items():
        rows = mixture_table(rates)
        if not rows:
            continue
        t = ", ".join(f"{k} {rates[k]:.2f}" for k in ("net:small", "net:large", "router", "preprocess") if k in rates)
        out.append(f"[{backend}] alone (crops/s): {t}")
        out.append(f"{'pipeline':<9} {'f':>6} {'crops/s':>8} {'ideal':>8} {'share':>7} {'outside nets':>13}")
        for r in rows:
            out.append(f"{r['pipeline']:<9} {r['large_fraction']:6.3f} {r['crops_per_s']:8.2f} {r['ideal']:8.2f} "
                       f"{r['share_of_ideal']:7.1%} {r['outside_nets_share']:13.1%}")
    return "\n".join(out)


# -- recording a baseline ----------------------------------------------------------------
def record(run: dict[str, Any], baseline: dict[str, Any], tolerance: float, ratios_too: bool) -> dict[str, Any]:
    """Put this run's absolute figures in as the baseline of its machine kind (replacing an
    older one of the same kind); with ``ratios_too`` also re-base the relative ratio gates."""
    cond = run_conditions(run)
    if not cond:
        raise ValueError("the run stores no conditions (extra_info['conditions']); run the bench/ tests")
    kind = machine_kind(cond)
    machines = [m for m in baseline.get("machines", []) if m.get("kind") != kind]
    machines.append({"kind": kind, "recorded": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "tolerance": tolerance, "conditions": cond,
                     "fps": {k: round(v, 3) for k, v in sorted(absolute_figures(run).items())}})
    new = dict(baseline, machines=machines)
    if ratios_too:
        figs = extract_figures(run, baseline.get("sources"))
        for name, spec in new.get("ratios", {}).items():
            if "baseline" in spec:
                hits = [v for f, v in figs.items() if f == name or generic_name(f) == name]
                if hits:
                    spec["baseline"] = round(min(hits), 4)
    return new


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gates", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="pytest-benchmark --benchmark-json output")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    ap.add_argument("--partial", action="store_true",
                    help="gate only what this run measured (required figures may be missing)")
    ap.add_argument("--record", action="store_true",
                    help="store this run's absolute figures as the baseline of this machine kind")
    ap.add_argument("--record-ratios", action="store_true", help="with --record: also re-base the ratio gates")
    ap.add_argument("--tolerance", type=float, default=0.3,
                    help="with --record: allowed relative drop of absolute figures on this machine kind")
    a = ap.parse_args(argv)
    run = load_run(a.run)
    baseline = json.loads(a.baseline.read_text()) if a.baseline.is_file() else {"schema_version": 1}
    mix = format_mixture(run)
    if mix:
        print(mix + "\n")
    if a.record:
        new = record(run, baseline, a.tolerance, a.record_ratios)
        a.baseline.write_text(json.dumps(new, indent=2) + "\n")
        print(f"recorded the baseline for {machine_kind(run_conditions(run))} in {a.baseline}")
        return 0
    rows = check(run, baseline, a.partial)
    print(format_rows(rows))
    failed = [r for r in rows if r.failed]
    kind = machine_kind(run_conditions(run))
    print(f"\nmachine kind: {kind}")
    if failed:
        print(f"\nGATE FAILED: {len(failed)} figure(s) regressed: " + ", ".join(r.figure for r in failed))
        return 1
    print("\nall gates pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
