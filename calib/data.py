"""Calibration crops, made by the runtime's own preprocessing (one code path).

A calibration set is a list of images with person boxes: COCO ground truth
or detector results, or a folder of images / a video run through a person
detector (OpenCV's HOG people detector: no weights to download, so any
workstation can calibrate). The crops feed INT8 calibration, the routing
band and the accuracy report, so they must be made exactly as the device
makes them: :func:`_crops_for_image` calls ``runtime.pose.preprocess`` only.
Each net is calibrated on crops at its own input size (``sizes``: one crop per box and size,
row i the same box at every size), so a pair of a 256x192 and a 384x288 net calibrates both.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.pose.preprocess import HW, INPUT_HW, CropWindows, net_input_hw, sanitize_boxes

DEFAULT_CALIB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"


SizedCrops = Mapping[HW, np.ndarray]  # (H, W) -> [N,3,H,W]: row i is the same box at every size


CROP_ROLES = ("router", "small", "large")


def crop_nets(manifest: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, manifest entry) of the nets that read person crops (router, small, large). Why not
    every entry: artifacts that carry a detector list it among the models, and it is calibrated on
    whole frames by build.detector, never on these crops."""
    models = manifest["models"]
    return [(r, models[r]) for r in CROP_ROLES if r in models]


def role_crops(crops: SizedCrops, manifest: Mapping[str, Any], role: str) -> np.ndarray:
    """``role``'s net's crops: those at its input size (runtime.pose.preprocess.net_input_hw)."""
    hw = net_input_hw(manifest, role)
    if hw not in crops:
        have = ", ".join(f"{h}x{w}" for h, w in crops) or "none"
        raise ValueError(
            f"no calibration crops at {hw[0]}x{hw[1]} for the {role} net (have {have}); "
            "load the set with sizes=net_sizes(manifest)"
        )
    return crops[hw]


def subset_crops(crops: SizedCrops, n: int | None) -> dict[HW, np.ndarray]:
    """At most ``n`` crops per size, evenly spaced, the same rows at every size."""
    if n is not None and n < 1:
        raise ValueError(f"--calib-max-crops must be >= 1, got {n}")
    total = len(next(iter(crops.values()))) if crops else 0
    if n is None or total <= n:
        return dict(crops)
    keep = np.linspace(0, total - 1, n).round().astype(int)
    return {hw: c[keep] for hw, c in crops.items()}


@dataclass
class CalibSet:
    by_hw: dict[HW, np.ndarray]  # (H, W) -> [N,3,H,W] float32, normalised; the first size first
    centers: np.ndarray  # [N,2] (the windows at the first size; every size in use is 3:4)
    scales: np.ndarray  # [N,2]
    image_ids: np.ndarray  # [N]
    source: str
    per_image: dict[str, int] = field(default_factory=dict)

    @property
    def crops(self) -> np.ndarray:
        """The crops at the first size asked for (the router's, INPUT_HW by default)."""
        return next(iter(self.by_hw.values()))

    def for_role(self, manifest: Mapping[str, Any], role: str) -> np.ndarray:
        return role_crops(self.by_hw, manifest, role)

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
        raise FileNotFoundError(
            f"{gt_path} not found; --calib-data must be a COCO-format folder with "
            "person_keypoints.json (and person_detections.json) beside the images"
        )
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
            raise FileNotFoundError(
                f"{det_path} not found; pass --calib-boxes gt (the ground-truth boxes) or put "
                "detector boxes there (COCO results format; build.synth names its "
                "detections.json)"
            )
        for d in json.loads(det_path.read_text()):
            if d.get("category_id", 1) == 1 and d["image_id"] in per:
                per[d["image_id"]].append([*d["bbox"], d.get("score", 1.0)])
    return files, per


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
Detector = Callable[[np.ndarray], np.ndarray]  # BGR image -> [M,5] x,y,w,h,score


def hog_detector(min_score: float = 0.3, win_stride: int = 8) -> Detector:
    """OpenCV's default HOG+SVM people detector as a ``Detector``.

    Weak next to a modern detector (upright people only), but it ships inside
    OpenCV, so calibration from raw footage needs no extra download. Scores
    are the SVM margins squashed to (0, 1) so they compare with COCO scores.
    """
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(image_bgr: np.ndarray) -> np.ndarray:
        rects, weights = hog.detectMultiScale(
            image_bgr, winStride=(win_stride, win_stride), padding=(8, 8), scale=1.05
        )
        if len(rects) == 0:
            return np.zeros((0, 5))
        score = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float64).reshape(-1)))
        out = np.concatenate([np.asarray(rects, np.float64).reshape(-1, 4), score[:, None]], axis=1)
        return out[out[:, 4] >= min_score]

    return detect


