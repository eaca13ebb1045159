"""``python -m build.synth --out DIR --n-images N --seed S [--photos DIR] [--level easy|medium|hard]``;
``--video OUT`` writes a clip instead (build.synth.video)."""
from __future__ import annotations

import argparse
import sys

from .coco import load_photos, write_dataset


def main(argv: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(x == "--video" or x.startswith("--video=") for x in argv):   # clips: build.synth.video
        from runtime.errors import guarded

        from .video import main as video_main
        return guarded(video_main, argv, prog="python -m build.synth --video")
    p = argparse.ArgumentParser(prog="python -m build.synth", description=__doc__)
    p.add_argument("--out", required=True, help="output directory (images/, person_keypoints.json, detections.json)")
    p.add_argument("--n-images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photos", default=None,
                   help="directory of .jpg backgrounds (default ../shared/data/coco-mini; '' for none)")
    p.add_argument("--level", choices=("easy", "medium", "hard"), default=None,
                   help="only scenes of this level (default: the training mix, see build.synth.scene.MIX)")
    a = p.parse_args(argv)
    paths = write_dataset(a.out, a.n_images, a.seed, load_photos(a.photos), progress=True, level=a.level)
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))


if __name__ == "__main__":
    raise SystemExit(main())
