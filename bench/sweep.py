"""The DynPose trade-off sweep: AP, GMACs per crop and crops/s for p = 0..100 %, dyn vs random.

``python -m bench.sweep --config C [--engines DIR] [--out docs]`` writes
``docs/tradeoff.md`` (table + the run's conditions), ``docs/tradeoff.csv``
and ``docs/tradeoff.png`` (AP vs crops/s).

Cheap by construction, and exact: routing picks, per crop, the output of one
of two nets that do not depend on each other, so the router runs once, the
small and the large net each run once on every crop, and each (policy, p)
row is composed by choosing per crop - the keypoints a ``PosePipeline`` with
that band would return (tests/test_sweep.py checks this against the real
pipeline). ``random`` routes the same share of crops as the band did, with
the pipeline's own seeded per-frame draw, and pays no router.

Crops/s per row come from this run's measured per-crop costs on the chosen
backend (preprocessing + router for dyn + (1-f)/T_small + f/T_large +
decode): the ideal mixture, which bench/test_bench_pipeline.py shows the
real scheduler reaches (its share of ideal is gated). ``--timing measured``
times the real pipeline for every row instead (10+ passes: slower).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from measure.coco_eval import evaluate_keypoints
from measure.net_outputs import MAX_BATCH, NetOutputs, coco_results, compose, run_nets
from measure.workload import CropSet, Frame, load_frames, make_cropset
from runtime.cli import expected as expected_errors  # noqa: F401 (registers the runtime's error classes)
from runtime.cli.args import OneLineParser, existing_dir, output_dir, run_precision
from runtime.errors import guarded
from runtime.io.records import read_json
from runtime.pose.pipeline import PipelineOptions, PosePipeline
from runtime.pose.routing import fit_thresholds, route, route_band

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "coco-mini"
PS = (0.0, 25.0, 50.0, 75.0, 100.0)


@dataclass
class Row:
    policy: str
    p: float | None
    large_fraction: float
    AP: float
    AP50: float
    AR: float
    gmacs_per_crop: float
    crops_per_s: float
    k1: float | None = None
    k2: float | None = None


def route_policy(
    policy: str, scores: np.ndarray, cs: CropSet, k1: float, k2: float, fraction: float, seed: int = 0
) -> np.ndarray:
    """The large-net mask a fresh ``PosePipeline(policy, seed)`` draws frame after frame."""
    if policy == "dyn":
        return route_band(scores, k1, k2)
    rng = np.random.default_rng(seed)
    n_frames = int(cs.frame_of.max()) + 1 if len(cs) else 0
    return np.concatenate(
        [route(policy, scores[cs.frame_slice(i)], k1, k2, fraction, rng) for i in range(n_frames)]
        or [np.zeros(0, bool)]
    )


def modelled_rate(nets: NetOutputs, n: int, f: float, with_router: bool) -> float:
    """crops/s of the ideal mixture from this run's measured per-crop costs."""
    sec = nets.seconds
    per = (
        sec["preprocess"]
        + (sec["router"] if with_router else 0.0)
        + (1 - f) * (sec["small"] + sec["decode_small"])
        + f * (sec["large"] + sec["decode_large"])
    ) / n
    return 1.0 / per


def measured_rate(
    pipe: PosePipeline, frames: list[Frame], policy: str, k1: float, k2: float, frac: float
) -> float:
    saved = (pipe.options.policy, pipe.k1, pipe.k2, pipe.fraction, pipe._rng)
    pipe.options.policy, pipe.k1, pipe.k2, pipe.fraction = policy, k1, k2, frac
    pipe._rng = np.random.default_rng(pipe.options.seed)
    try:
        t = time.perf_counter()
        res = list(pipe.run_many((f.image, f.boxes, f.scores) for f in frames))
        return sum(int((r.route >= 0).sum()) for r in res) / (time.perf_counter() - t)
    finally:
        pipe.options.policy, pipe.k1, pipe.k2, pipe.fraction, pipe._rng = saved


def sweep(
    pipe: PosePipeline,
    frames: list[Frame],
    gt: Path,
    ps: Sequence[float] = PS,
    timing: str = "model",
    nets_run: tuple[CropSet, NetOutputs] | None = None,
) -> tuple[list[Row], NetOutputs]:
    """All rows; ``nets_run`` passes an earlier :func:`run_nets` of the same frames (tests)."""
    cs, nets = nets_run or run_nets(pipe, frames)
    image_ids = [f.image_id for f in frames]
    n = len(cs)
    gm = {r: float(pipe.manifest["models"][r]["gmacs"]) for r in ("router", "small", "large")}
    theta = float(pipe.manifest.get("routing", {}).get("theta", 0.1))
    rows: list[Row] = []

    def add(policy: str, p: float | None, large: np.ndarray, k1=None, k2=None, fraction=0.0) -> None:
        with_router = policy == "dyn"
        f = float(large.mean()) if n else 0.0
        stats = evaluate_keypoints(
            gt, coco_results(frames, compose(frames, cs, nets, large, with_router)), image_ids=image_ids
        )
        macs = (gm["router"] if with_router else 0.0) + (1 - f) * gm["small"] + f * gm["large"]
        rate = (
            modelled_rate(nets, n, f, with_router)
            if timing == "model"
            else measured_rate(
                pipe, frames, policy, k1 if k1 is not None else 0.0, k2 if k2 is not None else 1.0, fraction
            )
        )
        rows.append(Row(policy, p, f, stats["AP"], stats["AP50"], stats["AR"], macs, rate, k1, k2))

    add("small", None, np.zeros(n, bool))
    add("large", None, np.ones(n, bool))
    for p in ps:
        band = fit_thresholds(nets.router_scores, theta, p)
        for policy in ("dyn", "random"):
            mask = route_policy(
                policy, nets.router_scores, cs, band.k1, band.k2, band.large_fraction, pipe.options.seed
            )
            add(policy, p, mask, band.k1, band.k2, band.large_fraction)
    return rows, nets


