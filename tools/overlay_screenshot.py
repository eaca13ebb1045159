"""Regenerate docs/overlay.png: one overlay frame of the synthetic clip from the video CLI.

    python tools/overlay_screenshot.py --engines artifacts/fixture-dyn-cpu

Renders the README's synthetic clip (``build.synth --video``, seed ``--seed``)
into a temporary folder, runs the real CLI on its first frames with the clip's
own detections (``--detector json:``), ``--smooth`` and ``--draw-regions``, and saves frame
``--frame`` of the overlay, shrunk to ``--width`` so the PNG stays small in
the repository. ``--source VIDEO`` shows a real clip instead (HOG detector).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from build.synth.coco import load_photos  # noqa: E402
from build.synth.video import ClipSpec, write_clip  # noqa: E402
from runtime.errors import guarded  # noqa: E402
from runtime.safe_io import atomic_write_bytes  # noqa: E402
from runtime.video.engine import run_video  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """One line and a documented exit code for any failure (exit 4 on a full disk)."""
    return guarded(_main, argv, prog="python -m tools.overlay_screenshot")


def _main(argv: list[str]) -> int:
    from runtime.artifacts.manifest import load_manifest
    from runtime.cli.args import OneLineParser, artifacts_dir, existing_file, nonneg_int, number, out_file_in

    p = OneLineParser(
        prog="python -m tools.overlay_screenshot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--engines", required=True, type=artifacts_dir)
    p.add_argument(
        "--source", type=existing_file, default=None, help="a real video instead of the synthetic clip"
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="synthetic clip seed (default 0, the README's)")
    p.add_argument("--frame", type=number(int, lo=0, hi=100_000), default=100, help="0-based frame to grab")
    p.add_argument("--width", type=number(int, lo=16, hi=8192), default=640)
    p.add_argument(
        "--out",
        type=out_file_in("overlay.png", ".png"),
        default=str(REPO / "docs"),
        metavar="DIR",
        help="folder for overlay.png (default: docs/)",
    )
    args = p.parse_args(argv)
    load_manifest(args.engines)  # a bad artifacts folder is refused before the clip is rendered
    with tempfile.TemporaryDirectory() as tmp:
        if args.source is None:
            clip = write_clip(
                Path(tmp) / "clip",
                ClipSpec(seed=args.seed),  # the whole clip: motion depends on its length
                load_photos(None),
            )
            extra = [
                "--source",
                str(clip["video"]),
                "--detector",
                f"json:{clip['detections']}",
                "--smooth",
                "--draw-regions",
            ]  # as the README's main job draws them
        else:
            extra = ["--source", str(args.source)]
        code, summary = run_video(
            [
                "--engines",
                str(args.engines),
                *extra,
                "--out",
                str(Path(tmp) / "run"),
                "--max-frames",
                str(args.frame + 1),
                "--quiet",
            ]
        )
        if code != 0 or summary is None:
            return code or 1
        cap = cv2.VideoCapture(summary["outputs"]["video"][0])
        img = None
        for _ in range(args.frame + 1):
            ok, img = cap.read()
            if not ok:
                raise SystemExit(f"error: the overlay has fewer than {args.frame + 1} frames")
    h, w = img.shape[:2]
    img = cv2.resize(img, (args.width, round(h * args.width / w)), interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(args.out.suffix, img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise SystemExit(
            f"error: OpenCV cannot encode an image as {args.out.suffix!r} ({args.out}): name a .png file"
        )
    atomic_write_bytes(args.out, png.tobytes())  # a failed rewrite keeps the previous screenshot
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