def _crops_for_image(
    img: np.ndarray, boxes: np.ndarray, sizes: Sequence[HW] = (INPUT_HW,)
) -> tuple[dict[HW, np.ndarray], np.ndarray, np.ndarray]:
    """The device's path: box hygiene -> crop windows -> affine crops at each net size."""
    arr = np.asarray(boxes, np.float64).reshape(-1, 5)
    b, _, _ = sanitize_boxes(arr[:, :4], img.shape[:2], scores=arr[:, 4], max_boxes=None)
    windows = CropWindows(b)
    c, s = windows.at(sizes[0])
    return windows.crops_by_size(img, sizes), c, s


def _assemble(
    items: Iterable[tuple[str, int, np.ndarray, np.ndarray]],
    source: str,
    max_crops: int | None,
    sizes: Sequence[HW] = (INPUT_HW,),
) -> CalibSet:
    """(name, id, image, boxes[M,5]) per image -> one CalibSet, evenly thinned to max_crops."""
    sizes = tuple(dict.fromkeys(sizes)) or (INPUT_HW,)
    crops: dict[HW, list[np.ndarray]] = {hw: [] for hw in sizes}
    centers, scales, ids = [], [], []
    counts: dict[str, int] = {}
    for name, image_id, img, boxes in items:
        if len(boxes) == 0:
            continue
        cr, c, s = _crops_for_image(img, boxes, sizes)
        if len(c) == 0:
            continue
        for hw in sizes:
            crops[hw].append(cr[hw])
        centers.append(c)
        scales.append(s)
        ids.append(np.full(len(c), image_id))
        counts[name] = len(c)
    if not centers:
        raise ValueError(
            f"no person boxes found in {source}; calibration needs at least one "
            "(use another --calib-data, or --calib-boxes gt for a COCO folder)"
        )
    out = CalibSet(
        {hw: np.concatenate(crops[hw]) for hw in sizes},
        np.concatenate(centers),
        np.concatenate(scales),
        np.concatenate(ids),
        source,
        counts,
    )
    if max_crops is not None and len(out) > max_crops:
        keep = np.linspace(0, len(out) - 1, max_crops).round().astype(int)
        out = CalibSet(
            {hw: c[keep] for hw, c in out.by_hw.items()},
            out.centers[keep],
            out.scales[keep],
            out.image_ids[keep],
            out.source,
            out.per_image,
        )
    return out


def load_coco_calib(
    folder: str | Path = DEFAULT_CALIB,
    boxes: str = "detections",
    max_crops: int | None = None,
    sizes: Sequence[HW] = (INPUT_HW,),
) -> CalibSet:
    folder = Path(folder)
    files, per = coco_boxes(folder, boxes)

    def items() -> Iterator[tuple[str, int, np.ndarray, np.ndarray]]:
        for image_id in sorted(files):
            if per[image_id]:
                yield files[image_id].name, image_id, _read_image(files[image_id]), np.asarray(per[image_id])

    return _assemble(items(), f"{folder} ({boxes})", max_crops, sizes)


