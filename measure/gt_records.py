"""Ground truth read strictly for bench.coco_eval / bench.ex_oks, before pycocotools sees it.

Why hand-written: pycocotools trusts its input; a CrowdPose file (14
keypoints) or a PoseTrack one (no ``area``) fails deep in COCOeval with a
reshape error or a KeyError. Here each annotation is checked once and a bad
one is refused naming its index and field. One gap is filled instead of
refused, and only this one: a missing ``area`` is derived from the box
(``w * h``; COCO's own area is the segmentation area, so OKS on such files is
slightly more lenient than with real areas - documented in docs/accuracy.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from runtime.io.records import RecordError, parse_box, read_json, record_int

NUM_KEYPOINTS = 17


def _numbers(v: object) -> bool:
    return isinstance(v, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
    )


def _check_ids(a: dict[str, Any], where: str, image_ids: set[int]) -> None:
    """id and image_id present and integer, the image listed; category_id defaults to person (1)."""
    for name in ("id", "image_id"):
        if name not in a:
            raise RecordError(
                f"field '{name}' is missing", where, "every COCO annotation has id and image_id"
            )
        a[name] = record_int(a, name, where)
    if a["image_id"] not in image_ids:
        raise RecordError(
            f"image_id {a['image_id']} is not in 'images'", where, "list every image in 'images'"
        )
    a["category_id"] = record_int(a, "category_id", where) if "category_id" in a else 1


def _check_keypoints(a: dict[str, Any], where: str, num_keypoints: int) -> list[float]:
    """iscrowd 0/1 (a crowd region may omit keypoints) and exactly num_keypoints finite triples."""
    crowd = a.get("iscrowd", 0)
    if crowd not in (0, 1, True, False):
        raise RecordError(f"field 'iscrowd' must be 0 or 1, got {crowd!r:.40}", where, "fix the annotation")
    a["iscrowd"] = int(crowd)
    kp = a.get("keypoints")
    if kp is None and a["iscrowd"]:
        kp = a["keypoints"] = [0] * (3 * num_keypoints)
    if not _numbers(kp):
        raise RecordError(
            "field 'keypoints' must be a list of finite numbers", where, f"write [x, y, v] * {num_keypoints}"
        )
    if len(kp) != 3 * num_keypoints:
        k = len(kp) / 3
        hint = " (CrowdPose has 14)" if len(kp) == 42 else ""
        raise RecordError(
            f"has {k:g} keypoints{hint}; this evaluator scores the {num_keypoints} COCO keypoints",
            where,
            "convert the ground truth to the COCO 17-keypoint layout",
        )
    return list(kp)


def _check_box_and_area(a: dict[str, Any], where: str) -> None:
    """A finite box with w, h >= 0; a missing area derived from it, a given one finite and >= 0."""
    if "bbox" not in a:
        raise RecordError("field 'bbox' is missing", where, "add the person box [x,y,w,h]")
    box = parse_box(a["bbox"], where)
    if not all(math.isfinite(v) for v in box) or box[2] < 0 or box[3] < 0:
        raise RecordError(
            f"field 'bbox' must be 4 finite numbers with w, h >= 0, got {list(box)}", where, "fix the box"
        )
    a["bbox"] = list(box)
    if "area" not in a or a["area"] is None:
        a["area"] = box[2] * box[3]  # derived (PoseTrack has none): see the module docstring
    elif not (
        isinstance(a["area"], (int, float))
        and not isinstance(a["area"], bool)
        and math.isfinite(a["area"])
        and a["area"] >= 0
    ):
        raise RecordError(
            f"field 'area' must be a finite number >= 0, got {a['area']!r:.40}",
            where,
            "fix it or remove it (then w*h of the box is used)",
        )


def check_annotation(a: object, i: int, src: str, image_ids: set[int], num_keypoints: int) -> dict[str, Any]:
    """One GT annotation checked and completed (area, num_keypoints, iscrowd)."""
    where = f"{src} annotations[{i}]"
    if not isinstance(a, dict):
        raise RecordError(
            f"annotation is {type(a).__name__}, not an object", where, "fix the ground truth file"
        )
    a = dict(a)
    _check_ids(a, where, image_ids)
    kp = _check_keypoints(a, where, num_keypoints)
    _check_box_and_area(a, where)
    if "num_keypoints" not in a:
        a["num_keypoints"] = sum(1 for v in kp[2::3] if v > 0)
    return a


def check_dataset(data: object, src: str, num_keypoints: int = NUM_KEYPOINTS) -> dict[str, Any]:
    """A whole COCO keypoint GT dict checked; returns a completed copy."""
    if not isinstance(data, dict):
        raise RecordError(
            f"ground truth must be a COCO object with images/annotations, got {type(data).__name__}",
            src,
            "pass a person_keypoints*.json file",
        )
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise RecordError(f"has no '{key}' list", src, "pass a COCO keypoint ground truth file")
    images = []
    for i, im in enumerate(data["images"]):
        where = f"{src} images[{i}]"
        if not isinstance(im, dict):
            raise RecordError("image entry is not an object", where, "fix the ground truth file")
        im = dict(im)
        im["id"] = record_int(im, "id", where)
        images.append(im)
    ids = {im["id"] for im in images}
    anns = [check_annotation(a, i, src, ids, num_keypoints) for i, a in enumerate(data["annotations"])]
    if not anns:  # pycocotools would print AP -1 and exit 0: nothing was measured
        raise RecordError(
            "has no annotations: nothing to score against",
            src,
            "pass a ground truth file with annotated people",
        )
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        cats = [{"id": 1, "name": "person", "supercategory": "person"}]
    if not all(isinstance(c, dict) and "id" in c for c in cats):
        raise RecordError("'categories' entries need an 'id'", src, "fix the ground truth file")
    return {**data, "images": images, "annotations": anns, "categories": cats}


def read_gt(path: Path, flag: str = "--gt") -> dict[str, Any]:
    """Read and check a GT file (unreadable, malformed or wrong-shaped is one RecordError/InputError)."""
    return check_dataset(read_json(path, "ground truth", flag), f"{flag} {path}")
