"""``python -m build.synth --out DIR --n-images N --seed S [--photos DIR] [--level easy|medium|hard]``;
``--video OUT`` writes a clip instead (build.synth.video)."""

from __future__ import annotations

import sys

from runtime.cli.args import OneLineParser, nonneg_int, number, output_dir
from runtime.errors import InputError, guarded

from .coco import load_photos, write_dataset
from .video import photos_dir


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(x == "--video" or x.startswith("--video=") for x in argv):  # clips: build.synth.video
        from .video import main as video_main

        return video_main(argv)
    p = OneLineParser(prog="python -m build.synth", description=__doc__)
    p.add_argument(
        "--out",
        required=True,
        type=output_dir,
        help="output directory (images/, person_keypoints.json, detections.json)",
    )
    p.add_argument("--n-images", type=number(int, lo=1, hi=1_000_000), default=200)
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument(
        "--photos",
        default=None,
        type=photos_dir,
        help="directory of .jpg backgrounds (default ../shared/data/coco-mini; '' for none)",
    )
    p.add_argument(
        "--level",
        choices=("easy", "medium", "hard"),
        default=None,
        help="only scenes of this level (default: the training mix, see build.synth.scene.MIX)",
    )
    a = p.parse_args(argv)
    try:
        photos = load_photos(a.photos)
    except FileNotFoundError as e:
        raise InputError(str(e), "--photos", "pass a folder of .jpg files or --photos ''") from None
    paths = write_dataset(a.out, a.n_images, a.seed, photos, progress=True, level=a.level)
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def cli(argv: list[str] | None = None) -> int:
    return guarded(main, argv, prog="python -m build.synth")


if __name__ == "__main__":
    sys.exit(cli())