def load_image_folder(
    folder: str | Path,
    detector: Detector | None = None,
    max_crops: int | None = None,
    sizes: Sequence[HW] = (INPUT_HW,),
) -> CalibSet:
    """Every image in ``folder`` (sorted by name) through ``detector`` (HOG by default)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTS)}) in {folder}; pass a COCO folder, "
            "an image folder or a video as --calib-data"
        )
    det = detector or hog_detector()

    def items() -> Iterator[tuple[str, int, np.ndarray, np.ndarray]]:
        for i, f in enumerate(files):
            img = _read_image(f)
            yield f.name, i, img, det(img)

    return _assemble(
        items(), f"{folder} (images, {'HOG' if detector is None else 'detector'})", max_crops, sizes
    )


def load_video(
    path: str | Path,
    detector: Detector | None = None,
    max_crops: int | None = None,
    every: int = 1,
    max_frames: int | None = None,
    sizes: Sequence[HW] = (INPUT_HW,),
) -> CalibSet:
    """Frames of a video (every ``every``-th) through ``detector`` (HOG by default)."""
    path = Path(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(
            f"cannot open video {path}; check the path and that OpenCV has a decoder for it"
        )
    det = detector or hog_detector()

    def items() -> Iterator[tuple[str, int, np.ndarray, np.ndarray]]:
        idx = used = 0
        try:
            while max_frames is None or used < max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                if idx % every == 0:
                    used += 1
                    yield f"{path.name}#{idx}", idx, frame, det(frame)
                idx += 1
        finally:
            cap.release()

    return _assemble(
        items(), f"{path} (video, {'HOG' if detector is None else 'detector'})", max_crops, sizes
    )


def load_calib(
    data: str | Path | None = None,
    boxes: str = "detections",
    max_crops: int | None = None,
    detector: Detector | None = None,
    sizes: Sequence[HW] = (INPUT_HW,),
) -> CalibSet:
    """Any supported ``--calib-data``: a COCO folder, a folder of images, or a video file, cut
    at each of ``sizes`` (the pair's net input sizes, router's first)."""
    path = Path(data) if data is not None else DEFAULT_CALIB
    if path.is_file() and path.suffix.lower() in VIDEO_EXTS:
        return load_video(path, detector, max_crops, sizes=sizes)
    if path.is_dir() and (path / "person_keypoints.json").is_file():
        return load_coco_calib(path, boxes, max_crops, sizes)
    if path.is_dir():
        return load_image_folder(path, detector, max_crops, sizes)
    raise FileNotFoundError(
        f"--calib-data {path} is neither a COCO folder (with person_keypoints.json), "
        f"a folder of images nor a video ({', '.join(VIDEO_EXTS)})"
    )


def coco_keypoints(folder: str | Path = DEFAULT_CALIB) -> tuple[dict[int, Path], list[dict]]:
    """Image files and the non-crowd person annotations with at least one labelled keypoint."""
    folder = Path(folder)
    gt_path = folder / "person_keypoints.json"
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path} not found; presence calibration needs COCO keypoint ground truth")
    gt = json.loads(gt_path.read_text())
    files = {im["id"]: folder / im["file_name"] for im in gt["images"]}
    anns = [a for a in gt["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0]
    return files, anns


def cut_person(
    img: np.ndarray, box: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]] | None:
    """One CropCOCO-style cut through a person: (sub-image, the box clipped to it in its
    coordinates [1,4], the cut x0,y0,x1,y1), or None when too little of the box is left."""
    x0, y0, x1, y1 = _cut(box, img.shape[:2], rng)
    bx0, by0 = max(box[0], x0), max(box[1], y0)
    bx1, by1 = min(box[0] + box[2], x1), min(box[1] + box[3], y1)
    if bx1 - bx0 < 4 or by1 - by0 < 4:
        return None
    clipped = np.array([[bx0 - x0, by0 - y0, bx1 - bx0, by1 - by0]], np.float32)
    return np.ascontiguousarray(img[y0:y1, x0:x1]), clipped, (x0, y0, x1, y1)


def _cut(box: np.ndarray, hw: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Image rectangle x0,y0,x1,y1 that cuts the person's box on one random side (or not at all)."""
    x, y, w, h = box
    H, W = hw
    x0, y0, x1, y1 = 0.0, 0.0, float(W), float(H)
    side = rng.integers(5)
    f = rng.uniform(0.35, 0.8)
    if side == 0:
        y1 = y + f * h  # keep the top: legs leave the image
    elif side == 1:
        y0 = y + (1 - f) * h  # keep the bottom: head leaves
    elif side == 2:
        x1 = x + f * w
    elif side == 3:
        x0 = x + (1 - f) * w
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def calibration_domain(manifest: dict) -> str:
    """ "synthetic" when every net runs its config's bundled weights and the config says they were
    trained on synthetic scenes (PipelineConfig.calib_domain, the fixtures), else "photos".

    Why: the presence temperature and the coverage map describe a net *on the data it will see*;
    the fixtures only ever see synthetic scenes, and fitted on photos their temperature measured
    the domain gap (T 2.64, threshold 0.60 on coco-mini: the double head's run-time choice then
    flagged 1.6 % of the out-of-window keypoints). A user's own checkpoint is a real net: photos.
    """
    synthetic = (manifest.get("pipeline") or {}).get("calib_domain") == "synthetic"
    return "synthetic" if synthetic and manifest.get("weights") == "fixture" else "photos"


def presence_folder(args: argparse.Namespace) -> Path:
    """--calib-data when it is a labelled COCO folder, else the bundled default (the presence and
    coverage fits need keypoint labels)."""
    data = getattr(args, "calib_data", None)
    if data is not None and (Path(data) / "person_keypoints.json").is_file():
        return Path(data)
    return DEFAULT_CALIB
