"""The host's share of the pose stage with the trained fixture nets (issue #29): does the
pipeline keep the nets' own throughput, with credible regions on?

The fixture nets are tiny (fixture-s ~1.6 ms, fixture-l ~8 ms per crop on ORT CPU), so every
millisecond of host work per crop (crops, decode, regions) shows; the ResNet/HRNet pipeline
bench (bench/test_bench_pipeline.py) hides it behind 40-60 ms nets. Artifacts:
``DYNPOSE_BENCH_FIXTURE=DIR`` (a fixture-dyn CPU build), else fixture-dyn is built once.

One round times, on the same ``DYNPOSE_BENCH_CROPS`` coco-mini boxes (default 24), batch 8:

* ``pipeline``: the whole pose stage, ``run_many`` over the frames with the dyn policy and the
  default ``--credible 0.5,0.9`` (calibrated regions on the large net's ProbPose maps):
  crops, router, nets, decode, regions, results;
* ``net:small``, ``net:large``, ``router``: each net alone on the ready crops (raw ORT);
* ``decode`` and ``regions``: ``decode_probmaps`` and the calibrated regions
  (``ProbFieldsDecoder``'s path: blur + ``credible_regions`` + image mapping) on the large net's
  own maps for those crops.

Figures (per round, median over ``DYNPOSE_BENCH_HOST_ROUNDS`` rounds, default 11, after one
warm-up; process CPU clock: the work each part adds, blind to other load):

* ``fixture_pose_stage_over_raw`` (gated, ``bench/baseline.json``): the nets' ideal mixture
  ``(1-f) T_small + f T_large + T_router`` / the pose stage's time, f the routed fraction;
* ``fixture_host_decode_over_small_crop`` (INFO): decode + regions per crop / the small net's
  time per crop (issue #29 item 4 asks <= 1); ``..._wall`` twins are stored as INFO.

Run: python -m pytest bench/bench_host.py -m bench -q -s --benchmark-json=bench.json
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench import gates
from bench.data import artifacts_from_env, shared_data_dir
from measure.rounds import Spread, interleaved_clocks, ratio_rounds
from measure.workload import CropSet, Frame, load_frames, make_cropset, subset_frames
from runtime.heads.decode import decode_probmaps
from runtime.heads.probfields import ProbFieldsDecoder
from runtime.heads.probmap import SPEC
from runtime.heads.registry import decodes_probability_maps
from runtime.pose.pipeline import PipelineOptions, PosePipeline

pytestmark = pytest.mark.bench

ROUNDS = int(os.environ.get("DYNPOSE_BENCH_HOST_ROUNDS", "11"))
CROPS = int(os.environ.get("DYNPOSE_BENCH_CROPS", "24"))
BATCH = 8


@pytest.fixture(scope="module")
def fixture_engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from build.configs import DEFAULT_CONFIG

    assert DEFAULT_CONFIG == "fixture-dyn"
    return artifacts_from_env("DYNPOSE_BENCH_FIXTURE", tmp_path_factory.mktemp("fixture_artifacts"))


def _net(pipe: PosePipeline, role: str, cs: CropSet) -> dict[str, np.ndarray]:
    """The net alone, frame by frame in chunks of BATCH, as the scheduler batches it."""
    outs = []
    for i in range(int(cs.frame_of.max()) + 1):
        crops = cs.crops[cs.frame_slice(i)]
        outs += [
            pipe.runners[role].infer_async(crops[j : j + BATCH], pipe.streams[role])
            for j in range(0, len(crops), BATCH)
        ]
    parts = [o.wait() for o in outs]
    return {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}


def test_pose_stage_against_raw_nets(benchmark, fixture_engines: Path) -> None:
    frames: list[Frame] = subset_frames(load_frames(shared_data_dir() / "coco-mini"), CROPS)
    cs = make_cropset(frames)
    n = len(cs)
    pipe = PosePipeline(fixture_engines, PipelineOptions(policy="dyn", backend="ort", max_batch=BATCH))
    try:
        assert decodes_probability_maps(pipe.manifest["models"]["large"].get("head", "")), (
            "fixture-l must be ProbPose"
        )
        assert pipe.prob.coverage is not None, "the fixture build fits the regions' calibration"
        maps = _net(pipe, "large", cs)["probmaps"]
        prob: ProbFieldsDecoder = pipe.prob  # the pipeline's own: its calibration, its masses
        centers, scales = np.zeros((n, 2)), np.ones((n, 2))

        def regions() -> object:
            ex = prob.new(n)
            prob.fill(ex, np.arange(n), SPEC, {"probmaps": maps}, np.ones((n, 17)), centers, scales)
            return ex

        routed: list[float] = []

        def run_pipeline() -> list:
            out = list(pipe.run_many((f.image, f.boxes, f.scores) for f in frames))
            routed.append(float(np.concatenate([r.route for r in out]).mean()))
            assert sum(len(r.route) for r in out) == n
            return out

        parts = {
            "pipeline": run_pipeline,
            "net:small": lambda: _net(pipe, "small", cs),
            "router": lambda: _net(pipe, "router", cs),
            "decode": lambda: decode_probmaps(maps),
            "regions": regions,
            "net:large": lambda: _net(pipe, "large", cs),
        }
        assert regions().has_regions.all()  # type: ignore[attr-defined]
        clocks = benchmark.pedantic(
            lambda: interleaved_clocks(parts, ROUNDS, 1, ("wall", "process")), rounds=1, iterations=1
        )
    finally:
        pipe.close()
    f = float(np.median(routed))
    paired: dict[str, list[float]] = {}
    for clock, suffix in (("process", ""), ("wall", "_wall")):
        s = clocks[clock]
        ideal = [
            gates.ideal_seconds(f, a, b, c) for a, b, c in zip(s["net:small"], s["net:large"], s["router"])
        ]
        paired[f"fixture_pose_stage_over_raw{suffix}"] = ratio_rounds(ideal, s["pipeline"])
        host = [d + r for d, r in zip(s["decode"], s["regions"])]
        paired[f"fixture_host_decode_over_small_crop{suffix}"] = ratio_rounds(host, s["net:small"])
    figures = {k: Spread.of(v) for k, v in paired.items()}
    cpu = clocks["process"]
    per_crop = {k: float(np.median(v)) / n * 1e3 for k, v in cpu.items()}
    benchmark.extra_info.update(
        {
            "crops": n,
            "batch": BATCH,
            "rounds": ROUNDS,
            "large_fraction": f,
            "seconds": clocks["wall"],
            "cpu_seconds": cpu,
            "cpu_ms_per_crop": per_crop,
            "paired": paired,
            "figures": {k: v.as_dict() for k, v in figures.items()},
        }
    )
    st, hd = figures["fixture_pose_stage_over_raw"], figures["fixture_host_decode_over_small_crop"]
    print(
        f"\nfixture pose stage / raw nets {st.median:.3f} ({st.text('.3f')}), CPU clock, f = {f:.2f}; "
        f"decode + regions / small-net crop {hd.median:.3f} ({hd.text('.3f')})\nCPU ms/crop: "
        + ", ".join(f"{k} {v:.3f}" for k, v in per_crop.items())
    )