def default_config() -> str:
    """fixture-dyn once it is registered and its trained weights exist, else the default config."""
    from build.configs import DEFAULT_CONFIG, get_config, list_configs

    if "fixture-dyn" in list_configs():
        ck = get_config("fixture-dyn").checkpoints
        if ck and all((REPO / p).is_file() for p in ck.values()):
            return "fixture-dyn"
    return DEFAULT_CONFIG


def ensure_engines(config: str, engines: Path | None, build_root: Path, data: Path) -> Path:
    """The given artifacts folder, or one built once under build_root (reused when present)."""
    if engines is not None:
        if not (engines / "manifest.json").is_file():
            raise SystemExit(
                f"error: --engines {engines} has no manifest.json; build one with "
                f"python -m build.engines --config {config} --target cpu --out artifacts"
            )
        built = _built_config(engines)
        if built != config:
            raise SystemExit(
                f"error: --engines {engines} holds config {built!r}, not --config {config!r}; "
                "drop --config or point --engines at that config's folder"
            )
        return engines
    out = build_root / f"{config}-cpu"
    if not (out / "manifest.json").is_file():
        from build.engines import main as build_main

        print(f"building {config} for the CPU target into {build_root} (once) ...", file=sys.stderr)
        rc = build_main(
            ["--config", config, "--target", "cpu", "--out", str(build_root), "--calib-data", str(data)]
        )
        if rc != 0:
            raise SystemExit(f"error: building {config} failed (exit {rc})")
    return out


def _built_config(engines: Path) -> object:
    m = read_json(engines / "manifest.json", "the manifest", "--engines")
    return m.get("config") if isinstance(m, dict) else None


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_main, argv, prog="bench.sweep")


def _main(argv: Sequence[str]) -> int:
    from bench.tradeoff_report import write_report

    ap = OneLineParser(prog="python -m bench.sweep", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config", default=None, help="pipeline config (default: fixture-dyn when its weights exist)"
    )
    ap.add_argument(
        "--engines", type=existing_dir, default=None, help="a built artifacts folder (else built once)"
    )
    ap.add_argument(
        "--build-root",
        type=output_dir,
        default=REPO / "artifacts",
        help="where to build when --engines is absent",
    )
    ap.add_argument(
        "--data", type=existing_dir, default=DEFAULT_DATA, help="COCO folder with person_detections.json"
    )
    ap.add_argument("--backend", default="ort", choices=("ort", "trt", "auto"))
    ap.add_argument(
        "--precision",
        default="fp32",
        type=run_precision,
        help="fp32, fp16, int8 (= int8_cpu) or a variant name",
    )
    ap.add_argument("--timing", default="model", choices=("model", "measured"))
    ap.add_argument("--out", type=output_dir, default=REPO / "docs", help="folder for tradeoff.md/.csv/.png")
    a = ap.parse_args(argv)
    if a.config is None and a.engines is not None:
        config = _built_config(a.engines) if (a.engines / "manifest.json").is_file() else default_config()
    else:
        config = a.config or default_config()
    engines = ensure_engines(config, a.engines, a.build_root, a.data)
    frames = load_frames(a.data)
    t0 = time.perf_counter()
    with PosePipeline(
        engines, PipelineOptions(policy="dyn", backend=a.backend, precision=a.precision, max_batch=MAX_BATCH)
    ) as pipe:
        warm = make_cropset(frames[:1]).crops[:4]
        for role in pipe.runners:  # first runs allocate; keep them out of the costs
            pipe.runners[role].infer(warm, pipe.streams[role])
        rows, nets = sweep(pipe, frames, a.data / "person_keypoints.json", timing=a.timing)
        paths = write_report(
            rows,
            nets,
            pipe.manifest,
            a.out,
            backend=pipe.backend.name,
            precision=a.precision,
            timing=a.timing,
            data=a.data,
        )
    print(
        f"sweep of {pipe.manifest['config']} ({pipe.backend.name}) in {time.perf_counter() - t0:.0f} s -> "
        + ", ".join(str(p) for p in paths)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
