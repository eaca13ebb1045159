"""Many cameras: one batch per tick gives each camera exactly its single-camera answer, the
budget's large-net slots are shared fairly, and the video CLI writes complete per-camera outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from measure.workload import load_frames
from runtime.pose.pipeline import PipelineOptions, PosePipeline, fair_shares
from runtime.video.args import SourceSpec, read_sources_file, unique_names
from runtime.video.engine import run_video


@given(st.integers(0, 200), st.lists(st.integers(0, 60), min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_fair_shares_is_max_min_fair(total, want):
    want = np.array(want)
    got = fair_shares(total, want)
    assert got.sum() == min(total, want.sum()) and (got <= want).all() and (got >= 0).all()
    short = got < want  # anyone left short has at least everyone else's share - 1
    if short.any():
        assert got[short].min() >= got.max() - 1


def test_views_in_one_batch_equal_single_frames(cpu_artifacts: Path, coco_mini: Path):
    frames = load_frames(coco_mini)
    with PosePipeline(cpu_artifacts, PipelineOptions(policy="dyn", backend="ort")) as pipe:
        single = [pipe(f.image, f.boxes, f.scores) for f in frames]
        views = [(f.image, f.boxes, f.scores) for f in frames]
        ticks = list(pipe.run_ticks([views[:2], views[2:], views]))
    assert [len(t) for t in ticks] == [2, 2, 4]
    for got, want in zip(ticks[0] + ticks[1], single):
        assert len(got) == len(want) and got.dropped == want.dropped and (got.route == want.route).all()
        np.testing.assert_allclose(np.nan_to_num(got.keypoints), np.nan_to_num(want.keypoints), atol=1e-4)
    assert [len(r) for r in ticks[2]] == [len(f.boxes) for f in frames]


def test_budget_shares_large_slots_between_cameras(cpu_artifacts: Path):
    """A crowded camera (10 crops in the band) and a quiet one (3): a cap of 4 large-net crops
    for the tick goes 2 + 2, not 4 + 0 to the crops nearest the band centre."""
    with PosePipeline(cpu_artifacts, PipelineOptions(policy="dyn", backend="ort")) as pipe:
        pipe.k1, pipe.k2 = 0.0, 1.0
        scores = np.concatenate([np.full(10, 0.5), np.linspace(0.05, 0.1, 3)])  # crowd sits at the centre
        large = np.ones(13, bool)
        fair = pipe._budget(scores, large, 4, [10, 3])
        assert fair[:10].sum() == 2 and fair[10:].sum() == 2
        alone = pipe._budget(scores, large, 4, [13])  # one camera: nearest centre
        assert alone[:10].sum() == 4


def test_sources_file_and_names(tmp_path: Path):
    f = tmp_path / "cams.txt"
    f.write_text("# cameras\nfront rtsp://127.0.0.1:1/cam0\n\nback  clip.mp4\nonly_a_spec.mp4\n")
    assert read_sources_file(f) == [
        SourceSpec("rtsp://127.0.0.1:1/cam0", "front"),
        SourceSpec("clip.mp4", "back"),
        SourceSpec("only_a_spec.mp4"),
    ]
    assert unique_names(["street", "street", "a b", "street"]) == ["street", "street_1", "a_b", "street_2"]


def test_video_cli_many_files_complete_per_camera(cpu_artifacts: Path, shared_data: Path, tmp_path: Path):
    street, people = shared_data / "video" / "street.mp4", shared_data / "video" / "people.mp4"
    out = tmp_path / "out"
    code, summary = run_video(
        [
            "--engines",
            str(cpu_artifacts),
            "--source",
            str(street),
            "--source",
            str(people),
            "--source",
            str(street),
            "--out",
            str(out),
            "--quiet",
            "--no-video",
        ]
    )
    assert code == 0
    assert sorted(summary["cameras"]) == ["people", "street", "street_1"]
    for name in ("people", "street", "street_1"):
        lines = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        assert [x["frame"] for x in lines] == list(range(5))
        cam = json.loads((out / f"{name}.summary.json").read_text())
        assert cam["frames"] == 5 and cam["fps"] > 0
    a = [json.loads(x) for x in (out / "street.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (out / "street_1.jsonl").read_text().splitlines()]
    assert [len(x["persons"]) for x in a] == [len(x["persons"]) for x in b]  # same clip, same answer
    total = json.loads((out / "multicam.summary.json").read_text())
    assert total["frames"] == 15 and total["crops"] == sum(c["boxes"] for c in summary["cameras"].values())
