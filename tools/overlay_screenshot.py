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
from runtime.video import run_video  # noqa: E402
from runtime.errors import guarded  # noqa: E402
from runtime.safe_io import atomic_write_bytes  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", required=True, type=Path)
    p.add_argument("--source", type=Path, default=None, help="a real video instead of the synthetic clip")
    p.add_argument("--seed", type=int, default=0, help="synthetic clip seed (default 0, the README's)")
    p.add_argument("--frame", type=int, default=100)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "overlay.png")
    args = p.parse_args(argv)
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):   # checked before the run, not after it
        p.error(f"--out {args.out}: name a .png (or .jpg) file")
    with tempfile.TemporaryDirectory() as tmp:
        if args.source is None:
            clip = write_clip(Path(tmp) / "clip", ClipSpec(seed=args.seed),   # the whole clip: motion depends on its length
                              load_photos(None))
            extra = ["--source", str(clip["video"]), "--detector", f"json:{clip['detections']}", "--smooth",
                     "--draw-regions"]   # as the README's main job draws them
        else:
            extra = ["--source", str(args.source)]
        code, summary = run_video(["--engines", str(args.engines), *extra, "--out", str(Path(tmp) / "run"),
                                   "--max-frames", str(args.frame + 1), "--quiet"])
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
        raise SystemExit(f"error: OpenCV cannot encode an image as {args.out.suffix!r} ({args.out}): name a .png file")
    atomic_write_bytes(args.out, png.tobytes())   # a failed rewrite keeps the previous screenshot
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(guarded(main, None, prog="tools/overlay_screenshot.py"))   # one line, exit 4 on a full disk
