"""CropCOCO-style data: crop COCO images so some annotated keypoints leave the image.

Out-of-image keypoints are what ProbPose's presence head exists for, and
COCO has almost none. Cropping real photos makes them with real ground truth:
the annotations are moved into the new image frame and KEPT even when they
now lie outside it (negative, or beyond width/height), so Ex-OKS can score
"is it there?" as well as "where is it?".

Per image (seeded by ``(seed, image_id)`` so one image's crop does not depend
on the others): pick an annotated person and move one or two image edges
(at most one per axis: the one nearer that person, so the crop keeps as much
of the scene as it can) into the person's box by ``strength x U(0.3, 1) x
70 %`` of the box extent; retry (up to 20 draws) until at least one labelled
keypoint is cut off. Nothing is resized:
pixels keep their scale, so each person's ``area`` (the OKS scale) is left
as it was. Boxes are clipped to the new image; a person whose box leaves the
image entirely is dropped (listed in ``info.cropcoco.dropped_annotations``).
Each image records its crop window in the source frame (``crop``); cropped
images are written as PNG (exact pixels) unless asked for JPEG.

CLI: ``python -m bench.cropcoco --src ../shared/data/coco-mini --out DIR --strength 0.5 --seed 0``
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from measure.gt_records import read_gt
from runtime.cli.args import OneLineParser, existing_dir, number, output_dir, unit_float
from runtime.errors import InputError, guarded
from runtime.io.records import parse_detections, read_json
from runtime.io.safe_io import atomic_write_text


class CropError(InputError, ValueError):
    """Bad CropCOCO arguments or source set (exit 2)."""


class MissingSource(InputError, FileNotFoundError):
    """The --src folder lacks its annotation file (exit 2)."""

    def __init__(self, what: str) -> None:
        InputError.__init__(self, what)

    def __str__(self) -> str:
        return self.line()


ANN_FILE = "person_keypoints.json"
DET_FILE = "person_detections.json"
MAX_TRIES = 20
MAX_DEPTH = 0.7  # deepest cut into the chosen person's box, as a fraction of its extent


def _labelled(ann: dict[str, Any]) -> np.ndarray:
    k = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    return k[k[:, 2] > 0, :2]


def _cuts_any(anns: list[dict[str, Any]], win: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = win
    for a in anns:
        p = _labelled(a)
        if len(p) and ((p[:, 0] < x0) | (p[:, 0] >= x1) | (p[:, 1] < y0) | (p[:, 1] >= y1)).any():
            return True
    return False


def choose_crop(
    image: dict[str, Any], anns: list[dict[str, Any]], strength: float, seed: int, min_size: int = 32
) -> tuple[int, int, int, int]:
    """Crop window (x0, y0, x1, y1) in source pixels, integer so keypoints stay on the pixel grid."""
    W, H = int(image["width"]), int(image["height"])
    full = (0, 0, W, H)
    people = [a for a in anns if not a.get("iscrowd", 0) and len(_labelled(a))]
    if strength <= 0 or not people:
        return full
    rng = np.random.default_rng([int(seed), int(image["id"])])
    win = full
    for _ in range(MAX_TRIES):
        bx, by, bw, bh = people[int(rng.integers(len(people)))]["bbox"]
        # One edge per axis at most, the one nearer the person, so the crop
        # cuts into this person while keeping as much of the scene as it can.
        near = (bx <= W - (bx + bw), by <= H - (by + bh))  # left nearer? top nearer?
        axes = rng.random(2) < 0.5
        if not axes.any():
            axes[int(rng.integers(2))] = True
        sides = np.array(
            [axes[0] and near[0], axes[1] and near[1], axes[0] and not near[0], axes[1] and not near[1]]
        )
        depth = strength * rng.uniform(0.3, 1.0, 4) * MAX_DEPTH
        x0 = bx + depth[0] * bw if sides[0] else 0.0
        y0 = by + depth[1] * bh if sides[1] else 0.0
        x1 = bx + bw - depth[2] * bw if sides[2] else float(W)
        y1 = by + bh - depth[3] * bh if sides[3] else float(H)
        x0, y0 = int(np.clip(round(x0), 0, W)), int(np.clip(round(y0), 0, H))
        x1, y1 = int(np.clip(round(x1), 0, W)), int(np.clip(round(y1), 0, H))
        if x1 - x0 < min_size or y1 - y0 < min_size:
            continue
        win = (x0, y0, x1, y1)
        if _cuts_any(anns, win):
            return win
    return win


def _shift_num(v: Any, off: int) -> Any:
    return v - off  # ints stay ints, floats stay floats


def clip_box(bbox: Sequence[float], win: tuple[int, int, int, int]) -> list[float] | None:
    """xywh in the source frame -> xywh in the crop frame, clipped; None if nothing is left."""
    x0, y0, x1, y1 = win
    bx0, by0 = max(bbox[0], x0), max(bbox[1], y0)
    bx1, by1 = min(bbox[0] + bbox[2], x1), min(bbox[1] + bbox[3], y1)
    if bx1 <= bx0 or by1 <= by0:
        return None
    return [
        round(float(bx0 - x0), 2),
        round(float(by0 - y0), 2),
        round(float(bx1 - bx0), 2),
        round(float(by1 - by0), 2),
    ]


def crop_annotation(ann: dict[str, Any], win: tuple[int, int, int, int]) -> dict[str, Any] | None:
    """Move one annotation into the crop frame; out-of-image keypoints keep their label."""
    box = clip_box(ann["bbox"], win)
    if box is None:
        return None
    x0, y0 = win[0], win[1]
    a = copy.deepcopy(ann)
    kp = list(a["keypoints"])
    for i in range(0, len(kp), 3):
        if kp[i + 2] > 0:
            kp[i], kp[i + 1] = _shift_num(kp[i], x0), _shift_num(kp[i + 1], y0)
    a["keypoints"] = kp
    a["bbox"] = box
    seg = a.get("segmentation")
    if isinstance(seg, list):  # polygons: shifted, not clipped (only the keypoint metrics are used)
        a["segmentation"] = [
            [_shift_num(v, x0 if j % 2 == 0 else y0) for j, v in enumerate(poly)] for poly in seg
        ]
    elif seg is not None:  # RLE masks would need re-encoding; no keypoint metric reads them
        a["segmentation"] = []
    return a


def _write_image(
    src: Path,
    out: Path,
    file_name: str,
    win: tuple[int, int, int, int],
    full: tuple[int, int, int, int],
    image_format: str,
) -> str:
    """Write the cropped image; returns its file name (the extension follows ``image_format``)."""
    if win == full:
        shutil.copyfile(src, out / file_name)  # untouched images stay byte-identical
        return file_name
    dst = out / Path(file_name).with_suffix("." + image_format)
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(
            f"cannot read image {src}; is --src the folder holding the json's file_name entries?"
        )
    if img.shape[:2] != (full[3], full[2]):
        raise ValueError(f"{src} is {img.shape[1]}x{img.shape[0]} but the json says {full[2]}x{full[3]}")
    x0, y0, x1, y1 = win
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else []
    if not cv2.imwrite(str(dst), img[y0:y1, x0:x1], params):
        raise OSError(f"could not write {dst}")
    return str(Path(file_name).with_suffix("." + image_format))


def _check_arguments(src: Path, out: Path, strength: float, ann_file: str, image_format: str) -> Path:
    """Refuse bad arguments before anything is read or written; returns the GT file's path."""
    if image_format not in ("png", "jpg"):
        raise CropError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    if not 0.0 <= float(strength) <= 1.0:
        raise CropError(f"strength must be in [0, 1], got {strength}")
    gt_path = src / ann_file
    if not gt_path.is_file():
        raise MissingSource(f"{gt_path} not found; --src must be a folder with {ann_file} and its images")
    if out.resolve() == src.resolve():
        raise CropError("--out must differ from --src (the source set is read-only)")
    return gt_path


