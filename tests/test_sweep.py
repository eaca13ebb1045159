"""The sweep's composed rows equal what the real PosePipeline returns with that band.

Two real coco-mini frames (785 and 40083: 48 detector boxes) keep it quick;
two frames are needed so the ``random`` policy's per-frame draws are covered.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.sweep import measured_rate, route_policy, sweep
from bench.tradeoff_report import write_report
from measure.net_outputs import compose, run_nets
from measure.workload import load_frames
from runtime.pose.pipeline import PipelineOptions, PosePipeline
from runtime.pose.routing import fit_thresholds

P = 25.0  # not the manifest's p: the refit must be what routes


@pytest.fixture(scope="module")
def frames(coco_mini):
    fr = [f for f in load_frames(coco_mini) if f.image_id in (785, 40083)]
    assert [len(f.boxes) for f in fr] == [22, 26]
    return fr


@pytest.fixture(scope="module")
def pipe(cpu_artifacts):
    with PosePipeline(cpu_artifacts, PipelineOptions(policy="dyn", backend="ort")) as p:
        yield p


@pytest.fixture(scope="module")
def nets_run(pipe, frames):
    return run_nets(pipe, frames)


@pytest.fixture(scope="module")
def band(pipe, nets_run):
    return fit_thresholds(nets_run[1].router_scores, pipe.manifest["routing"]["theta"], P)


@pytest.mark.parametrize("policy", ["dyn", "random"])
def test_composed_results_equal_the_real_pipeline(policy, pipe, frames, nets_run, band):
    cs, nets = nets_run
    large = route_policy(
        policy, nets.router_scores, cs, band.k1, band.k2, band.large_fraction, pipe.options.seed
    )
    composed = compose(frames, cs, nets, large, with_router=policy == "dyn")
    pipe.options.policy = policy
    pipe.k1, pipe.k2, pipe.fraction = band.k1, band.k2, band.large_fraction
    pipe._rng = np.random.default_rng(pipe.options.seed)  # as a freshly loaded pipeline
    real = [pipe(f.image, f.boxes, f.scores) for f in frames]
    n_large = 0
    for c, r in zip(composed, real):
        np.testing.assert_array_equal(c.route, r.route)
        np.testing.assert_allclose(c.keypoints, r.keypoints, atol=1e-3)
        np.testing.assert_allclose(c.presence, r.presence, atol=1e-5)
        if policy == "dyn":
            np.testing.assert_allclose(c.router_score, r.router_score, rtol=1e-6)
        assert [x["score"] for x in c.to_coco(0)] == pytest.approx(
            [x["score"] for x in r.to_coco(0)], abs=1e-4
        )
        n_large += int((r.route == 1).sum())
    assert abs(n_large - math.ceil(len(cs) * P / 100)) <= 1


def test_rows_gmacs_and_report(pipe, frames, nets_run, coco_mini, tmp_path):
    rows, nets = sweep(pipe, frames, coco_mini / "person_keypoints.json", ps=(0.0, P), nets_run=nets_run)
    gm = {r: pipe.manifest["models"][r]["gmacs"] for r in ("router", "small", "large")}
    by = {(r.policy, r.p): r for r in rows}
    assert by[("small", None)].gmacs_per_crop == pytest.approx(gm["small"])
    assert by[("large", None)].gmacs_per_crop == pytest.approx(gm["large"])
    assert by[("dyn", 0.0)].large_fraction == 0.0
    for policy, router in (("dyn", gm["router"]), ("random", 0.0)):  # random pays no router
        r = by[(policy, P)]
        assert r.gmacs_per_crop == pytest.approx(
            router + (1 - r.large_fraction) * gm["small"] + r.large_fraction * gm["large"]
        )
    assert by[("dyn", P)].large_fraction == pytest.approx(by[("random", P)].large_fraction, abs=1 / 48 + 1e-9)
    assert all(0.0 <= r.AP <= 1.0 and r.crops_per_s > 0 for r in rows)
    paths = write_report(
        rows, nets, pipe.manifest, tmp_path, backend="ort", precision="fp32", timing="model", data=coco_mini
    )
    md = (tmp_path / "tradeoff.md").read_text()
    assert "| dyn p=25% |" in md and "## Conditions" in md and "cpu_model" in md
    if pipe.manifest["weights"] == "random":
        assert "Random weights" in md
    assert (tmp_path / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "tradeoff.csv").read_text().splitlines()) == len(rows) + 1
    assert len(paths) == 3


def test_measured_timing_runs_the_real_pipeline_and_restores_it(pipe, frames, band):
    before = (pipe.options.policy, pipe.k1, pipe.k2, pipe.fraction)
    assert measured_rate(pipe, frames, "random", band.k1, band.k2, band.large_fraction) > 0
    assert (pipe.options.policy, pipe.k1, pipe.k2, pipe.fraction) == before
