"""The ``detector`` role of the build: a user's YOLO ONNX -> artifacts like the pose nets.

``python -m build.engines --detector PATH.onnx [--det-size 640]`` copies the
model with its input fixed to the detector size (batch stays dynamic, for
several cameras), simplifies it, reads its layout from the exporter's ONNX
metadata (``--det-layout`` where there is none), makes the FP16 and the two
INT8 Q/DQ variants (calibrated on frames of ``--det-calib-data`` letterboxed
by the runtime's own :class:`runtime.detectors.letterbox.Letterboxer`, so calibration
sees exactly what inference sees) and writes ``models.detector`` into the
manifest. The TensorRT stage then builds its engine (or its build_plan.sh
lines) from that entry like any other role.

Before any of this (and before the pose export) ``build.detector_check``
refuses, in one line, a model or a ``--det-*`` flag the pipeline could not use.

Nothing of the source model is hard-coded: the test model (YOLO11n-pose,
AGPL-3.0) is read from ../shared at run time and every derived file is
written only into the artifacts folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from runtime.artifacts.manifest import sha256_file
from runtime.detectors.yolo import (
    YoloLayout,
)

from .detector_model import (
    DEFAULT_DRIFT_PX,
    DEFAULT_MAX_BATCH,
    ROLE,
    calib_frames,
    calib_source,
    fix_input_size,
)

if TYPE_CHECKING:
    from .detector_check import CheckedDetector


# -- layout -----------------------------------------------------------------------------------------


# -- model file ---------------------------------------------------------------------------------------


def simplify(model: onnx.ModelProto, size: int) -> tuple[onnx.ModelProto, str]:
    """onnxsim with the batch kept symbolic; the unsimplified copy where onnxsim fails."""
    try:
        import onnxsim

        from .detector_model import image_input

        name = image_input(model, "detector").name
        simp, ok = onnxsim.simplify(model, test_input_shapes={name: [1, 3, size, size]})
        if ok:
            return simp, f"onnxsim {onnxsim.__version__}"
    except Exception as e:  # noqa: BLE001 - a failed simplification keeps the valid original
        print(
            f"detector: onnxsim failed ({type(e).__name__}: {e}); keeping the model as exported",
            file=sys.stderr,
        )
    return model, "none"


# -- calibration frames --------------------------------------------------------------------------------


# -- the role ---------------------------------------------------------------------------------------


def _variant(out_dir: Path, path: Path, **info: Any) -> dict[str, Any]:
    return {"onnx": path.name, "sha256": sha256_file(path), **info}


def _runner(frames: np.ndarray) -> Callable[[Path], np.ndarray]:
    """The model's raw output on every calibration frame (ORT CPU, one frame per call)."""
    from runtime.backends.ort_session import open_session

    def run(path: Path) -> np.ndarray:
        sess = open_session(path)
        name = sess.get_inputs()[0].name
        return np.concatenate([sess.run(None, {name: frames[i : i + 1]})[0] for i in range(len(frames))])

    return run


def make_variants(
    out_dir: Path,
    entry: dict[str, Any],
    frames: np.ndarray,
    method: str,
    log: Callable[[str], None],
    float_heads: bool = True,
    drift_px: float = DEFAULT_DRIFT_PX,
) -> None:
    """fp16, int8_cpu and int8_trt next to detector.onnx; int8_trt must pass check_trt_qdq.

    ``float_heads`` keeps the output convs float and, for the heads that regress coordinates
    (keypoints), their branch up to the fork from the shared features
    (calib.quantize.float_head_ops): measured on coco-mini the output convs halve the int8_trt
    keypoint drift (2.3 -> 1.2 px), the keypoint branch brings it to 0.73 px (docs/results/2026-12-detector.md).
    ``drift_px`` > 0 then keeps whole blocks float, fewest first, until each INT8 variant's output
    drift on these frames is within it (calib.fallback; int8_cpu 1.10 -> 0.82 px on coco-mini).
    """
    from calib.fallback import module_groups, output_drift, quantize_within
    from calib.fp16 import convert_fp16
    from calib.quantize import (
        check_trt_qdq,
        float_head_ops,
        float_tail,
        name_nodes,
        qdq_counts,
        quantize_onnx,
    )

    src = out_dir / entry["onnx"]
    t = time.perf_counter()
    fp16 = convert_fp16(src, out_dir / f"{ROLE}.fp16.onnx")
    entry["variants"]["fp16"] = _variant(
        out_dir, fp16, precision="fp16", io="float32", fp32_nodes="float tail (box/keypoint decode)"
    )
    log(f"fp16 in {time.perf_counter() - t:.0f} s")
    fp32 = name_nodes(onnx.load(str(src)))
    tail_nodes = float_tail(fp32)
    tail = len(tail_nodes)
    head_nodes = float_head_ops(fp32, tail_nodes) if float_heads else set()
    heads = len(head_nodes)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dynpose-detcal-") as tmp:
        base = tail_nodes | head_nodes
        run = _runner(frames)
        ref = run(src) if drift_px > 0 else None
        layout = YoloLayout.from_dict(entry["layout"])
        for fl in ("int8_cpu", "int8_trt"):  # int8_cpu calibrates every tensor, int8_trt reuses the ranges
            t = time.perf_counter()

            def quantize(extra: set[str], fl: str = fl) -> Path:
                return quantize_onnx(
                    src,
                    out_dir / f"{ROLE}.{fl}.onnx",
                    frames,
                    fl,
                    method,
                    cache=Path(tmp) / f"{ROLE}.{method}.json",
                    keep_float=sorted(base | extra),
                )

            fallback, dst = quantize_within(
                quantize,
                module_groups(fp32, skip=base),
                None if ref is None else lambda p: output_drift(ref, run(p), layout, int(entry["class"])),
                drift_px,
                "--det-drift-px",
                log=lambda m, fl=fl: log(f"{fl}: {m}"),
            )
            q = onnx.load(str(dst))
            if fl == "int8_trt":
                problems = check_trt_qdq(q)
                if problems:
                    raise RuntimeError(f"{dst.name}: Q/DQ graph TensorRT cannot fuse: {problems[:3]}")
            entry["variants"][fl] = _variant(
                out_dir,
                dst,
                precision="int8",
                flavour=fl,
                method=method,
                n_calib_frames=int(len(frames)),
                qdq=qdq_counts(q),
                float_tail_nodes=tail,
                float_heads=float_heads,
                float_head_nodes=heads,
                **({"fallback": fallback.as_dict()} if fallback else {}),
            )
            drift = f", drift {fallback.drift:.2f} px" if fallback else ""
            log(f"{fl} ({method}, {len(frames)} frames{drift}) in {time.perf_counter() - t:.0f} s")


