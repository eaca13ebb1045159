"""FPS of ``python -m runtime.video`` over a long synthetic clip (hundreds of frames, not five).

The clip comes from ``build.synth.video.long_clip`` (default 200 frames,
640x480, 7 people; env DYNPOSE_BENCH_LONG_FRAMES changes the length), the
detector is the clip's own boxes (``json:``, so detection costs nothing and
the figure is the pose pipeline's), with the default tracker, ``--smooth``
and both outputs. One round: the clip is long enough to average itself.

Run: python -m pytest bench/bench_video_long.py -m bench -q
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.conditions import collect_conditions
from bench.data import artifacts_from_env
from build.synth.video import long_clip
from runtime.video.engine import STAGES, run_video


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_from_env("DYNPOSE_BENCH_ENGINES", tmp_path_factory.mktemp("artifacts"))


@pytest.mark.bench
def test_video_long_clip_fps(benchmark, engines: Path, tmp_path: Path) -> None:
    frames = int(os.environ.get("DYNPOSE_BENCH_LONG_FRAMES", "200"))
    clip = long_clip(tmp_path / "clip", frames=frames)
    threads = int(os.environ.get("DYNPOSE_BENCH_THREADS", "1"))
    argv = [
        "--engines",
        str(engines),
        "--source",
        str(clip["video"]),
        "--detector",
        f"json:{clip['detections']}",
        "--smooth",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        "--threads",
        str(threads),
    ]
    summaries = []

    def once() -> None:
        code, summary = run_video(argv)
        assert code == 0
        summaries.append(summary)

    benchmark.pedantic(once, rounds=1, iterations=1, warmup_rounds=0)
    s = summaries[0]
    assert s["frames"] == frames and s["fps"] > 0
    benchmark.extra_info.update(
        {
            "clip": f"build.synth long_clip ({frames} frames, 640x480)",
            "detector": "json (clip boxes)",
            "policy": "dyn",
            "fps": round(s["fps"], 3),
            "persons": s["persons"],
            "large_net_share": round(s["large_net_share"], 3),
            "stage_share": {k: round(s["share_of_busy_time"][k], 3) for k in STAGES},
            "conditions": collect_conditions(backend="ort", precision="fp32", threads=threads),
        }
    )
    print(f"\nvideo (long synthetic clip): {s['fps']:.2f} FPS over {frames} frames")
