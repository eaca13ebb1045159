"""Per-crop cost of each net at the precision the build ships, and whether routing pays with it.

Why at build time: routing only pays when the small net is cheaper than the
large one *at the precision and on the backend that run*. At fp32 on this
CPU ResNet-50 beats HRNet-W32, at int8_cpu it did not (issue 20): the same
config could make the pipeline slower than the large net alone, and nothing
said so. So the build times router, small and large once with the variant the
runtime loads for the target, stores the costs in
``manifest["routing"]["costs"]`` (budget mode starts from them), prints the
predicted crops/s of small, large and dyn at the chosen p, and warns loudly
when the small net is not cheaper or dyn would be slower than large.

How: ONNX Runtime CPU sessions with the runtime's default thread count,
``COST_BATCH`` crops per run, ``COST_ROUNDS`` interleaved rounds after one
discarded warm-up round, timed by ``runtime.pose.costs`` (the same code the
device's ``dynpose costs`` runs). What budget routing reads are the **ratios**
large/small and router/small, each the median of its per-round ratios (wall
clock), stored per entry with their spread and how they were measured: a load
from another process slows every net alike, so they survive it, while the
absolute ms/crop (kept beside them, INFO) are the load of the build's moment
(issue #29: a loaded build predicted 3.1 crops/s, 18.1 were measured). The
table and the warning use those absolute figures of the same rounds.
TensorRT targets cannot be timed here: the costs say "not measured" and
``build_plan.sh`` fills them from trtexec's own timing (build/trt/record.py).

The prediction is the ideal mixture: dyn ms/crop = (1-f) T_small + f T_large
+ T_router, f = the routed fraction of the routing-threshold calibration; a
pipeline adds preprocessing and decode on top (bench gate
``dyn-p50_share_of_ideal``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NET_ROLES = ("router", "small", "large")
COST_BATCH = 8
COST_ROUNDS = 7
CLOCK = "wall"
BANNER = "!" * 78


@dataclass(frozen=True)
class Costs:
    """Milliseconds per crop of each net at one precision on one backend."""

    router: float
    small: float
    large: float

    @classmethod
    def of(cls, ms: Mapping[str, float]) -> Costs:
        return cls(float(ms["router"]), float(ms["small"]), float(ms["large"]))


def predict(c: Costs, f: float) -> dict[str, float]:
    """Crops/s of the three policies: small and large alone (no router), dyn the ideal mixture."""
    dyn_ms = (1.0 - f) * c.small + f * c.large + c.router
    return {"small": 1e3 / c.small, "large": 1e3 / c.large, "dyn": 1e3 / dyn_ms, "dyn_ms_per_crop": dyn_ms}


def routing_warning(
    c: Costs, f: float, precision: str, names: Mapping[str, str], others: Mapping[str, Costs] | None = None
) -> str | None:
    """The loud warning when routing cannot pay at ``precision`` (None when it does).

    Fires when the small net is not cheaper than the large one, or when dyn's ideal
    mixture is still slower than the large net alone (the router eats the gain). The text
    names the options, with predicted crops/s where the build measured them
    (``others``: costs at other precisions of the same nets).
    """
    pred = predict(c, f)
    if c.small < c.large and pred["dyn"] > pred["large"]:
        return None
    if c.small >= c.large:
        why = (
            f"the small net ({names['small']}) is not cheaper than the large net ({names['large']}) at "
            f"{precision}: {c.small:.1f} vs {c.large:.1f} ms/crop"
        )
    else:
        why = (
            f"the router ({c.router:.1f} ms/crop) costs more than routing saves at {precision}: "
            f"(1-f) x (large - small) = {(1 - f) * (c.large - c.small):.1f} ms/crop"
        )
    lines = [
        BANNER,
        f"WARNING: ROUTING CANNOT PAY: {why}; dyn (f = {f:.2f}) is predicted at "
        f"{pred['dyn']:.1f} crops/s, the large net alone at {pred['large']:.1f}. Options:",
        f"  - run the large net only: --policy large ({pred['large']:.1f} crops/s predicted)",
    ]
    for prec, oc in (others or {}).items():
        op = predict(oc, f)
        verdict = (
            "routing pays there"
            if oc.small < oc.large and op["dyn"] > op["large"]
            else "routing does not pay there either"
        )
        lines.append(
            f"  - another precision: {prec} (--precision {prec.split('_')[0]} at build, --precision {prec} "
            f"at run time): small {oc.small:.1f}, large {oc.large:.1f} ms/crop, dyn {op['dyn']:.1f} vs "
            f"large {op['large']:.1f} crops/s ({verdict})"
        )
    lines += [
        "  - another small net: a config (--config) or --small-ckpt whose small net is cheaper at "
        f"{precision} on this target",
        BANNER,
    ]
    return "\n".join(lines)


def format_cost_table(costs: dict[str, Any]) -> str:
    """The printed table: per precision, ms/crop of each net and predicted crops/s."""
    if not costs.get("measured"):
        return f"routing costs: not measured ({costs.get('note', '')})"
    head = (
        f"routing costs ({costs['backend_label']}, {costs['threads']} threads, batch {costs['batch']}, "
        f"{costs['clock']} clock, median of {costs['rounds']} interleaved rounds, ms: this moment's load; "
        f"f = {costs['large_fraction']:.2f} at p = {costs['p']:g})"
    )
    lines = [
        head,
        f"{'precision':<10} {'router':>8} {'small':>8} {'large':>8}   ms/crop | crops/s "
        f"{'small':>7} {'large':>7} {'dyn':>7} | ratios large/small router/small (stored)",
    ]
    for e in costs["entries"]:
        ms, pr = e["ms_per_crop"], e["predicted_crops_per_s"]
        mark = "  <- ships" if e["precision"] == costs["shipped"] else ""
        lines.append(
            f"{e['precision']:<10} {ms['router']:>8.2f} {ms['small']:>8.2f} {ms['large']:>8.2f}"
            f"           {pr['small']:>7.1f} {pr['large']:>7.1f} {pr['dyn']:>7.1f}"
            + (f" | {e['ratios']['large']:.3f} {e['ratios']['router']:.3f}" if "ratios" in e else "")
            + mark
        )
    return "\n".join(lines)


def shipped_variant(manifest: Mapping[str, Any]) -> str:
    """The ORT variant a CPU deployment of this build runs: int8_cpu after --precision int8, else fp32
    (the fp16 variant is for TensorRT; ORT's CPU kernels run it slowly)."""
    prec = (manifest.get("calibration") or {}).get("precision", "fp32")
    return "int8_cpu" if prec == "int8" else "fp32"


def _variant_for(entry: Mapping[str, Any], role: str, variant: str) -> str:
    """As runtime/backends/ort.py: the router runs its int8 model only when one was made."""
    if variant == "fp32" or variant in entry.get("variants", {}):
        return variant
    if role == "router":
        return "fp32"
    raise KeyError(f"{role} has no {variant} variant")


def time_variants(
    out_dir: Path,
    manifest: Mapping[str, Any],
    variants: tuple[str, ...],
    batch: int = COST_BATCH,
    rounds: int = COST_ROUNDS,
    threads: int | None = None,
) -> tuple[dict[str, dict[str, Any]], int]:
    """variant -> cost entry (runtime.pose.costs.cost_entry: ratios to the small net with their
    spread, absolute ms/crop as INFO); every (variant, role) session is a part of one interleaved
    schedule, so all are timed in the same rounds."""
    import numpy as np

    from runtime.artifacts.manifest import model_file
    from runtime.backends.ort_session import open_session
    from runtime.pose.costs import cost_entry, interleaved_clocks
    from runtime.pose.preprocess import net_input_hw

    threads = threads or os.cpu_count() or 1
    rng = np.random.default_rng(0)
    # each net timed at its own input size (RTMPose-l at 384x288 costs what it costs there)
    xs = {
        role: rng.standard_normal((batch, 3, *net_input_hw(manifest, role))).astype(np.float32)
        for role in NET_ROLES
    }
    parts = {}
    for v in variants:
        for role in NET_ROLES:
            path = model_file(out_dir, dict(manifest), role, _variant_for(manifest["models"][role], role, v))
            sess = open_session(path, threads)  # the runtime's session options: its costs are timed
            feed = {sess.get_inputs()[0].name: xs[role]}
            parts[f"{v}/{role}"] = lambda s=sess, f=feed: s.run(None, f)
    t = interleaved_clocks(parts, rounds)

    def of(clock: str, v: str) -> dict[str, list[float]]:
        return {r: t[clock][f"{v}/{r}"] for r in NET_ROLES}

    return {v: cost_entry(of("wall", v), of("process", v), batch, rounds) for v in variants}, threads


def measure_routing_costs(
    out_dir: Path, manifest: dict[str, Any], target: str, log=print, warn=None
) -> dict[str, Any]:
    """Fill ``manifest["routing"]["costs"]``, print the table (``log``) and the warning (``warn``,
    default stderr); returns the costs."""
    import sys

    import onnxruntime as ort

    warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))

    routing = manifest["routing"]
    f, p = float(routing["large_fraction"]), float(routing["p"])
    if target != "cpu":
        costs = {
            "measured": False,
            "target": target,
            "large_fraction": f,
            "p": p,
            "entries": [],
            "note": "TensorRT engines are timed on the device: `bash build_plan.sh` records trtexec's "
            "GPU compute time per engine here (build/trt/record.py)",
        }
        routing["costs"] = costs
        log(format_cost_table(costs))
        return costs
    shipped = shipped_variant(manifest)
    variants = (shipped,) if shipped == "fp32" else (shipped, "fp32")
    timed, threads = time_variants(out_dir, manifest, variants)
    names = {r: manifest["models"][r].get("arch", r) for r in NET_ROLES}
    entries = []
    for v in variants:
        c = Costs.of(timed[v]["ms_per_crop"])
        entries.append(
            {
                "backend": "ort",
                "precision": v,
                **timed[v],
                "predicted_crops_per_s": {
                    k: round(val, 2) for k, val in predict(c, f).items() if k != "dyn_ms_per_crop"
                },
            }
        )
    others = {v: Costs.of(timed[v]["ms_per_crop"]) for v in variants if v != shipped}
    warning = routing_warning(Costs.of(timed[shipped]["ms_per_crop"]), f, shipped, names, others)
    costs = {
        "measured": True,
        "target": target,
        "backend_label": f"ONNX Runtime {ort.__version__} CPU",
        "threads": threads,
        "batch": COST_BATCH,
        "rounds": COST_ROUNDS,
        "clock": CLOCK,
        "shipped": shipped,
        "large_fraction": f,
        "p": p,
        "entries": entries,
        "routing_pays": warning is None,
        "warning": warning,
    }
    routing["costs"] = costs
    log(format_cost_table(costs))
    if warning:
        warn(warning)
    return costs
