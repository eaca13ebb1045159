"""One video engine for any number of cameras: every output-changing flag takes effect, and means
the same, for 1 and 3 sources; a backend or source failure ends ``runtime.video`` (1 or 3
cameras) and ``runtime.images`` with the same exit code (runtime.outcome's policy).

Real runs on the real street clip (HOG boxes, the CPU artifacts), in-process through
``run_video`` / ``main`` like bench/bench_video.py; three cameras are the clip three times, so
each camera's output must equal the one-camera output under the same flag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from failcheck import assert_one_line_failure, run_in_process

from runtime.errors import EXIT_INCOMPLETE, EXIT_INPUT
from runtime.images import main as images_main
from runtime.io.sinks import MjpegAviWriter
from runtime.video.engine import main as video_main
from runtime.video.engine import run_video
from tools.ports import free_port

NAMES = {1: ["street"], 3: ["street", "street_1", "street_2"]}
# flag -> (its arguments, the arguments of the run it is compared with). Every flag of
# runtime/video/args.py that changes an output is here except --fps (image folders only;
# test_video.py), --precision (needs built variants) and the live-source flags (test_live_sources.py).
FLAGS: dict[str, tuple[list[str], list[str]]] = {
    "smooth": (["--smooth"], []),
    "tracker": (["--tracker", "iou"], ["--det-every", "2"]),  # the trackers differ where they predict
    "track-iou": (["--track-iou", "0.95"], []),
    "credible": (["--credible", "none"], []),
    "draw-regions": (["--draw-regions"], []),
    "max-boxes": (["--max-boxes", "2"], []),
    "det-every": (["--det-every", "3"], []),
    "det-thr": (["--det-thr", "1.0"], []),
    "hog-width": (["--hog-width", "320"], []),
    "hide-low": (["--hide-low"], []),
    "kpt-thr": (["--kpt-thr", "0.9"], []),
    "presence-thr": (["--presence-thr", "0.99"], []),
    "policy": (["--policy", "large"], []),
    "score-thr": (["--score-thr", "1.0"], []),
    "budget-ms": (["--budget-ms", "0.001"], []),
    "max-frames": (["--max-frames", "2"], []),
    "no-video": (["--no-video"], []),
    "video-format": (["--video-format", "mp4"], []),
}
# The budget caps large-net crops per tick and shares them between cameras (fair_shares), so with
# three cameras each one's routes legitimately differ from the one-camera run.
PER_TICK = {"budget-ms"}


def _read_overlay(out: Path, name: str) -> list[np.ndarray] | None:
    files = sorted(out.glob(f"{name}.overlay.*"))
    if not files:
        return None
    cap = cv2.VideoCapture(str(files[0]))
    frames = []
    while (got := cap.read())[0]:
        img = got[1].astype(np.int16)
        img[: img.shape[0] // 4] = 0  # the HUD (FPS, ms) differs run to run; people are below it
        frames.append(img)
    return frames


def _outputs(out: Path, name: str) -> dict[str, Any]:
    """One camera's outputs, minus what differs between identical runs (wall times, the HUD)."""
    records = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("wall_time", None)
    return {
        "files": sorted(p.name[len(name) :] for p in out.glob(f"{name}.*") if p.suffix != ".json"),
        "records": records,
        "overlay": _read_overlay(out, name),
    }


def _close(a: Any, b: Any) -> bool:
    """Equal up to float noise (one batch of 3 cameras vs 1 camera: ~1e-4)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 2e-3 + 2e-3 * abs(b)
        )
    return bool(a == b)


def _same_overlay(a: list[np.ndarray] | None, b: list[np.ndarray] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(np.abs(x - y).mean() < 0.5 for x, y in zip(a, b))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["files"] == b["files"]
        and _close(a["records"], b["records"])
        and _same_overlay(a["overlay"], b["overlay"])
    )


@pytest.fixture(scope="module")
def runs(cpu_artifacts: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``runs(n, args)`` -> each camera's outputs of a real run on n copies of the street clip (cached)."""
    street = shared_data / "video" / "street.mp4"
    done: dict[tuple[int, tuple[str, ...]], list[dict[str, Any]]] = {}

    def run(n: int, args: list[str]) -> list[dict[str, Any]]:
        key = (n, tuple(args))
        if key not in done:
            out = tmp_path_factory.mktemp(f"cams{n}")
            sources = [a for _ in range(n) for a in ("--source", str(street))]
            code, _ = run_video(
                [
                    "--engines",
                    str(cpu_artifacts),
                    *sources,
                    "--out",
                    str(out),
                    "--threads",
                    "1",
                    "--quiet",
                    *args,
                ]
            )
            assert code == 0
            done[key] = [_outputs(out, name) for name in NAMES[n]]
        return done[key]

    return run


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_every_flag_takes_effect_for_any_number_of_cameras(runs: Any, flag: str, n: int) -> None:
    args, base = FLAGS[flag]
    flagged, plain = runs(n, base + args), runs(n, base)
    for name, got, without in zip(NAMES[n], flagged, plain):
        assert not _same(got, without), f"{flag} changed nothing for camera {name} of {n}"
    if n > 1 and flag not in PER_TICK:  # and means the same as with one camera
        alone = runs(1, base + args)[0]
        for name, got in zip(NAMES[n], flagged):
            assert _same(got, alone), f"{flag}: camera {name} of {n} differs from the one-camera run"