def _thresholds(args: argparse.Namespace, weights: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's detector thresholds: score and NMS IoU from the flags, and ``track`` (the score
    that starts a track: the runtime's ByteTrack-style high threshold) from ``--det-track-thr`` or,
    failing that, what the checkpoint's recipe measured (an RTMDet's IoU-aware scores run lower
    than a YOLO's, so the tracker's 0.5 would start few tracks)."""
    out: dict[str, Any] = {"score": float(args.det_score), "iou": float(args.det_iou), "max_det": 300}
    track = getattr(args, "det_track_thr", None)
    if track is None:
        track = ((weights or {}).get("thresholds") or {}).get("track")
    if track is not None:
        out["track"] = float(track)
    return out


def add_detector(
    out_dir: Path,
    manifest: dict[str, Any],
    src: Path,
    args: argparse.Namespace,
    calib_default: Path,
    log: Callable[[str], None] | None = None,
    checked: CheckedDetector | None = None,
) -> dict[str, Any]:
    """Write detector*.onnx into ``out_dir`` and ``manifest['models']['detector']``; returns the entry.

    ``checked``: the result of :func:`build.detector_check.check_detector` on ``src`` (build.engines
    runs it before the pose export); without it the same checks run here first."""
    from build.export import describe_io

    from .detector_check import check_detector

    log = log or (lambda m: print(f"detector: {m}", file=sys.stderr))
    src = Path(src)
    det = checked if checked is not None and checked.src == src else check_detector(src, args, calib_default)
    model, layout, meta, size = det.model, det.layout, det.meta, det.size
    names = meta.get("names") if isinstance(meta.get("names"), dict) else {}
    cls = int(getattr(args, "det_class", 0))
    t = time.perf_counter()
    model, simplified = simplify(fix_input_size(model, size), size)
    path = out_dir / f"{ROLE}.onnx"
    onnx.save(model, str(path))
    inputs, outputs = describe_io(path)
    entry: dict[str, Any] = {
        "role": ROLE,
        "arch": str(meta.get("description", src.stem))[:80],
        "head": "yolo",
        "onnx": path.name,
        "sha256": sha256_file(path),
        "opset": int(model.opset_import[0].version),
        "simplified_with": simplified,
        "inputs": inputs,
        "outputs": outputs,
        "input_hw": [size, size],
        "layout": layout.to_dict(),
        "class": cls,
        "class_name": str(names.get(cls, "person" if cls == 0 else cls)),
        "thresholds": _thresholds(args, det.weights),
        "max_batch": int(getattr(args, "det_max_batch", DEFAULT_MAX_BATCH)),
        "letterbox": {"pad_value": 114, "color": "RGB", "scale": "1/255"},
        "weights": det.weights or {"source": "detector-onnx"},
        "source": {
            "file": src.name,
            "sha256": sha256_file(src),
            **{
                k: str(meta[k])
                for k in ("author", "version", "license", "date", "task", "imgsz")
                if k in meta
            },
        },
        "variants": {},
    }
    log(
        f"{src.name}: {layout.family} layout ({layout.source}), {layout.num_classes} classes"
        + (f", keypoints {list(layout.kpt_shape)}" if layout.kpt_shape else "")
        + f", {size}x{size}, {simplified} in {time.perf_counter() - t:.0f} s"
    )
    if getattr(args, "det_precision", "all") == "all":
        data, flag = calib_source(args, calib_default)
        frames = calib_frames(data, size, int(getattr(args, "det_calib_frames", 32)), flag)
        entry["calibration"] = {"source": str(data), "n_frames": int(len(frames))}
        make_variants(
            out_dir,
            entry,
            frames,
            getattr(args, "det_calib_method", "percentile"),
            log,
            float_heads=not getattr(args, "det_int8_heads", False),
            drift_px=float(getattr(args, "det_drift_px", DEFAULT_DRIFT_PX)),
        )
    manifest["models"][ROLE] = entry
    return entry


__all__ = ["add_detector"]
