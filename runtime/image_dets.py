"""Boxes for ``runtime.images --detector``: run a detector over an image folder.

The images CLI otherwise reads boxes from a COCO results JSON (``--dets``);
with ``--detector`` (``engine`` = the artifacts' detector, ``onnx:PATH``,
``hog``) it makes them itself, in the same ``file name -> (image id, boxes,
scores)`` form, plus a pose detector's own keypoints, which then travel into
every COCO result as ``det_keypoints`` (so the one-stage and the top-down
answer can be compared per person).
"""
from __future__ import annotations

from pathlib import Path

from .records import image_names


def image_ids(folder: Path) -> dict[str, int]:
    """File name -> COCO image id (runtime.records.image_names: person_keypoints.json when present,
    else the number in the name; unnumbered files after every numbered id; clashes refused)."""
    return {name: iid for iid, name in image_names(folder, "--images", numbered_only=False).items()}
