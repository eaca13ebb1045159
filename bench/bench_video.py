"""End-to-end FPS of ``python -m runtime.video`` on the CPU backend, with each stage's share.

The clip is ../shared/data/video/people.mp4 (5 real 1280x720 frames), the default
detector (HOG, every frame), the default DynPose policy, and both outputs (overlay
AVI + JSON Lines) - what a user gets from the plain command line. The stages run
in parallel threads, so FPS is wall-clock frames/s and the shares are each
stage's part of the summed busy time (the largest share is the bottleneck).

Artifacts: DYNPOSE_BENCH_ENGINES=DIR reuses a built folder; otherwise the default
config is built once for the CPU target (~40 s).

Run: python -m pytest bench/bench_video.py -m bench -q
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.conditions import collect_conditions
from bench.data import artifacts_from_env, shared_data_dir
from runtime.video.engine import POSE_PARTS, STAGES, run_video


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_from_env("DYNPOSE_BENCH_ENGINES", tmp_path_factory.mktemp("artifacts"))


@pytest.mark.bench
def test_video_end_to_end_fps(benchmark, engines: Path, tmp_path: Path) -> None:
    clip = shared_data_dir() / "video" / "people.mp4"
    threads = int(os.environ.get("DYNPOSE_BENCH_THREADS", "1"))
    argv = [
        "--engines",
        str(engines),
        "--source",
        str(clip),
        "--out",
        str(tmp_path),
        "--quiet",
        "--threads",
        str(threads),
    ]
    summaries = []

    def once() -> None:
        code, summary = run_video(argv)
        assert code == 0
        summaries.append(summary)

    benchmark.pedantic(once, rounds=2, iterations=1, warmup_rounds=0)
    s = max(summaries, key=lambda x: x["fps"])  # best round: least disturbed by other load
    assert s["frames"] == 5 and s["fps"] > 0
    benchmark.extra_info.update(
        {
            "clip": "people.mp4 (5 frames, 1280x720)",
            "detector": "hog",
            "policy": "dyn",
            "fps": round(s["fps"], 3),
            "persons": s["persons"],
            "large_net_share": round(s["large_net_share"], 3),
            "mean_ms": {k: round(v, 2) for k, v in s["mean_ms"].items()},
            "stage_share": {k: round(s["share_of_busy_time"][k], 3) for k in STAGES},
            "pose_parts": list(POSE_PARTS),
            "conditions": collect_conditions(backend="ort", precision="fp32", threads=threads),
        }
    )
    print(
        f"\nvideo: {s['fps']:.2f} FPS end to end; stage shares "
        + ", ".join(f"{k} {s['share_of_busy_time'][k]:.0%}" for k in STAGES)
    )