def _check_images(images: list[dict[str, Any]], gt_path: Path) -> None:
    """Each image entry has the size and file name a crop needs (read_gt checks only annotations)."""
    for i, im in enumerate(images):
        for k in ("width", "height"):
            if not isinstance(im.get(k), int) or im[k] < 1:
                raise CropError(
                    f"image entry needs a positive integer '{k}'",
                    f"--src {gt_path} images[{i}]",
                    "fix the GT file",
                )
        if not isinstance(im.get("file_name"), str):
            raise CropError(
                "image entry needs 'file_name'", f"--src {gt_path} images[{i}]", "fix the GT file"
            )


@dataclass
class _Cropped:
    """What cropping the images produced: new image entries, kept annotations, dropped ids, windows."""

    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[Any] = field(default_factory=list)
    windows: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


def _crop_images(
    data: dict[str, Any], src: Path, out: Path, strength: float, seed: int, min_size: int, image_format: str
) -> _Cropped:
    """Each image cut to its seeded window and written; its annotations moved into the window."""
    by_img: dict[int, list[dict[str, Any]]] = {}
    for a in data["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    done = _Cropped()
    for im in data["images"]:
        anns_i = by_img.get(im["id"], [])
        full = (0, 0, int(im["width"]), int(im["height"]))
        win = choose_crop(im, anns_i, float(strength), seed, min_size)
        done.windows[im["id"]] = win
        name = _write_image(src / im["file_name"], out, im["file_name"], win, full, image_format)
        new_im = dict(
            im,
            file_name=name,
            width=win[2] - win[0],
            height=win[3] - win[1],
            crop={"x0": win[0], "y0": win[1], "x1": win[2], "y1": win[3]},
        )
        done.images.append(new_im)
        for a in anns_i:
            c = crop_annotation(a, win)
            if c is None:
                done.dropped.append(a["id"])
            else:
                done.annotations.append(c)
    return done


def crop_coco(
    src: str | Path,
    out: str | Path,
    strength: float = 0.5,
    seed: int = 0,
    ann_file: str = ANN_FILE,
    det_file: str | None = DET_FILE,
    min_size: int = 32,
    image_format: str = "png",
) -> dict[str, Any]:
    """Write a cropped copy of a COCO keypoint set to ``out``; returns a summary.

    Cropped images are PNG by default so their pixels are exactly the
    source's (a second JPEG pass would blur the edges a pose net looks at);
    ``image_format="jpg"`` (quality 95) keeps big sets small.
    """
    src, out = Path(src), Path(out)
    gt_path = _check_arguments(src, out, strength, ann_file, image_format)
    data = read_gt(gt_path, "--src")  # strict: names the bad annotation and field
    _check_images(data["images"], gt_path)
    out.mkdir(parents=True, exist_ok=True)
    done = _crop_images(data, src, out, strength, seed, min_size, image_format)
    info = dict(data.get("info", {}))
    info["cropcoco"] = {
        "source": str(gt_path),
        "strength": float(strength),
        "seed": int(seed),
        "dropped_annotations": done.dropped,
    }
    new = dict(data, info=info, images=done.images, annotations=done.annotations)
    atomic_write_text(out / ann_file, json.dumps(new))
    n_dets = _crop_detections(src, out, det_file, done.windows)
    return {
        "json": str(out / ann_file),
        "images": len(done.images),
        "annotations": len(done.annotations),
        "dropped": len(done.dropped),
        "keypoints_out_of_image": count_out_of_image(new),
        "detections": n_dets,
    }


def _crop_detections(
    src: Path, out: Path, det_file: str | None, windows: dict[int, tuple[int, int, int, int]]
) -> int | None:
    """Detector boxes move with their image, so the pipeline can run on the cropped set."""
    if not det_file or not (src / det_file).is_file():
        return None
    dets = read_json(src / det_file, "detections", "--src")
    parse_detections(dets, f"--src {src / det_file}")  # refuse bad records by index and field
    kept = []
    for d in dets:
        if d["image_id"] not in windows:
            continue
        box = clip_box(d["bbox"], windows[d["image_id"]])
        if box is not None:
            kept.append(dict(d, bbox=box))
    atomic_write_text(out / det_file, json.dumps(kept))
    return len(kept)


def count_out_of_image(data: dict[str, Any]) -> int:
    """Labelled keypoints outside [0,W)x[0,H) of their image."""
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    n = 0
    for a in data["annotations"]:
        p = _labelled(a)
        if len(p):
            w, h = size[a["image_id"]]
            n += int(((p[:, 0] < 0) | (p[:, 0] >= w) | (p[:, 1] < 0) | (p[:, 1] >= h)).sum())
    return n


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_main, argv, prog="bench.cropcoco")


def _main(argv: Sequence[str]) -> int:
    ap = OneLineParser(prog="python -m bench.cropcoco", description=__doc__.splitlines()[0])
    ap.add_argument("--src", required=True, type=existing_dir, help=f"folder with {ANN_FILE} and its images")
    ap.add_argument("--out", required=True, type=output_dir, help="output folder (images + json)")
    ap.add_argument("--strength", type=unit_float, default=0.5, help="0 = no crop .. 1 = deepest cuts")
    ap.add_argument("--seed", type=number(int, lo=0, hi=2**32 - 1), default=0)
    ap.add_argument("--ann", default=ANN_FILE, help="annotation file name inside --src")
    ap.add_argument("--format", default="png", choices=("png", "jpg"), help="format of cropped images")
    a = ap.parse_args(argv)
    print(
        json.dumps(
            crop_coco(a.src, a.out, a.strength, a.seed, ann_file=a.ann, image_format=a.format), indent=1
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
