"""Calibration crops, made by the runtime's own preprocessing (one code path).

A calibration set is a list of images with person boxes: COCO ground truth
or detector results. The crops feed INT8 calibration, the routing band and
the accuracy report, so they must be made exactly as the device makes them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from runtime.preprocess import boxes_to_center_scale, make_crops, sanitize_boxes

DEFAULT_CALIB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"


@dataclass
class CalibSet:
    crops: np.ndarray                 # [N,3,256,192] float32, normalised
    centers: np.ndarray               # [N,2]
    scales: np.ndarray                # [N,2]
    image_ids: np.ndarray             # [N]
    source: str
    per_image: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)

    def describe(self) -> str:
        return f"{len(self)} crops from {len(self.per_image)} images ({self.source})"


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"calibration image {path} is missing or unreadable")
    return img


def coco_boxes(folder: Path, boxes: str = "detections") -> tuple[dict[int, Path], dict[int, list]]:
    """image id -> file, and image id -> [x,y,w,h,score] from a COCO folder.

    ``boxes`` = 'detections' reads ``person_detections.json`` (results format),
    'gt' the person annotations of ``person_keypoints.json``.
    """
    gt_path = folder / "person_keypoints.json"
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path} not found; --calib-data must be a COCO-format folder with "
                                "person_keypoints.json (and person_detections.json) beside the images")
    gt = json.loads(gt_path.read_text())
    files = {im["id"]: folder / im["file_name"] for im in gt["images"]}
    per: dict[int, list] = {i: [] for i in files}
    if boxes == "gt":
        for a in gt["annotations"]:
            if not a.get("iscrowd", 0):
                per[a["image_id"]].append([*a["bbox"], 1.0])
    else:
        det_path = folder / "person_detections.json"
        if not det_path.is_file():
            raise FileNotFoundError(f"{det_path} not found; pass boxes='gt' or add detections")
        for d in json.loads(det_path.read_text()):
            if d.get("category_id", 1) == 1 and d["image_id"] in per:
                per[d["image_id"]].append([*d["bbox"], d.get("score", 1.0)])
    return files, per


def load_coco_calib(folder: str | Path = DEFAULT_CALIB, boxes: str = "detections",
                    max_crops: int | None = None) -> CalibSet:
    folder = Path(folder)
    files, per = coco_boxes(folder, boxes)
    crops, centers, scales, ids = [], [], [], []
    counts: dict[str, int] = {}
    for image_id in sorted(files):
        if not per[image_id]:
            continue
        img = _read_image(files[image_id])
        arr = np.asarray(per[image_id], np.float64)
        b, _, _ = sanitize_boxes(arr[:, :4], img.shape[:2], scores=arr[:, 4], max_boxes=None)
        c, s = boxes_to_center_scale(b)
        crops.append(make_crops(img, c, s))
        centers.append(c)
        scales.append(s)
        ids.append(np.full(len(b), image_id))
        counts[files[image_id].name] = len(b)
    if not crops:
        raise ValueError(f"no person boxes found in {folder} ({boxes}); calibration needs at least one")
    out = CalibSet(np.concatenate(crops), np.concatenate(centers), np.concatenate(scales),
                   np.concatenate(ids), f"{folder} ({boxes})", counts)
    if max_crops is not None and len(out) > max_crops:
        keep = np.linspace(0, len(out) - 1, max_crops).round().astype(int)
        out = CalibSet(out.crops[keep], out.centers[keep], out.scales[keep], out.image_ids[keep],
                       out.source, out.per_image)
    return out
