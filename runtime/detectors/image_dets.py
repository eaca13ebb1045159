"""Boxes for ``runtime.images --detector``: run a detector over an image folder.

The images CLI otherwise reads boxes from a COCO results JSON (``--dets``);
with ``--detector`` (``engine`` = the artifacts' detector, ``onnx:PATH``,
``hog``) it makes them itself, in the same ``file name -> (image id, boxes,
scores)`` form, plus a pose detector's own keypoints, which then travel into
every COCO result as ``det_keypoints`` (so the one-stage and the top-down
answer can be compared per person).
"""

from __future__ import annotations

import sys
from pathlib import Path

from runtime.io.records import image_names


def image_ids(folder: Path) -> dict[str, int]:
    """File name -> COCO image id (runtime.io.records.image_names: person_keypoints.json when present,
    else the number in the name; unnumbered files after every numbered id; clashes refused).
    Images beside a person_keypoints.json that it does not list are not run: said in one line."""
    ids = {name: iid for iid, name in image_names(folder, "--images", numbered_only=False).items()}
    from runtime.io.sources import IMAGE_EXTS

    extra = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.name not in ids)
    if extra:
        print(
            f"warning: {len(extra)} image(s) in {folder} not in its person_keypoints.json are not run "
            f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); add them to it or move them out",
            file=sys.stderr,
        )
    return ids
