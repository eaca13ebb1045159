"""Person-detection records (COCO results JSON) read strictly, and JSON written strictly.

Why hand-written: pycocotools and ``json`` accept anything a JSON parser
does; a string or ragged ``bbox`` or a NaN score then fails deep inside the
pipeline (or is written back as the non-JSON token ``NaN``). Here every
record is checked once, at the edge, and a bad one is refused with its index
and field named. A box whose numbers are non-finite (``NaN``, ``Infinity``,
``null``) is *not* refused: it is a box the detector produced, so it is
kept and box hygiene reports it as ``dropped: nan_or_inf``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import InputError

PERSON_CATEGORY = 1


class RecordError(InputError, ValueError):
    """A detection or ground-truth record that cannot be used (exit 2); says which record and field."""


@dataclass(frozen=True)
class Detection:
    """One person box as given: ``index`` is its position in the file (results keep it)."""

    index: int
    key: int  # image_id (images) or frame index (video)
    bbox: tuple[float, float, float, float]
    score: float


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_int(rec: dict[str, Any], name: str, where: str) -> int:
    """An integer field (an integral float such as 785.0 is accepted)."""
    v = rec.get(name)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise RecordError(
            f"field '{name}' must be an integer, got {v!r:.60}", where, f"write {name} as a whole number"
        )
    return v


def parse_box(v: object, where: str) -> tuple[float, float, float, float]:
    """4 numbers x,y,w,h; ``null``/NaN/inf entries become NaN (dropped later, not refused)."""
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        n = len(v) if isinstance(v, (list, tuple)) else type(v).__name__
        raise RecordError(
            f"field 'bbox' must be a list of 4 numbers [x,y,w,h], got {n}"
            + (" values" if isinstance(n, int) else ""),
            where,
            "write COCO xywh boxes (w=x2-x1, h=y2-y1)",
        )
    out = []
    for j, x in enumerate(v):
        if x is None:
            out.append(math.nan)
        elif _is_number(x):
            out.append(float(x))
        else:
            raise RecordError(
                f"field 'bbox'[{j}] must be a number, got {x!r:.40}",
                where,
                "write the box as numbers, not strings",
            )
    return out[0], out[1], out[2], out[3]


def parse_score(rec: dict[str, Any], where: str) -> float:
    """``score`` is optional (1.0); when present it must be a finite number."""
    if "score" not in rec:
        return 1.0
    s = rec["score"]
    if not _is_number(s) or not math.isfinite(s):
        raise RecordError(
            f"field 'score' must be a finite number, got {s!r:.40}",
            where,
            "fix or remove the score (absent means 1.0)",
        )
    return float(s)


def read_json(path: Path, what: str, flag: str) -> Any:
    """Parse a JSON file; unreadable or malformed is one InputError naming the flag."""
    try:
        return json.loads(Path(path).read_bytes())
    except OSError as e:
        raise InputError(
            f"cannot read {what}: {e.strerror or e}", f"{flag} {path}", "pass a readable file"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(
            f"cannot read {what}: not valid JSON ({e})", f"{flag} {path}", "pass a COCO-format JSON file"
        ) from None
    except RecursionError:
        raise InputError(
            f"cannot read {what}: nested too deeply", f"{flag} {path}", "pass a COCO-format JSON file"
        ) from None


def parse_detections(data: object, source: str, frame_keys: bool = False) -> tuple[list[Detection], int]:
    """COCO results records -> detections in file order, plus the number of non-person records skipped.

    ``frame_keys``: a record may say ``frame`` instead of ``image_id`` (video).
    """
    if not isinstance(data, list):
        raise RecordError(
            f"detections must be a JSON list of {{image_id, bbox, score}} records, got {type(data).__name__}",
            source,
            "write COCO results format",
        )
    dets: list[Detection] = []
    other = 0
    for i, rec in enumerate(data):
        where = f"{source} record {i}"
        if not isinstance(rec, dict):
            raise RecordError(
                f"record is {type(rec).__name__}, not an object",
                where,
                'each record is {"image_id", "bbox", "score"}',
            )
        if "category_id" in rec and record_int(rec, "category_id", where) != PERSON_CATEGORY:
            other += 1
            continue
        name = "frame" if frame_keys and "frame" in rec else "image_id"
        if name not in rec:
            raise RecordError(
                "field 'image_id' is missing" + (" (or 'frame')" if frame_keys else ""),
                where,
                "every record names its image",
            )
        if "bbox" not in rec:
            raise RecordError("field 'bbox' is missing", where, "every record needs bbox [x,y,w,h]")
        dets.append(
            Detection(i, record_int(rec, name, where), parse_box(rec["bbox"], where), parse_score(rec, where))
        )
    return dets, other


def read_detections(
    path: Path, flag: str = "--dets", frame_keys: bool = False
) -> tuple[list[Detection], int]:
    """A detections file, strictly checked (see :func:`parse_detections`)."""
    return parse_detections(read_json(path, "detections", flag), f"{flag} {path}", frame_keys)


def image_names(images_dir: Path, flag: str = "--images", numbered_only: bool = True) -> dict[int, str]:
    """image id -> file name: from ``person_keypoints.json`` beside the images when present,
    otherwise the number in the file name (COCO's 000000000785.jpg is id 785).

    Why strict: ids key detections and results, so two files on one id would merge their
    people without a word. Files whose numbers collide (1.jpg, 01.jpg, 001.png) are refused in
    one line naming both. With ``numbered_only=False`` (a detector makes the boxes, nothing
    refers to ids yet) a file without a number gets an id above every numbered one, in
    name order, so it can never take a numbered file's id.
    """
    gt = images_dir / "person_keypoints.json"
    if not gt.is_file():
        from runtime.io.sources import IMAGE_EXTS

        files = sorted(f.name for f in images_dir.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        names: dict[int, str] = {}
        unnumbered = []
        for name in files:
            stem = Path(name).stem
            if not (stem.isascii() and stem.isdigit()):
                unnumbered.append(name)
            elif int(stem) in names:
                raise RecordError(
                    f"{names[int(stem)]} and {name} both map to image id {int(stem)}",
                    f"{flag} {images_dir}",
                    "rename one of them (ids come from the number in "
                    "the file name) or add a person_keypoints.json that lists the images",
                )
            else:
                names[int(stem)] = name
        if not numbered_only:
            first = max(names, default=-1) + 1
            names.update((first + i, name) for i, name in enumerate(unnumbered))
        return names
    data = read_json(gt, "the image list", flag)
    ims = data.get("images") if isinstance(data, dict) else None
    if not isinstance(ims, list):
        raise RecordError("has no 'images' list", f"{flag} {gt}", "fix the COCO file or remove it")
    names, seen = {}, set()
    for i, im in enumerate(ims):
        where = f"{flag} {gt} images[{i}]"
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str):
            raise RecordError("needs 'id' and 'file_name'", where, "fix the COCO image entry")
        iid = record_int(im, "id", where)
        if iid in names or im["file_name"] in seen:
            raise RecordError(
                f"image id {iid} / file {im['file_name']} is listed twice",
                where,
                "give every image one entry with its own id",
            )
        names[iid] = im["file_name"]
        seen.add(im["file_name"])
    return names


def finite_or_none(x: float, ndigits: int | None = None) -> float | None:
    """A float for strict JSON: NaN/inf become ``null``."""
    x = float(x)
    if not math.isfinite(x):
        return None
    return round(x, ndigits) if ndigits is not None else x


def json_safe(obj: Any) -> Any:
    """A copy with every non-finite float (NaN/inf, numpy too) replaced by ``null``."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) or type(obj).__module__ == "numpy":
        try:
            v = float(obj)
        except (TypeError, ValueError):
            return obj
        if isinstance(obj, (bool, int)) or (hasattr(obj, "dtype") and obj.dtype.kind in "iub"):
            return obj.item() if hasattr(obj, "item") else obj
        return v if math.isfinite(v) else None
    return obj


def strict_dumps(obj: Any) -> str:
    """``json.dumps`` that refuses NaN/inf (callers map them to ``null`` first)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)
