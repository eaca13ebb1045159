"""Boxes for ``runtime.images --detector``: run a detector over an image folder.

The images CLI otherwise reads boxes from a COCO results JSON (``--dets``);
with ``--detector`` (``engine`` = the artifacts' detector, ``onnx:PATH``,
``hog``) it makes them itself, in the same ``file name -> (image id, boxes,
scores)`` form, plus a pose detector's own keypoints, which then travel into
every COCO result as ``det_keypoints`` (so the one-stage and the top-down
answer can be compared per person).
"""
from __future__ import annotations

import json
from pathlib import Path



IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}


def image_ids(folder: Path) -> dict[str, int]:
    """File name -> COCO image id: person_keypoints.json when present, else the number in the name,
    else the position in sorted order."""
    gt = folder / "person_keypoints.json"
    if gt.is_file():
        return {im["file_name"]: int(im["id"]) for im in json.loads(gt.read_text())["images"]}
    files = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXT)
    return {n: int(Path(n).stem) if Path(n).stem.isdigit() else i for i, n in enumerate(files)}
