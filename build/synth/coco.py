"""Write synthetic scenes as a COCO keypoint dataset + detections, and load the photo pool.

The dataset (images/ and both JSON files) replaces an earlier one in the same
folder whole, or not at all (build/staging.py): images/ is owned by the
dataset, so images of an earlier, larger run do not linger beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import OutputError
from runtime.io.safe_io import atomic_write_text

from ..staging import StagedDir
from .scene import make_scene
from .skeleton import KEYPOINT_NAMES, SKELETON

REPO = Path(__file__).resolve().parents[2]


def default_photo_dir() -> Path:
    return Path(os.environ.get("DYNPOSE_SHARED_DATA", REPO.parent / "shared" / "data")) / "coco-mini"


def load_photos(photo_dir: str | Path | None = None) -> list[np.ndarray]:
    """Real photos for backgrounds (sorted by name, so the pool is the same on every machine).

    ``photo_dir=""`` means none (noise/gradient backgrounds only); a named
    directory that does not exist is an error rather than a silent change of data.
    """
    if photo_dir == "":
        return []
    d = Path(photo_dir) if photo_dir is not None else default_photo_dir()
    if not d.is_dir():
        if photo_dir is None:
            return []
        raise FileNotFoundError(
            f"photo directory {d} not found; pass --photos '' for synthetic backgrounds only"
        )
    photos = [cv2.imread(str(p)) for p in sorted(d.glob("*.jpg"))]
    return [p for p in photos if p is not None]


def categories() -> list[dict]:
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(KEYPOINT_NAMES),
            "skeleton": SKELETON,
        }
    ]


def write_dataset(
    out_dir: str | Path,
    n_images: int,
    seed: int,
    photos: list[np.ndarray],
    progress: bool = False,
    level: str | None = None,
) -> dict[str, Path]:
    """``out_dir/images/*.jpg``, ``person_keypoints.json``, ``detections.json``.

    Image i is drawn from ``default_rng([seed, i])``: any subset can be
    regenerated alone, and two seeds never share images. ``level`` fixes the
    scene level (easy, medium, hard) instead of drawing the mix.
    """
    final = Path(out_dir)
    with StagedDir(final, merge=True, replace=("images",)) as st:
        _write_dataset(st.path, final.name, n_images, seed, photos, progress, level)
        st.commit()
    return {
        "images": final / "images",
        "keypoints": final / "person_keypoints.json",
        "detections": final / "detections.json",
    }


def _write_dataset(
    out: Path,
    label: str,
    n_images: int,
    seed: int,
    photos: list[np.ndarray],
    progress: bool,
    level: str | None,
) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns, dets = [], [], []
    it = range(n_images)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"synth {label}", leave=False)
    for i in it:
        rng = np.random.default_rng([seed, i])
        scene = make_scene(rng, photos, level=level)
        img_id = i + 1
        name = f"{img_id:06d}.jpg"
        path = out / "images" / name
        if not cv2.imwrite(str(path), scene.image, [cv2.IMWRITE_JPEG_QUALITY, 92]):  # False on a full disk
            raise OutputError(
                "the image could not be written (disk full?)",
                str(path),
                "free disk space or choose another --out",
            )
        h, w = scene.image.shape[:2]
        images.append({"id": img_id, "file_name": name, "height": h, "width": w, "difficulty": scene.level})
        for p in scene.people:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": [round(float(v), 2) for v in p.keypoints.reshape(-1)],
                    "num_keypoints": p.num_keypoints,
                    "bbox": [round(float(v), 2) for v in p.bbox],
                    "area": p.area,
                    "out_of_image": [int(o) for o in p.out_of_image],
                    "facing": "front" if p.front else "back",
                }
            )
        for b, s, src, kind in zip(scene.boxes, scene.scores, scene.source, scene.kinds):
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": 1,
                    "bbox": [round(float(v), 2) for v in b],
                    "score": round(float(s), 4),
                    "kind": kind,
                    "gt_id": (anns[-len(scene.people) + int(src)]["id"] if src >= 0 else None),
                }
            )
    gt = {
        "info": {"description": f"dynpose-trt synthetic figures, seed {seed}", "version": "1"},
        "images": images,
        "annotations": anns,
        "categories": categories(),
    }
    atomic_write_text(out / "person_keypoints.json", json.dumps(gt))
    atomic_write_text(out / "detections.json", json.dumps(dets))


# The trained fixtures' synthetic splits (build.train.fixtures): router training, calibration
# (band, theta pick) and the held-out test set, each drawn from its own build.synth seed.
SPLITS = ("router", "calib", "test")


def split_seed(name: str, seed: int = 0) -> int:
    """The ``build.synth`` seed of one split: image i of it is drawn from ``[split_seed, i]``, so the
    first n images of a split are the same files whatever the set size (bench.accuracy relies on it)."""
    return 10_000 * (SPLITS.index(name) + 2) + seed


def write_split(
    folder: str | Path,
    split: str,
    n_images: int,
    seed: int = 0,
    photos: list[np.ndarray] | None = None,
    progress: bool = True,
) -> Path:
    """The first ``n_images`` of a fixture split as a COCO folder that ``--calib-data`` and
    ``measure.workload.load_frames`` read (``person_keypoints.json`` naming its images relative to
    the folder, + ``person_detections.json``); a complete folder is reused as it is.

    Why here: the build's default calibration set for configs trained on synthetic scenes
    (build.engines) and ``make accuracy``'s splits are the same drawing, so one writer.
    ``photos`` None = the default backdrop pool (load_photos()).
    """
    d = Path(folder)
    gt, dets = d / "person_keypoints.json", d / "person_detections.json"
    if gt.is_file() and dets.is_file():
        return d
    paths = write_dataset(
        d,
        n_images,
        seed=split_seed(split, seed),
        photos=load_photos() if photos is None else photos,
        progress=progress,
    )
    coco = json.loads(paths["keypoints"].read_text())
    for im in coco["images"]:  # a COCO folder names its images relative to itself
        im["file_name"] = f"{paths['images'].name}/{im['file_name']}"
    atomic_write_text(paths["keypoints"], json.dumps(coco))
    atomic_write_text(dets, paths["detections"].read_text())  # the name --calib-data and load_frames expect
    return d