def _images_argv(art: Path, coco_mini: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--engines", str(art), "--images", str(coco_mini), "--dets", str(coco_mini / "person_detections.json"),
        "--out", str(out), *extra,
    ]  # fmt: skip


def _video_argv(art: Path, sources: list[Path], out: Path, *extra: str) -> list[str]:
    src = [a for s in sources for a in ("--source", str(s))]
    return ["--engines", str(art), *src, "--out", str(out), "--no-video", "--quiet", *extra]


def test_unreachable_backend_same_code_for_images_and_1_or_3_cameras(
    cpu_artifacts: Path,
    coco_mini: Path,
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Triton URL nobody listens on is found before any work: bad input (exit 2), one line
    naming the address, for runtime.images and runtime.video alike (was: 3 from images)."""
    url = f"127.0.0.1:{free_port()}"
    street = shared_data / "video" / "street.mp4"
    runs = {
        "images": (images_main, _images_argv(cpu_artifacts, coco_mini, tmp_path / "i", "--triton-url", url)),
        "video x1": (video_main, _video_argv(cpu_artifacts, [street], tmp_path / "v1", "--triton-url", url)),
        "video x3": (
            video_main,
            _video_argv(cpu_artifacts, [street] * 3, tmp_path / "v3", "--triton-url", url),
        ),
    }
    for what, (main, argv) in runs.items():
        rc, _, err = run_in_process(main, argv, capsys)
        assert rc == EXIT_INPUT, f"{what}: exit {rc}: {err}"
        assert_one_line_failure(rc, err, EXIT_INPUT, f"Triton at {url}")


def test_source_failures_same_code_for_1_and_3_cameras(
    cpu_artifacts: Path,
    coco_mini: Path,
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A source that does not open: exit 2 (images: a missing --images folder, the same); a
    source that ends early (a truncated recording): exit 3 after every frame read was written."""
    street = shared_data / "video" / "street.mp4"
    missing = tmp_path / "gone.mp4"
    for what, main, argv in (
        ("images", images_main, _images_argv(cpu_artifacts, tmp_path / "no-images", tmp_path / "i")),
        ("video x1", video_main, _video_argv(cpu_artifacts, [missing], tmp_path / "v1")),
        ("video x3", video_main, _video_argv(cpu_artifacts, [street, missing, street], tmp_path / "v3")),
    ):
        rc, _, err = run_in_process(main, argv, capsys)
        assert rc == EXIT_INPUT, f"{what}: exit {rc}: {err}"
        assert_one_line_failure(rc, err, EXIT_INPUT)
    cap = cv2.VideoCapture(str(street))
    avi = tmp_path / "rec.avi"
    w = MjpegAviWriter(
        avi, 25, (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    )
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    for img in frames * 2:  # 10 frames, the index at the end
        w.write(img)
    w.close()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    for n, sources in ((1, [cut]), (3, [street, cut, street])):
        out = tmp_path / f"cut{n}"
        rc, _, err = run_in_process(video_main, _video_argv(cpu_artifacts, sources, out), capsys)
        assert rc == EXIT_INCOMPLETE and "truncated" in err, f"{n} cameras: exit {rc}: {err}"
        lines = (out / "cut.jsonl").read_text().splitlines()
        assert 1 <= len(lines) < 10 and [json.loads(x)["frame"] for x in lines] == list(range(len(lines)))
