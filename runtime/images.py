"""``python -m runtime.images``: a folder of images + detections -> COCO results JSON.

Results are written after every image (atomically), so an interrupted run
keeps everything finished so far.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import cv2
from tqdm import tqdm

from .backends.base import BackendError
from .manifest import ManifestError
from .pipeline import PipelineOptions, PosePipeline
from .probfields import add_prob_arguments
from .preprocess import BoxError
from .routing import POLICIES


def load_detections(path: Path, images_dir: Path) -> dict[str, tuple[int, list, list]]:
    """file name -> (image id, boxes, scores) from COCO results JSON.

    Detections name images by ``image_id``; ids are matched to files through a
    COCO ``person_keypoints.json`` beside the images when present, otherwise by
    the number in the file name (COCO's 000000000785.jpg is id 785).
    """
    try:
        dets = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"error: cannot read detections {path}: {e}") from None
    if not isinstance(dets, list):
        raise SystemExit(f"error: {path} must be a COCO results list [{{image_id, bbox, score}}, ...]")
    names: dict[int, str] = {}
    gt = images_dir / "person_keypoints.json"
    if gt.is_file():
        names = {im["id"]: im["file_name"] for im in json.loads(gt.read_text())["images"]}
    else:
        for f in images_dir.iterdir():
            if f.stem.isdigit():
                names[int(f.stem)] = f.name
    per: dict[str, tuple[int, list, list]] = defaultdict(lambda: (0, [], []))
    for d in dets:
        if d.get("category_id", 1) != 1:
            continue
        name = names.get(d["image_id"])
        if name is None:
            raise SystemExit(f"error: detection for image_id {d['image_id']} but no such image in {images_dir}")
        _, boxes, scores = per[name]
        boxes.append(d["bbox"])
        scores.append(d.get("score", 1.0))
        per[name] = (d["image_id"], boxes, scores)
    return dict(per)


def _write_atomic(path: Path, data: list) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (ManifestError, BackendError, BoxError) as e:
        raise SystemExit(f"error: {e}") from None


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.images", description=__doc__)
    p.add_argument("--engines", required=True, type=Path, help="artifacts folder with manifest.json")
    p.add_argument("--images", required=True, type=Path, help="folder of images")
    p.add_argument("--dets", required=True, type=Path, help="person detections, COCO results JSON")
    p.add_argument("--out", default=Path("results.json"), type=Path, help="COCO keypoint results JSON")
    p.add_argument("--policy", default="dyn", choices=POLICIES)
    p.add_argument("--backend", default="auto", choices=("auto", "ort", "trt"))
    p.add_argument("--precision", default="fp32", help="ONNX variant for the ORT backend (fp32, int8_cpu, ...)")
    p.add_argument("--budget-ms", type=float, default=None, help="per-frame latency budget (caps large-net crops)")
    p.add_argument("--score-thr", type=float, default=None, help="drop boxes scoring below this")
    add_prob_arguments(p)
    args = p.parse_args(argv)
    if not args.images.is_dir():
        raise SystemExit(f"error: --images {args.images} is not a folder")
    per = load_detections(args.dets, args.images)
    opts = PipelineOptions(policy=args.policy, backend=args.backend, precision=args.precision,
                           budget_ms=args.budget_ms, score_thr=args.score_thr, credible=args.credible)
    results: list = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    n_large = n_total = 0
    with PosePipeline(args.engines, opts) as pipe:
        for name in tqdm(sorted(per), desc="images", unit="img", file=sys.stderr):
            image_id, boxes, scores = per[name]
            img = cv2.imread(str(args.images / name))
            if img is None:
                print(f"warning: {args.images / name} unreadable, skipped", file=sys.stderr)
                continue
            res = pipe(img, boxes, scores)
            results += res.to_coco(image_id)
            n_large += int((res.route == 1).sum())
            n_total += int((res.route >= 0).sum())
            _write_atomic(args.out, results)
    print(f"{len(results)} people from {len(per)} images -> {args.out} "
          f"(large net: {n_large}/{n_total} crops)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
