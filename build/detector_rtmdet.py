"""An RTMDet checkpoint -> the detector ONNX that the ``detector`` role builds from.

``--detector rtmdet-nano-person`` (or ``rtmdet-m-person``) names a released checkpoint
of build.zoo's table, fetched through its cached, hash-checked download;
``--detector PATH.pth`` is a local MMDet RTMDet checkpoint (one of nano/tiny/s/m: its keys
and shapes name the variant, its class conv the class count). The weights load strictly
into :mod:`build.models.rtmdet`, and :class:`~build.models.rtmdet.DetectorGraph` (MMDet's
preprocessing and box decode in the graph, YOLOv8 output layout) is exported with a
dynamic batch at the detector size, with the exporter metadata the layout reader takes
(``task``, ``names``, ``imgsz``, ``stride``).

Why an ONNX first: from there the detector is any other detector ONNX: the same checks,
INT8/FP16 variants, calibration frames and drift budget (build.detector, calib.fallback),
the same runtime letterbox, decode and NMS. The export lands in the zoo cache
(``detectors/``) keyed by the weights' hash and the size, written whole or not at all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnx

from runtime.artifacts.manifest import sha256_file
from runtime.errors import InputError
from runtime.safe_io import atomic_write_bytes

from .detector_model import DEFAULT_SIZE

FLAG = "--detector"
OUTPUT = "dets"
STRIDE = 32


def zoo_detector(value: str | Path) -> Any:
    """The zoo entry a ``--detector`` value names (a detector of build.zoo's table), else None."""
    from .zoo import ZOO

    if Path(value).exists():
        return None
    entry = ZOO.get(str(value))
    return entry if entry is not None and entry.kind == "detector" else None


def is_rtmdet(value: str | Path) -> bool:
    """A value this module turns into an ONNX: a zoo detector name or a ``.pth`` checkpoint."""
    return zoo_detector(value) is not None or Path(value).suffix == ".pth"


def export_rtmdet(model: Any, dst: Path, size: int, meta: dict[str, str]) -> Path:
    """``model`` (build.models.rtmdet.RTMDet, weights loaded) -> ``dst``: DetectorGraph at
    ``size`` x ``size``, dynamic batch, ``meta`` and the YOLO exporter keys as metadata."""
    from .export import export_onnx
    from .models.rtmdet import DetectorGraph

    names = {i: ("person" if i == 0 else f"class{i}") for i in range(model.num_classes)}
    props = {
        "task": "detect",
        "names": repr(names),
        "imgsz": repr([size, size]),
        "stride": str(STRIDE),
        **meta,
    }
    with tempfile.TemporaryDirectory(prefix="dynpose-rtmdet-") as tmp:
        path = export_onnx(
            DetectorGraph(model, (size, size)), Path(tmp) / "rtmdet.onnx", [OUTPUT], chw=(3, size, size)
        )
        m = onnx.load(str(path))
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    atomic_write_bytes(dst, m.SerializeToString())
    return dst


def _size(args: argparse.Namespace, native: int) -> int:
    """``--det-size`` when the user set it, else the size the variant was trained at."""
    size = int(getattr(args, "det_size", DEFAULT_SIZE))
    return size if size != DEFAULT_SIZE else native


def materialize(value: str | Path, args: argparse.Namespace) -> tuple[Path, int, dict[str, Any]]:
    """The detector ONNX for an RTMDet ``--detector`` value, its input size and the weights'
    record for the manifest (zoo name, URL, SHA-256; or the local file)."""
    from .checkpoint import CheckpointMismatch, load_strict, read_meta, read_state_dict
    from .models.rtmdet import ARCHS, arch_of, build_rtmdet, num_classes_of
    from .zoo import cache_dir, tensors_of

    trust = bool(getattr(args, "trust_checkpoint", False))
    entry = zoo_detector(value)
    if entry is not None:
        ckpt, record = tensors_of(entry, FLAG)
        license_ = entry.license
    else:
        ckpt = Path(value)
        record = {"path": str(ckpt), "sha256": sha256_file(ckpt) if ckpt.is_file() else ""}
        license_ = "as the checkpoint's"
    sd = read_state_dict(ckpt, trust, FLAG)
    arch, classes = arch_of(sd), num_classes_of(sd)
    if arch is None or classes is None:
        raise CheckpointMismatch(
            f"{ckpt} is not an RTMDet checkpoint of any of {', '.join(ARCHS)} (MMDet 3.x key names "
            f"and shapes; {FLAG} PATH.pth): pass one of those, or a detector ONNX"
        )
    model = build_rtmdet(arch, classes)
    load_strict(model, ckpt, "detector", trust, FLAG)
    size = _size(args, ARCHS[arch].input_size)
    if size % STRIDE:
        raise InputError(
            f"--det-size {size} is not a multiple of {STRIDE}", "--det-size", "use e.g. 320 or 640"
        )
    digest = record["sha256"] or sha256_file(ckpt)
    dst = cache_dir() / "detectors" / f"{arch}-{classes}c-{digest[:12]}-{size}.onnx"
    if not dst.is_file():
        print(f"detector: exporting {arch} ({classes} classes) at {size}x{size} -> {dst}", file=sys.stderr)
        meta = {
            "description": f"{arch} (MMDet 3.x RTMDet), {classes} classes",
            "license": license_,
            "author": "OpenMMLab (architecture, released weights); exported by dynpose-trt",
        }
        export_rtmdet(model, dst, size, meta)
    record = {"source": "rtmdet", "arch": arch, "num_classes": classes, **record}
    track = read_meta(ckpt, trust, FLAG).get("thresholds", {}).get("track")
    if isinstance(track, (int, float)) and 0 < track <= 1:  # measured by its recipe (build.train.detector)
        record["thresholds"] = {"track": float(track)}
    return dst, size, record


__all__ = ["export_rtmdet", "is_rtmdet", "materialize", "zoo_detector"]
